"""Run the Haiku model: init with a record of which module class was called where, and flat trees."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
from haiku._src.lift import LiftingModule  # private, but Haiku's API is frozen: lifted names need it

from ..engine.tables import Tables
from .conversions import Array
from .loading import HaikuApply, HaikuEntry
from .matching import LeafInfo, ModuleCall, ModuleRecord, group_leaves, haiku_table_types, leaf_infos

TOP_LEVEL = ("~",)  # where Haiku puts hk.get_parameter called outside any module
SETTLED_COUNTER = 2**30  # decay**counter underflows to 0 for any decay < 1 - 2e-8: debiasing is over


def flatten(tree: Mapping[str, Mapping[str, Array]]) -> dict[str, Array]:
    """Haiku's `{module_name: {leaf: array}}` -> `{"module_name/leaf": array}`."""
    return {f"{module}/{name}": value for module, leaves in tree.items() for name, value in leaves.items()}


def unflatten(flat: Mapping[str, Array]) -> dict[str, dict[str, Array]]:
    tree: dict[str, dict[str, Array]] = {}
    for key, value in flat.items():
        module, name = key.rsplit("/", 1)
        tree.setdefault(module, {})[name] = value
    return tree


def _leaf_path(key: str) -> tuple[str, ...]:
    return tuple(key.split("/"))


@dataclass
class HaikuModel:
    """The initialised Haiku model: flat params and state, and their owners in first-call order."""

    params: dict[str, Array]
    state: dict[str, Array]
    leaves: dict[str, LeafInfo]
    records: list[ModuleRecord]
    moving_averages: list[str]  # module names of the hk.ExponentialMovingAverage instances


def init_and_trace(
    entry: HaikuEntry,
    rng: jax.Array,
    inputs: list[Array],
    kwargs: Mapping[str, object],
    tables: Tables,
    target: str,
    *,
    abstract: bool = False,
) -> HaikuModel:
    """`entry.init` under `hk.intercept_methods`, recording each module's class and first call.

    `hk.custom_creator` would name each leaf's module too, but it only works inside a transform and
    `entry.init` may be an already-transformed object; method interception works from outside, and
    leaf names carry the module path.
    """
    calls: dict[tuple[Any, ...], ModuleCall] = {TOP_LEVEL: ModuleCall(None, (-1,))}
    lifted_prefixes: list[str] = []  # modules inside hk.lift / layer_stack are named relative to the lift

    def record(next_fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any], context: Any) -> Any:
        if context.method_name == "__init__":  # module_name does not exist before __init__ ran
            return next_fn(*args, **kw)
        name = "/".join([*lifted_prefixes[-1:], context.module.module_name])
        calls.setdefault(_leaf_path(name), ModuleCall(type(context.module), (len(calls),)))
        if not isinstance(context.module, LiftingModule):
            return next_fn(*args, **kw)
        lifted_prefixes.append("/".join([*lifted_prefixes[-1:], context.module.prefix_name]).strip("/"))
        try:
            return next_fn(*args, **kw)
        finally:
            lifted_prefixes.pop()

    init = functools.partial(entry.init, **kwargs)
    with hk.intercept_methods(record):
        params, state = jax.eval_shape(init, rng, *inputs) if abstract else init(rng, *inputs)
    flat_params, flat_state = flatten(params), flatten(state)
    leaves = {
        **leaf_infos(flat_params, _leaf_path, lambda _: True),
        **leaf_infos(flat_state, _leaf_path, lambda _: False),
    }
    records = group_leaves(leaves, calls, haiku_table_types(tables, target))
    moving_averages = ["/".join(path) for path, call in calls.items() if call.type is hk.ExponentialMovingAverage]
    return HaikuModel(flat_params, flat_state, leaves, records, moving_averages)


def settled(state: Mapping[str, Array], moving_averages: list[str]) -> dict[str, Array]:
    """`state` as after long training: every moving average's zero-debiasing has worn off.

    Haiku's `hk.ExponentialMovingAverage` (BatchNorm's statistics) keeps `hidden` and divides it by
    1 - decay**counter; Flax keeps one undebiased average. The two updates agree exactly once
    decay**counter is 0 and hidden == average, which is where any trained checkpoint is; a fresh init
    (counter 0) would make every correct conversion look wrong after one training step.
    """
    out = dict(state)
    for module in moving_averages:
        if f"{module}/counter" in out:
            out[f"{module}/counter"] = jnp.full_like(out[f"{module}/counter"], SETTLED_COUNTER)
        if f"{module}/average" in out and f"{module}/hidden" in out:
            out[f"{module}/hidden"] = out[f"{module}/average"]
    return out


class FlaxCarry(NamedTuple):
    """An `hk.LSTMState(hidden, cell)` in Haiku's outputs, in the order of the Flax LSTM carry `(c, h)`
    the rewrite returns in its place (HK402): compared leaf by leaf, and labelled with Haiku's names."""

    cell: Any
    hidden: Any


def _as_flax_carries(out: Any) -> Any:
    def is_state(node: Any) -> bool:
        return isinstance(node, hk.LSTMState)

    return jax.tree.map(lambda node: FlaxCarry(node.cell, node.hidden) if is_state(node) else node, out, is_leaf=is_state)


def apply(
    haiku_apply: HaikuApply,
    params: Mapping[str, Array],
    state: Mapping[str, Array],
    rng: jax.Array,
    inputs: list[Array],
    kwargs: Mapping[str, object],
) -> tuple[Any, dict[str, Array]]:
    """One apply on flat trees -> (outputs, new flat state); LSTM states in the outputs as `FlaxCarry`."""
    out, new_state = haiku_apply.fn(unflatten(params), unflatten(state), rng, *inputs, **kwargs)
    return _as_flax_carries(out), flatten(new_state)


class _FirstMethod(Exception):
    """Raised by the probe in `method_name` as soon as it knows the answer, before anything runs."""


def method_name(
    haiku_apply: HaikuApply, params: Mapping[str, Array], state: Mapping[str, Array], rng: jax.Array
) -> str:
    """The method a multi_transform apply function runs (`module.encode` -> "encode").

    Found by calling it and stopping at its first module method call, so no inputs are needed. A
    method of a submodule rather than of the top-level module is named "path.method": the Flax side has
    no method of that name, which the caller reports.
    """

    def stop_at_first(next_fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any], context: Any) -> Any:
        if context.method_name == "__init__":
            return next_fn(*args, **kw)
        module = context.module.module_name
        raise _FirstMethod(context.method_name if "/" not in module else f"{module}.{context.method_name}")

    try:
        with hk.intercept_methods(stop_at_first):
            apply(haiku_apply, params, state, rng, [], {})
    except _FirstMethod as found:
        return str(found)
    return "__call__"

"""Run the rewritten Flax model (Linen or NNX) as a pure function of a flat `{key: array}` tree.

Both targets offer the same three things: `trace` (which module class was called where, first-call
order, and every leaf), `apply` (outputs and updated leaves from given leaves) and `checkpoint_tree`
(the nested tree the user restores: Linen variables, or the NNX state as a pure dict).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import flax.linen as nn
import jax
from flax import nnx
from flax.core import meta
from flax.traverse_util import flatten_dict, unflatten_dict

from .conversions import Array
from .loading import EntryError
from .matching import LeafInfo, ModuleCall, leaf_infos

LINEN_SKIPPED_COLLECTIONS = ("intermediates",)  # sown values, not weights


def _string_key(path: tuple[Any, ...]) -> str:
    return "/".join(str(p) for p in path)


def _nested(paths: Mapping[str, tuple[Any, ...]], values: Mapping[str, Array]) -> dict[str, Any]:
    """Flat values -> the nested tree a checkpoint holds, by each key's path."""
    tree: dict[str, Any] = unflatten_dict({paths[key]: value for key, value in values.items()})
    return tree


class LinenModel:
    """A Linen module with its variables as `{"collection/module/…/leaf": array}`."""

    target = "linen"

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.leaves: dict[str, LeafInfo] = {}
        self._paths: dict[str, tuple[Any, ...]] = {}  # flat key -> (collection, *path)

    def trace(
        self, rng: jax.Array, inputs: list[Array], kwargs: Mapping[str, Any]
    ) -> dict[tuple[Any, ...], ModuleCall]:
        """`init` abstractly under `nn.intercept_methods`; fills `self.leaves`."""
        calls: dict[tuple[Any, ...], ModuleCall] = {}

        def record(next_fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any], context: Any) -> Any:
            if context.method_name != "setup" and context.module.scope is not None:
                calls.setdefault(tuple(context.module.scope.path), ModuleCall(type(context.module), (len(calls),)))
            return next_fn(*args, **kw)

        with nn.intercept_methods(record):
            variables = jax.eval_shape(lambda: self.module.init({"params": rng, "dropout": rng}, *inputs, **kwargs))
        flat = {
            path: value
            for path, value in flatten_dict(meta.unbox(variables)).items()
            if path[0] not in LINEN_SKIPPED_COLLECTIONS
        }
        self._paths = {_string_key(path): path for path in flat}
        self.leaves = leaf_infos(
            {_string_key(path): value for path, value in flat.items()},
            lambda key: self._paths[key][1:],
            lambda key: self._paths[key][0] == "params",
        )
        return calls

    def checkpoint_tree(self, values: Mapping[str, Array]) -> dict[str, Any]:
        return _nested(self._paths, values)

    def apply(
        self, values: Mapping[str, Array], method: str, inputs: list[Array], kwargs: Mapping[str, Any], rng: jax.Array
    ) -> tuple[Any, dict[str, Array]]:
        """-> (outputs, values with the mutable collections' updates)."""
        if method != "__call__" and not callable(getattr(type(self.module), method, None)):
            raise EntryError(f"the Linen model has no method {method!r}")
        mutable = sorted({path[0] for path in self._paths.values()} - {"params"})
        out, updates = self.module.apply(
            self.checkpoint_tree(values),
            *inputs,
            method=None if method == "__call__" else method,
            rngs={"dropout": rng},
            mutable=mutable,
            **kwargs,
        )
        updated = {_string_key(path): value for path, value in flatten_dict(dict(updates)).items()}
        return out, {**values, **{k: v for k, v in updated.items() if k in values}}


# Weights and statistics: not the RNG streams that Dropout and Rngs carry, nor sown intermediates, nor the
# plain arrays a module holds as constants (`self.scale = jnp.asarray(scale)`, no Haiku parameter either).
NNX_LEAF_FILTER = nnx.All(nnx.Variable, nnx.Not(nnx.Any(nnx.RngState, nnx.Intermediate)))


@contextlib.contextmanager
def _recording_nnx_calls(model: nnx.Module, calls: dict[int, int]) -> Iterator[None]:
    """Wrap `__call__` and the public methods of every module class in the graph, for the duration."""
    classes = {type(node) for _, node in nnx.iter_graph(model) if isinstance(node, nnx.Module)}
    originals = [
        (cls, name, fn)
        for cls in classes
        for name, fn in vars(cls).items()
        if inspect.isfunction(fn) and (name == "__call__" or not name.startswith("_"))
    ]

    def recording(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)  # keeps the signature, which mode flags are read from
        def method(self: nnx.Module, *args: Any, **kwargs: Any) -> Any:
            calls.setdefault(id(self), len(calls))
            return fn(self, *args, **kwargs)

        return method

    try:
        for cls, name, fn in originals:
            setattr(cls, name, recording(fn))
        yield
    finally:
        for cls, name, fn in originals:
            setattr(cls, name, fn)


class NNXModel:
    """A live NNX module with its weights and statistics as `{"module/…/leaf": array}`."""

    target = "nnx"

    def __init__(self, model: nnx.Module) -> None:
        self.graphdef, self._template, *rest = nnx.split(nnx.clone(model), NNX_LEAF_FILTER, ...)
        self._rest = rest[0]  # what the `...` filter takes: RNG streams, intermediates, constants
        # each module's attributes in the order `__init__` assigned them (a merged copy has them sorted)
        self._assigned = {path: list(vars(node)) for path, node in nnx.iter_graph(model) if isinstance(node, nnx.Module)}
        flat = flatten_dict(nnx.to_pure_dict(self._template))
        param_paths = set(flatten_dict(nnx.to_pure_dict(nnx.state(model, nnx.Param))))
        self._paths = {_string_key(path): path for path in flat}
        self.initial_values = {_string_key(path): value for path, value in flat.items()}
        self.leaves = leaf_infos(
            self.initial_values, lambda key: self._paths[key], lambda key: self._paths[key] in param_paths
        )

    def checkpoint_tree(self, values: Mapping[str, Array]) -> dict[str, Any]:
        return _nested(self._paths, values)

    def _merged(self, values: Mapping[str, Array]) -> nnx.Module:
        """A fresh module holding `values`; fresh Variables too, so it can be used inside a jax trace."""
        state = jax.tree.map(lambda x: x, self._template)
        nnx.replace_by_pure_dict(state, self.checkpoint_tree(values))
        return nnx.merge(self.graphdef, state, jax.tree.map(lambda x: x, self._rest))

    def _bound_method(
        self, model: nnx.Module, method: str, kwargs: Mapping[str, Any]
    ) -> tuple[Callable[..., Any], dict[str, object]]:
        """The method to call and its keyword arguments, with mode flags applied as train()/eval().

        NNX moves flags such as `training`/`is_training` out of the call into the module's mode: a
        boolean argument the converted method no longer accepts sets `model.train()` (True) or
        `model.eval()` (False).
        """
        fn = getattr(model, method, None)
        if not callable(fn):
            raise EntryError(f"the NNX model has no method {method!r}")
        parameters = inspect.signature(fn).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return fn, dict(kwargs)
        modes = {key: value for key, value in kwargs.items() if key not in parameters}
        if any(not isinstance(value, bool) for value in modes.values()) or len(set(modes.values())) > 1:
            raise EntryError(f"the NNX {method} takes none of {sorted(modes)}, and they are not one mode flag")
        if modes:
            model.train() if next(iter(modes.values())) else model.eval()
        return fn, {key: value for key, value in kwargs.items() if key in parameters}

    def trace(
        self, rng: jax.Array, inputs: list[Array], kwargs: Mapping[str, Any]
    ) -> dict[tuple[Any, ...], ModuleCall]:
        """One call on a copy of the model, recording the first call of each module.

        Modules inside NNX transforms (the cell of `nnx.RNN`, scanned layers) run as copies, so their
        calls are not seen: such a module is placed right before the called module assigned after it in its
        parent's `__init__` (the converter builds layers in Haiku's call order), else right after the one
        assigned before it, else right after its nearest ancestor module (placed the same way).
        """
        del rng  # NNX modules carry their own RNG streams
        model = self._merged(self.initial_values)
        graph = [(path, node) for path, node in nnx.iter_graph(model) if isinstance(node, nnx.Module)]
        called: dict[int, int] = {}
        with _recording_nnx_calls(model, called):
            fn, call_kwargs = self._bound_method(model, "__call__", kwargs)
            fn(*inputs, **call_kwargs)
        called_order = {path: (called[id(node)],) for path, node in graph if id(node) in called}
        index = {path: i for i, (path, _) in enumerate(graph)}
        placed: dict[tuple[Any, ...], tuple[int, ...]] = {}

        def place(path: tuple[Any, ...]) -> tuple[int, ...]:
            if path not in placed:
                ancestor = next((path[:d] for d in range(len(path) - 1, -1, -1) if path[:d] in index), None)
                after_ancestor = place(ancestor) + (1, index[path]) if ancestor is not None else (len(graph), 1, index[path])
                between = _between_siblings(path, self._assigned, called_order, index[path])
                placed[path] = called_order.get(path) or between or after_ancestor
            return placed[path]

        return {path: ModuleCall(type(node), place(path)) for path, node in graph}

    def apply(
        self, values: Mapping[str, Array], method: str, inputs: list[Array], kwargs: Mapping[str, Any], rng: jax.Array
    ) -> tuple[Any, dict[str, Array]]:
        """-> (outputs, values after the call: BatchNorm statistics and other state updated)."""
        del rng  # NNX modules carry their own RNG streams
        model = self._merged(values)
        fn, call_kwargs = self._bound_method(model, method, kwargs)
        out = fn(*inputs, **call_kwargs)
        updated = flatten_dict(nnx.to_pure_dict(nnx.state(model, NNX_LEAF_FILTER)))
        return out, {_string_key(path): value for path, value in updated.items()}


def _between_siblings(
    path: tuple[Any, ...], assigned: Mapping[tuple[Any, ...], list[str]], order: Mapping[tuple[Any, ...], tuple[int, ...]], index: int
) -> tuple[int, ...] | None:
    """An order just before the first called sibling assigned after `path` in its parent, else just after
    the last one assigned before it; None if it has no called sibling."""
    names = assigned.get(path[:-1], []) if path else []
    if not path or path[-1] not in names:
        return None
    position = names.index(path[-1])
    later = [order[s] for s in (path[:-1] + (n,) for n in names[position + 1 :]) if s in order]
    if later:
        return (later[0][0] - 1, 1, index)  # after whatever was called just before that sibling
    earlier = [order[s] for s in (path[:-1] + (n,) for n in names[:position]) if s in order]
    return earlier[-1] + (1, index) if earlier else None


def flax_model(model: Any, target: str) -> LinenModel | NNXModel:
    return LinenModel(model) if target == "linen" else NNXModel(model)

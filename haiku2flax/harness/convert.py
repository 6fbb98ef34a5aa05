"""`convert_params`: a trained Haiku params/state tree -> an Orbax checkpoint of the rewritten model, or
pickles of what the rewritten code loads.

An Orbax checkpoint (`out` a directory) holds what the rewritten model restores directly:
- Linen: the variables dict, `{"params": …, "batch_stats": …}`:
  `variables = ocp.StandardCheckpointer().restore(path)`, then `model.apply(variables, x)`;
- NNX: the weights and statistics as a pure dict (no RNG streams):
  `state = nnx.state(model, nnx.Not(nnx.RngState))`,
  `nnx.replace_by_pure_dict(state, ocp.StandardCheckpointer().restore(path, nnx.to_pure_dict(state)))`,
  `nnx.update(model, state)`.

A pickle (`out` a `.pkl` file) replaces a Haiku checkpoint the user's code loads itself
(`params = pickle.load(f)`; `net.apply(params, x)`): it holds, in the same place, what the rewrite of
that code passes on, Linen's `params` collection (`net.apply({'params': params}, x)`) or the NNX
`nnx.Param` state as a pure dict (`nnx.update(net, params)`); the state, when there is one, goes to
its own pickle (`state_out`), Linen's `batch_stats` collection or the rest of the NNX state.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from ..engine import convert_source
from ..files import write_atomic
from ..engine.tables import Tables, load_tables
from .flax_side import LinenModel, NNXModel, flax_model
from .haiku_side import init_and_trace
from .inputs import make_inputs, parse_input_spec
from .loading import find_flax_model, haiku_entry, imported
from .conversions import Array
from .matching import HAIKU_ONLY_STATE, LeafInfo, convert_leaves, flax_table_types, group_leaves, match_records


class ConversionRefused(ValueError):
    """The trained tree does not fit the model; `problems` lists every leaf at fault."""

    def __init__(self, message: str, problems: list[str]):
        super().__init__(message)
        self.problems = problems


PICKLES = (".pkl", ".pickle")
PICKLE_MODE = 0o644


@dataclass(frozen=True)
class WrittenCheckpoint:
    directory: Path  # the Orbax checkpoint, or the params pickle
    state_file: Path | None  # the state pickle, when the state went to its own file
    leaves: int  # arrays written
    dropped: list[str]  # Haiku-only state with no Flax counterpart (BatchNorm's EMA `hidden`, `counter`)


def _flat_keys(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Array]:
    """Nested dicts of arrays -> {"a/b/leaf": array}; Haiku's `{module_name: {leaf: array}}` included."""
    flat: dict[str, Array] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flat_keys(value, path + "/"))
        else:
            flat[path] = value
    return flat


def read_tree(path: str | Path) -> dict[str, Array]:
    """A Haiku tree from .pkl/.pickle (nested dicts), .npz (`module/path//name` or `module/path/name` keys,
    as AlphaFold ships its weights) or .msgpack (flax.serialization) -> {"module/path/name": array}."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        with path.open("rb") as file:
            flat = _flat_keys(_haiku_tree(pickle.load(file), path))  # the user's own checkpoint: trusted like their code
    elif suffix == ".npz":
        with np.load(path) as archive:
            flat = {key.replace("//", "/"): archive[key] for key in archive.files}
    elif suffix == ".msgpack":
        flat = _flat_keys(_haiku_tree(serialization.msgpack_restore(path.read_bytes()), path))
    else:
        raise ValueError(f"{path}: unknown format {suffix!r} (expected .pkl, .npz or .msgpack)")
    for key, value in flat.items():
        if np.asarray(value).dtype.kind not in "biufc":
            raise ValueError(f"{path}: leaf {key} is a {type(value).__name__}, not an array of numbers")
    return {key: jnp.asarray(value) for key, value in flat.items()}


def _haiku_tree(tree: object, path: Path) -> Mapping[str, Any]:
    """`tree` if it is shaped like Haiku's params or state: a dict of dicts, `{module: {name: array}}`."""
    expected = "expected a Haiku tree, a dict of dicts ({module: {name: array}})"
    if not isinstance(tree, Mapping):
        raise ValueError(f"{path}: {expected}, found a {type(tree).__name__}")
    for key, value in tree.items():
        if not isinstance(value, Mapping):
            raise ValueError(f"{path}: {expected}, found {key!r} holding a {type(value).__name__}")
    return tree


def _check_against_model(loaded: Mapping[str, Array], expected: Mapping[str, LeafInfo], what: str) -> list[str]:
    """Every leaf the model creates is in the file with its shape and dtype, and nothing else is."""
    problems = [f"missing {what} leaf {key} {expected[key].shape}" for key in expected if key not in loaded]
    problems += [f"unexpected {what} leaf {key} {tuple(loaded[key].shape)}" for key in loaded if key not in expected]
    for key in expected.keys() & loaded.keys():
        want, got = expected[key], loaded[key]
        if tuple(got.shape) != want.shape or jnp.dtype(got.dtype).name != want.dtype:
            problems.append(
                f"{what} leaf {key}: file has {tuple(got.shape)} {jnp.dtype(got.dtype).name}, "
                f"the model {want.shape} {want.dtype}"
            )
    return problems


def convert_params(
    path: str | Path,
    target: str,
    entry: str,
    params: str | Path | Mapping[str, Any],
    inputs: Sequence[str],
    out: str | Path,
    *,
    state: str | Path | Mapping[str, Any] | None = None,
    state_out: str | Path | None = None,
    args: Mapping[str, object] | None = None,
    flax_source: str | None = None,
    tables: Tables | None = None,
) -> WrittenCheckpoint:
    """Convert trained Haiku `params` (and `state`) for the rewrite of `path` and save them under `out`.

    `params`/`state` are file paths (see `read_tree`) or Haiku trees already in memory. `out` is an
    Orbax checkpoint directory, or a `.pkl` file for the params with `state_out` for the state (see the
    module docstring). Both models are built abstractly from the example `inputs`; raises
    ConversionRefused, writing nothing, when any leaf is missing, unexpected or mis-shaped.
    """
    tables = tables or load_tables()
    args = dict(args or {})
    path = Path(path)
    source = path.read_text(encoding="utf-8")
    converted = flax_source if flax_source is not None else convert_source(source, target, tables=tables).code
    pickled = Path(out).suffix.lower() in PICKLES
    if pickled and state is not None and state_out is None:
        raise ValueError(f"{out}: the converted state needs its own pickle too: give state_out (--state-out)")
    for existing in (Path(out), *([Path(state_out)] if pickled and state_out is not None else [])):
        if pickled and existing.exists():
            raise FileExistsError(f"{existing}: exists; name a new file (nothing is overwritten)")
    loaded_params = _flat_keys(params) if isinstance(params, Mapping) else read_tree(params)  # first: a bad file fails fast
    loaded_state = {} if state is None else _flat_keys(state) if isinstance(state, Mapping) else read_tree(state)
    haiku = haiku_entry(imported(source, path, "haiku"), entry)
    example = make_inputs([parse_input_spec(s) for s in inputs])
    flax = flax_model(find_flax_model(imported(converted, path, target), source, entry, target, example[0] if example else None), target)
    rng = jax.random.key(0)

    model = init_and_trace(haiku, rng, example, args, tables, target, abstract=True)
    problems = _check_against_model(loaded_params, {k: v for k, v in model.leaves.items() if v.is_param}, "params")
    problems += _check_against_model(loaded_state, {k: v for k, v in model.leaves.items() if not v.is_param}, "state")

    flax_calls = flax.trace(rng, example, args)
    mapping = match_records(
        model.records, group_leaves(flax.leaves, flax_calls, flax_table_types(tables, target)), tables, target
    )
    problems += mapping.problems
    problems += [f"{p.key}: {p.status}" for p in mapping.pairs if not p.ok]
    if problems:
        raise ConversionRefused(f"{len(problems)} problem(s); nothing written", problems)

    values = convert_leaves(mapping, {**loaded_params, **loaded_state})
    dropped = [p.key for p in mapping.pairs if p.status == HAIKU_ONLY_STATE]
    if pickled:
        return _write_pickles(flax, target, values, Path(out), Path(state_out) if state_out is not None else None, dropped)
    directory = Path(out).resolve()
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(directory, flax.checkpoint_tree(values))
    checkpointer.wait_until_finished()
    return WrittenCheckpoint(directory, None, len(values), dropped)


def _write_pickles(
    flax: LinenModel | NNXModel, target: str, values: Mapping[str, Array], out: Path, state_out: Path | None, dropped: list[str]
) -> WrittenCheckpoint:
    """The params (and state) where the user's own code loads them, as the rewrite of that code uses them."""
    parts = [{k: np.asarray(v) for k, v in values.items() if flax.leaves[k].is_param == is_param} for is_param in (True, False)]
    params, state = (flax.checkpoint_tree(part) for part in parts)
    if target == "linen":  # the code passes `{'params': params, 'batch_stats': state}`: one collection each
        collections = sorted(state)
        if len(collections) > 1:
            raise ValueError(f"the Linen model keeps {len(collections)} state collections ({', '.join(collections)}): write an Orbax checkpoint instead")
        params, state = params.get("params", {}), state[collections[0]] if collections else {}
    write_atomic(out, pickle.dumps(params), mode=PICKLE_MODE)
    if state_out is not None:
        write_atomic(state_out, pickle.dumps(state), mode=PICKLE_MODE)
    return WrittenCheckpoint(out.resolve(), state_out.resolve() if state_out is not None else None, len(values), dropped)

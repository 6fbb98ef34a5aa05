"""`convert_params`: a trained Haiku params/state tree -> an Orbax checkpoint of the rewritten model.

The checkpoint holds what the rewritten model restores directly:
- Linen: the variables dict, `{"params": …, "batch_stats": …}`:
  `variables = ocp.StandardCheckpointer().restore(path)`, then `model.apply(variables, x)`;
- NNX: the weights and statistics as a pure dict (no RNG streams):
  `state = nnx.state(model, nnx.Not(nnx.RngState))`,
  `nnx.replace_by_pure_dict(state, ocp.StandardCheckpointer().restore(path, nnx.to_pure_dict(state)))`,
  `nnx.update(model, state)`.
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
from ..engine.tables import Tables, load_tables
from .flax_side import flax_model
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


@dataclass(frozen=True)
class WrittenCheckpoint:
    directory: Path
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
    args: Mapping[str, object] | None = None,
    flax_source: str | None = None,
    tables: Tables | None = None,
) -> WrittenCheckpoint:
    """Convert trained Haiku `params` (and `state`) for the rewrite of `path` and save them under `out`.

    `params`/`state` are file paths (see `read_tree`) or Haiku trees already in memory. Both models are
    built abstractly from the example `inputs`; raises ConversionRefused, writing nothing, when any
    leaf is missing, unexpected or mis-shaped.
    """
    tables = tables or load_tables()
    args = dict(args or {})
    path = Path(path)
    source = path.read_text(encoding="utf-8")
    converted = flax_source if flax_source is not None else convert_source(source, target, tables=tables).code
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
    directory = Path(out).resolve()
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(directory, flax.checkpoint_tree(values))
    checkpointer.wait_until_finished()
    dropped = [p.key for p in mapping.pairs if p.status == HAIKU_ONLY_STATE]
    return WrittenCheckpoint(directory, len(values), dropped)

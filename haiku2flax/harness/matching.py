"""Match Haiku parameter/state leaves to Flax leaves by tracing both models and zipping their layers.

Both sides are reduced to the same shape of data: every leaf with its path, and every module call with
the module's class and the order of its first call. A leaf belongs to the *outermost* enclosing module
whose class is in the rule tables (outermost, so that `hk.BatchNorm` owns its `mean_ema/average` and an
`hk.LSTM` its inner `linear/w`), or else to the user module that created it directly. The two ordered
lists of owners are zipped: the same construct at each position, then each leaf renamed and reshaped
by the construct's `params`/`state` table (user-created leaves keep their names). Nothing is hard-coded
here: a new table entry is matched as soon as it exists.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
from flax import nnx

from ..engine.tables import HAIKU_MODULE, Construct, Tables
from .conversions import SUMMED, Array, converted

HAIKU_ONLY_STATE = "Haiku-only state"  # e.g. BatchNorm's EMA `counter` and `hidden`: no Flax counterpart
MAPPED = "mapped"


@dataclass(frozen=True)
class LeafInfo:
    """One array of a model: `key` in its own flat tree, `path` = module path + leaf name."""

    key: str
    path: tuple[Any, ...]
    shape: tuple[int, ...]
    dtype: str
    is_param: bool


@dataclass(frozen=True)
class ModuleCall:
    type: type | None
    order: tuple[int, ...]  # sorts like first-call order: (index,), or (ancestor's index, 1, i) for a module never called


@dataclass
class ModuleRecord:
    """The leaves one module owns; `table_key` is the construct (Haiku) or Flax API, None for user code."""

    path: tuple[Any, ...]
    table_key: str | None
    order: tuple[int, ...]
    leaves: dict[str, LeafInfo] = field(default_factory=dict)  # relative path -> leaf

    @property
    def label(self) -> str:
        where = "/".join(str(p) for p in self.path) or "<root>"
        return f"{where} ({self.table_key or 'user module'})"


def resolve(namespace: object, dotted: str) -> object | None:
    """`resolve(haiku, "nets.MLP")` -> `haiku.nets.MLP`, or None when the API does not exist."""
    return functools.reduce(lambda obj, part: getattr(obj, part, None), dotted.split("."), namespace)


def haiku_api_object(construct: Construct) -> object | None:
    """The Haiku class or function a construct names: in `haiku`, or in a house library (imported here)."""
    if construct.module == HAIKU_MODULE:
        return resolve(hk, construct.haiku)
    try:
        module = importlib.import_module(construct.module)
    except ImportError:
        return None
    return resolve(module, construct.haiku.removeprefix(construct.module + "."))


def haiku_table_types(tables: Tables, target: str) -> dict[type, str]:
    """Haiku classes that own leaves on their own: their Flax API must be a class of `target`."""
    flax_types = flax_table_types(tables, target)
    found = {}
    for name, construct in tables.constructs.items():
        haiku_cls = haiku_api_object(construct)
        if isinstance(haiku_cls, type) and construct.targets[target].api in flax_types.values():
            found[haiku_cls] = name
    return found


def flax_table_types(tables: Tables, target: str) -> dict[type, str]:
    """Flax classes named by the tables for `target` (`nn.Dense`, `nnx.Linear`, ...), by class."""
    namespace, base = (nn, nn.Module) if target == "linen" else (nnx, nnx.Module)
    found = {}
    for construct in tables.constructs.values():
        api = construct.targets[target].api
        cls = resolve(namespace, api)
        if isinstance(cls, type) and issubclass(cls, base):
            found[cls] = api
    return found


def group_leaves(
    leaves: Mapping[str, LeafInfo], calls: Mapping[tuple[Any, ...], ModuleCall], table_types: Mapping[type, str]
) -> list[ModuleRecord]:
    """Give each leaf its owner module and list the owners in first-call order (see module docstring)."""
    records: dict[tuple[Any, ...], ModuleRecord] = {}
    unseen = (len(calls),)  # owners never called (leaves made in a constructor) come after the called ones
    for leaf in leaves.values():
        module_path = leaf.path[:-1]
        owner, table_key = module_path, None
        for depth in range(len(module_path) + 1):
            call = calls.get(module_path[:depth])
            table_key = _table_key(call.type, table_types) if call is not None else None
            if table_key is not None:
                owner = module_path[:depth]
                break
        if owner not in records:
            call = calls.get(owner)
            records[owner] = ModuleRecord(owner, table_key, call.order if call else unseen + (len(records),))
        relative = "/".join(str(p) for p in leaf.path[len(owner) :] if p != "~")
        records[owner].leaves[relative] = leaf
    return sorted(records.values(), key=lambda r: r.order)


def _table_key(cls: type | None, table_types: Mapping[type, str]) -> str | None:
    """The table entry of a module class or of the nearest table class it derives from (`class
    Readout(hk.Linear)` owns its leaves as `hk.Linear`, `class Readout(nn.Dense)` as `nn.Dense`)."""
    return next((table_types[base] for base in cls.__mro__ if base in table_types), None) if cls is not None else None


@dataclass(frozen=True)
class LeafPair:
    """A Haiku leaf and the Flax leaf it becomes; `status` is MAPPED, HAIKU_ONLY_STATE or a problem.

    `part` names which output of a splitting conversion (see `conversions`) this Flax leaf receives.
    """

    haiku: LeafInfo | None
    flax: LeafInfo | None
    reshape: str | None
    status: str
    part: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in (MAPPED, HAIKU_ONLY_STATE)

    @property
    def key(self) -> str:
        """The Haiku leaf's key, or the Flax leaf's for a leaf only Flax has."""
        leaf = self.haiku or self.flax
        assert leaf is not None, "a pair holds at least one leaf"
        return leaf.key


@dataclass(frozen=True)
class MappedPair:
    """A pair whose Haiku leaf converts into its Flax leaf: both leaves are there."""

    haiku: LeafInfo
    flax: LeafInfo
    reshape: str | None
    part: str | None


@dataclass
class LeafMapping:
    target: str
    pairs: list[LeafPair]
    problems: list[str]  # structure problems: layers that do not line up

    @property
    def ok(self) -> bool:
        return not self.problems and all(p.ok for p in self.pairs)

    @property
    def mapped(self) -> list[MappedPair]:
        return [
            MappedPair(p.haiku, p.flax, p.reshape, p.part)
            for p in self.pairs
            if p.status == MAPPED and p.haiku is not None and p.flax is not None  # MAPPED: always both
        ]


def _abstract_parts(
    leaf: LeafInfo, reshape: str | None, target: str, flax_shape: tuple[int, ...] | None
) -> dict[str | None, Array]:
    abstract = jax.ShapeDtypeStruct(leaf.shape, leaf.dtype)
    parts: dict[str | None, Array] = jax.eval_shape(lambda x: converted(x, reshape, target, flax_shape), abstract)
    return parts


def _pair(haiku: LeafInfo, flax: LeafInfo, reshape: str | None, part: str | None, abstract: Array) -> LeafPair:
    shape, dtype = tuple(abstract.shape), jnp.dtype(abstract.dtype).name
    if haiku.is_param != flax.is_param:
        kinds = ("parameter", "state")
        status = f"{kinds[not haiku.is_param]} in Haiku, {kinds[not flax.is_param]} in Flax"
    elif shape != flax.shape:
        status = f"shape {shape} != Flax {flax.shape}"
    elif dtype != flax.dtype:
        status = f"dtype {dtype} != Flax {flax.dtype}"
    else:
        status = MAPPED
    return LeafPair(haiku, flax, reshape, status, part)


def _match_module(haiku: ModuleRecord, flax: ModuleRecord, construct: Construct | None, target: str) -> list[LeafPair]:
    pairs, taken = [], set()
    for relative, leaf in haiku.leaves.items():
        if construct is None:  # hk.get_parameter / hk.get_state in user code: the same name in Flax
            name, reshape = relative, None
        else:
            entry = (construct.params if leaf.is_param else construct.state).get(relative)
            if entry is None:
                status = f"not in the {construct.haiku} table" if leaf.is_param else HAIKU_ONLY_STATE
                pairs.append(LeafPair(leaf, None, None, status))
                continue
            name, reshape = entry.name, entry.reshape
        same_name = flax.leaves.get(name)  # the Flax leaf a one-to-one conversion fills
        try:
            parts = _abstract_parts(leaf, reshape, target, same_name.shape if same_name is not None else None)
        except (ValueError, TypeError) as error:  # an unknown conversion, or one that does not fit the shape
            pairs.append(LeafPair(leaf, None, reshape, f"conversion {reshape} fails: {error}"))
            continue
        for part, abstract in parts.items():
            flax_name = "/".join(n for n in (name, part) if n)
            target_leaf = flax.leaves.get(flax_name)
            if target_leaf is None or (flax_name in taken and reshape not in SUMMED):
                why = "already taken" if target_leaf is not None else "missing"
                pairs.append(LeafPair(leaf, None, reshape, f"Flax leaf {flax_name!r} {why} in {flax.label}", part))
                continue
            taken.add(flax_name)
            pairs.append(_pair(leaf, target_leaf, reshape, part, abstract))
    pairs.extend(
        LeafPair(None, leaf, None, "left over in Flax") for rel, leaf in flax.leaves.items() if rel not in taken
    )
    return pairs


def match_records(haiku: list[ModuleRecord], flax: list[ModuleRecord], tables: Tables, target: str) -> LeafMapping:
    """Zip the two owner lists and map leaves inside each pair; stop zipping at the first mismatch."""
    pairs: list[LeafPair] = []
    problems: list[str] = []
    for position, (h, f) in enumerate(zip(haiku, flax)):
        construct = tables.get(h.table_key) if h.table_key else None
        expected = construct.targets[target].api if construct else None
        if expected != f.table_key:
            wanted = f"Flax {expected}" if expected else "a user module"
            problems.append(f"layer #{position}: Haiku {h.label} should be {wanted}, found {f.label}")
            haiku, flax = haiku[position:], flax[position:]
            break
        pairs.extend(_match_module(h, f, construct, target))
    else:
        haiku, flax = haiku[len(flax) :], flax[len(haiku) :]
        if haiku or flax:
            problems.append(f"Haiku has {len(haiku)} more layer(s), Flax {len(flax)} more, than the other side")
    for record in haiku:
        pairs.extend(LeafPair(leaf, None, None, f"unmatched layer {record.label}") for leaf in record.leaves.values())
    for record in flax:
        pairs.extend(LeafPair(None, leaf, None, f"unmatched layer {record.label}") for leaf in record.leaves.values())
    return LeafMapping(target, pairs, problems)


def convert_leaves(mapping: LeafMapping, haiku_values: Mapping[str, Array]) -> dict[str, Array]:
    """Haiku values by Haiku key -> Flax values by Flax key, renamed and converted by the tables."""
    out: dict[str, Array] = {}
    for pair in mapping.mapped:
        if pair.haiku.key in haiku_values:
            value = converted(haiku_values[pair.haiku.key], pair.reshape, mapping.target, pair.flax.shape)[pair.part]
            out[pair.flax.key] = out[pair.flax.key] + value if pair.reshape in SUMMED and pair.flax.key in out else value
    return out


def leaf_infos(
    flat: Mapping[str, Array], path_of: Callable[[str], tuple[Any, ...]], is_param: Callable[[str], bool]
) -> dict[str, LeafInfo]:
    """LeafInfo for each array of a flat tree (real or abstract)."""
    return {
        key: LeafInfo(key, path_of(key), tuple(value.shape), jnp.dtype(value.dtype).name, is_param(key))
        for key, value in flat.items()
    }

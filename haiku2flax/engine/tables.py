"""Load the declarative rule tables that say what each Haiku API becomes in Linen and in NNX.

The same `Construct` entries drive the code rewrite (API name, argument renames, added arguments) and
the weight conversion (parameter and state leaf renames and reshapes), so the two cannot disagree.
The format is documented in the header comment of `rules/layers.toml`; `rules/initializers.toml`
uses the same format for `hk.initializers.*`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any

TARGETS = ("linen", "nnx")
# How a leaf's value changes on its way to Flax (implemented in `harness.conversions`; a test checks they agree).
RESHAPES = (
    "flatten", "swap_last", "flax_shape",
    "lstm_kernel", "lstm_bias", "simple_cell_input_kernel", "simple_cell_hidden_kernel", "simple_cell_bias",
)
# How a Haiku argument's value is rewritten before it is renamed (implemented in `engine.calls`).
CONVERSIONS = ("kernel_shape", "spatial", "padding", "axes", "initializer", "elementwise_initializer")

Entry = dict[str, Any]  # a table entry as TOML reads it


class TableError(ValueError):
    """A rule table that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Leaf:
    """Where a Haiku parameter or state leaf goes: its Flax name and how its shape changes."""

    name: str
    reshape: str | None = None  # "flatten": (1,…,C) -> (C,); "swap_last": swap the last two axes; "flax_shape"


@dataclass(frozen=True)
class TargetApi:
    api: str  # attribute of the target namespace (`nn.Dense`, `nnx.Linear`, `nn.initializers.normal`)
    args: dict[str, str]  # Haiku argument -> Flax argument ("": dropped, e.g. `name` in NNX)
    add: dict[str, str] = field(default_factory=dict)  # Flax argument -> source text (a template) to add
    positional: tuple[str, ...] = ()  # Flax arguments written positionally, in order
    inputs: tuple[str, ...] = ()  # Flax arguments that take the input feature size
    call_args: dict[str, str] = field(default_factory=dict)  # Haiku call argument -> Flax call argument
    call_positional: tuple[str, ...] = ()  # Flax call arguments written positionally after the input, in order
    negated: tuple[str, ...] = ()  # Haiku call arguments whose Flax counterpart means the opposite
    flax_default: dict[str, tuple[str, ...]] = field(default_factory=dict)  # Haiku values Flax's default gives


HAIKU_MODULE = "haiku"


@dataclass(frozen=True)
class Construct:
    haiku: str  # API path under `haiku.`, e.g. "Linear" or "nets.MLP"; for a house module, its full path
    haiku_args: tuple[str, ...]
    targets: dict[str, TargetApi]
    params: dict[str, Leaf]
    state: dict[str, Leaf]
    output_size: str | None
    keeps_size: bool  # the output has the input's feature size (normalisation, dropout)
    haiku_call_args: tuple[str, ...]
    source: str  # the table file, for error messages and docs
    ndim: int | None = None  # spatial rank (convolutions): Haiku's int shapes become tuples of this length
    convert: dict[str, str] = field(default_factory=dict)  # Haiku argument -> one of CONVERSIONS
    defaults: dict[str, str] = field(default_factory=dict)  # Haiku defaults (source) that templates read
    todo: dict[str, str] = field(default_factory=dict)  # Haiku argument -> what to do when it cannot convert
    layout_based: bool = False  # initializers: the values depend on the parameter's layout (fans, axes)
    module: str = HAIKU_MODULE  # where the API lives: `haiku`, or a house library wrapping Haiku modules
    channels_first: tuple[str, ...] = ()  # `data_format` values (source) with channels first: Linen moves the axis

    @property
    def display(self) -> str:
        """How messages spell the API: `hk.Linear`, or `mylib.nn.Dense` for a house module."""
        return f"hk.{self.haiku}" if self.module == HAIKU_MODULE else self.haiku


def _leaves(raw: Entry, source: str) -> dict[str, Leaf]:
    out = {}
    for key, value in raw.items():
        leaf = Leaf(value) if isinstance(value, str) else Leaf(value["name"], value.get("reshape"))
        if leaf.reshape is not None and leaf.reshape not in RESHAPES:
            raise TableError(f"{source}: leaf {key!r}: unknown reshape {leaf.reshape!r} (known: {', '.join(RESHAPES)})")
        out[key] = leaf
    return out


def _target(raw: Entry) -> TargetApi:
    return TargetApi(
        api=raw["api"],
        args=dict(raw.get("args", {})),
        add=dict(raw.get("add", {})),
        positional=tuple(raw.get("positional", ())),
        inputs=tuple(raw.get("inputs", ())),
        call_args=dict(raw.get("call_args", {})),
        call_positional=tuple(raw.get("call_positional", ())),
        negated=tuple(raw.get("negated", ())),
        flax_default={name: tuple(values) for name, values in raw.get("flax_default", {}).items()},
    )


def _constructs(entry: Entry, source: str) -> list[Construct]:
    """One construct, or one per rank when `ndim` is a list (`haiku = "Conv{ndim}D"`, `ndim = [1, 2, 3]`)."""
    ranks = entry.get("ndim")
    if not isinstance(ranks, list):
        return [_construct(entry, source)]
    return [_construct({**entry, "haiku": entry["haiku"].format(ndim=n), "ndim": n}, source) for n in ranks]


def _construct(entry: Entry, source: str) -> Construct:
    try:
        shared: Any = entry.get("flax")  # one section for both targets (initializers: the same jax functions)
        targets = {target: _target(entry.get(target, shared)) for target in TARGETS}
        module = entry.get("module", HAIKU_MODULE)
        construct = Construct(
            haiku=entry["haiku"] if module == HAIKU_MODULE else f"{module}.{entry['haiku']}",
            haiku_args=tuple(entry["haiku_args"]),
            targets=targets,
            params=_leaves(entry.get("params", {}), source),
            state=_leaves(entry.get("state", {}), source),
            output_size=entry.get("output_size"),
            keeps_size=bool(entry.get("keeps_size", False)),
            haiku_call_args=tuple(entry.get("haiku_call_args", ())),
            source=source,
            ndim=entry.get("ndim"),
            convert=dict(entry.get("convert", {})),
            defaults=dict(entry.get("defaults", {})),
            todo=dict(entry.get("todo", {})),
            layout_based=bool(entry.get("layout_based", False)),
            module=module,
            channels_first=tuple(entry.get("channels_first", ())),
        )
    except (KeyError, TypeError) as error:
        raise TableError(f"{source}: construct {entry.get('haiku', '?')!r}: missing or bad key {error}") from None
    unknown = sorted(set(construct.convert.values()) - set(CONVERSIONS))
    if unknown:
        known = ", ".join(CONVERSIONS)
        raise TableError(f"{source}: construct {construct.haiku!r}: unknown conversion {unknown} (known: {known})")
    return construct


@dataclass(frozen=True)
class TypeName:
    """[[type]]: a Haiku type (`hk.Params`) and the Flax type written in its place, per target."""

    haiku: str
    flax: dict[str, str]  # target -> dotted name: `nn.…`/`nnx.…` in the target namespace, else imported;
    source: str  # or, with `imports`, a type expression (`tuple[jax.Array, jax.Array]`)
    imports: tuple[str, ...] = ()  # modules a type expression needs (`import jax`)


@dataclass(frozen=True)
class Guidance:
    """[[guidance]]: a Haiku API without a faithful Flax equivalent: why, and what to do by hand, per target."""

    haiku: str  # an API path; it also covers everything under it (`mixed_precision` covers `mixed_precision.set_policy`)
    why: str
    advice: dict[str, str]  # target -> what to write instead
    source: str

    def reason(self, target: str) -> str:
        return f"{self.why}; {self.advice[target]}"


def _per_target(entry: Entry) -> dict[str, str]:
    """`linen = …` and `nnx = …`, or one `flax = …` for both."""
    return {target: entry[target] if target in entry else entry["flax"] for target in TARGETS}


def _typename(entry: Entry, source: str) -> TypeName:
    try:
        return TypeName(entry["haiku"], _per_target(entry), source, tuple(entry.get("imports", ())))
    except KeyError as error:
        raise TableError(f"{source}: type {entry.get('haiku', '?')!r}: missing key {error}") from None


def _guidance(entry: Entry, source: str) -> list[Guidance]:
    """One entry per API path: `haiku` may list aliases (`custom_creator`, `experimental.custom_creator`)."""
    try:
        apis = entry["haiku"] if isinstance(entry["haiku"], list) else [entry["haiku"]]
        return [Guidance(api, entry["why"], _per_target(entry), source) for api in apis]
    except KeyError as error:
        raise TableError(f"{source}: guidance {entry.get('haiku', '?')!r}: missing key {error}") from None


@dataclass(frozen=True)
class Table:
    constructs: list[Construct]  # [[construct]]: layers
    initializers: list[Construct]  # [[initializer]]: `hk.initializers.*`
    types: list[TypeName] = field(default_factory=list)  # [[type]]: `hk.Params` and other annotations
    guidance: list[Guidance] = field(default_factory=list)  # [[guidance]]: APIs left to the user, with advice


def parse_table(text: str, source: str) -> Table:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise TableError(f"{source}: {error}") from None
    return Table(
        [c for entry in data.get("construct", []) for c in _constructs(entry, source)],
        [c for entry in data.get("initializer", []) for c in _constructs(entry, source)],
        [_typename(entry, source) for entry in data.get("type", [])],
        [g for entry in data.get("guidance", []) for g in _guidance(entry, source)],
    )


@dataclass(frozen=True)
class Tables:
    constructs: dict[str, Construct]  # by Haiku API path
    initializers: dict[str, Construct] = field(default_factory=dict)  # by Haiku API path ("initializers.Constant")
    types: dict[str, TypeName] = field(default_factory=dict)  # by Haiku API path ("Params")
    guidance: dict[str, Guidance] = field(default_factory=dict)  # by Haiku API path ("custom_creator")

    def get(self, haiku_api: str) -> Construct | None:
        return self.constructs.get(haiku_api)

    @cached_property
    def house_apis(self) -> frozenset[str]:
        """Full paths of the house-library modules the tables convert (`mylib.nn.Dense`)."""
        return frozenset(c.haiku for c in self.constructs.values() if c.module != HAIKU_MODULE)

    def guidance_for(self, haiku_api: str) -> Guidance | None:
        """The guidance for an API or for the nearest API path above it (`mixed_precision` for `mixed_precision.set_policy`)."""
        parts = haiku_api.split(".")
        for end in range(len(parts), 0, -1):
            found = self.guidance.get(".".join(parts[:end]))
            if found is not None:
                return found
        return None


@cache
def builtin_tables() -> tuple[Table, ...]:
    return tuple(
        parse_table(item.read_text(encoding="utf-8"), f"rules/{item.name}")
        for item in sorted(resources.files("haiku2flax.tables").iterdir(), key=lambda p: p.name)
        if item.name.endswith(".toml")
    )


def load_tables(extra: tuple[Path, ...] = ()) -> Tables:
    """The built-in tables, then the user's (`--rules`), later entries overriding earlier ones."""
    tables = list(builtin_tables())
    for path in extra:
        files = sorted(path.glob("*.toml")) if path.is_dir() else [path]
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except OSError as error:
                raise TableError(f"{file}: {error.strerror}") from None
            tables.append(parse_table(text, str(file)))
    return Tables(
        {c.haiku: c for table in tables for c in table.constructs},
        {c.haiku: c for table in tables for c in table.initializers},
        {t.haiku: t for table in tables for t in table.types},
        {g.haiku: g for table in tables for g in table.guidance},
    )

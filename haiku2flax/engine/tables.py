"""Load the declarative rule tables that say what each Haiku API becomes in Linen and in NNX.

The same `Construct` entries drive the code rewrite (API name, argument renames, added arguments) and
the weight conversion (parameter and state leaf renames and reshapes), so the two cannot disagree.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

TARGETS = ("linen", "nnx")


class TableError(ValueError):
    """A rule table that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Leaf:
    """Where a Haiku parameter or state leaf goes: its Flax name and how its shape changes."""

    name: str
    reshape: str | None = None  # "flatten": (1,…,C) -> (C,); "swap_last": swap the last two axes


@dataclass(frozen=True)
class TargetApi:
    api: str  # attribute of the target namespace (`nn.Dense`, `nnx.Linear`)
    args: dict[str, str]  # Haiku argument -> Flax argument ("": dropped, e.g. `name` in NNX)
    add: dict[str, str] = field(default_factory=dict)  # Flax argument -> source text to add
    positional: tuple[str, ...] = ()  # Flax arguments written positionally, in order
    inputs: tuple[str, ...] = ()  # NNX: arguments that take the input feature size
    call_args: dict[str, str] = field(default_factory=dict)  # Haiku call argument -> Flax call argument
    negated: tuple[str, ...] = ()  # Haiku call arguments whose Flax counterpart means the opposite


@dataclass(frozen=True)
class Construct:
    haiku: str  # API path under `haiku.`, e.g. "Linear" or "nets.MLP"
    haiku_args: tuple[str, ...]
    targets: dict[str, TargetApi]
    params: dict[str, Leaf]
    state: dict[str, Leaf]
    output_size: str | None
    keeps_size: bool  # the output has the input's feature size (normalisation, dropout)
    haiku_call_args: tuple[str, ...]
    source: str  # the table file, for error messages and docs


def _leaves(raw: dict[str, object]) -> dict[str, Leaf]:
    out = {}
    for key, value in raw.items():
        if isinstance(value, str):
            out[key] = Leaf(value)
        else:
            out[key] = Leaf(value["name"], value.get("reshape"))  # type: ignore[index,union-attr]
    return out


def _construct(entry: dict, source: str) -> Construct:
    try:
        targets = {}
        for target in TARGETS:
            raw = entry[target]
            targets[target] = TargetApi(
                api=raw["api"],
                args=dict(raw.get("args", {})),
                add=dict(raw.get("add", {})),
                positional=tuple(raw.get("positional", ())),
                inputs=tuple(raw.get("inputs", ())),
                call_args=dict(raw.get("call_args", {})),
                negated=tuple(raw.get("negated", ())),
            )
        return Construct(
            haiku=entry["haiku"],
            haiku_args=tuple(entry["haiku_args"]),
            targets=targets,
            params=_leaves(entry.get("params", {})),
            state=_leaves(entry.get("state", {})),
            output_size=entry.get("output_size"),
            keeps_size=bool(entry.get("keeps_size", False)),
            haiku_call_args=tuple(entry.get("haiku_call_args", ())),
            source=source,
        )
    except (KeyError, TypeError) as error:
        raise TableError(f"{source}: construct {entry.get('haiku', '?')!r}: missing or bad key {error}") from None


def parse_table(text: str, source: str) -> list[Construct]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise TableError(f"{source}: {error}") from None
    return [_construct(entry, source) for entry in data.get("construct", [])]


@dataclass(frozen=True)
class Tables:
    constructs: dict[str, Construct]  # by Haiku API path

    def get(self, haiku_api: str) -> Construct | None:
        return self.constructs.get(haiku_api)


@cache
def builtin_constructs() -> tuple[Construct, ...]:
    found: list[Construct] = []
    for item in sorted(resources.files("haiku2flax.tables").iterdir(), key=lambda p: p.name):
        if item.name.endswith(".toml"):
            found.extend(parse_table(item.read_text(encoding="utf-8"), f"rules/{item.name}"))
    return tuple(found)


def load_tables(extra: tuple[Path, ...] = ()) -> Tables:
    """The built-in tables, then the user's (`--rules`), later entries overriding earlier ones."""
    constructs = {c.haiku: c for c in builtin_constructs()}
    for path in extra:
        files = sorted(path.glob("*.toml")) if path.is_dir() else [path]
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except OSError as error:
                raise TableError(f"{file}: {error.strerror}") from None
            for construct in parse_table(text, str(file)):
                constructs[construct.haiku] = construct
    return Tables(constructs)

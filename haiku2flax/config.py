"""Project settings: `[tool.haiku2flax]` in the nearest pyproject.toml.

    [tool.haiku2flax]
    to = "linen"                        # the Flax API to write (default "nnx")
    exclude = ["build", "third_party"]  # replaces the default exclusions (.git, venvs, build, dist, ...)
    extend-exclude = ["legacy/"]        # adds to them; both are gitignore-style, relative to this file
    rules = ["haiku2flax_rules/"]       # extra rule tables, relative to this file
    strict = true                       # exit 1 when TODOs are left
    select = ["HK0"]                    # rule ids or prefixes to run
    ignore = ["HK005"]                  # rule ids or prefixes to skip
    keep-haiku-modules = true           # leave unconvertible modules in Haiku, bridged into Flax

The nearest file is the first pyproject.toml with a `[tool.haiku2flax]` table found walking up from
the paths being migrated (as ruff looks for `[tool.ruff]`); options given on the command line win
over it, key by key.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .files import Exclusions

PYPROJECT = "pyproject.toml"
TARGETS = ("nnx", "linen")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Config:
    path: Path | None = None  # the file read, None when there is none
    to: str | None = None
    exclude: tuple[str, ...] | None = None
    extend_exclude: tuple[str, ...] = ()
    rules: tuple[Path, ...] = ()
    strict: bool | None = None
    select: frozenset[str] | None = None
    ignore: frozenset[str] | None = None
    keep_haiku_modules: bool | None = None

    def exclusions(self) -> Exclusions | None:
        """The exclusions this configuration asks for; None keeps the defaults."""
        if self.path is None or (self.exclude is None and not self.extend_exclude):
            return None
        base = Exclusions(self.path.parent)
        patterns = (base.patterns if self.exclude is None else self.exclude) + self.extend_exclude
        return Exclusions(self.path.parent, patterns, applies_to_given_files=True)


def _strings(value: object, key: str, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{path}: [tool.haiku2flax] {key} must be a list of strings")
    return tuple(value)


def _bool(value: object, key: str, path: Path) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: [tool.haiku2flax] {key} must be true or false")
    return value


def _rule_ids(value: object, key: str, path: Path) -> frozenset[str]:
    return frozenset(part.strip() for item in _strings(value, key, path) for part in item.split(",") if part.strip())


def _target(value: object, path: Path) -> str | None:
    if value is not None and (not isinstance(value, str) or value not in TARGETS):
        raise ConfigError(f"{path}: [tool.haiku2flax] to must be one of {', '.join(TARGETS)}, not {value!r}")
    return value


def _table(path: Path) -> dict[str, object] | None:
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from None
    table = data.get("tool", {}).get("haiku2flax")
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.haiku2flax] must be a table")
    return table


def load_config(path: Path) -> Config:
    """Read `[tool.haiku2flax]` from `path` (an empty Config when the table is missing)."""
    table = _table(path)
    if table is None:
        return Config(path)
    known = {"to", "exclude", "extend-exclude", "rules", "strict", "select", "ignore", "keep-haiku-modules"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) in [tool.haiku2flax]: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    to = _target(table.get("to"), path)
    rules = tuple(path.parent / rule for rule in _strings(table.get("rules", []), "rules", path))
    missing = [str(rule) for rule in rules if not rule.exists()]
    if missing:
        raise ConfigError(f"{path}: [tool.haiku2flax] rules: no such file or folder: {', '.join(missing)}")
    return Config(
        path=path,
        to=to,
        exclude=_strings(table["exclude"], "exclude", path) if "exclude" in table else None,
        extend_exclude=_strings(table.get("extend-exclude", []), "extend-exclude", path),
        rules=rules,
        strict=_bool(table["strict"], "strict", path) if "strict" in table else None,
        select=_rule_ids(table["select"], "select", path) if "select" in table else None,
        ignore=_rule_ids(table["ignore"], "ignore", path) if "ignore" in table else None,
        keep_haiku_modules=_bool(table["keep-haiku-modules"], "keep-haiku-modules", path) if "keep-haiku-modules" in table else None,
    )


def find_config(paths: list[Path]) -> Config:
    """The configuration for migrating `paths`: the nearest pyproject.toml with `[tool.haiku2flax]`
    above their common folder (the working directory for stdin)."""
    folders = [os.path.abspath(path if path.is_dir() else path.parent) for path in paths if str(path) != "-"]
    start = Path(os.path.commonpath(folders) if folders else os.getcwd())
    for folder in (start, *start.parents):
        candidate = folder / PYPROJECT
        if candidate.is_file() and _table(candidate) is not None:
            return load_config(candidate)
    return Config()

"""The equivalence harness and parameter conversion: the only part of haiku2flax that imports jax.

Its modules import jax, flax and haiku at the top, so this package loads them lazily: the command
line imports `harness.commands` without paying for jax until a command runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "verify": "equivalence",
    "VerifyResult": "equivalence",
    "Row": "equivalence",
    "convert_params": "convert",
    "ConversionRefused": "convert",
    "WrittenCheckpoint": "convert",
    "read_tree": "convert",
    "assert_equivalent": "pytest_helper",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(name)

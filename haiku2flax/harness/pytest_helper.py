"""Test helpers: verify a fixture case (`fixtures/<family>/<case>/case.toml`) or any file, as an assertion.

A case directory holds `haiku.py`, the reviewed `linen.py` and `nnx.py`, and `case.toml`:

    entry = "model"                      # the Haiku transformed object or function
    inputs = ["f32[2,784]"]              # example input specs, in order
    args = { training = false }          # keyword arguments of every call
    train_args = { training = true }     # optional: the call after which state is compared, and the steps'
    steps = 2                            # optional: SGD steps whose parameters must agree
    method = "encode"                    # optional: one multi_transform method (default: each)
    method_inputs = { decode = ["f32[2,256]"] }  # optional: inputs of methods that take others
    rtol = 1e-4                          # optional: tolerance overrides
    atol = 1e-4
    file = "train.py"                    # a tree fixture: the file holding the entry

A tree fixture (`fixtures/trees/<case>/`) holds the Haiku tree in `haiku/`, its reviewed rewrites in
`linen/` and `nnx/` (file for file), and `case.toml`; the entry is run from `file` of each folder.
"""

from __future__ import annotations

import io
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rich.console import Console

from .equivalence import VerifyResult, verify
from .report import render


@dataclass(frozen=True)
class FixtureCase:
    directory: Path
    entry: str
    inputs: list[str]
    args: dict[str, object] = field(default_factory=dict)
    train_args: dict[str, object] | None = None
    steps: int = 0
    method: str | None = None
    method_inputs: dict[str, list[str]] = field(default_factory=dict)
    rtol: float | None = None
    atol: float | None = None
    file: str = "haiku.py"

    @classmethod
    def load(cls, case_toml: Path) -> FixtureCase:
        data = tomllib.loads(case_toml.read_text(encoding="utf-8"))
        known = {f.name for f in fields(cls)} - {"directory"}
        unknown = sorted(data.keys() - known)
        if unknown:  # a misspelt key would silently check less than intended
            raise ValueError(f"{case_toml}: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(directory=case_toml.parent, **data)

    @property
    def name(self) -> str:
        return f"{self.directory.parent.name}/{self.directory.name}"

    def verify(self, target: str, flax_source: str | None = None) -> VerifyResult:
        """Verify against the reviewed `<target>.py` (a tree: `<target>/<file>`; or `flax_source`), which must exist."""
        haiku, flax_path = self.directory / self.file, self.directory / f"{target}.py"
        if self.is_tree:
            haiku, flax_path = self.directory / "haiku" / self.file, self.directory / target / self.file
        if flax_source is None:
            flax_source = flax_path.read_text(encoding="utf-8")
        return verify(
            haiku,
            target,
            self.entry,
            self.inputs,
            self.args,
            method=self.method,
            method_inputs=self.method_inputs,
            train_args=self.train_args,
            steps=self.steps,
            rtol=self.rtol,
            atol=self.atol,
            flax_source=flax_source,
            flax_path=flax_path,
        )

    @property
    def is_tree(self) -> bool:
        return (self.directory / "haiku").is_dir()


def report_text(result: VerifyResult) -> str:
    buffer = io.StringIO()
    render(result, Console(file=buffer, width=200, color_system=None))
    return buffer.getvalue()


def assert_equivalent(
    path: str | Path,
    target: str,
    entry: str,
    inputs: Sequence[str],
    args: Mapping[str, object] | None = None,
    **options: Any,
) -> VerifyResult:
    """`verify(...)` that fails the test with the full report unless the verdict is "equivalent"."""
    result = verify(path, target, entry, inputs, args, **options)
    assert result.ok, report_text(result)
    return result


def assert_case_equivalent(case_dir: Path, target: str) -> VerifyResult:
    result = FixtureCase.load(case_dir / "case.toml").verify(target)
    assert result.ok, report_text(result)
    return result

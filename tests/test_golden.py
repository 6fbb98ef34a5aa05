"""One golden test per fixture and target: the conversion equals the reviewed expected output.

Regenerate with `python scripts/regenerate_goldens.py`, then review `git diff fixtures/`.
"""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest

from haiku2flax.engine import convert_source
from haiku2flax.engine.notes import TODO_PREFIX
from haiku2flax.engine.pipeline import TARGETS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CASES = sorted(p.parent for p in FIXTURES.glob("*/*/haiku.py"))


def _cases():
    for case in CASES:
        for target in TARGETS:
            yield pytest.param(case, target, id=f"{case.parent.name}/{case.name}-{target}")


def test_fixtures_exist():
    assert CASES, "no fixtures found"


@pytest.mark.parametrize(("case", "target"), list(_cases()))
def test_golden(case: Path, target: str):
    source = (case / "haiku.py").read_text(encoding="utf-8")
    expected = (case / f"{target}.py").read_text(encoding="utf-8")
    conversion = convert_source(source, target)
    assert conversion.code == expected
    cst.parse_module(conversion.code)
    todos = [n for n in conversion.notes if n.outcome == "todo"]
    assert len(todos) == conversion.code.count(TODO_PREFIX), "every TODO note has its comment, and back"


@pytest.mark.parametrize(("case", "target"), list(_cases()))
def test_idempotent(case: Path, target: str):
    once = convert_source((case / "haiku.py").read_text(encoding="utf-8"), target).code
    assert convert_source(once, target).code == once

"""Every fixture verifies for both targets: the reviewed `linen.py` / `nnx.py` equal `haiku.py`.

Parametrised over every `fixtures/**/case.toml` × target (tree fixtures: `tests/test_tree_fixtures.py`).
Nothing is skipped: a fixture without a case.toml, or without a target's file, fails. The guide's
no-init variants beyond a representative few run with `pytest -m guide_variants` (CI time).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from haiku2flax.harness.pytest_helper import assert_case_equivalent

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TARGETS = ("linen", "nnx")
CASES = sorted(path.parent for path in FIXTURES.glob("**/case.toml") if not (path.parent / "haiku").is_dir())
NO_INIT_IN_CI = ("basic_example_no_init", "handling_state_no_init", "multiple_methods_no_init", "top_level_functions_no_init")


def _marks(case: Path) -> list[pytest.MarkDecorator]:
    return [pytest.mark.guide_variants] if case.name.endswith("_no_init") and case.name not in NO_INIT_IN_CI else []


def test_every_fixture_says_how_to_verify_it():
    fixtures = sorted(path.parent for path in FIXTURES.glob("**/haiku.py"))
    assert fixtures, "no fixtures found"
    missing = [str(f.relative_to(FIXTURES)) for f in fixtures if not (f / "case.toml").exists()]
    assert not missing, f"fixtures without case.toml (entry, inputs, args): {missing}"


@pytest.mark.parametrize(
    ("case", "target"),
    [
        pytest.param(case, target, id=f"{case.relative_to(FIXTURES)}-{target}", marks=_marks(case))
        for case in CASES
        for target in TARGETS
    ],
)
def test_fixture_is_equivalent(case: Path, target: str):
    assert_case_equivalent(case, target)

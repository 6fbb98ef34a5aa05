"""Tree fixtures (`fixtures/trees/<case>/`): a guide section as a model file and a training file; and
the no-init variants' NNX goldens (`fixtures/guide/<section>_no_init/`).

`migrate -j 2` over the Haiku tree writes, file for file, the reviewed Linen and NNX trees; NNX keeps no
placeholder `...` and no Haiku; and the training file's model, run from the rewritten tree, equals Haiku's.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from haiku2flax.engine.pipeline import TARGETS
from haiku2flax.harness import verify
from haiku2flax.harness.pytest_helper import FixtureCase, report_text

TREES = Path(__file__).resolve().parent.parent / "fixtures" / "trees"
CASES = sorted(path.parent for path in TREES.glob("*/haiku"))
PLACEHOLDER = re.compile(r"(?<!\[)\.\.\.(?!\])")  # `...` as a value, not the `[...]` of NNX variables
VERIFIED_IN_CI = ("basic_example", "multiple_methods", "top_level_functions", "training_step")


def _params(cases: list[Path]) -> list[object]:
    return [pytest.param(case, target, id=f"{case.name}-{target}") for case in cases for target in TARGETS]


def test_every_guide_section_has_a_tree():
    guide = TREES.parent / "guide"
    sections = {p.name for p in guide.iterdir() if (p / "haiku.py").exists() and not p.name.endswith("_no_init")}
    assert sections == {case.name for case in CASES}


@pytest.mark.parametrize(("case", "target"), _params(CASES))
def test_the_migrated_tree_is_the_reviewed_one(case: Path, target: str, tmp_path: Path):
    # a process of its own: its workers fork, which a process that has loaded JAX must not do
    command = [sys.executable, "-c", "from haiku2flax.cli import main; main()", "migrate", "--to", target, "-j", "2"]
    result = subprocess.run([*command, "--out-dir", str(tmp_path), "haiku"], cwd=case, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    sources = sorted(path.name for path in (case / "haiku").glob("*.py"))
    assert sorted(path.name for path in (tmp_path / "haiku").glob("*.py")) == sources
    for name in sources:
        migrated = (tmp_path / "haiku" / name).read_text(encoding="utf-8")
        assert migrated == (case / target / name).read_text(encoding="utf-8"), f"{case.name}/{target}/{name}"
        if target == "nnx":
            assert "import haiku" not in migrated and not PLACEHOLDER.search(migrated), f"{case.name}/nnx/{name}"


def test_no_init_variants_leave_no_placeholder_nor_haiku_in_nnx():
    variants = sorted((TREES.parent / "guide").glob("*_no_init/nnx.py"))
    assert len(variants) == len(CASES)
    for path in variants:  # the goldens, which `tests/test_golden.py` holds the rewrite to
        code = path.read_text(encoding="utf-8")
        assert "import haiku" not in code and not PLACEHOLDER.search(code), path.parent.name


def _verified(case: Path, target: str) -> None:
    result = FixtureCase.load(case / "case.toml").verify(target)
    assert result.ok, report_text(result)


@pytest.mark.parametrize(("case", "target"), _params([case for case in CASES if case.name in VERIFIED_IN_CI]))
def test_the_training_files_model_is_equivalent(case: Path, target: str):
    _verified(case, target)


@pytest.mark.guide_variants
@pytest.mark.parametrize(("case", "target"), _params([case for case in CASES if case.name not in VERIFIED_IN_CI]))
def test_the_other_training_files_models_are_equivalent(case: Path, target: str):
    _verified(case, target)


def test_verify_converts_a_training_file_with_the_model_file_beside_it():
    """`haiku2flax verify train.py` (no reviewed rewrite): the folder is converted in memory as one tree."""
    case = FixtureCase.load(TREES / "basic_example" / "case.toml")
    result = verify(case.directory / "haiku" / case.file, "nnx", case.entry, case.inputs, case.args)
    assert result.ok, report_text(result)

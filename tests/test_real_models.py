"""The real-models suite (bench/real_models): how a case is built and judged, and the CI subset's ratchet.

The ratchet verifies the models marked `subsets = ["ci"]` in both targets and holds each status to
`bench/real_models/expected.toml`: a model that gets worse fails the test, and so does one that gets
better (record it with `python bench/real_models/run.py --record --only NAME`), so the file always
says where the suite stands. It downloads the pinned packages (cached) on its first run.
"""

from __future__ import annotations

import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "real_models"))

import run as real_models_run  # noqa: E402
import suite  # noqa: E402

from haiku2flax.harness import verify  # noqa: E402
from haiku2flax.harness.equivalence import VerifyResult  # noqa: E402

SOURCE = textwrap.dedent(
    """\
    import functools
    import os
    import haiku as hk
    import jax.numpy as jnp
    from somepackage import helpers

    SCALE = 2.0


    def _double(x):
        return SCALE * x


    class Block(hk.Module):
        def __call__(self, x):
            return _double(hk.Linear(3)(x))


    class Unused(hk.Module):
        def __call__(self, x):
            return helpers.go(os.getcwd())


    def make(n):
        def network(x):
            return Block()(x) * n

        return network
    """
)


def test_extract_takes_definitions_with_what_they_use_from_the_same_file():
    into = suite._Extracted()
    suite.extract(SOURCE, suite.Take("pkg/model.py", ("Block",)), into)
    code = "\n".join(into.code)
    assert "class Block" in code and "def _double" in code and "SCALE = 2.0" in code
    assert "class Unused" not in code and "def make" not in code
    assert into.imports == ["import haiku as hk"]  # jnp, os, functools: not used by what was taken
    assert into.unrunnable == {}


def test_extract_takes_a_closure_and_reports_package_imports():
    into = suite._Extracted()
    suite.extract(SOURCE, suite.Take("pkg/model.py", ("make.network", "Unused")), into)
    code = "\n".join(into.code)
    assert code.count("def network(x):\n    return Block()(x) * n") == 1  # dedented to module level
    assert "import os" in into.imports
    assert into.unrunnable == {"helpers": "from somepackage import helpers"}


def test_extract_names_a_missing_definition():
    with pytest.raises(suite.ManifestError, match="pkg/model.py: no module-level Missing"):
        suite.extract(SOURCE, suite.Take("pkg/model.py", ("Missing",)), suite._Extracted())


CONVERTED = textwrap.dedent(
    """\
    import flax.linen as nn


    class Model(nn.Module):
        def setup(self):
            # TODO(haiku2flax:HK006): pass `din`
            self.dense = nn.Dense(...)
            self.other = nn.Dense(3)

        def __call__(self, x):
            return self.dense(x)


    # TODO(haiku2flax:HK000): the whole function
    def helper(x):
        y = x + 1
        return y
    """
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [(7, True), (8, False), (11, False), (17, True)],  # the TODO above; none; none; above the enclosing def
)
def test_todo_at_the_failing_statement_or_above_it(line, expected):
    assert suite.todo_at(CONVERTED, line) is expected


def test_outcome_separates_todo_at_cause_from_silent_breakage():
    def failed(lines):
        return VerifyResult("m.py", "linen", "model", error="TypeError: boom", error_frames=[("linen", line) for line in lines])

    assert suite.outcome(failed([20, 7]), CONVERTED).status == suite.TODO_AT_CAUSE
    silent = suite.outcome(failed([8]), CONVERTED)
    assert silent.status == suite.SILENT
    assert silent.reason == "TypeError: boom (rewritten line 8)"
    assert silent.todo_rules == ("HK006", "HK000")
    assert suite.outcome(VerifyResult("m.py", "linen", "model", problems=["outputs: x"]), CONVERTED).status == (
        suite.NOT_EQUIVALENT
    )


def test_verify_reports_the_rewritten_lines_an_error_passed_through(tmp_path):
    haiku_file = tmp_path / "model.py"
    haiku_file.write_text(
        "import haiku as hk\n\n\ndef forward(x):\n    return hk.Linear(2)(x)\n\n\nmodel = hk.transform(forward)\n"
    )
    broken = "import flax.linen as nn\n\n\ndef fail():\n    raise RuntimeError('here')\n\n\nmodel = fail()\n"
    result = verify(haiku_file, "linen", "model", ["f32[1,3]"], flax_source=broken)
    assert result.verdict == "could not run"
    assert [line for role, line in result.error_frames if role == "linen"] == [8, 5]


def _ci_models() -> list[suite.Model]:
    return [model for model in suite.load_manifest() if "ci" in model.subsets]


def test_manifest_has_the_suite_and_a_ci_subset():
    models = suite.load_manifest()
    assert len(models) >= 40
    assert {m.package for m in models} == set(tomllib.loads(suite.MANIFEST.read_text())["packages"])
    assert 0 < len(_ci_models()) <= 10


@pytest.mark.real_models
@pytest.mark.parametrize("model", _ci_models(), ids=lambda m: m.name)
def test_ci_subset_matches_its_recorded_status(model):
    expected = tomllib.loads(suite.EXPECTED.read_text(encoding="utf-8")).get(model.name)
    assert expected is not None, f"{model.name} has no recorded status: run bench/real_models/run.py --record --only {model.name}"
    outcomes = real_models_run.verify_model(model, suite.build(model), suite.TARGETS)
    changed = {
        target: f"{expected[target]} -> {got.status} ({got.reason})"
        for target, got in outcomes.items()
        if got.status != expected[target]
    }
    assert not changed, (
        f"{model.name} changed: {changed}; if it improved, record it: "
        f"python bench/real_models/run.py --record --only {model.name}"
    )

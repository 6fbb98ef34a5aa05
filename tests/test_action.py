"""The GitHub Action (`action.yml`): its steps' scripts, run here the way the runner runs them.

The `actions/setup-python` step is the runner's business; the test hands its output (a Python) to the
next steps, fills the other `${{ ... }}` expressions of the steps' `env:` as GitHub would, and runs
the install and check scripts with bash: a lean install, then annotations and the check's exit status.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "fixtures" / "guide" / "basic_example" / "haiku.py"
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
STEPS = {step["id"]: step for step in ACTION["runs"]["steps"] if "id" in step}
EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the action's steps are bash scripts")


def run_step(step_id: str, context: dict[str, str], cwd: Path, runner_temp: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run one `run:` step as the runner does: its env with expressions filled from `context`; returns
    the process and the outputs the step wrote to $GITHUB_OUTPUT."""
    step = STEPS[step_id]
    outputs_file = runner_temp / f"{step_id}.outputs"
    outputs_file.write_text("")
    env = {name: EXPRESSION.sub(lambda m: context[m.group(1)], value) for name, value in step.get("env", {}).items()}
    base = {"RUNNER_TEMP": str(runner_temp), "RUNNER_OS": "Linux", "GITHUB_OUTPUT": str(outputs_file)}
    process = subprocess.run(["bash", "-c", step["run"]], cwd=cwd, env={**os.environ, **base, **env}, capture_output=True, text=True)
    outputs = dict(line.split("=", 1) for line in outputs_file.read_text().splitlines() if line)
    return process, outputs


def inputs(**given: str) -> dict[str, str]:
    """`inputs.*` expressions: the action's defaults, overridden by `given`."""
    values = {name: spec.get("default", "") for name, spec in ACTION["inputs"].items()}
    return {f"inputs.{name}": value for name, value in {**values, **given}.items()}


def test_action_is_a_composite_whose_scripts_take_inputs_from_the_environment_only():
    assert ACTION["runs"]["using"] == "composite"
    assert {"src", "target", "args", "version", "python-version"} <= set(ACTION["inputs"])
    assert STEPS["python"]["uses"].startswith("actions/setup-python@")
    for step in ACTION["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), "an input pasted into a script can inject shell code"
    assert "migrate --check --output-format github" in STEPS["check"]["run"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, copy_project) -> tuple[Path, dict[str, str]]:
    """The install step on this checkout (the action's own revision): (RUNNER_TEMP, its outputs)."""
    action_path = copy_project(tmp_path_factory.mktemp("action"))
    runner_temp = tmp_path_factory.mktemp("runner-temp")
    context = {**inputs(), "steps.python.outputs.python-path": sys.executable, "github.action_path": str(action_path)}
    process, outputs = run_step("install", context, action_path, runner_temp)
    assert process.returncode == 0, process.stderr[-3000:]
    return runner_temp, outputs


def test_install_step_installs_the_lean_package(installed, assert_lean):
    _, outputs = installed
    assert_lean(Path(outputs["bin"]) / "python")


@pytest.mark.parametrize(
    ("given", "status", "files"),
    [
        ({"src": "model.py done.py"}, 1, {"model.py"}),
        ({"src": "done.py"}, 0, set()),
        ({"src": "src", "target": "linen", "args": "--strict"}, 1, {"src/noise.py"}),
    ],
)
def test_check_step_annotates_and_fails_while_haiku_is_left(installed, tmp_path: Path, given, status: int, files: set[str]):
    runner_temp, outputs = installed
    (tmp_path / "model.py").write_text(EXAMPLE.read_text())
    (tmp_path / "done.py").write_text("import jax\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "noise.py").write_text("import haiku as hk\n\n\ndef f():\n  return hk.next_rng_key()\n")
    subprocess.run([sys.executable, "-m", "haiku2flax", "migrate", "-q", "--to", "linen", "src"], cwd=tmp_path, check=True)
    context = {**inputs(**given), "steps.install.outputs.bin": outputs["bin"]}
    process, _ = run_step("check", context, tmp_path, runner_temp)
    assert process.returncode == status, process.stdout + process.stderr
    annotated = {m.group(1) for m in re.finditer(r"^::warning file=([^,]+),", process.stdout, re.MULTILINE)}
    assert annotated == files

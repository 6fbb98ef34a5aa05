"""A plain `pip install haiku2flax` (no extras), in a fresh virtualenv: LibCST, click and rich, no jax.

`migrate` and `rules` work there on the bundled examples; `verify` and `convert-params` say in one line
which extra to install. Installing takes seconds with pip's cache (the test needs PyPI or a warm cache).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from haiku2flax.harness.commands import INSTALL_VERIFY

GUIDE = Path("fixtures") / "guide"


@pytest.fixture(scope="module")
def lean(tmp_path_factory: pytest.TempPathFactory, copy_project) -> tuple[Path, Path]:
    """(the virtualenv's bin folder, the installed project's source copy)."""
    source = copy_project(tmp_path_factory.mktemp("haiku2flax"))
    venv = tmp_path_factory.mktemp("lean") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)]
    installed = subprocess.run(pip, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv / "bin", source


def haiku2flax(lean: tuple[Path, Path], *args: str) -> subprocess.CompletedProcess[str]:
    bin, source = lean
    return subprocess.run([str(bin / "haiku2flax"), *args], cwd=source, capture_output=True, text=True)


def test_plain_install_has_no_jax_flax_haiku_optax_or_orbax(lean, assert_lean):
    assert_lean(lean[0] / "python")


@pytest.mark.parametrize("target", ["nnx", "linen"])
def test_migrate_converts_the_bundled_examples(lean, target: str):
    out = f"out-{target}"
    result = haiku2flax(lean, "migrate", "--to", target, "--out-dir", out, str(GUIDE))
    assert result.returncode == 0, result.stderr
    source = lean[1]
    cases = sorted(path.parent for path in (source / GUIDE).glob("*/haiku.py"))
    assert len(cases) >= 10
    for case in cases:
        migrated = source / out / case.relative_to(source) / "haiku.py"
        assert migrated.read_text() == (case / f"{target}.py").read_text(), case.name


def test_check_and_rules_work(lean):
    check = haiku2flax(lean, "migrate", "--check", "--output-format", "github", str(GUIDE / "basic_example" / "haiku.py"))
    assert check.returncode == 1 and check.stdout.startswith("::warning file=fixtures/guide/basic_example/haiku.py,line="), check
    rules = haiku2flax(lean, "rules", "HK005")
    assert rules.returncode == 0 and "HK005" in rules.stdout


@pytest.mark.parametrize("command", ["verify", "convert-params"])
def test_harness_commands_say_which_extra_to_install(lean, command: str):
    example = str(GUIDE / "basic_example" / "haiku.py")
    result = haiku2flax(lean, command, example, "--to", "nnx", "--entry", "model", "--input", "f32[2,784]", "--arg", "training=false")
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: `haiku2flax {command}` needs jax, flax, dm-haiku, optax, orbax-checkpoint: ")
    assert line.endswith(INSTALL_VERIFY)
    assert haiku2flax(lean, command, "--help").returncode == 0, "help needs no extra"

"""Shared fixtures: a copy of this checkout, for tests that install it the way users and pre-commit do."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def copy_project() -> Callable[[Path], Path]:
    """Copies the files of this checkout as git sees them (tracked, and untracked but not ignored) into a
    folder: installing from there builds no egg-info in the checkout and misses nothing a commit would hold."""
    if shutil.which("git") is None:
        pytest.skip("needs git")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    names = [name for name in listed.stdout.split("\0") if name and (ROOT / name).is_file()]

    def copy(destination: Path) -> Path:
        for name in names:
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
        return destination

    return copy


# What the `verify` extra brings; none of it belongs in the lean core's environment.
HEAVY_DISTRIBUTIONS = {"jax", "jaxlib", "flax", "dm-haiku", "optax", "orbax-checkpoint", "numpy"}
LEAN_CORE = {"haiku2flax", "libcst", "click", "rich"}


@pytest.fixture(scope="session")
def assert_lean() -> Callable[[Path], None]:
    """Asserts that an interpreter's environment (read by its own importlib.metadata) holds haiku2flax's
    lean core and nothing of the `verify` extra."""

    def check(python: Path) -> None:
        script = "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'] for d in m.distributions()))"
        listed = subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=True)
        names = {name.strip().lower().replace("_", "-") for name in listed.stdout.splitlines() if name.strip()}
        assert LEAN_CORE <= names, f"missing: {LEAN_CORE - names}"
        assert not names & HEAVY_DISTRIBUTIONS, f"installed: {names & HEAVY_DISTRIBUTIONS}"

    return check

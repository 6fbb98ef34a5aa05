"""The pre-commit hooks, installed for real: `pre-commit try-repo` and a user's .pre-commit-config.yaml.

pre-commit builds a virtualenv and pip-installs haiku2flax with its dependencies from a git commit, so
this catches packaging mistakes (a package missing from the wheel) that editable installs hide, and
shows the hook environment holds the lean core only (no jax). It takes about a minute; it is skipped without git or pre-commit, when HAIKU2FLAX_SKIP_PRE_COMMIT is set, and
when the environment cannot be installed (no network and no local wheels: pre-commit exits 3).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "fixtures" / "guide" / "basic_example" / "haiku.py"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or bool(os.environ.get("HAIKU2FLAX_SKIP_PRE_COMMIT")), reason="needs git (or skipped on request)"
)


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env={**os.environ, **GIT_ENV, **(env or {})}, capture_output=True, text=True)


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory, copy_project) -> tuple[Path, str, dict[str, str]]:
    """This checkout committed into a scratch repository (try-repo would miss untracked files)."""
    pytest.importorskip("pre_commit")
    repo = copy_project(tmp_path_factory.mktemp("hook-repo"))
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        assert run("git", *command, cwd=repo).returncode == 0
    rev = run("git", "rev-parse", "HEAD", cwd=repo).stdout.strip()
    return repo, rev, {"PRE_COMMIT_HOME": str(tmp_path_factory.mktemp("pre-commit-home"))}


def user_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    assert run("git", "init", "-q", cwd=path).returncode == 0
    assert run("git", "add", "-A", cwd=path).returncode == 0
    return path


def pre_commit(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = run(sys.executable, "-m", "pre_commit", *args, cwd=cwd, env=env)
    if result.returncode == 3:  # pre-commit's own failure: here, installing the hook's environment
        pytest.skip(f"pre-commit could not install the hook environment:\n{result.stdout[-2000:]}")
    return result


def notebook(source: str) -> str:
    cell = {"cell_type": "code", "execution_count": None, "id": "c0", "metadata": {}, "outputs": [], "source": source}
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1) + "\n"


def test_try_repo_check_lists_files_still_using_haiku(hook_repo, tmp_path: Path):
    repo, _, env = hook_repo
    user = user_repo(tmp_path / "user", {"model.py": EXAMPLE.read_text(), "done.py": "import jax\n"})
    result = pre_commit("try-repo", str(repo), "haiku2flax-check", "--files", "model.py", "done.py", cwd=user, env=env)
    assert result.returncode == 1, result.stdout
    assert "1 file(s) still use Haiku; run `haiku2flax migrate` on them:\n  model.py\n" in result.stdout
    clean = pre_commit("try-repo", str(repo), "haiku2flax-check", "--files", "done.py", cwd=user, env=env)
    assert clean.returncode == 0, clean.stdout


def test_users_config_migrates_python_and_notebooks(hook_repo, tmp_path: Path):
    repo, rev, env = hook_repo
    config = (
        "repos:\n"
        f"  - repo: {repo}\n"
        f"    rev: {rev}\n"
        "    hooks:\n"
        "      - id: haiku2flax\n"
        "        args: [--to, linen]\n"
        "      - id: haiku2flax-check\n"
        "        args: [--to, linen]\n"
    )
    user = user_repo(
        tmp_path / "user",
        {".pre-commit-config.yaml": config, "model.py": EXAMPLE.read_text(), "nb.ipynb": notebook(EXAMPLE.read_text()), "notes.md": "hk\n"},
    )
    first = pre_commit("run", "--all-files", cwd=user, env=env)
    assert first.returncode == 1 and "files were modified by this hook" in first.stdout, first.stdout
    assert "class Block(nn.Module)" in (user / "model.py").read_text()
    assert "class Block(nn.Module)" in "".join(json.loads((user / "nb.ipynb").read_text())["cells"][0]["source"])
    assert (user / "notes.md").read_text() == "hk\n"
    second = pre_commit("run", "--all-files", cwd=user, env=env)
    assert second.returncode == 0, second.stdout


def test_hook_environment_holds_the_lean_core_only(hook_repo, tmp_path: Path, assert_lean):
    """The environment pre-commit builds from .pre-commit-hooks.yaml (a virtualenv, then `pip install .`
    of the hook's repository) has LibCST, click and rich, and no jax: hooks install in seconds."""
    repo, rev, _ = hook_repo
    config = f"repos:\n  - repo: {repo}\n    rev: {rev}\n    hooks:\n      - id: haiku2flax\n      - id: haiku2flax-check\n"
    user = user_repo(tmp_path / "user", {".pre-commit-config.yaml": config})
    home = tmp_path / "pre-commit-home"
    installed = pre_commit("install-hooks", cwd=user, env={"PRE_COMMIT_HOME": str(home)})
    assert installed.returncode == 0, installed.stdout
    (python,) = home.glob("repo*/py_env-*/bin/python")
    assert_lean(python)

"""How heavy haiku2flax's pre-commit hook environment is, beside black's and ruff's; a markdown table on stdout.

pre-commit builds a hook's environment by cloning the hook's repository, creating a virtualenv and
`pip install .` of the clone (plus a hook's `additional_dependencies`). This script has pre-commit do
exactly that, `pre-commit install-hooks` with a fresh PRE_COMMIT_HOME per hook, and measures the
install's wall time and the environment's size on disk, for:

1. haiku2flax's hooks (this checkout, committed into a scratch repository);
2. the same with the `verify` extra's packages as `additional_dependencies`: what every hook
   environment installed before the extra existed (the baseline this change is measured against);
3. black's hook: black's sdist from PyPI, unpacked into a repository (black's repository is the hook's);
4. ruff's hook: a repository built as ruff-pre-commit is, a package depending on `ruff==VERSION`.

black and ruff are downloaded at run time (PyPI only: their git repositories are not needed). pip's
cache is used as on a developer's machine (warm after the first run); `--cold` turns it off
(PIP_NO_CACHE_DIR), so every package is downloaded. Nothing here asserts a time: it measures.

    python bench/hook_env.py [--cold] [--repeat 1] [--black 25.1.0] [--ruff 0.9.0]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com"}
BLACK_HOOKS = "- id: black\n  name: black\n  entry: black\n  language: python\n  require_serial: true\n  types_or: [python, pyi]\n"
RUFF_HOOKS = "- id: ruff\n  name: ruff\n  entry: ruff check --force-exclude\n  language: python\n  types_or: [python, pyi, jupyter]\n"


@dataclass
class Hook:
    """One hook repository to install, and what was measured."""

    label: str
    repo: Path
    hook_id: str
    version: str
    additional_dependencies: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    megabytes: float = 0.0


def run(*command: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, env={**os.environ, **GIT_ENV, **(env or {})}, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {cwd}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result


def commit(repo: Path) -> str:
    """Make `repo` a git repository with everything committed; its HEAD commit."""
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        run("git", *command, cwd=repo)
    return run("git", "rev-parse", "HEAD", cwd=repo).stdout.strip()


def this_checkout(destination: Path) -> Path:
    """The files of this checkout as git sees them (tracked, and untracked but not ignored)."""
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    return destination


def download(requirement: str, into: Path, sdist: bool) -> Path:
    """`pip download` one distribution (no dependencies) from PyPI; the file."""
    kind = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    into.mkdir()
    run(sys.executable, "-m", "pip", "download", "-q", "--no-deps", *kind, "-d", str(into), requirement, cwd=into)
    (found,) = into.iterdir()
    return found


def black_repo(work: Path, version: str | None) -> Hook:
    """black's hook repository is black's source tree: its sdist, unpacked."""
    archive = download(f"black=={version}" if version else "black", work / "black-download", sdist=True)
    with tarfile.open(archive) as tar:
        tar.extractall(work / "black-source", filter="data")
    (repo,) = (work / "black-source").iterdir()
    hooks = repo / ".pre-commit-hooks.yaml"
    if not hooks.exists():  # not every sdist ships it; black's repository declares this hook
        hooks.write_text(BLACK_HOOKS)
    return Hook("black", repo, "black", repo.name.removeprefix("black-"))


def ruff_repo(work: Path, version: str | None) -> Hook:
    """ruff's hook repository (ruff-pre-commit) is a package that depends on one ruff release."""
    wheel = download(f"ruff=={version}" if version else "ruff", work / "ruff-download", sdist=False)
    version = wheel.name.split("-")[1]
    repo = work / "ruff-pre-commit"
    repo.mkdir()
    (repo / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "ruff-pre-commit"\nversion = "{version}"\ndependencies = ["ruff=={version}"]\n\n'
        "[tool.setuptools]\npy-modules = []\n"
    )
    (repo / ".pre-commit-hooks.yaml").write_text(RUFF_HOOKS)
    return Hook("ruff", repo, "ruff", version)


def disk_megabytes(top: Path) -> float:
    """Space the files under `top` take on disk (allocated blocks, hard links counted once), in MB."""
    seen, blocks = set(), 0
    for directory, _, files in os.walk(top):
        for name in files:
            stat = os.lstat(os.path.join(directory, name))
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                blocks += stat.st_blocks
    return blocks * 512 / 1e6


def install(hook: Hook, rev: str, work: Path, cold: bool) -> None:
    """`pre-commit install-hooks` for this one hook in a scratch repository with a fresh PRE_COMMIT_HOME."""
    user = Path(tempfile.mkdtemp(prefix="user-", dir=work))
    home = Path(tempfile.mkdtemp(prefix="pre-commit-home-", dir=work))
    extra = f"        additional_dependencies: {hook.additional_dependencies!r}\n" if hook.additional_dependencies else ""
    config = f"repos:\n  - repo: {hook.repo}\n    rev: {rev}\n    hooks:\n      - id: {hook.hook_id}\n{extra}"
    (user / ".pre-commit-config.yaml").write_text(config)
    run("git", "init", "-q", cwd=user)
    env = {"PRE_COMMIT_HOME": str(home), **({"PIP_NO_CACHE_DIR": "1"} if cold else {})}
    start = time.perf_counter()
    run(sys.executable, "-m", "pre_commit", "install-hooks", cwd=user, env=env)
    hook.seconds.append(time.perf_counter() - start)
    (environment,) = home.glob("repo*/py_env-*")
    hook.megabytes = disk_megabytes(environment)
    shutil.rmtree(home)
    shutil.rmtree(user)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", action="store_true", help="No pip cache: every package is downloaded.")
    parser.add_argument("--repeat", type=int, default=1, help="Installs per hook, interleaved (median reported).")
    parser.add_argument("--black", help="black version (default: the latest on PyPI).")
    parser.add_argument("--ruff", help="ruff version (default: the latest on PyPI).")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hook-env-") as scratch:
        work = Path(scratch)
        ours = this_checkout(work / "haiku2flax")
        verify_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["verify"]
        hooks = [
            Hook("haiku2flax", ours, "haiku2flax-check", "this checkout"),
            Hook("haiku2flax + verify extra (before)", ours, "haiku2flax-check", "this checkout", verify_extra),
            black_repo(work, options.black),
            ruff_repo(work, options.ruff),
        ]
        revs = {repo: commit(repo) for repo in dict.fromkeys(hook.repo for hook in hooks)}
        for _ in range(options.repeat):
            for hook in hooks:
                install(hook, revs[hook.repo], work, options.cold)

    lean = hooks[0]
    cache = "cold (PIP_NO_CACHE_DIR=1)" if options.cold else "warm (pip's cache as it is)"
    print(f"Hook environments built by `pre-commit install-hooks`; pip cache {cache}; Python {sys.version.split()[0]}; "
          f"load average {os.getloadavg()[0]:.1f}; {options.repeat} install(s) per hook, median.\n")
    print("| hook | version | environment (MB on disk) | install (s) | size / haiku2flax | time / haiku2flax |")
    print("|---|---|---:|---:|---:|---:|")
    for hook in hooks:
        seconds = statistics.median(hook.seconds)
        print(
            f"| {hook.label} | {hook.version} | {hook.megabytes:.0f} | {seconds:.1f} | "
            f"{hook.megabytes / lean.megabytes:.2f} | {seconds / statistics.median(lean.seconds):.2f} |"
        )


if __name__ == "__main__":
    main()

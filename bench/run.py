"""How fast `haiku2flax migrate` is, against the floor of any LibCST tool; a markdown table on stdout.

In one run, on generated trees of Haiku files (`bench/generate.py`; 100 / 1,000 / 5,000 files by
default) and on any directory given:
1. `migrate --check -j 1` against a bare LibCST `parse_module(text).code` round trip of the same files;
2. `-j 1` against `-j N` (N: the cores here);
3. a tree of files without Haiku, against walking it and reading the files;
4. start-up: `migrate --check` on one small file against `black --check` and `ruff check` on it
   (a comparator that is not installed is skipped, and the table says so);
5. peak memory (the largest process's resident set; for `-j N`, the parent or one worker).

Every command runs as its own process, `--repeat` times, interleaved; the table gives the median and
the best run. Nothing here asserts a time: it measures.

    python bench/run.py [DIR ...] [--sizes 100,1000,5000] [--repeat 5] [--to nnx]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate import generate, haiku_file  # noqa: E402


@dataclass
class Timing:
    """Wall-clock seconds and peak resident set (KiB) of repeated runs of one command."""

    seconds: list[float] = field(default_factory=list)
    peak_kib: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)


def run_once(command: list[str], timing: Timing, cwd: Path, env: dict[str, str] | None = None) -> None:
    """Run `command` to completion, adding its wall time and peak RSS to `timing`."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        timing.seconds.append(time.perf_counter() - start)
        errors.seek(0)
        message = errors.read().decode(errors="replace")
    # `--check` and linters exit 1 when they find something, and so does a Python traceback
    if os.waitstatus_to_exitcode(status) not in (0, 1) or "Traceback" in message:
        raise SystemExit(f"`{' '.join(command)}` failed with exit status {os.waitstatus_to_exitcode(status)}:\n{message}")
    timing.peak_kib = max(timing.peak_kib, usage.ru_maxrss)


def measure(commands: dict[str, list[str]], repeat: int, cwd: Path, env: dict[str, str] | None = None) -> dict[str, Timing]:
    """Each command `repeat` times, interleaved so that drift in the machine's speed hits all alike."""
    timings = {name: Timing() for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            run_once(command, timings[name], cwd, env)
    return timings


def environment(workdir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment, with Python's bytecode caches kept (in `workdir`) even where they are off."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(workdir / "pycache"), **extra}


def warm_up(small: Path, args: argparse.Namespace, workdir: Path) -> None:
    """Run every program once, untimed, so that its bytecode caches exist, as for an installed package."""
    listing = workdir / "small.files"
    listing.write_text(f"{small}\n", encoding="utf-8")
    programs = [
        [*haiku2flax_command(), "migrate", "--check", "--quiet", "--to", args.to, str(small)],
        [sys.executable, str(HERE / "floor.py"), "roundtrip", str(listing)],
        [sys.executable, str(HERE / "floor.py"), "walk", str(small.parent)],
    ]
    for command in programs:
        run_once(command, Timing(), workdir, environment(workdir))


def executable(name: str) -> str | None:
    """`name` from this interpreter's environment first, then from PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which(name, path=path)


def haiku2flax_command() -> list[str]:
    found = executable("haiku2flax")
    return [found] if found else [sys.executable, "-m", "haiku2flax"]


def python_files(tree: Path) -> list[Path]:
    """The files `migrate` converts under `tree` (the same discovery, so both sides see the same files)."""
    from haiku2flax.files import discover

    return discover([tree], {".py"}).sources


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def cell(timing: Timing) -> str:
    return f"{fmt(timing.median)} ({fmt(timing.best)})"


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


# -- the measurements ---------------------------------------------------------------------------------


def round_trip_rows(trees: list[tuple[str, Path]], args: argparse.Namespace, workdir: Path) -> list[str]:
    migrate = [*haiku2flax_command(), "migrate", "--check", "--quiet", "--to", args.to]
    rows = [
        f"| tree | files | lines | LibCST round trip | migrate `-j 1` | ratio | per file `-j 1` | migrate `-j {args.jobs}` "
        f"| speed-up | peak RSS `-j 1` | peak RSS `-j {args.jobs}` |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, tree in trees:
        files = python_files(tree)
        listing = workdir / f"{label.replace('/', '_')}.files"
        listing.write_text("".join(f"{os.path.abspath(f)}\n" for f in files), encoding="utf-8")
        lines = sum(f.read_bytes().count(b"\n") for f in files)
        timings = measure(
            {
                "floor": [sys.executable, str(HERE / "floor.py"), "roundtrip", str(listing)],
                "serial": [*migrate, "-j", "1", str(tree)],
                "parallel": [*migrate, "-j", str(args.jobs), str(tree)],
            },
            args.repeat,
            workdir,
            environment(workdir),
        )
        floor, serial, parallel = timings["floor"], timings["serial"], timings["parallel"]
        rows.append(
            f"| {label} | {len(files):,} | {lines:,} | {cell(floor)} | {cell(serial)} | {serial.median / floor.median:.2f}× "
            f"| {serial.median / max(1, len(files)) * 1000:.1f} ms | {cell(parallel)} | {serial.median / parallel.median:.2f}× "
            f"| {mib(serial.peak_kib)} | {mib(parallel.peak_kib)} |"
        )
        print(rows[-1], file=sys.stderr)
    return rows


def plain_rows(tree: Path, args: argparse.Namespace, workdir: Path) -> list[str]:
    migrate = [*haiku2flax_command(), "migrate", "--check", "--quiet", "--to", args.to, "-j", "1", str(tree)]
    commands = {"walk": [sys.executable, str(HERE / "floor.py"), "walk", str(tree)], "migrate": migrate}
    timings = measure(commands, args.repeat, workdir, environment(workdir))
    walk, serial = timings["walk"], timings["migrate"]
    count = len(python_files(tree))
    return [
        "| tree | files | walk and read | migrate `-j 1` | ratio | peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
        f"| no Haiku | {count:,} | {cell(walk)} | {cell(serial)} | {serial.median / walk.median:.2f}× "
        f"| {mib(serial.peak_kib)} |",
    ]


def startup_rows(small: Path, args: argparse.Namespace, workdir: Path) -> list[str]:
    migrate = [*haiku2flax_command(), "migrate", "--check", "--quiet", "--to", args.to, str(small)]
    commands = {"haiku2flax migrate --check": migrate}
    missing = []
    black, ruff = executable("black"), executable("ruff")
    if black:
        commands["black --check"] = [black, "--check", "--quiet", str(small)]
    else:
        missing.append("black")
    if ruff:
        commands["ruff check"] = [ruff, "check", "--quiet", str(small)]
    else:
        missing.append("ruff")
    timings = measure(commands, max(args.repeat, 10), workdir, environment(workdir, BLACK_CACHE_DIR=str(workdir / "black-cache")))
    rows = ["| command (one small file) | median (best) | peak RSS |", "|---|---:|---:|"]
    rows += [f"| `{name}` | {cell(timing)} | {mib(timing.peak_kib)} |" for name, timing in timings.items()]
    rows += [f"| `{name}` | not installed: skipped (`pip install {name}`) | |" for name in missing]
    return rows


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import libcst

    version = getattr(libcst, "__version__", None) or _distribution_version("libcst")
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, LibCST {version}, {platform.system()}"


def _distribution_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="*", type=Path, help="more trees to measure (e.g. your repository)")
    parser.add_argument("--sizes", default="100,1000,5000", help="generated trees, in files (empty: none)")
    parser.add_argument("--plain-files", type=int, default=1000, help="files in the tree without Haiku (0: skip)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="N of `-j N`")
    parser.add_argument("--to", default="nnx", choices=["nnx", "linen"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]

    with tempfile.TemporaryDirectory(prefix="haiku2flax-bench-") as temporary:
        workdir = Path(temporary)
        trees = []
        for size in sizes:
            generate(workdir / f"haiku-{size}", size, args.seed)
            trees.append((f"generated {size:,}", workdir / f"haiku-{size}"))
        trees += [(str(directory), directory.resolve()) for directory in args.dirs]
        small = workdir / "small" / "small.py"
        small.parent.mkdir()
        small.write_text(min((haiku_file(args.seed, i) for i in range(20)), key=len), encoding="utf-8")

        load = os.getloadavg()[0]
        warm_up(small, args, workdir)
        out = [f"## haiku2flax migrate --to {args.to}: {machine()}", ""]
        out += ["### 1-2. Against a bare LibCST round trip, and on several cores", ""]
        out += round_trip_rows(trees, args, workdir)
        if args.plain_files:
            generate(workdir / "plain", args.plain_files, args.seed, plain=True)
            out += ["", "### 3. A tree without Haiku", ""]
            out += plain_rows(workdir / "plain", args, workdir)
        out += ["", "### 4. Start-up", ""]
        out += startup_rows(small, args, workdir)
        out += [
            "",
            f"Median of {args.repeat} runs (best in parentheses); start-up: median of {max(args.repeat, 10)} runs. "
            f"Load average (1 min) {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end: other work on the "
            "machine slows every column, and takes the cores `-j N` counts on.",
        ]
    print("\n".join(out))


if __name__ == "__main__":
    main()

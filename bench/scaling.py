"""How the cost of one file grows with the number of Haiku modules in it; a markdown table on stdout.

A file's conversion must cost time and memory in proportion to its size. This generates single files
of 10 to 2,000 modules (the templates of `generate.py`: dense and BatchNorm blocks, models that call
them, layers built in `__init__`, parameters and state, and a training script at the end), converts
each in fresh processes (the best of `--repeat`) and reports, per size: the conversion's CPU time, the same per module, the
LibCST round trip of the same text (the floor any LibCST tool pays, measured in the same process, so
the ratio is immune to the machine's load), and the peak memory the conversion added, per module.
The slope is the exponent of a log-log fit of time (and memory) against modules: 1 is linear.

`--megabytes 5` adds files of a fifth of that size and of that size, and reports time per megabyte.

    python bench/scaling.py [--modules 10,50,250,1000,2000] [--megabytes 5] [--repeat 3] [--to nnx]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate import _mlp_block, _model, _norm_block, _projection_module, _scale_module, _training, _Writer  # noqa: E402

TEMPLATES = [_mlp_block, _norm_block, _projection_module, _scale_module, _model]


def many_modules(count: int, seed: int = 0) -> str:
    """One file with `count` module classes (models call the two blocks before them) and a training script."""
    writer = _Writer(random.Random(seed), 0)
    writer.imports("from typing import Optional", "import optax")
    blocks: list[str] = []
    last = ""
    for index in range(count):
        template = TEMPLATES[index % len(TEMPLATES)]
        last = f"Module{index}"
        if template is _model:
            _model(writer, last, blocks[-2:])
        else:
            template(writer, last)
        if template in (_mlp_block, _norm_block):
            blocks.append(last)
    _training(writer, last, sgd=False)
    return writer.text()


def modules_for_bytes(size: int) -> int:
    """How many modules make a file of about `size` bytes."""
    per_module = len(many_modules(200)) / 200
    return max(1, round(size / per_module))


def measure(count: int, target: str) -> dict[str, float]:
    """Run in a fresh process: convert a file of `count` modules; CPU seconds, peak memory the
    conversion added (MiB), then the LibCST round trip of the same text."""
    import libcst as cst

    from haiku2flax.engine import convert_source

    convert_source(many_modules(5), target)  # imports and caches, not counted
    source = many_modules(count)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.process_time()
    convert_source(source, target)
    seconds = time.process_time() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
    start = time.process_time()
    cst.parse_module(source).code
    floor = time.process_time() - start
    return {"modules": count, "bytes": len(source.encode()), "seconds": seconds, "floor": floor, "peak_mib": peak / 1024}


def measured(count: int, target: str, repeat: int) -> dict[str, float]:
    """The best of `repeat` fresh processes (a shared machine's load only ever adds time)."""
    runs = []
    for _ in range(repeat):
        command = [sys.executable, __file__, "--measure", str(count), "--to", target]
        runs.append(json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout))
    return min(runs, key=lambda run: run["seconds"])


def slope(xs: list[float], ys: list[float]) -> float:
    """The exponent k of the least-squares fit y = c·x^k."""
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def table(rows: list[dict[str, float]]) -> list[str]:
    lines = [
        "| modules | KB | seconds | ms / module | × LibCST round trip | peak MiB | KiB / module |",
        "|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['modules']:,} | {row['bytes'] / 1000:,.0f} | {row['seconds']:.2f} | {1000 * row['seconds'] / row['modules']:.1f}"
            f" | {row['seconds'] / max(row['floor'], 1e-9):.1f} | {row['peak_mib']:.0f} | {1024 * row['peak_mib'] / row['modules']:.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", default="10,50,250,1000,2000", help="modules per file, comma-separated")
    parser.add_argument("--megabytes", type=float, default=0, help="also a file of this size and one of a fifth of it")
    parser.add_argument("--to", default="nnx", choices=["nnx", "linen"])
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per size; the best counts")
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # each table as it is measured
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.to)))
        return

    rows = [measured(int(count), args.to, args.repeat) for count in args.modules.split(",")]
    counts = [row["modules"] for row in rows]
    print(f"One file of N modules, `convert_source(..., {args.to!r})`, each size in a fresh process\n")
    print("\n".join(table(rows)))
    if len(set(counts)) > 1:
        print(
            f"\nslope (log-log, 1 = linear): time {slope(counts, [r['seconds'] for r in rows]):.2f},"
            f" peak memory {slope(counts, [max(r['peak_mib'], 1e-3) for r in rows]):.2f}"
        )
    if args.megabytes:
        size = int(args.megabytes * 1_000_000)
        big = [measured(modules_for_bytes(size // 5), args.to, 1), measured(modules_for_bytes(size), args.to, 1)]
        print(f"\nFiles of {args.megabytes / 5:g} MB and {args.megabytes:g} MB\n")
        print("\n".join(table(big)))
        per_mb = [row["seconds"] / (row["bytes"] / 1e6) for row in big]
        print(f"\nseconds per MB: {per_mb[0]:.1f} and {per_mb[1]:.1f} (ratio {per_mb[1] / per_mb[0]:.2f}; 1 = proportional to size)")


if __name__ == "__main__":
    main()

"""Profile the engine in process on generated Haiku files (or the .py files of a directory).

    python bench/profile.py [DIR] [--files 100] [--to nnx] [--cprofile | --ratio-only]

Prints the engine's CPU time against a bare LibCST round trip of the same files (measured in the same
process, so the machine's load barely moves the ratio), then pyinstrument's call tree (`pip install pyinstrument`; `--cprofile`, or pyinstrument missing: cProfile's top functions
by own time). Each file is converted once untimed first, so imports and caches are not counted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import libcst as cst

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from generate import generate  # noqa: E402

from haiku2flax.engine import convert_source  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", nargs="?", type=Path)
    parser.add_argument("--files", type=int, default=100, help="generated files when no DIR is given")
    parser.add_argument("--to", default="nnx", choices=["nnx", "linen"])
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--ratio-only", action="store_true", help="print the ratio, no profile")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        paths = sorted(args.dir.rglob("*.py")) if args.dir else generate(Path(temporary), args.files)
        sources = [path.read_text(encoding="utf-8") for path in paths]
    for source in sources:
        convert_source(source, args.to)

    start = time.process_time()
    for source in sources:
        cst.parse_module(source).code
    floor = time.process_time() - start
    start = time.process_time()
    for source in sources:
        convert_source(source, args.to)
    engine = time.process_time() - start
    ratio = engine / floor
    print(f"{len(sources)} files: LibCST round trip {floor:.2f} s, convert_source --to {args.to} {engine:.2f} s ({ratio:.2f}×)")
    if args.ratio_only:
        return
    print()

    try:
        if args.cprofile:
            raise ImportError
        from pyinstrument import Profiler
    except ImportError:
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]  # this file is not `profile`
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(lambda: [convert_source(source, args.to) for source in sources])
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
        return
    profiler = Profiler()
    profiler.start()
    for source in sources:
        convert_source(source, args.to)
    profiler.stop()
    print(profiler.output_text(unicode=True, color=False))


if __name__ == "__main__":
    main()

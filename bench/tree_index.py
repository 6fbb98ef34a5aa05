"""What indexing the tree (`haiku2flax/engine/tree.py`) costs, against the migration it serves.

    python bench/tree_index.py                     # a generated tree of 300 Haiku files (`generate.py`)
    python bench/tree_index.py DIR --repeat 5      # your own tree

In one process, interleaved, CPU time of this process (immune to other processes' load), best of
`--repeat` runs each:
- index: `index_tree(files)`, what `migrate` does once in the parent before converting;
- run: converting every file as `migrate --check -j 1` does (`runner.convert_file`), without the index;
- signatures: what `migrate` does after converting each file, in the parent: its module classes whose
  constructor changed, and their calls in the project's files not migrated (`haiku2flax/signatures.py`).
The ratios index / run and signatures / run are their shares of a run (the index: at most 10%).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import generate  # noqa: E402

from haiku2flax.engine.tables import load_tables  # noqa: E402
from haiku2flax.engine.tree import index_tree  # noqa: E402
from haiku2flax.files import discover  # noqa: E402
from haiku2flax.runner import FORMATS, Settings, convert_file, note_changed_signatures  # noqa: E402
from haiku2flax.signatures import OutsideCode  # noqa: E402


def _cpu_seconds(function: Callable[[], object]) -> float:
    start = time.process_time()
    function()
    return time.process_time() - start


def measure(top: Path, repeat: int, target: str) -> tuple[int, float, float, float]:
    """(files, best index seconds, best run seconds, best signatures seconds)."""
    paths = discover([top], FORMATS.keys()).sources
    settings = Settings(target, load_tables())

    results = []

    def run() -> None:
        results[:] = [convert_file(path, settings) for path in paths]

    def signatures() -> None:
        outside = OutsideCode([top, *paths])
        for result in results:
            note_changed_signatures(result, outside, target)

    run()  # warm: imports, tables, caches
    index_times, run_times, signature_times = [], [], []
    for _ in range(repeat):
        index_times.append(_cpu_seconds(lambda: index_tree(paths)))
        run_times.append(_cpu_seconds(run))
        signature_times.append(_cpu_seconds(signatures))
    return len(paths), min(index_times), min(run_times), min(signature_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", nargs="?", type=Path, help="a tree to measure (default: a generated one)")
    parser.add_argument("--files", type=int, default=300, help="files of the generated tree")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--to", default="nnx", choices=["nnx", "linen"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        top = args.tree
        if top is None:
            top = Path(workdir) / "tree"
            generate(top, args.files)
        files, index, run, signatures = measure(top, args.repeat, args.to)
    print(
        f"{files} files, --to {args.to}: index {index * 1000:.0f} ms, run {run:.2f} s, index / run = {index / run:.1%}; "
        f"signatures {signatures * 1000:.0f} ms, signatures / run = {signatures / run:.1%}"
    )


if __name__ == "__main__":
    main()

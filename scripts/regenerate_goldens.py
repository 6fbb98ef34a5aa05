"""Rewrite every fixture's expected `linen.py` / `nnx.py` from its `haiku.py`, for review as a diff; and
each tree fixture's `linen/` and `nnx/` from its `haiku/` folder, migrated as one tree.

Usage: python scripts/regenerate_goldens.py [FIXTURE_DIR ...]
Review the result with `git diff fixtures/` before committing: the goldens are the reviewed truth.
"""

from __future__ import annotations

import sys
from pathlib import Path

from haiku2flax.engine import convert_source
from haiku2flax.engine.pipeline import TARGETS
from haiku2flax.runner import Settings, convert_tree

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _update(expected: Path, code: str) -> None:
    if not expected.exists() or expected.read_text(encoding="utf-8") != code:
        expected.parent.mkdir(exist_ok=True)
        expected.write_text(code, encoding="utf-8")
        print(f"updated {expected.relative_to(FIXTURES.parent)}")


def _regenerate_tree(case: Path) -> None:
    sources = sorted((case / "haiku").glob("*.py"))
    for target in TARGETS:
        for source, result in zip(sources, convert_tree(sources, Settings(target))):
            assert result.error is None, result.error.describe(result.path)
            _update(case / target / source.name, result.converted.decode("utf-8"))


def main(argv: list[str]) -> int:
    cases = [Path(a).resolve() for a in argv] or sorted(p.parent for p in FIXTURES.glob("*/*/haiku.py")) + sorted(
        p.parent for p in FIXTURES.glob("trees/*/haiku")
    )
    for case in cases:
        if (case / "haiku").is_dir():
            _regenerate_tree(case)
            continue
        source = (case / "haiku.py").read_text(encoding="utf-8")
        for target in TARGETS:
            _update(case / f"{target}.py", convert_source(source, target).code)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

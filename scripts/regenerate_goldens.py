"""Rewrite every fixture's expected `linen.py` / `nnx.py` from its `haiku.py`, for review as a diff.

Usage: python scripts/regenerate_goldens.py [FIXTURE_DIR ...]
Review the result with `git diff fixtures/` before committing: the goldens are the reviewed truth.
"""

from __future__ import annotations

import sys
from pathlib import Path

from haiku2flax.engine import convert_source
from haiku2flax.engine.pipeline import TARGETS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def main(argv: list[str]) -> int:
    cases = [Path(a).resolve() for a in argv] or sorted(p.parent for p in FIXTURES.glob("*/*/haiku.py"))
    for case in cases:
        source = (case / "haiku.py").read_text(encoding="utf-8")
        for target in TARGETS:
            expected = case / f"{target}.py"
            code = convert_source(source, target).code
            if not expected.exists() or expected.read_text(encoding="utf-8") != code:
                expected.write_text(code, encoding="utf-8")
                print(f"updated {expected.relative_to(FIXTURES.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

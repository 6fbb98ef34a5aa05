"""Write docs/rules.md from the rule registry and the rule tables (`haiku2flax rules --markdown`).

Usage: python scripts/generate_rules_doc.py
tests/test_rules_doc.py fails when the committed page differs from what this writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from haiku2flax.rules_doc import markdown

PAGE = Path(__file__).resolve().parent.parent / "docs" / "rules.md"


def main() -> int:
    PAGE.parent.mkdir(exist_ok=True)
    text = markdown()
    if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
        PAGE.write_text(text, encoding="utf-8")
        print(f"updated {PAGE.relative_to(PAGE.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The baselines `run.py` times `haiku2flax migrate` against, run as their own processes like it is.

    python bench/floor.py roundtrip LIST   # LibCST parse_module(text).code of every file named in LIST
    python bench/floor.py walk DIR         # walk DIR and read every .py file: what any tool pays first

The round trip is the floor of any LibCST tool: parsing (native) plus generating the code back.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def roundtrip(listing: Path) -> None:
    import libcst as cst

    for line in listing.read_text(encoding="utf-8").splitlines():
        text = Path(line).read_bytes().decode("utf-8")
        if cst.parse_module(text).code != text:
            raise SystemExit(f"{line}: LibCST did not round-trip the file")


def walk(top: Path) -> None:
    for directory, subdirectories, files in os.walk(top):
        subdirectories.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                Path(directory, name).read_bytes()


if __name__ == "__main__":
    command, argument = sys.argv[1], Path(sys.argv[2])
    {"roundtrip": roundtrip, "walk": walk}[command](argument)

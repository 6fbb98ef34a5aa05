"""haiku2flax on Haiku code nobody here wrote: conversion rate and safety checks; a markdown table on stdout.

The code: the `hk.nets` sources inside the installed dm-haiku package (with the substitution their
comments ask forks to make: the `class hk:` shim becomes `import haiku as hk`), plus any directory of
Haiku files given on the command line. For each file and target it checks that the conversion does not
crash, that the output parses, that a second run changes nothing, and that every Haiku reference left
in the output sits under a `# TODO(haiku2flax…)` comment; and it counts Haiku references (names that
resolve to the `haiku` package, import statements aside) in the input and those left in the output.

    python bench/real_code.py [DIR ...] [--out OUT_DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import libcst as cst

from haiku2flax.engine import convert_source
from haiku2flax.engine.names import ImportedNames
from haiku2flax.engine.notes import TODO_PREFIX
from haiku2flax.engine.walk import Walker
from haiku2flax.harness.hk_nets import installed_nets

TARGETS = ("linen", "nnx")
class _HaikuReferences(Walker):
    """Haiku references in a module, and how many sit in a statement carrying a haiku2flax TODO."""

    def __init__(self, names: ImportedNames) -> None:
        self.names = names
        self.total = 0
        self.under_todo = 0
        self._todo_depth = 0

    def visit_Import(self, node: cst.Import) -> bool:
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        return False

    def _is_marked(self, node: cst.CSTNode) -> bool:
        lines = getattr(node, "leading_lines", ())
        return any(line.comment is not None and line.comment.value.startswith(TODO_PREFIX) for line in lines)

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self._is_marked(node):
            self._todo_depth += 1
        if isinstance(node, cst.Attribute | cst.Name) and self.names.qualify(node) is not None:
            self.total += 1
            self.under_todo += self._todo_depth > 0
            return False
        if isinstance(node, cst.Attribute):  # `nn.initializers` does not refer to a name `initializers`
            self.walk(node.value)
            return False
        return super().on_visit(node)

    def on_leave(self, original_node: cst.CSTNode) -> None:
        if self._is_marked(original_node):
            self._todo_depth -= 1
        super().on_leave(original_node)


def references(code: str) -> _HaikuReferences:
    module = cst.parse_module(code)
    counter = _HaikuReferences(ImportedNames.from_module(module))
    counter.walk(module)
    return counter


def check(name: str, source: str, target: str, out: Path | None) -> dict[str, object]:
    conversion = convert_source(source, target)
    again = convert_source(conversion.code, target)
    before, after = references(source), references(conversion.code)
    if out is not None:
        path = out / target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(conversion.code, encoding="utf-8")
    outcomes = Counter(str(note.outcome) for note in conversion.notes)
    return {
        "file": name,
        "target": target,
        "references": before.total,
        "left": after.total,
        "left_without_todo": after.total - after.under_todo,
        "idempotent": again.code == conversion.code,
        "notes": outcomes,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, help="write the converted files here")
    args = parser.parse_args(argv)
    sources = installed_nets()
    for directory in args.dirs:
        for path in sorted(directory.rglob("*.py")):
            sources[f"{directory.name}/{path.relative_to(directory)}"] = path.read_text(encoding="utf-8")
    rows = [check(name, text, target, args.out) for target in TARGETS for name, text in sources.items()]
    print("| file | target | Haiku refs | converted | left (all under a TODO) | idempotent | notes |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        converted = row["references"] - row["left"]  # type: ignore[operator]
        notes = ", ".join(f"{k} {v}" for k, v in sorted(row["notes"].items()))  # type: ignore[attr-defined]
        flag = "" if row["left_without_todo"] == 0 else f" ({row['left_without_todo']} WITHOUT TODO)"
        print(f"| {row['file']} | {row['target']} | {row['references']} | {converted} | {row['left']}{flag} | {row['idempotent']} | {notes} |")
    for target in TARGETS:
        mine = [r for r in rows if r["target"] == target]
        total = sum(r["references"] for r in mine)  # type: ignore[misc]
        left = sum(r["left"] for r in mine)  # type: ignore[misc]
        print(f"\n{target}: {total - left}/{total} Haiku references converted ({(total - left) / max(total, 1):.0%}), {left} left with a TODO")
    failed = [r for r in rows if r["left_without_todo"] or not r["idempotent"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

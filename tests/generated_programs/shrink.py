"""Shrinking: reduce a violating program to a small one that shows the same cause, and write it out.

Greedy over the program's syntax tree, as delta debugging does: drop the other files, then try to drop
each statement (a class, a function, a line of a body), each keyword argument, each element of a list
or tuple, and each decorator, keeping an edit whenever the oracle still reports the same cause, until
no edit is kept in a full pass. Larger pieces come first (the walk is breadth first), so whole classes
and training code go before single lines. Entry, inputs and call arguments stay as generated.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from .generator import Program
from .oracle import check, haiku_counts

_BODY_FIELDS = ("body", "orelse", "finalbody")


def _lists(tree: ast.AST) -> Iterator[tuple[int, str, int]]:
    """(node index in the walk, field, length) of every list of droppable pieces, outermost first."""
    for index, node in enumerate(ast.walk(tree)):
        for name in _BODY_FIELDS:
            items = getattr(node, name, None)
            if isinstance(items, list) and items:  # a lambda's or an if-expression's `body` is one node
                yield index, name, len(items)
        if isinstance(node, ast.Call) and node.keywords:
            yield index, "keywords", len(node.keywords)
        if isinstance(node, (ast.List, ast.Tuple)) and isinstance(node.ctx, ast.Load) and len(node.elts) > 1:
            yield index, "elts", len(node.elts)
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.decorator_list:
            yield index, "decorator_list", len(node.decorator_list)


def _chunks(length: int) -> Iterator[tuple[int, int]]:
    """Slices to try dropping, halves first then smaller (as ddmin does), down to single pieces."""
    size = max(1, length // 2)
    while True:
        for start in range(0, length, size):
            yield start, min(length, start + size)
        if size == 1:
            return
        size //= 2


def _without(tree: ast.AST, index: int, name: str, chunk: tuple[int, int]) -> str | None:
    """The source with a slice of one list dropped (an emptied body becomes `pass`), or None if invalid."""
    edited = copy.deepcopy(tree)
    node = next(n for i, n in enumerate(ast.walk(edited)) if i == index)
    items = getattr(node, name)
    if any(isinstance(item, ast.Return) for item in items[chunk[0] : chunk[1]]):
        return None  # a function that returns nothing is no longer the program a person wrote
    del items[chunk[0] : chunk[1]]
    if name == "body" and not items:
        if isinstance(node, ast.Module):
            return None
        items.append(ast.Pass())
    try:
        source = ast.unparse(ast.fix_missing_locations(edited))
        compile(source, "<shrunk>", "exec")
    except Exception:  # an edit that leaves no valid program (e.g. `nonlocal` without its binding)
        return None
    return source + "\n"


def _one_smaller(program: Program, keeps: Callable[[Program], bool]) -> Program | None:
    """The first smaller program that keeps the cause, or None when no single drop keeps it."""
    tree = ast.parse(program.source)
    for index, name, length in _lists(tree):
        for chunk in _chunks(length):
            source = _without(tree, index, name, chunk)
            if source is not None and source != program.source:
                candidate = replace(program, source=source)
                if keeps(candidate):
                    return candidate
    return None


def shrink(program: Program, target: str, cause: str, timeout: float = 60.0, log: Callable[[str], None] = print) -> Program:
    """The smallest program found whose migration to `target` still violates with `cause`."""

    def computes_something(candidate: Program) -> bool:
        """Still a model: it runs, returns arrays and, if the original had parameters, has some."""
        counts = haiku_counts(candidate)
        return counts is not None and counts[1] > 0 and (counts[0] > 0 or not original[0])

    def keeps(candidate: Program) -> bool:
        return check(candidate, target, timeout).cause == cause and computes_something(candidate)

    original = haiku_counts(program) or (0, 0)

    if program.other_files and keeps(replace(program, other_files={})):
        program = replace(program, other_files={})
    unparsed = replace(program, source=ast.unparse(ast.parse(program.source)) + "\n")
    if not keeps(unparsed):  # the printing itself changed what matters (rare): keep it as generated
        log("shrink: the re-printed program no longer shows the cause; kept as generated")
        return program
    program = unparsed
    while (smaller := _one_smaller(program, keeps)) is not None:
        program = smaller
        log(f"shrink: {len(program.source.splitlines())} lines")
    return program


def slug(cause: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", cause.lower()).strip("_")[:60]


def write_case(program: Program, target: str, cause: str, folder: Path) -> Path:
    """haiku.py and case.toml (as in fixtures/*/*/), ready to become a fixture once the bug is fixed."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "haiku.py").write_text(_spaced(program.source), encoding="utf-8")
    lines = [
        f"# Shrunk from generated program seed {program.seed}; migrating to {target} violates the oracle:",
        f"# {cause}",
        "# Once fixed: add the reviewed linen.py and nnx.py and move this case under fixtures/.",
        f'entry = "{program.entry}"',
        f"inputs = {_toml(program.inputs)}",
    ]
    if program.args:
        lines.append(f"args = {_toml(program.args)}")
    if program.train_args:
        lines.append(f"train_args = {_toml(program.train_args)}")
    if program.method_inputs:
        lines.append(f"method_inputs = {_toml(program.method_inputs)}")
    lines.append("steps = 2")
    (folder / "case.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _spaced(source: str) -> str:
    """PEP 8 blank lines back after `ast.unparse`: two before top-level definitions, one before methods."""
    out: list[str] = []
    for line in filter(None, source.splitlines()):  # the generator writes no multi-line strings
        stripped = line.lstrip()
        starts_definition = stripped.startswith(("def ", "class ", "@"))
        after_decorator = bool(out) and out[-1].lstrip().startswith("@")
        if starts_definition and out and not after_decorator and not out[-1].rstrip().endswith(":"):
            out += [""] * (2 if line == stripped else 1)
        elif line == stripped and out and out[-1].startswith(" ") and not stripped.startswith(("else", "elif", "except", "finally")):
            out += ["", ""]  # top-level code after a definition
        out.append(line)
    return "\n".join(out) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return repr(value)

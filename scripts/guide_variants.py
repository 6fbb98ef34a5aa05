"""Write the library-style variants of each guide section, for review as a diff before committing.

Haiku written as libraries are written keeps the model and its training code apart. From each
`fixtures/guide/<section>/haiku.py` this writes:

- `fixtures/guide/<section>_no_init/haiku.py`: the file up to its transform statement (no `init` anywhere);
- `fixtures/trees/<section>/haiku/model.py` (the same text) and `haiku/train.py` (the rest of the file,
  importing from `model` what it uses),

each with the section's `case.toml`. The goldens then come from `scripts/regenerate_goldens.py`.
Usage: python scripts/guide_variants.py [SECTION ...]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
GUIDE = FIXTURES / "guide"
TREES = FIXTURES / "trees"
NO_INIT = "_no_init"


def _transform_end(tree: ast.Module) -> int:
    """The last line of the section's module-level `name = hk.transform...(f)`."""
    ends = [node.end_lineno or node.lineno for node in tree.body if isinstance(node, ast.Assign) and "transform" in ast.unparse(node.value)]
    if not ends:
        raise SystemExit("no module-level transform statement")
    return ends[-1]


def _used_names(text: str) -> set[str]:
    return {node.id for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Name)}


def _bound(node: ast.Import | ast.ImportFrom) -> list[str]:
    return [(alias.asname or alias.name).split(".")[0] for alias in node.names]


def _without_unused_imports(lines: list[str], body: str) -> list[str]:
    """`lines` less the single-line module-level imports none of whose names `body` uses."""
    used = _used_names(body)
    dropped = {
        node.lineno
        for node in ast.parse("".join(lines)).body
        if isinstance(node, (ast.Import, ast.ImportFrom)) and node.lineno == node.end_lineno and not set(_bound(node)) & used
    }
    return [line for number, line in enumerate(lines, 1) if number not in dropped]


def _docstring_replaced(lines: list[str], docstring: str) -> list[str]:
    """`lines` with its module docstring (the first statement) replaced by `docstring`."""
    first = ast.parse("".join(lines)).body[0]
    assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant), "a guide file starts with its docstring"
    return [f'"""{docstring}"""\n', *lines[first.end_lineno or 1 :]]


def _section_title(text: str) -> str:
    docstring = ast.get_docstring(ast.parse(text)) or ""
    return docstring.split(":")[0].split("\n")[0].rstrip(".")


def _model_part(lines: list[str], end: int, title: str) -> str:
    kept = _docstring_replaced(lines[:end], f"{title}, written as a library: the model is transformed here, and nothing here calls `init`.")
    body = "".join(line for line in kept if not line.lstrip().startswith(("import ", "from ")))
    return "".join(_without_unused_imports(kept, body))


def _training_part(lines: list[str], end: int, model: str, title: str) -> str:
    """The rest of the section after its transform, with the imports it uses and the names of model.py it needs."""
    rest = "".join(lines[end:]).lstrip("\n")
    model_tree = ast.parse(model)
    defined = [
        name
        for node in model_tree.body
        if not isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr))
        for name in ([node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)])
    ]
    used = _used_names(rest)
    from_model = [name for name in defined if name in used]
    imports = [line for line in lines[:end] if line.startswith(("import ", "from "))]
    header = _without_unused_imports([f'"""{title}: its training code, in a file of its own that imports the model."""\n', "\n", *imports], rest)
    return "".join(header) + f"\nfrom model import {', '.join(from_model)}\n\n" + rest


def write_variants(section: Path) -> None:
    text = (section / "haiku.py").read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    end = _transform_end(ast.parse(text))
    title = _section_title(text)
    case = (section / "case.toml").read_text(encoding="utf-8")
    model = _model_part(lines, end, title)
    no_init = GUIDE / f"{section.name}{NO_INIT}"
    tree = TREES / section.name
    (tree / "haiku").mkdir(parents=True, exist_ok=True)
    no_init.mkdir(exist_ok=True)
    for path, content in {
        no_init / "haiku.py": model,
        no_init / "case.toml": case,
        tree / "haiku" / "model.py": model,
        tree / "haiku" / "train.py": _training_part(lines, end, model, title),
        tree / "case.toml": case + 'file = "train.py"  # the entry, as the training code imports it\n',
    }.items():
        path.write_text(content, encoding="utf-8")


def main(argv: list[str]) -> int:
    sections = [GUIDE / name for name in argv] or [p for p in sorted(GUIDE.iterdir()) if not p.name.endswith(NO_INIT)]
    for section in sections:
        write_variants(section)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The real-models suite: the manifest, the downloaded sources, the built case files, and the verdicts.

Each model in `models.toml` names a pinned public package, a file inside its wheel or sdist and the
classes and functions it needs. `build` takes those definitions verbatim from the downloaded file with
`ast` (plus the module-level definitions and imports they use, found automatically), replaces the
package's own imports by the stand-ins the manifest declares, and appends our entry line; the case file
imports only jax, numpy, haiku, optax and the standard library, so it runs anywhere haiku2flax does.

`outcome` is the one place that judges a verify result (see its docstring): keep it small, so that it
can be shared with other harness users.

Third-party code is downloaded at run time into `CACHE` and never committed: licences differ.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "models.toml"
EXPECTED = HERE / "expected.toml"
CACHE = Path(os.environ.get("HAIKU2FLAX_REAL_MODELS_CACHE", Path.home() / ".cache" / "haiku2flax-real-models"))
TARGETS = ("linen", "nnx")
RUNNABLE_ROOTS = frozenset({"jax", "jaxlib", "numpy", "haiku", "optax", "scipy"}) | sys.stdlib_module_names
ENTRY_IMPORTS = ("import haiku as hk", "import jax", "import jax.numpy as jnp")  # what our entry code uses
TODO_RULE = re.compile(r"# TODO\(haiku2flax:([^)]+)\)")

EQUIVALENT = "equivalent"
NOT_EQUIVALENT = "not equivalent"
TODO_AT_CAUSE = "TODO at cause"
SILENT = "silent breakage"
HAIKU_FAILED = "original does not run"
TIMEOUT = "timeout"
STATUSES = (EQUIVALENT, TODO_AT_CAUSE, SILENT, NOT_EQUIVALENT, HAIKU_FAILED, TIMEOUT)


class ManifestError(ValueError):
    """A manifest entry that cannot be built: names the model and what is missing."""


@dataclass(frozen=True)
class Take:
    """Definitions taken from one file of the package (`file` is its path inside the wheel or sdist)."""

    file: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Model:
    name: str
    package: str  # a key of [packages]
    pin: str  # "neuralgcm==1.2.2"
    takes: tuple[Take, ...]  # helpers first, the model's own file last
    stubs: str  # stand-ins for what the package's own imports provided
    glue: str  # between the helpers and the model's own file (e.g. a namespace standing for a module)
    entry_code: str  # ours: a forward function and `model = hk.transform(...)`, with an init call
    kind: str  # module / function / stateful / multi-method
    inputs: tuple[str, ...]
    entry: str = "model"
    args: dict = field(default_factory=dict)
    train_args: dict | None = None
    method: str | None = None
    method_inputs: dict = field(default_factory=dict)
    subsets: tuple[str, ...] = ()


def load_manifest(path: Path = MANIFEST) -> list[Model]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    packages = data["packages"]
    models = []
    for raw in data["model"]:
        package = packages[raw["package"]]
        takes = [Take(t["file"], tuple(t["take"])) for t in raw.get("also", [])]
        takes.append(Take(raw["file"], tuple(raw["take"])))
        models.append(
            Model(
                name=raw["name"],
                package=raw["package"],
                pin=package["pin"],
                takes=tuple(takes),
                stubs=textwrap.dedent(package.get("stubs", "")) + textwrap.dedent(raw.get("stubs", "")),
                glue=textwrap.dedent(raw.get("glue", "")),
                entry_code=textwrap.dedent(raw["entry_code"]),
                kind=raw["kind"],
                inputs=tuple(raw["inputs"]),
                entry=raw.get("entry", "model"),
                args=raw.get("args", {}),
                train_args=raw.get("train_args"),
                method=raw.get("method"),
                method_inputs=raw.get("method_inputs", {}),
                subsets=tuple(raw.get("subsets", ())),
            )
        )
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ManifestError(f"{path}: duplicate model names")
    return models


# --- downloading ---------------------------------------------------------------------------------------


def _distribution(pin: str) -> tuple[str, str]:
    name, version = pin.split("==")
    return re.sub(r"[-_.]+", "_", name).lower(), version


def archive(pin: str, cache: Path = CACHE) -> Path:
    """The wheel (or sdist) of `pin` in the cache, downloaded with `pip download --no-deps` if missing."""
    name, version = _distribution(pin)

    def found() -> Path | None:
        for path in sorted((cache / "dist").glob("*")):
            stem = path.name.lower().replace("-", "_")
            if stem.startswith(f"{name}_{version}_") or stem.startswith(f"{name}_{version}.tar"):
                return path
        return None

    if (path := found()) is None:
        (cache / "dist").mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(cache / "dist"), pin]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise ManifestError(f"pip download {pin} failed: {done.stderr.strip().splitlines()[-1:]}")
        path = found()
        if path is None:
            raise ManifestError(f"pip downloaded no archive for {pin} into {cache / 'dist'}")
    return path


def read_source(archive_path: Path, file: str) -> str:
    """`file` (a path inside the package, without an sdist's top folder) from a wheel or an sdist."""
    if archive_path.suffix == ".whl":
        with zipfile.ZipFile(archive_path) as wheel:
            return wheel.read(file).decode("utf-8")
    with tarfile.open(archive_path) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        member = sdist.extractfile(f"{top}/{file}")
        if member is None:
            raise ManifestError(f"{file} is not a file in {archive_path.name}")
        return member.read().decode("utf-8")


# --- building a case file -------------------------------------------------------------------------------


@dataclass
class _Extracted:
    future: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)
    unrunnable: dict[str, str] = field(default_factory=dict)  # name -> the import that bound it
    defined: set[str] = field(default_factory=set)


def _bound_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [n.id for target in node.targets for n in ast.walk(target) if isinstance(n, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _segment(lines: list[str], node: ast.stmt) -> str:
    """The statement's own text, decorators and comments inside it included."""
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "".join(lines[start - 1 : node.end_lineno])


def _import_of(node: ast.Import | ast.ImportFrom, alias: ast.alias) -> str:
    """One import statement binding only `alias`: an unused name must not pull in another package."""
    if isinstance(node, ast.Import):
        return ast.unparse(ast.Import([alias]))
    return ast.unparse(ast.ImportFrom(node.module, [alias], node.level))


def extract(text: str, take: Take, into: _Extracted) -> None:
    """Add `take.names` of `text`, and the module-level definitions and imports they use, to `into`.

    Names already in `into.defined` (the stand-ins, earlier takes) are not taken again.
    """
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    definitions: dict[str, ast.stmt] = {}
    imports: dict[str, tuple[ast.Import | ast.ImportFrom, ast.alias]] = {}
    for node in tree.body:
        for name in _bound_names(node):
            definitions.setdefault(name, node)
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                imports[bound] = (node, alias)
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            into.future.append(ast.unparse(node))
    nested = {name: _nested(tree, name, take.file) for name in take.names if "." in name}
    missing = [name for name in take.names if "." not in name and name not in definitions]
    if missing:
        raise ManifestError(f"{take.file}: no module-level {', '.join(missing)}")
    needed: set[int] = set()
    queue = [nested.get(name) or definitions[name] for name in take.names]
    while queue:
        node = queue.pop()
        if id(node) in needed:
            continue
        needed.add(id(node))
        for used in dict.fromkeys(n.id for n in ast.walk(node) if isinstance(n, ast.Name)):  # in source order: the same case file each run
            if used in into.defined:
                continue
            if used in definitions:
                queue.append(definitions[used])
            elif used in imports:
                statement, alias = imports[used]
                if isinstance(statement, ast.ImportFrom):
                    runnable = not statement.level and (statement.module or "").split(".")[0] in RUNNABLE_ROOTS
                else:
                    runnable = alias.name.split(".")[0] in RUNNABLE_ROOTS
                if runnable:
                    line = _import_of(statement, alias)
                    if line not in into.imports:
                        into.imports.append(line)
                else:
                    into.unrunnable.setdefault(used, ast.unparse(statement).splitlines()[0])
    for node in [*tree.body, *nested.values()]:
        if id(node) in needed and not set(_bound_names(node)) <= into.defined:
            text = _segment(lines, node) if node in tree.body else "".join(lines[node.lineno - 1 : node.end_lineno])
            into.code.append(textwrap.dedent(text))
            into.defined.update(_bound_names(node))


def _nested(tree: ast.Module, dotted: str, file: str) -> ast.stmt:
    """`Outer.inner.func`: a function or class defined inside others (a closure, a property's function).

    It is taken out to module level as it is written, without its decorators (`@property` would not
    make sense there); what it closes over comes from the stand-ins.
    """
    body: list[ast.stmt] = tree.body
    node: ast.stmt | None = None
    for part in dotted.split("."):
        node = next((n for n in body if isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name == part), None)
        if node is None:
            raise ManifestError(f"{file}: no definition {dotted} (at {part!r})")
        body = node.body
    assert node is not None
    return node


def build(model: Model, cache: Path = CACHE) -> Path:
    """Write the model's case file (`cache/cases/NAME/haiku.py`) and return its path."""
    source_archive = archive(model.pin, cache)
    stubs = ast.parse(model.stubs).body
    stubbed = {name for node in stubs for name in _bound_names(node)}
    stubbed |= {
        alias.asname or alias.name.split(".")[0]
        for node in stubs
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    glued = {name for node in ast.parse(model.glue).body for name in _bound_names(node)}
    extracted = _Extracted(defined=set(stubbed))
    for number, take in enumerate(model.takes, 1):
        if number == len(model.takes):  # the model's own file: the glue binds its module-qualified helpers
            extracted.defined |= glued
            extracted.code.append(model.glue)
        extract(read_source(source_archive, take.file), take, extracted)
    unresolved = {n: imp for n, imp in extracted.unrunnable.items() if n not in extracted.defined}
    if unresolved:
        listed = "; ".join(f"{name} (from `{imp}`)" for name, imp in sorted(unresolved.items()))
        raise ManifestError(f"{model.name}: needs a stand-in or an `also` extraction for {listed}")
    header = f"# {model.name}, taken from {model.pin}, {model.takes[-1].file}; built by bench/real_models (not committed)\n"
    parts = [
        header + "\n".join(dict.fromkeys(extracted.future)),
        "\n".join(dict.fromkeys([*extracted.imports, *ENTRY_IMPORTS])),
        model.stubs.strip(),
        *(code.rstrip() for code in extracted.code),
        model.entry_code.strip(),
    ]
    text = "\n\n\n".join(part for part in parts if part.strip()) + "\n"
    path = cache / "cases" / re.sub(r"[^\w.-]", "_", model.name) / "haiku.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- judging a verify result ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: str  # one of STATUSES
    reason: str = ""
    todo_rules: tuple[str, ...] = ()  # the TODO rule ids the rewrite left, in order

    def as_dict(self) -> dict[str, object]:
        return {"status": self.status, "reason": self.reason, "todo_rules": list(self.todo_rules)}


def todo_rules(code: str) -> list[str]:
    return TODO_RULE.findall(code)


def _statements_at(tree: ast.Module, line: int) -> list[ast.stmt]:
    """The statements containing `line`, outermost first."""
    chain: list[ast.stmt] = []
    body: list[ast.stmt] = tree.body
    while True:
        inside = [s for s in body if s.lineno <= line <= (s.end_lineno or s.lineno)]
        if not inside:
            return chain
        chain.append(inside[0])
        body = [child for name in ("body", "orelse", "finalbody", "handlers") for child in getattr(inside[0], name, [])]
        body += [case for case in getattr(inside[0], "cases", [])]


def _has_todo_above(lines: list[str], first_line: int) -> bool:
    """A haiku2flax TODO in the block of comment lines directly above line `first_line` (1-based)."""
    index = first_line - 2
    while index >= 0 and lines[index].strip().startswith("#"):
        if TODO_RULE.search(lines[index]):
            return True
        index -= 1
    return False


def todo_at(code: str, line: int) -> bool:
    """Whether the statement at `line` of `code`, or one enclosing it, carries a haiku2flax TODO."""
    lines = code.splitlines()
    chain = _statements_at(ast.parse(code), line)
    if not chain:
        return False
    innermost = chain[-1]
    if any(TODO_RULE.search(text) for text in lines[innermost.lineno - 1 : innermost.end_lineno]):
        if not isinstance(innermost, ast.FunctionDef | ast.ClassDef):
            return True
    return any(
        _has_todo_above(lines, min([s.lineno] + [d.lineno for d in getattr(s, "decorator_list", [])])) for s in chain
    )


def _short(message: str) -> str:
    """The first line of an error, without the documentation links Flax appends, for a table cell."""
    first = message.splitlines()[0] if message else ""
    return re.sub(r"\s*\(https?://[^)]*\)?", "", first)[:140]


def _entry_lines(code: str, entry: str) -> list[int]:
    """Where the rewritten file binds (or leaves) the entry: the statement the harness looked for."""
    return [node.lineno for node in ast.parse(code).body if entry in _bound_names(node)]


def outcome(result, converted_code: str) -> Outcome:
    """Judge a `verify` result: equivalent, not equivalent, or could not run with or without a TODO at its cause.

    "TODO at cause": a statement of the rewritten file the error passed through (the failing one or a
    caller of it), or one enclosing it, carries a `# TODO(haiku2flax:...)`. Otherwise the rewrite looked
    finished and broke: a silent breakage, a bug of the tool, as is every "not equivalent".
    """
    rules = tuple(todo_rules(converted_code))
    if result.verdict == EQUIVALENT:
        return Outcome(EQUIVALENT, "", rules)
    if result.verdict == NOT_EQUIVALENT:
        return Outcome(NOT_EQUIVALENT, _short(result.problems[0]) if result.problems else "", rules)
    reason = _short(result.error or "")
    rewritten = [line for role, line in result.error_frames if role == result.target]  # outermost first
    if rewritten:
        reason += f" (rewritten line {rewritten[-1]})"
    lines = rewritten or (_entry_lines(converted_code, result.entry) if "EntryError" in reason else [])
    at_cause = any(todo_at(converted_code, line) for line in lines)
    return Outcome(TODO_AT_CAUSE if at_cause else SILENT, reason, rules)

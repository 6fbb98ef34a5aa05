"""The tree being migrated, indexed before any file is rewritten: what a file needs to know of the others.

Haiku sizes a model from the input of `init`, wherever that call is; libraries transform the model in
one file (`net = hk.transform(forward)`) and initialise it in another (`from model import net` …
`params = net.init(rng, batch)`). Each file is still rewritten alone (in worker processes with `-j`),
so the runner indexes the tree once, in the parent, and hands each file the part it needs
(`FileView`): the transforms it imports from other files of the tree. A file that never imports
Haiku but uses such a transform is migrated too.

The index reads the files with `ast` (a fraction of a LibCST parse) and only the files that can hold
what it looks for: those that say `haiku`, then those that name a transform found there.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from pathlib import Path

FROM_IMPORT = re.compile(r"^\s*from\s+([\w.]+)\s+import\b", re.MULTILINE)
PLAIN_IMPORT = re.compile(r"^\s*import\s+([\w.]+)", re.MULTILINE)
TRANSFORM_APIS = {"transform": (False, False), "transform_with_state": (True, False), "multi_transform": (False, True)}
MODEL_METHODS = ("init", "apply")


@dataclass(frozen=True)
class TreeTransform:
    """A module-level `name = hk.transform(f)` of one file of the tree."""

    name: str
    module: str  # the dotted name its file is imported by
    with_state: bool
    apply_rng: bool
    multi: bool
    # its own file calls `name.init` / `name.apply`: the model is built there (else NNX: `make_<name>`); once
    # that file is converted, whether its conversion made the factory (`TreeIndex.with_classes`)
    used_in_file: bool
    model_class: str | None  # the class its model is once converted: the module its forward builds, or the forward as a class
    first_input: str | None = None  # the forward's first parameter: `init(key, x=batch)` passes the input by it


@dataclass(frozen=True)
class FileView:
    """What one file gets of the index: the transforms and module classes of other files it imports, by
    local name; a class with what its converted file says of it (NNX: `targets.nnx.ClassInfo`), once
    that file is converted."""

    imported: Mapping[str, TreeTransform] = field(default_factory=dict)
    class_imports: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # local name -> (module, class)
    classes: Mapping[str, Any] = field(default_factory=dict)  # local name -> what the conversion of its file said
    models: Mapping[str, Any] = field(default_factory=dict)  # imported transform -> what was said of its model's class
    sources: Mapping[str, str] = field(default_factory=dict)  # module -> text, of the files it imports transforms from
    # `import model` … `model.net`: local name the conversion reads `model.net` as -> (module as imported, `model`, `net`)
    qualified: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)


EMPTY_VIEW = FileView()


@dataclass(frozen=True)
class TreeIndex:
    """Each file's view, by its absolute path (picklable: workers get it as is), and the files whose module
    classes other files use (`providers`, converted first, by `module` name: what they say goes to their users)."""

    views: Mapping[str, FileView] = field(default_factory=dict)
    providers: Mapping[str, str] = field(default_factory=dict)  # absolute path -> module name

    def needs(self, path: Path) -> set[str]:
        """The modules whose conversion `path`'s own needs first."""
        view = self.view(path)
        return {module for module, _ in view.class_imports.values()} | {made.module for made in view.imported.values()}

    def view(self, path: Path) -> FileView:
        return self.views.get(os.path.abspath(path), EMPTY_VIEW)

    def with_classes(self, converted: Mapping[str, Mapping[str, Any]]) -> TreeIndex:
        """The index once the providers are converted: `converted` is module -> class name -> what it says."""
        def said(module: str, name: str | None) -> Any:
            return converted.get(module, {}).get(name or "")

        def built(made: TreeTransform) -> TreeTransform:
            """`made` as its file's conversion built it: where the model is (a factory, or in the file)."""
            if made.module not in converted:
                return made
            return replace(made, used_in_file=factory_name(made.name) not in converted[made.module])

        views = {
            path: replace(
                view,
                imported={local: built(made) for local, made in view.imported.items()},
                classes={local: said(*made) for local, made in view.class_imports.items() if said(*made) is not None},
                models={local: said(made.module, made.model_class) for local, made in view.imported.items() if said(made.module, made.model_class) is not None},
            )
            for path, view in self.views.items()
        }
        return TreeIndex(views, self.providers)


def factory_name(transform: str) -> str:
    """NNX: the function a transform becomes when the code holding its `init` builds the model."""
    return f"make_{transform}"


def index_tree(paths: Collection[Path]) -> TreeIndex:
    """The transforms each Python file of `paths` imports from another file of `paths`."""
    python = [path for path in paths if path.suffix == ".py"]
    if len(python) < 2:
        return TreeIndex()
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in python])
    while os.path.exists(os.path.join(root, "__init__.py")) and os.path.dirname(root) != root:
        root = os.path.dirname(root)  # from above the package: `pkg.model` is a name the files may use
    by_module: dict[str, dict[str, TreeTransform]] = {}
    classes: dict[str, tuple[str, set[str]]] = {}  # importable module name -> (its module name, its Haiku module classes)
    paths_of: dict[str, Path] = {}  # module name -> its file
    texts: dict[str, str] = {}  # module name -> its text, for the files that transform a model
    imports: dict[Path, list[str]] = {}  # what each file imports from (`from X import`), to parse only those that matter
    for path in python:
        text = _read(path)
        if text is None:
            continue
        imports[path] = FROM_IMPORT.findall(text) + PLAIN_IMPORT.findall(text)
        tree = _parse(text) if "haiku" in text else None
        module = _module_name(path, root)
        transforms = _transforms(tree, module) if tree is not None and "transform" in text else {}
        modules = module_classes(tree) if tree is not None else set()
        paths_of[module] = path
        if transforms:
            texts[module] = text
        for name in importable_names(path, root):
            if transforms:
                by_module.setdefault(name, {}).update(transforms)
            if modules:
                classes[name] = (module, modules)
    if not by_module and not classes:
        return TreeIndex()
    views: dict[str, FileView] = {}
    providers: dict[str, str] = {}
    for path, sources in imports.items():
        if not any(source in by_module or source in classes or source.startswith(".") for source in sources):
            continue
        tree = _parse(_read(path) or "")
        if tree is None:
            continue
        module = _module_name(path, root)
        imported = _imported_transforms(tree, by_module, module)
        class_imports = _imported_classes(tree, classes, module)
        qualified = _qualified_uses(tree, by_module, classes, module)
        for local, (source, _, attribute) in qualified.items():
            if attribute in by_module.get(source, {}):
                imported[local] = by_module[source][attribute]
            else:
                class_imports[local] = (classes[source][0], attribute)
        for source_module in [module for module, _ in class_imports.values()] + [made.module for made in imported.values()]:
            providers[os.path.abspath(paths_of[source_module])] = source_module
        if imported or class_imports:
            texts_of = {made.module: texts[made.module] for made in imported.values()}
            views[os.path.abspath(path)] = FileView(imported, class_imports, sources=texts_of, qualified=qualified)
    return TreeIndex(views, providers)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # the file's own conversion reports it


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None  # the file's own conversion reports it


def _module_name(path: Path, root: str) -> str:
    relative = os.path.relpath(os.path.abspath(path), root)
    return relative[: -len(".py")].replace(os.sep, ".").removesuffix(".__init__")


def importable_names(path: Path, root: str) -> list[str]:
    """`pkg.model` and `model` for `pkg/model.py`: how a file of the tree may import it."""
    parts = _module_name(path, root).split(".")
    return [".".join(parts[i:]) for i in range(len(parts))]


def _haiku_aliases(tree: ast.Module) -> set[str]:
    """Local names a module-level import binds to the `haiku` module (`import haiku as hk`)."""
    return {alias.asname or alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names if alias.name == "haiku"}


def _haiku_api(node: ast.expr, aliases: set[str]) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
        return node.attr
    return None


def _read_transform(value: ast.expr, aliases: set[str]) -> tuple[bool, bool, bool, ast.expr] | None:
    """(with_state, apply takes an rng, multi, the forward) of `hk.transform(f)`, under an optional `hk.without_apply_rng`."""
    apply_rng = True
    if isinstance(value, ast.Call) and _haiku_api(value.func, aliases) == "without_apply_rng" and len(value.args) == 1:
        apply_rng, value = False, value.args[0]
    if not isinstance(value, ast.Call) or len(value.args) != 1:
        return None
    kind = TRANSFORM_APIS.get(_haiku_api(value.func, aliases) or "")
    return None if kind is None else (kind[0], apply_rng, kind[1], value.args[0])


def _transforms(tree: ast.Module, module: str) -> dict[str, TreeTransform]:
    aliases = _haiku_aliases(tree)
    read = {
        statement.targets[0].id: made
        for statement in tree.body
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name)
        and (made := _read_transform(statement.value, aliases)) is not None
    }
    if not read:
        return {}
    used = {
        node.value.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr in MODEL_METHODS
    }
    functions = {statement.name: statement for statement in tree.body if isinstance(statement, ast.FunctionDef)}
    taken = _module_level_names(tree)
    return {
        name: TreeTransform(
            name, module, *made[:3], used_in_file=name in used, model_class=_model_class(made[3], functions, taken),
            first_input=_first_parameter(made[3], functions),
        )
        for name, made in read.items()
    }


def _first_parameter(forward: ast.expr | None, functions: Mapping[str, ast.FunctionDef]) -> str | None:
    """`x` for a forward `def f(x, training)` or `lambda x: ...` of the file, or for a multi_transform's
    `def f(): ...; init = lambda x: module(x); return init, (...)`."""
    if isinstance(forward, ast.Name) and forward.id in functions:
        function = functions[forward.id]
        positional = [*function.args.posonlyargs, *function.args.args]
        if positional:
            return positional[0].arg
        forward = _multi_init(function)
    positional = [*forward.args.posonlyargs, *forward.args.args] if isinstance(forward, ast.Lambda) else []
    return positional[0].arg if positional else None


def _multi_init(function: ast.FunctionDef) -> ast.expr | None:
    """`lambda x: module(x)`, the init function a multi_transform's forward returns first."""
    returned = [node.value for node in function.body if isinstance(node, ast.Return)]
    init = returned[0].elts[0] if returned and isinstance(returned[0], ast.Tuple) and returned[0].elts else None
    bound = {t.id: node.value for node in function.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
    return bound.get(init.id) if isinstance(init, ast.Name) else init


def _module_level_names(tree: ast.Module) -> set[str]:
    """What `analysis.module_level_names` reads, from the `ast` of a file."""
    names = set()
    for statement in tree.body:
        if isinstance(statement, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(statement.name)
        elif isinstance(statement, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in statement.names}
        elif isinstance(statement, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            names |= {node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)}
    return names


def _model_class(forward: ast.expr, functions: Mapping[str, ast.FunctionDef], taken: Collection[str]) -> str | None:
    """`Model` for a forward that only builds and calls `Model(...)`, else the class its conversion makes
    of it (`analysis.forward_class_name`); None for a forward of another file."""
    if isinstance(forward, ast.Lambda):
        return _built_module(forward.body)
    if not isinstance(forward, ast.Name) or forward.id not in functions:
        return None
    body = [s for s in functions[forward.id].body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    built = _built_module(body[0].value) if len(body) == 1 and isinstance(body[0], ast.Return) and body[0].value is not None else None
    from .analysis import forward_class_name  # here: analysis imports the pipeline, which imports this module

    return built or forward_class_name(forward.id, taken)


def _built_module(value: ast.expr) -> str | None:
    """`Model` for `Model(...)(...)`."""
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Call) and isinstance(value.func.func, ast.Name):
        return value.func.func.id
    return None


def module_classes(tree: ast.Module) -> set[str]:
    """Module-level classes deriving from `hk.Module` (directly, or through another one of the file)."""
    aliases = _haiku_aliases(tree)
    found: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, ast.ClassDef) and any(
            _haiku_api(base, aliases) == "Module" or (isinstance(base, ast.Name) and base.id in found) for base in statement.bases
        ):
            found.add(statement.name)
    return found


def _imported_classes(tree: ast.Module, classes: Mapping[str, tuple[str, set[str]]], module: str) -> dict[str, tuple[str, str]]:
    """`from layers import Block [as B]` -> {local name: (module, class)} for module classes of other files."""
    found = {}
    for node, source in _from_imports(tree, module):
        defined = classes.get(source)
        if defined is None or defined[0] == module:
            continue
        for alias in node.names:
            if alias.name in defined[1]:
                found[alias.asname or alias.name] = (defined[0], alias.name)
    return found


def _from_imports(tree: ast.Module, module: str) -> list[tuple[ast.ImportFrom, str]]:
    """Every `from X import ...` of the file, with X resolved against the file's package when relative."""
    package = module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                base = package[: len(package) - node.level + 1] if node.level <= len(package) + 1 else []
                source = ".".join([*base, *([source] if source else [])])
            found.append((node, source))
    return found


def _imported_transforms(tree: ast.Module, by_module: Mapping[str, Mapping[str, TreeTransform]], module: str) -> dict[str, TreeTransform]:
    """`from model import net [as n]` (also relative) -> {local name: the transform}."""
    imported = {}
    for node, source in _from_imports(tree, module):
        transforms = by_module.get(source, {})
        for alias in node.names:
            transform = transforms.get(alias.name)
            if transform is not None and transform.module != module:
                imported[alias.asname or alias.name] = transform
    return imported


def _qualified_uses(
    tree: ast.Module, by_module: Mapping[str, Mapping[str, TreeTransform]], classes: Mapping[str, tuple[str, set[str]]], module: str
) -> dict[str, tuple[str, str, str]]:
    """`import model [as m]` … `model.net` / `model.Block`: a local name for each transform or module class of
    another file of the tree the file reaches through its module (see `FileView.qualified`): the attribute's
    own name where the file does not use it, else `<module>_<name>`; none where both are taken."""
    bound = {}  # the expression the file reaches the module by (`pkg.model`, or its `as` name) -> the module's name
    for statement in tree.body:
        if isinstance(statement, ast.Import):
            for alias in statement.names:
                if alias.name != module and (alias.name in by_module or alias.name in classes):
                    bound[alias.asname or alias.name] = alias.name
    if not bound:
        return {}
    taken = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} | {
        node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    found: dict[str, tuple[str, str, str]] = {}
    for node in ast.walk(tree):
        reached = ast_dotted_name(node.value) if isinstance(node, ast.Attribute) else None
        source = bound.get(reached or "")
        if source is None or reached is None or not isinstance(node, ast.Attribute):
            continue
        attribute = node.attr
        if attribute not in by_module.get(source, {}) and attribute not in classes.get(source, ("", set()))[1]:
            continue
        if (source, reached, attribute) in found.values() or not isinstance(node.ctx, ast.Load):
            continue  # (a file assigning `model.net` is left to read it through the module)
        local = next((name for name in (attribute, f"{reached.replace('.', '_')}_{attribute}") if name not in taken and name not in found), None)
        if local is not None:
            found[local] = (source, reached, attribute)
    return found


def ast_dotted_name(node: ast.expr) -> str | None:
    """`pkg.model` for that `ast` expression, None for anything but names and attributes (`names.dotted_name`
    reads LibCST's)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = ast_dotted_name(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None

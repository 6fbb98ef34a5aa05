"""Import the Haiku original and the Flax rewrite as modules, and find the model each one defines."""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import itertools
import os
import re
import sys
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax.linen as nn
import haiku as hk
import jax
from flax import nnx

_module_ids = itertools.count()


class EntryError(LookupError):
    """The entry point named on the command line is not in the file, or is not something we can run."""


def _module_prefix(role: str) -> str:
    return f"_haiku2flax_{role}_"


_LOADED_NAME = re.compile("^" + _module_prefix("(?P<role>[a-z]+)"))  # the modules `load_module` ran, by role


_load_folders: set[str] = set()  # the folders `load_module` made importable, in this process


def load_module(source: str, path: Path, role: str) -> types.ModuleType:
    """Execute `source` as a fresh module, as if it were `path` (its folder importable for siblings).

    The module is registered in `sys.modules` under a unique name: dataclasses (Linen modules) and
    pickling look their class's module up there. The folder goes to the *end* of `sys.path`: a fixture
    named `haiku.py` must not shadow the haiku package.
    """
    stem = re.sub(r"\W", "_", path.stem)
    name = f"{_module_prefix(role)}{stem}_{next(_module_ids)}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    folder = str(path.resolve().parent)
    sys.path.append(folder)
    argv, sys.argv = sys.argv, [str(path)]  # a module-level argparse reads the file's own arguments, not ours
    _forget_shadowed_by(folder)
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    except SystemExit as exit:  # `sys.exit()` at import: the file cannot be imported, whatever the code
        raise UserCodeExit(f"{path} called sys.exit({exit.code!r}) while it was imported") from None
    finally:
        sys.argv = argv
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    return module


def _forget_shadowed_by(folder: str) -> None:
    """Drop from `sys.modules` what an earlier load imported from another folder under a name a file of
    `folder` has (`from model import net`: the Haiku tree and its rewrite name their files alike, and each
    side must import its own). What `folder` itself provided stays, so the classes the harness matches
    (a house library's layers) keep their identity."""
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or _LOADED_NAME.match(name):
            continue
        source_folder = next((f for f in _load_folders if os.path.abspath(file).startswith(f + os.sep)), None)
        if source_folder is None or source_folder == folder:
            continue  # the common case (jax, flax, ...): no file system look-up
        top = name.split(".")[0]
        if os.path.exists(os.path.join(folder, top + ".py")) or os.path.isdir(os.path.join(folder, top)):
            del sys.modules[name]
    _load_folders.add(folder)


class UserCodeExit(RuntimeError):
    """The user's code called `sys.exit` (or raised SystemExit): the harness could not run it."""


def describe_failure(error: BaseException) -> str:
    """One line for what went wrong in the user's code: `ValueError: ...`, or the exit it called."""
    if isinstance(error, SystemExit):
        return f"the code called sys.exit({error.code!r})"
    return f"{type(error).__name__}: {error}"


def loaded_frames(error: BaseException) -> list[tuple[str, int]]:
    """(role, line) of each traceback frame that ran in a file `load_module` executed, in traceback order.

    Maps an error back to the Haiku original or to the rewrite (their frames share the file name); the
    chain of causes is followed, so an error re-raised by the harness still points at the user's line.
    """
    frames: list[tuple[str, int]] = []
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        for frame, line in traceback.walk_tb(cause.__traceback__):
            match = _LOADED_NAME.match(frame.f_globals.get("__name__", ""))
            if match and (match["role"], line) not in frames:
                frames.append((match["role"], line))
        cause = cause.__cause__ or cause.__context__
    return frames


@functools.lru_cache(maxsize=64)
def imported(source: str, path: Path, role: str) -> types.ModuleType:
    """`load_module`, once per process for the same text: files run `init` at import, which compiles.

    The harness never mutates what it imports (it copies NNX models before running them), so sharing is
    safe for its callers; code that mutates a module should call `load_module` itself.
    """
    return load_module(source, path, role)


@dataclass(frozen=True)
class HaikuApply:
    """One pure apply function, normalised to `apply(params, state, rng, *args, **kwargs) -> (out, state)`."""

    index: int
    fn: Callable[..., Any]


@dataclass(frozen=True)
class HaikuEntry:
    """A Haiku model normalised to `init(rng, *a, **k) -> (params, state)` and its apply functions."""

    name: str
    init: Callable[..., Any]
    applies: tuple[HaikuApply, ...]
    is_multi: bool


def _takes_rng(apply_fn: Callable[..., Any]) -> bool:
    """`hk.without_apply_rng` drops the `rng` parameter from the apply signature."""
    return "rng" in inspect.signature(apply_fn).parameters


def _uniform_apply(fn: Callable[..., Any], with_state: bool) -> Callable[..., Any]:
    takes_rng = _takes_rng(fn)

    def apply(params: Any, state: Any, rng: Any, *args: Any, **kwargs: Any) -> Any:
        lead = (params, state) if with_state else (params,)
        out = fn(*lead, *((rng,) if takes_rng else ()), *args, **kwargs)
        return out if with_state else (out, state)

    return apply


def haiku_entry(module: types.ModuleType, name: str) -> HaikuEntry:
    """The Haiku model bound to `name`: a transformed object, or a function we transform ourselves."""
    if not hasattr(module, name):
        raise EntryError(f"{name!r} is not defined at module level in the Haiku file")
    obj = getattr(module, name)
    if isinstance(obj, (hk.Transformed, hk.TransformedWithState, hk.MultiTransformed, hk.MultiTransformedWithState)):
        with_state = isinstance(obj, (hk.TransformedWithState, hk.MultiTransformedWithState))
        is_multi = isinstance(obj, (hk.MultiTransformed, hk.MultiTransformedWithState))
    elif inspect.isfunction(obj):
        obj, with_state, is_multi = hk.transform_with_state(obj), True, False
    else:
        raise EntryError(
            f"{name!r} is a {type(obj).__name__}: expected a function passed to hk.transform, or an "
            "hk.transform / transform_with_state / without_apply_rng / multi_transform object"
        )

    def init(rng: Any, *args: Any, **kwargs: Any) -> Any:
        out = obj.init(rng, *args, **kwargs)
        return out if with_state else (out, {})

    apply_fns = jax.tree.leaves(obj.apply) if is_multi else [obj.apply]
    applies = tuple(HaikuApply(i, _uniform_apply(fn, with_state)) for i, fn in enumerate(apply_fns))
    return HaikuEntry(name, init, applies, is_multi)


def camel_case(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _names_bound_to_transforms_of(haiku_source: str, function_name: str) -> list[str]:
    """Module-level `X = hk.transform(function_name)` (or any call wrapping it): the names X."""
    names = []
    for node in ast.parse(haiku_source).body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(bound := node.targets[0], ast.Name)
            and isinstance(node.value, ast.Call)
            and any(isinstance(n, ast.Name) and n.id == function_name for n in ast.walk(node.value))
        ):
            names.append(bound.id)
    return names


def find_flax_model(
    flax_module: types.ModuleType, haiku_source: str, entry: str, target: str, sample: Any = None
) -> Any:
    """The converted model that stands for the Haiku entry `entry` in the rewritten file.

    The engine's conventions, tried in order (extend here when they grow):
    1. the rewrite binds the model to the same module-level name as the Haiku transformed object
       (`model = hk.transform(forward)` -> `model = Model(256, 10)` / `Model(784, …, rngs=nnx.Rngs(0))`);
    2. `entry` is a function: the names the Haiku file binds to a transform of it, as in 1;
    3. NNX, a transform its file never initialises: its factory `make_<name>(sample, *, rngs)`, called
       on `sample` (the first input `verify` runs) with `rngs=nnx.Rngs(0)`;
    4. a class CamelCase(entry) (`forward` -> `Forward`), built without arguments (NNX: `rngs=` only).
    Linen gives an unbound `nn.Module` instance, NNX a live `nnx.Module` instance.
    """
    model_type: type[Any] = nn.Module if target == "linen" else nnx.Module  # user classes: any constructor
    names = [entry, *_names_bound_to_transforms_of(haiku_source, entry)]
    for name in names:
        if isinstance(getattr(flax_module, name, None), model_type):
            return getattr(flax_module, name)
    factory = next((getattr(flax_module, f"make_{name}") for name in names if callable(getattr(flax_module, f"make_{name}", None))), None)
    if target == "nnx" and factory is not None and sample is not None:
        return factory(sample, rngs=nnx.Rngs(0))
    cls = getattr(flax_module, camel_case(entry), None)
    if isinstance(cls, type) and issubclass(cls, model_type):
        return cls() if target == "linen" else cls(rngs=nnx.Rngs(0))
    raise EntryError(
        f"no {target} model for {entry!r} in the rewritten file: expected a module-level {model_type.__module__}."
        f"{model_type.__name__} instance named {entry!r} (or bound where the Haiku file transforms it), or a "
        f"class {camel_case(entry)}"
    )

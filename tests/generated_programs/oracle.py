"""The oracle: is the migration of one program to one target equivalent, an honest TODO, or a violation?

Per program and target: `migrate`'s output parses and a second run changes nothing; then `verify`
(2 SGD steps) says equivalent, or the run fails at a statement of the rewrite that carries a
`# TODO(haiku2flax…)` comment (on the statement or just above it, at any frame of the failing call
chain). Everything else is a violation, with a cause that groups violations of the same kind:

- `crash`: the rewriter raised;
- `does not parse` / `not idempotent`: of the model file or of the other files of the program;
- `not equivalent`: verify compared and found a difference, and the rewrite has no TODO at all;
- `runtime failure without TODO`: the rewrite failed at a statement with no TODO in its call chain;
- `could not run without TODO`: verify failed outside the rewrite's code (the harness found no model,
  or the weights did not map) and the rewrite has no TODO at all;
- `timeout`, and `invalid program`: the Haiku original itself does not run (a generator bug).

Runs in process (a fresh interpreter per program would spend its time importing jax).
"""

from __future__ import annotations

import ast
import itertools
import re
import signal
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import jax

import haiku2flax
from haiku2flax.engine import ConversionError, convert_source
from haiku2flax.harness.equivalence import verify
from haiku2flax.harness.inputs import make_inputs, parse_input_spec
from haiku2flax.harness.loading import haiku_entry, imported

from .generator import Program

TODO_MARK = "TODO(haiku2flax"
STEPS = 2
CLEAR_EVERY = 25
_programs_run = itertools.count()


class ProgramTimeout(BaseException):
    """Raised by the alarm; a BaseException so that `verify`, which reports any Exception, lets it through."""


@dataclass(frozen=True)
class Outcome:
    """What the oracle found for one program and target."""

    verdict: str  # "equivalent", "todo" or "violation"
    cause: str = ""  # violations: the group; todo: what failed at the TODO
    detail: str = ""  # the message or report behind the cause
    converted: str = ""
    seconds: float = 0.0


@contextmanager
def time_limit(seconds: float):
    """At most `seconds` of this process's CPU time (all threads): a loaded machine does not trip it."""

    def expire(signum, frame):
        raise ProgramTimeout(f"over {seconds:g} s of CPU time")

    previous = signal.signal(signal.SIGPROF, expire)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def _normalised(text: str, limit: int = 90) -> str:
    """A message as a grouping key: first line, numbers and quoted names folded, bounded length."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = re.sub(r"'[^']*'", "'…'", line)
    line = re.sub(r"\d+", "N", line)
    return line[:limit]


def _crash_cause(error: BaseException) -> str:
    """`crash: KeyError in rule_x`: the innermost frame of the tool names where it broke."""
    package = str(Path(haiku2flax.__file__).parent)
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(package)]
    where = f" in {Path(frames[-1].filename).stem}.{frames[-1].name}" if frames else ""
    return f"crash: {type(error).__name__}{where}"


def statement_has_todo(source: str, line: int) -> bool:
    """Whether the innermost statement spanning `line` carries a TODO: on its lines or in the comments above."""
    lines = source.splitlines()
    spans = [
        (node.lineno, node.end_lineno or node.lineno)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.stmt) and node.lineno <= line <= (node.end_lineno or node.lineno)
    ]
    if not spans:
        return False
    start, end = max(spans)  # the innermost statement starts last
    if any(TODO_MARK in text for text in lines[start - 1 : end]):
        return True
    above = start - 2
    while above >= 0 and lines[above].strip().startswith("#"):
        if TODO_MARK in lines[above]:
            return True
        above -= 1
    return False


def _migrated(source: str, target: str, label: str) -> tuple[str, Outcome | None]:
    """The rewrite of one file, or the violation that stops there (crash, no parse, not idempotent)."""
    try:
        converted = convert_source(source, target).code
    except ConversionError as error:
        return "", Outcome("violation", "invalid program: does not parse", str(error))
    except Exception as error:  # the tool must never raise on valid input
        return "", Outcome("violation", _crash_cause(error), "".join(traceback.format_exception(error)))
    try:
        ast.parse(converted)
    except SyntaxError as error:
        return converted, Outcome("violation", f"does not parse{label}", f"{error}", converted)
    try:
        again = convert_source(converted, target).code
    except Exception as error:
        return converted, Outcome("violation", f"{_crash_cause(error)} (second run)", str(error), converted)
    if again != converted:
        return converted, Outcome("violation", f"not idempotent{label}", _first_difference(converted, again), converted)
    return converted, None


def _first_difference(first: str, second: str) -> str:
    for number, (a, b) in enumerate(zip(first.splitlines(), second.splitlines()), 1):
        if a != b:
            return f"line {number}: {a.strip()!r} became {b.strip()!r}"
    return "the second run added or removed lines at the end"


def _haiku_run(program: Program, path: Path) -> tuple[int, int]:
    """Initialise and apply the Haiku original: (parameter leaves, output arrays). Raises what it raises."""
    entry = haiku_entry(imported(program.source, path, "haiku"), program.entry)
    inputs = make_inputs([parse_input_spec(s) for s in program.inputs])
    params, state = entry.init(jax.random.key(0), *inputs, **(program.train_args or program.args))
    out, _ = entry.applies[0].fn(params, state, jax.random.key(1), *inputs, **program.args)
    return len(jax.tree.leaves(params)), len(jax.tree.leaves(out))


def _haiku_runs(program: Program, path: Path) -> str | None:
    """None when the Haiku original initialises and applies; else why not."""
    try:
        _haiku_run(program, path)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def _judged(program: Program, target: str, path: Path, converted: str) -> Outcome:
    result = verify(
        path,
        target,
        program.entry,
        program.inputs,
        program.args,
        train_args=program.train_args,
        method_inputs=program.method_inputs,
        steps=STEPS,
        flax_source=converted,
    )
    has_todo = TODO_MARK in converted
    if result.error is None:
        if result.ok:
            return Outcome("equivalent", converted=converted)
        problem = result.problems[0]
        section, _, rest = problem.partition(": ")
        cause = f"not equivalent: {section}: {_normalised(rest.rpartition(': ')[2] or rest, 60)}"
        if has_todo:
            return Outcome("todo", f"not equivalent, TODOs in the rewrite ({cause})", problem, converted)
        return Outcome("violation", cause, "\n".join(result.problems), converted)
    detail = "\n".join([result.error, *result.notes[-1:]])
    converted_lines = [line for role, line in result.error_frames if role == target]
    if converted_lines:
        if any(statement_has_todo(converted, line) for line in converted_lines):
            return Outcome("todo", _normalised(result.error), detail, converted)
        lines = converted.splitlines()
        at = lines[converted_lines[-1] - 1].strip() if converted_lines[-1] <= len(lines) else "?"
        return _unless_invalid(
            program, path, Outcome("violation", f"runtime failure without TODO: {_normalised(result.error)}",
                                   f"{detail}\nat: {at}", converted)
        )
    if has_todo:
        return Outcome("todo", f"could not run, TODOs in the rewrite ({_normalised(result.error, 60)})", detail, converted)
    return _unless_invalid(
        program, path, Outcome("violation", f"could not run without TODO: {_normalised(result.error)}", detail, converted)
    )


def _unless_invalid(program: Program, path: Path, violation: Outcome) -> Outcome:
    """The violation, unless the Haiku original does not run either (verify may fail on the Flax side first)."""
    failure = _haiku_runs(program, path)
    if failure is None:
        return violation
    return Outcome("violation", "invalid program: the Haiku original fails", failure, violation.converted)


def check(program: Program, target: str, timeout: float = 60.0) -> Outcome:
    """The oracle for `program` migrated to `target` (see the module docstring)."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.py"
        path.write_text(program.source, encoding="utf-8")
        try:
            with time_limit(timeout):
                outcome = _checked(program, target, path)
        except ProgramTimeout as error:
            outcome = Outcome("violation", "timeout", str(error))
        finally:
            _forget_loaded_modules()
    return Outcome(outcome.verdict, outcome.cause, outcome.detail, outcome.converted, time.perf_counter() - start)


def _checked(program: Program, target: str, path: Path) -> Outcome:
    converted, stop = _migrated(program.source, target, "")
    if stop:
        return stop
    for name, source in program.other_files.items():
        _, stop = _migrated(source, target, f" ({name})")
        if stop:
            return stop
    return _judged(program, target, path, converted)


def _forget_loaded_modules() -> None:
    """Programs are run once: drop their modules (and the weights they hold) from the import caches.

    JAX's compilation caches are emptied every CLEAR_EVERY programs: each program's functions are new
    objects, so their compilations are never reused and would grow without bound over a long run,
    while the eager operations that programs share (same shapes) stay compiled in between.
    """
    imported.cache_clear()
    for name in [n for n in sys.modules if n.startswith("_haiku2flax_")]:
        del sys.modules[name]
    if next(_programs_run) % CLEAR_EVERY == CLEAR_EVERY - 1:
        jax.clear_caches()


def haiku_counts(program: Program) -> tuple[int, int] | None:
    """(parameter leaves, output arrays) of the Haiku original, or None when it does not run."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            return _haiku_run(program, Path(folder) / "model.py")
        except Exception:
            return None
        finally:
            _forget_loaded_modules()

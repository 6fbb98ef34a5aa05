"""Run the conversion over many files and deliver each result as it comes: write, diff, or review.

Conversion is pure (bytes in, bytes and notes out), so it can run in worker processes; everything
that asks, prints or writes happens in the parent, in sorted file order, so the output of `-j 8` is
the output of `-j 1`. Each file is written as soon as it is converted (so an interrupted run keeps
what it finished), and only if it is still what was read. Reports and the summary are in
`haiku2flax.reports`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import sys
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, BinaryIO, TypedDict

import click

from .documents import Document, Location, PythonDocument, positioned_in_output, unified_diff
from .engine import Conversion, ConversionError, Note, Outcome, convert_source
from .engine.tables import Tables
from .files import (
    ChangedOnDisk,
    Exclusions,
    FileError,
    Snapshot,
    discover,
    display_path,
    mirrored,
    read_file,
    write_atomic,
    write_mirrored,
)
from .engine.tree import EMPTY_VIEW, FileView, TreeIndex, index_tree
from .notebooks import NotebookDocument
from .signatures import OutsideCode, changed_classes, with_signature_notes

STDIN = "-"


@dataclass(frozen=True)
class Settings:
    """What the conversion needs besides the text; picklable, so workers get it as is."""

    target: str
    tables: Tables | None = None
    select: frozenset[str] | None = None
    ignore: frozenset[str] = frozenset()
    keep_haiku_modules: bool = False
    tree: TreeIndex = TreeIndex()  # the files being migrated, indexed once (see `engine.tree`)
    view: FileView = EMPTY_VIEW  # the part of `tree` the file being converted needs


@dataclass
class FileResult:
    path: str  # as shown in messages, diffs and the report (see `display_path`)
    original: bytes
    converted: bytes  # the original bytes when nothing changed or the file failed
    notes: list[Note] = field(default_factory=list)
    error: FileError | None = None
    document: Document | None = None  # None when the file could not be read or decoded
    code: str = ""  # the document's text as converted (what `--interactive` reviews)
    snapshot: Snapshot | None = None  # the file as read: it is replaced only if it still is
    classes: dict[str, Any] = field(default_factory=dict)  # what other files of the tree need of its module classes

    @property
    def changed(self) -> bool:
        return self.error is None and self.converted != self.original

    @property
    def status(self) -> str:
        return "error" if self.error else "changed" if self.changed else "unchanged"

    def locate(self, note: Note) -> Location:
        if self.document is None:
            return Location(note.line)
        return self.document.locate(note.line, self.code if positioned_in_output(note) else None)


def _os_error(action: str, error: OSError) -> FileError:
    return FileError(f"{action}: {error.strerror or error}")


class _RuleChoice(TypedDict):
    """The keyword arguments both engines take to choose their rules."""

    tables: Tables | None
    select: frozenset[str] | None
    ignore: frozenset[str]


def convert_text(text: str, settings: Settings) -> Conversion:
    """The engine on one document's text; a module that cannot be converted stays in Haiku when asked."""
    options: _RuleChoice = {"tables": settings.tables, "select": settings.select, "ignore": settings.ignore}
    try:
        if settings.keep_haiku_modules:
            from .codemods.keep_haiku import convert_keeping_haiku

            return convert_keeping_haiku(text, settings.target, **options)
        return convert_source(text, settings.target, tree=settings.view, **options)
    except ConversionError as error:
        raise FileError(error.message, error.line, error.column) from None
    except Exception as error:  # a rule bug must cost its file, not the whole run
        raise FileError(f"internal error: {type(error).__name__}: {error}") from error


# The one place that says which files are migrated and how, by suffix: each reads a file's bytes into
# the Python text the engine converts and writes the converted text back in the file's own format.
# Files named on the command line are converted as Python whatever their suffix (scripts have none).
FORMATS: dict[str, Callable[[bytes], Document]] = {".py": PythonDocument.load, ".ipynb": NotebookDocument.load}


def convert_bytes(path: str, data: bytes, settings: Settings) -> FileResult:
    load = FORMATS.get(PurePath(path).suffix, PythonDocument.load)
    try:
        document = load(data)
        conversion = convert_text(document.text, settings)
        code = document.adjust(conversion.code) if conversion.changed else document.text
        converted = document.render(code)
    except FileError as error:
        return FileResult(path, data, data, error=error)
    notes = sorted([*conversion.notes, *document.problems(code)], key=lambda note: (note.line, note.column))
    return FileResult(path, data, converted, notes, document=document, code=code, classes=conversion.classes)


def convert_file(path: Path, settings: Settings) -> FileResult:
    shown = display_path(path)
    try:
        data, snapshot = read_file(path)
    except OSError as error:
        return FileResult(shown, b"", b"", error=_os_error("cannot read", error))
    result = convert_bytes(shown, data, dataclasses.replace(settings, view=settings.tree.view(path)))
    result.snapshot = snapshot
    if os.path.abspath(path) not in settings.tree.providers:
        result.classes = {}  # nobody reads them: not worth sending back from a worker
    return result


def _ignore_interrupts() -> None:
    """In workers: Ctrl-C is the parent's to handle (it terminates them), not a traceback per worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def converted_in_order(paths: list[Path], settings: Settings, jobs: int) -> Iterator[Iterator[FileResult]]:
    """Results in the order of `paths`, each as soon as it and those before it are done; in `jobs`
    worker processes when there are several files. Leaving early (Ctrl-C) terminates the workers at once.

    Files whose module classes other files of the tree use are converted first: what their conversion
    says of the classes (NNX constructor signatures) goes to the files that use them."""
    if jobs <= 1 or len(paths) <= 1:
        yield _in_order(paths, settings, map)
        return
    import multiprocessing

    workers = min(jobs, len(paths))
    # the workers start here, before a progress bar starts its thread
    with multiprocessing.Pool(workers, initializer=_ignore_interrupts) as pool:  # exiting terminates them
        chunks = max(1, min(8, len(paths) // (workers * 4)))
        yield _in_order(paths, settings, lambda convert, files: pool.imap(convert, files, chunksize=chunks))


def _in_order(
    paths: list[Path], settings: Settings, run: Callable[[Callable[[Path], FileResult], list[Path]], Iterator[FileResult]]
) -> Iterator[FileResult]:
    """`run(convert, files)` in waves: a file once the files whose classes or models it uses are converted,
    with what they said of them (in one wave, as converted, when the tree has no such files); the results
    in the order of `paths`."""
    tree = settings.tree
    if not tree.providers:
        yield from run(functools.partial(convert_file, settings=settings), paths)
        return
    done: dict[str, FileResult] = {}
    said: dict[str, dict[str, Any]] = {}
    remaining = list(paths)
    while remaining:
        pending = {tree.providers[key] for path in remaining if (key := os.path.abspath(path)) in tree.providers}
        ready = [path for path in remaining if not tree.needs(path) & pending] or remaining  # (a cycle: the rest at once)
        informed = dataclasses.replace(settings, tree=tree.with_classes(said))
        for path, result in zip(ready, run(functools.partial(convert_file, settings=informed), ready)):
            done[os.path.abspath(path)] = result
            if os.path.abspath(path) in tree.providers:
                said[tree.providers[os.path.abspath(path)]] = result.classes
        remaining = [path for path in remaining if os.path.abspath(path) not in done]
    for path in paths:
        yield done[os.path.abspath(path)]


def convert_tree(paths: list[Path], settings: Settings) -> list[FileResult]:
    """The files of one tree converted in memory as `migrate` converts them (indexed together), in order."""
    with converted_in_order(paths, dataclasses.replace(settings, tree=index_tree(paths)), jobs=1) as converted:
        return list(converted)


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("migrating", total=total)
        yield lambda: progress.advance(task)


# -- delivering the results --------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    """What to do with converted files. `--diff` and `--check` write nothing."""

    diff: bool = False
    check: bool = False
    out_dir: Path | None = None
    verbose: bool = False
    quiet: bool = False
    interactive: bool = False
    messages: bool = True  # False when `--output-format` shows the findings instead (see `reports`)

    @property
    def writes(self) -> bool:
        return not (self.diff or self.check)


def render_diff(result: FileResult) -> bytes:
    """The file's diff: exact bytes for Python files (for `git apply`), per changed cell for notebooks."""
    if result.document is None:
        return unified_diff(result.path, result.original, result.converted)
    return result.document.diff(result.path, result.code)


def describe(result: FileResult, note: Note) -> str:
    return f"{result.path}:{result.locate(note)}:{note.column}: {note.outcome}: {note.message} [{note.rule}]"


def _print_messages(result: FileResult, output: Output) -> None:
    """Errors always; warnings, TODOs and changed files unless quiet (or shown in a CI format); converted
    constructs when verbose."""
    if result.error is not None:
        click.echo(result.error.describe(result.path), err=True)
        return
    if output.quiet or not output.messages:
        return
    for note in result.notes:
        if output.verbose or note.outcome is not Outcome.CONVERTED:
            click.echo(describe(result, note), err=True)
    if not result.changed:
        return
    if not output.writes:
        click.echo(f"would migrate {result.path}", err=True)
    elif output.out_dir is not None:
        click.echo(f"migrated {result.path} into {mirrored(result.path, output.out_dir)}", err=True)
    else:
        click.echo(f"migrated {result.path}", err=True)


def publish(result: FileResult, output: Output, stdout: BinaryIO) -> None:
    """Diff or write one result; a write that fails, or a file changed since it was read, becomes its error.

    A file that failed is written nowhere, not even to `--out-dir`.
    """
    if output.diff and result.changed:
        stdout.write(render_diff(result))
        stdout.flush()
    try:
        if output.out_dir is not None and result.error is None:
            destination = mirrored(result.path, output.out_dir)
            write_mirrored(Path(result.path), destination, result.converted if result.changed else None)
        elif output.writes and result.changed:
            write_atomic(Path(result.path), result.converted, expected=result.snapshot)
    except ChangedOnDisk:
        result.error = FileError("changed since it was read, so it was left as it is; run again to migrate it")
    except OSError as error:
        result.error = _os_error("cannot write", error)
    _print_messages(result, output)


def migrate_paths(
    paths: Collection[Path], settings: Settings, output: Output, jobs: int | None, exclude: Exclusions | None = None
) -> list[FileResult]:
    """Convert and deliver every file found under `paths`; `jobs` defaults to one per core.

    Each file is delivered as soon as it is converted. With `output.interactive`, every change is
    reviewed (answers read from stdin) once all are converted, and only then written.
    """
    found = discover(paths, FORMATS.keys(), exclude=[output.out_dir] if output.out_dir else [], patterns=exclude)
    settings = dataclasses.replace(settings, tree=index_tree(found.sources))
    outside = OutsideCode([*paths, *found.sources], exclude=[output.out_dir] if output.out_dir else [])
    show_progress = not output.quiet and len(found.sources) > 1 and sys.stderr.isatty()
    stdout = sys.stdout.buffer  # taken before a progress bar redirects sys.stdout
    results = []
    with (
        converted_in_order(found.sources, settings, jobs or os.cpu_count() or 1) as converted,
        _progress_bar(len(found.sources), show_progress) as advance,
    ):
        for result in converted:
            note_changed_signatures(result, outside, settings.target)
            if not output.interactive:
                publish(result, output, stdout)
            results.append(result)
            advance()
    if output.interactive:
        from .review import review_results

        review_results(results)
        for result in results:
            publish(result, output, stdout)
    if output.out_dir is not None:
        results += copy_others(found.others, output)
    return results


def note_changed_signatures(result: FileResult, outside: OutsideCode, target: str) -> None:
    """Each module class of a migrated file whose constructor changed: before and after in its note, and
    its calls outside the migrated files (`signatures`)."""
    if target == "linen" or not result.changed or result.document is None or not result.path.endswith(".py"):
        return  # (a Linen module takes its `__init__`'s arguments as fields, in their order, and `name`)
    for changed in changed_classes(result.document.text, result.code, result.notes, outside.modules(Path(result.path))):
        result.notes = with_signature_notes(result.notes, changed, outside.call_sites(changed))


def migrate_stdin(settings: Settings, output: Output) -> list[FileResult]:
    """`-`: the converted code (the input unchanged when it fails) or the diff goes to stdout."""
    result = convert_bytes(STDIN, sys.stdin.buffer.read(), settings)
    stdout = sys.stdout.buffer
    if output.diff:
        stdout.write(render_diff(result))
    elif not output.check:
        stdout.write(result.converted)
    stdout.flush()
    _print_messages(result, output)
    return [result]


def copy_others(paths: list[Path], output: Output) -> list[FileResult]:
    """`--out-dir`: copy the files that are not migrated, so the tree there is complete; failures as results."""
    assert output.out_dir is not None
    failures = []
    for path in paths:
        shown = display_path(path)
        try:
            write_mirrored(path, mirrored(shown, output.out_dir), None)
        except OSError as error:
            failures.append(FileResult(shown, b"", b"", error=_os_error("cannot copy", error)))
            _print_messages(failures[-1], output)
    return failures

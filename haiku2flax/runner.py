"""Run the conversion over many files, then deliver the results: write, diff, report, summarise.

Conversion is pure (bytes in, bytes and notes out), so it can run in worker processes; everything
that prints or writes happens afterwards, in the parent, in sorted file order, so the output of
`-j 8` is the output of `-j 1`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import json
import os
import sys
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import click

from .engine import ConversionError, Note, Outcome, convert_source
from .engine.tables import Tables
from .files import FileError, decode, discover, display_path, mirrored, write_atomic, write_mirrored

STDIN = "-"


@dataclass(frozen=True)
class Settings:
    """What `convert_source` needs besides the text; picklable, so workers get it as is."""

    target: str
    tables: Tables | None = None
    select: frozenset[str] | None = None
    ignore: frozenset[str] = frozenset()


@dataclass
class FileResult:
    path: str  # as shown in messages, diffs and the report (see `display_path`)
    original: bytes
    converted: bytes  # the original bytes when nothing changed or the file failed
    notes: list[Note] = field(default_factory=list)
    error: FileError | None = None

    @property
    def changed(self) -> bool:
        return self.error is None and self.converted != self.original

    @property
    def status(self) -> str:
        return "error" if self.error else "changed" if self.changed else "unchanged"


def _os_error(action: str, error: OSError) -> FileError:
    return FileError(f"{action}: {error.strerror or error}")


def convert_python(data: bytes, settings: Settings) -> tuple[bytes, list[Note]]:
    decoded = decode(data)
    try:
        conversion = convert_source(
            decoded.text, settings.target, tables=settings.tables, select=settings.select, ignore=settings.ignore
        )
    except ConversionError as error:
        raise FileError(error.message, error.line, error.column) from None
    except Exception as error:  # a rule bug must cost its file, not the whole run
        raise FileError(f"internal error: {type(error).__name__}: {error}") from error
    return (decoded.encode(conversion.code) if conversion.changed else data), conversion.notes


# The one place that says which files are migrated and how, by suffix; notebooks (.ipynb) go here.
# Files named on the command line are converted as Python whatever their suffix (scripts have none).
CONVERTERS: dict[str, Callable[[bytes, Settings], tuple[bytes, list[Note]]]] = {".py": convert_python}


def convert_bytes(path: str, data: bytes, settings: Settings) -> FileResult:
    convert = CONVERTERS.get(PurePath(path).suffix, convert_python)
    try:
        converted, notes = convert(data, settings)
    except FileError as error:
        return FileResult(path, data, data, error=error)
    return FileResult(path, data, converted, notes)


def convert_file(path: Path, settings: Settings) -> FileResult:
    shown = display_path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        return FileResult(shown, b"", b"", error=_os_error("cannot read", error))
    return convert_bytes(shown, data, settings)


def convert_files(paths: list[Path], settings: Settings, jobs: int, show_progress: bool) -> list[FileResult]:
    """Results in the order of `paths`; in `jobs` worker processes when there are several files."""
    convert = functools.partial(convert_file, settings=settings)
    with contextlib.ExitStack() as stack:
        if jobs > 1 and len(paths) > 1:
            from concurrent.futures import ProcessPoolExecutor

            workers = min(jobs, len(paths))
            pool = stack.enter_context(ProcessPoolExecutor(workers))
            # map submits every task now, so workers fork before the progress bar starts its thread
            converted = pool.map(convert, paths, chunksize=max(1, len(paths) // (workers * 4)))
        else:
            converted = map(convert, paths)
        advance = stack.enter_context(_progress_bar(len(paths), show_progress))
        results = []
        for result in converted:
            results.append(result)
            advance()
    return results


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

    @property
    def writes(self) -> bool:
        return not (self.diff or self.check)


def render_diff(result: FileResult) -> bytes:
    """A unified diff of the exact bytes (encoding, BOM, CRLF), so `git apply` and `patch -p1` take it."""
    name = os.fsencode(PurePath(result.path).as_posix())
    lines = difflib.diff_bytes(
        difflib.unified_diff,
        result.original.splitlines(keepends=True),
        result.converted.splitlines(keepends=True),
        b"a/" + name,
        b"b/" + name,
    )
    return b"".join(line if line.endswith(b"\n") else line + b"\n\\ No newline at end of file\n" for line in lines)


def _print_messages(result: FileResult, output: Output) -> None:
    """Errors always; warnings, TODOs and changed files unless quiet; converted constructs when verbose."""
    if result.error is not None:
        click.echo(result.error.describe(result.path), err=True)
        return
    if output.quiet:
        return
    for note in result.notes:
        if output.verbose or note.outcome is not Outcome.CONVERTED:
            click.echo(f"{result.path}:{note.line}:{note.column}: {note.outcome}: {note.message} [{note.rule}]", err=True)
    if not result.changed:
        return
    if not output.writes:
        click.echo(f"would migrate {result.path}", err=True)
    elif output.out_dir is not None:
        click.echo(f"migrated {result.path} into {mirrored(result.path, output.out_dir)}", err=True)
    else:
        click.echo(f"migrated {result.path}", err=True)


def publish(results: list[FileResult], output: Output) -> None:
    """Diff or write each result in order; a write that fails becomes its file's error.

    A file that failed is written nowhere, not even to `--out-dir`.
    """
    stdout = sys.stdout.buffer
    for result in results:
        if output.diff and result.changed:
            stdout.write(render_diff(result))
        try:
            if output.out_dir is not None and result.error is None:
                destination = mirrored(result.path, output.out_dir)
                write_mirrored(Path(result.path), destination, result.converted if result.changed else None)
            elif output.writes and result.changed:
                write_atomic(Path(result.path), result.converted)
        except OSError as error:
            result.error = _os_error("cannot write", error)
        _print_messages(result, output)
    stdout.flush()


def migrate_paths(paths: Collection[Path], settings: Settings, output: Output, jobs: int | None) -> list[FileResult]:
    """Convert and deliver every file found under `paths`; `jobs` defaults to one per core."""
    found = discover(paths, CONVERTERS.keys(), exclude=[output.out_dir] if output.out_dir else [])
    show_progress = not output.quiet and len(found.sources) > 1 and sys.stderr.isatty()
    results = convert_files(found.sources, settings, jobs or os.cpu_count() or 1, show_progress)
    publish(results, output)
    if output.out_dir is not None:
        results += copy_others(found.others, output)
    return results


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


# -- summary and report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """The counts shown in the table and written in the report."""

    files: int
    changed: int
    errors: int
    converted: int
    warnings: int
    todos: int

    @classmethod
    def of(cls, results: list[FileResult]) -> Summary:
        outcomes = [note.outcome for result in results for note in result.notes]
        return cls(
            files=len(results),
            changed=sum(result.changed for result in results),
            errors=sum(result.error is not None for result in results),
            converted=outcomes.count(Outcome.CONVERTED),
            warnings=outcomes.count(Outcome.WARNING),
            todos=outcomes.count(Outcome.TODO),
        )


def print_summary(summary: Summary, output: Output) -> None:
    """A table on stderr, and for `--check` the sentence a pre-commit hook user needs to read."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="haiku2flax migrate", show_header=False)
    table.add_column()
    table.add_column(justify="right")
    rows = {
        "files": summary.files,
        "files changed" if output.writes else "files that would change": summary.changed,
        "files with errors": summary.errors,
        "constructs converted": summary.converted,
        "warnings": summary.warnings,
        "TODOs left": summary.todos,
    }
    for label, value in rows.items():
        table.add_row(label, str(value))
    Console(stderr=True).print(table)
    if output.check and summary.changed:
        click.echo(
            f"{summary.changed} file(s) still use Haiku (listed above as 'would migrate'): run `haiku2flax migrate` on them.",
            err=True,
        )


def write_report(path: Path, results: list[FileResult], settings: Settings) -> None:
    """`--report`: every construct seen, and every file's status and error, as JSON."""
    report = {
        "target": settings.target,
        "summary": dataclasses.asdict(Summary.of(results)),
        "files": [
            {
                "path": result.path,
                "status": result.status,
                "error": result.error
                and {"message": result.error.message, "line": result.error.line, "column": result.error.column},
            }
            for result in results
        ],
        "constructs": [{"file": result.path, **note.as_dict()} for result in results for note in result.notes],
    }
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

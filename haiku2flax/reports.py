"""What a run tells people: the end-of-run table, the JSON report for tools, the Markdown one for reviewers.

`--report FILE` writes JSON, or Markdown when FILE ends in `.md`; give it twice for both. The Markdown
report lists, per file, what was converted and every warning and TODO with a link to its rule's
documentation (`docs/rules.md#hk005`, or the `Rules` URL the installed package declares).
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import click

from .engine import Outcome
from .runner import FileResult, Output, Settings

MARKDOWN_SUFFIXES = (".md", ".markdown")
TABLE_ROWS = 40  # the end-of-run table lists at most this many files, those needing attention first


@dataclass(frozen=True)
class Summary:
    """The counts shown in the table and written in the reports."""

    files: int
    changed: int
    errors: int
    converted: int
    warnings: int
    todos: int

    @classmethod
    def of(cls, results: Iterable[FileResult]) -> Summary:
        results = list(results)
        outcomes = Counter(note.outcome for result in results for note in result.notes)
        return cls(
            files=len(results),
            changed=sum(result.changed for result in results),
            errors=sum(result.error is not None for result in results),
            converted=outcomes[Outcome.CONVERTED],
            warnings=outcomes[Outcome.WARNING],
            todos=outcomes[Outcome.TODO],
        )


def _needs_attention(result: FileResult) -> bool:
    return result.error is not None or any(note.outcome is not Outcome.CONVERTED for note in result.notes)


def print_summary(results: list[FileResult], output: Output, strict: bool) -> Summary:
    """A table on stderr (one row per file that changed or has something to say, and the totals), then
    for `--check` and `--strict` the files a pre-commit user has to act on."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    summary = Summary.of(results)
    shown = [result for result in results if result.changed or result.notes or result.error]
    shown.sort(key=lambda result: not _needs_attention(result))  # stable: file order within each group
    hidden = shown[TABLE_ROWS:]
    status_word = {"changed": "migrated" if output.writes else "would migrate", "unchanged": "unchanged", "error": "error"}
    table = Table(title="haiku2flax migrate", show_footer=bool(shown))
    table.add_column("file", footer=f"{summary.files} files")
    table.add_column("status", footer=f"{summary.changed} {'changed' if output.writes else 'to change'}, {summary.errors} errors")
    for label, total in (("converted", summary.converted), ("warnings", summary.warnings), ("TODOs", summary.todos)):
        table.add_column(label, justify="right", footer=str(total))
    for result in shown[:TABLE_ROWS]:
        counts = Counter(note.outcome for note in result.notes)
        style = "red" if result.error else "yellow" if _needs_attention(result) else None
        table.add_row(
            escape(result.path),  # a path is printed as written, `[/x]` included
            status_word[result.status],
            str(counts[Outcome.CONVERTED]),
            str(counts[Outcome.WARNING]),
            str(counts[Outcome.TODO]),
            style=style,
        )
    if hidden:
        table.add_row(f"… and {len(hidden)} more files", "", "", "", "")
    if not shown:
        table.add_row(f"{summary.files} files, nothing to migrate", "", "0", "0", "0")
    Console(stderr=True).print(table)
    if output.check and summary.changed:
        files = [result.path for result in results if result.changed]
        click.echo(f"{len(files)} file(s) still use Haiku; run `haiku2flax migrate` on them:", err=True)
        click.echo("".join(f"  {path}\n" for path in files), err=True, nl=False)
    if strict and summary.todos:
        files = [(result.path, sum(n.outcome is Outcome.TODO for n in result.notes)) for result in results]
        click.echo(f"{summary.todos} TODO(s) left where haiku2flax could not convert the code; finish them by hand:", err=True)
        click.echo("".join(f"  {path} ({count} TODO)\n" for path, count in files if count), err=True, nl=False)
    return summary


# -- report files ------------------------------------------------------------------------------------


def write_report(path: Path, results: list[FileResult], settings: Settings) -> None:
    """`--report`: JSON, or Markdown when the file name ends in `.md`."""
    if path.suffix.lower() in MARKDOWN_SUFFIXES:
        text = markdown_report(results, settings)
    else:
        text = json.dumps(json_report(results, settings), indent=2) + "\n"
    path.write_text(text, encoding="utf-8")


def json_report(results: list[FileResult], settings: Settings) -> dict:
    """Every construct seen, and every file's status and error."""

    def construct(result: FileResult, note) -> dict:
        where = result.locate(note)
        entry = {"file": result.path, **note.as_dict(), "line": where.line}
        return entry if where.cell is None else {**entry, "cell": where.cell}

    return {
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
        "constructs": [construct(result, note) for result in results for note in result.notes],
    }


def _cell(text: str) -> str:
    """Text for a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def markdown_report(results: list[FileResult], settings: Settings) -> str:
    """A report for people: the totals, then per file what was converted and what is left to do."""
    from .rules_doc import rule_link, rule_names

    names = rule_names()
    summary = Summary.of(results)
    lines = [
        "# haiku2flax migration report",
        "",
        f"Target: **{settings.target}**. {summary.files} files, {summary.changed} changed, {summary.errors} with errors; "
        f"{summary.converted} constructs converted, {summary.warnings} warnings, {summary.todos} TODOs left.",
        "",
        "| file | status | converted | warnings | TODOs |",
        "|---|---|---:|---:|---:|",
    ]
    for result in results:
        counts = Counter(note.outcome for note in result.notes)
        lines.append(
            f"| `{_cell(result.path)}` | {result.status} | {counts[Outcome.CONVERTED]} | "
            f"{counts[Outcome.WARNING]} | {counts[Outcome.TODO]} |"
        )
    for result in results:
        if not (result.notes or result.error):
            continue
        section = []
        if result.error is not None:
            section.append(f"**Error** at line {result.error.line}: {_cell(result.error.message)}")
        converted = Counter(note.rule for note in result.notes if note.outcome is Outcome.CONVERTED)
        if converted:
            done = ", ".join(f"[{rule} {names.get(rule, '')}]({rule_link(rule)}) ×{count}" for rule, count in sorted(converted.items()))
            section.append(f"Converted: {done}.")
        left = [note for note in result.notes if note.outcome is not Outcome.CONVERTED]
        if left:
            section.append("| where | kind | rule | what to do |\n|---|---|---|---|")
            for note in left:
                kind = "TODO" if note.outcome is Outcome.TODO else "warning"
                rule = f"[{note.rule} {names.get(note.rule, '')}]({rule_link(note.rule)})"
                section[-1] += f"\n| {result.locate(note)}:{note.column} | {kind} | {rule} | {_cell(note.message)} |"
        lines += ["", f"## `{result.path}`", "", "\n\n".join(section)]
    lines += ["", "Each rule's documentation, offline: `haiku2flax rules HK005`.", ""]
    return "\n".join(lines)

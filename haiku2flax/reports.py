"""What a run tells people: the end-of-run table, the JSON report for tools, the Markdown one for reviewers,
and the formats CI reads.

`--report FILE` writes JSON, Markdown when FILE ends in `.md`, SARIF when it ends in `.sarif`; give it
several times for several. The Markdown report lists, per file, what was converted and every warning and
TODO with a link to its rule's documentation (`docs/rules.md#hk005`, or the `Rules` URL the installed
package declares).

`--output-format github|sarif` prints the run's findings (`findings`: each TODO, warning, error, and each
file that still has Haiku code to migrate when nothing is written) on stdout for CI: GitHub workflow
annotations, which a pull request shows on its lines, or SARIF 2.1.0, which GitHub code scanning, Azure
DevOps and SARIF viewers read.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import click

from .documents import Location
from .engine import Note, Outcome
from .runner import FileResult, Output, Settings

MARKDOWN_SUFFIXES = (".md", ".markdown")
SARIF_SUFFIX = ".sarif"
OUTPUT_FORMATS = ("text", "github", "sarif")  # `text`: the messages on stderr; the others on stdout
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
        todo_counts = [(result.path, sum(n.outcome is Outcome.TODO for n in result.notes)) for result in results]
        click.echo(f"{summary.todos} TODO(s) left where haiku2flax could not convert the code; finish them by hand:", err=True)
        click.echo("".join(f"  {path} ({count} TODO)\n" for path, count in todo_counts if count), err=True, nl=False)
    return summary


# -- report files ------------------------------------------------------------------------------------


def write_report(path: Path, results: list[FileResult], settings: Settings, output: Output) -> None:
    """`--report`: JSON, Markdown when the file name ends in `.md`, SARIF when it ends in `.sarif`."""
    suffix = path.suffix.lower()
    if suffix in MARKDOWN_SUFFIXES:
        text = markdown_report(results, settings)
    elif suffix == SARIF_SUFFIX:
        text = json.dumps(sarif_report(results, output), indent=2) + "\n"
    else:
        text = json.dumps(json_report(results, settings), indent=2) + "\n"
    path.write_text(text, encoding="utf-8")


def print_findings(output_format: str, results: list[FileResult], output: Output) -> None:
    """`--output-format github|sarif`: the findings on stdout, in the format CI reads."""
    if output_format == "github":
        click.echo("".join(f"{line}\n" for line in github_annotations(results, output)), nl=False)
    elif output_format == "sarif":
        click.echo(json.dumps(sarif_report(results, output), indent=2))


def json_report(results: list[FileResult], settings: Settings) -> dict[str, object]:
    """Every construct seen, and every file's status and error."""

    def construct(result: FileResult, note: Note) -> dict[str, object]:
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


# -- CI formats ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """Something CI shows at a place in a file: an error, a TODO, a warning, or code left to migrate."""

    path: str
    level: str  # "error", "warning" or "notice" (GitHub's words; SARIF says "note")
    rule: str | None  # None for errors
    message: str
    where: Location | None  # None: the whole file
    column: int = 0

    @property
    def file_line(self) -> int | None:
        """The line in the file, for CI to place the finding; None in a notebook, whose lines count per cell."""
        return self.where.line if self.where is not None and self.where.cell is None else None

    @property
    def text(self) -> str:
        """The message, led by the place in the notebook when the file line cannot say it."""
        in_cell = self.where is not None and self.where.cell is not None
        return f"{self.where}:{self.column}: {self.message}" if in_cell else self.message


def _first_changed_line(before: bytes, after: bytes) -> int:
    pairs = zip(before.splitlines(), after.splitlines())
    return next((number for number, (old, new) in enumerate(pairs, 1) if old != new), before.count(b"\n") + 1)


def _left_to_migrate(result: FileResult) -> Finding:
    """A file that would change, shown at its first construct to convert, else at its first changed line
    under the safety net's rule (Haiku left)."""
    from .engine.leftovers import RULE_UNSUPPORTED

    converted = [note for note in result.notes if note.outcome is Outcome.CONVERTED]
    what = f"{len(converted)} Haiku construct(s) to convert ({', '.join(sorted({note.rule for note in converted}))})"
    message = f"{result.path} still uses Haiku: {what if converted else 'code to convert'}; run `haiku2flax migrate {result.path}`"
    if not converted:
        where = Location(_first_changed_line(result.original, result.converted))
        return Finding(result.path, "warning", RULE_UNSUPPORTED, message, where)
    return Finding(result.path, "warning", converted[0].rule, message, result.locate(converted[0]), converted[0].column)


def findings(results: list[FileResult], output: Output) -> list[Finding]:
    """Per file, in order: its error; else the code left to migrate when nothing is written, then its
    TODOs (warnings) and warnings (notices). Converted constructs are not findings."""
    found = []
    for result in results:
        if result.error is not None:
            found.append(Finding(result.path, "error", None, result.error.message, Location(result.error.line), result.error.column))
            continue
        if result.changed and not output.writes:
            found.append(_left_to_migrate(result))
        for note in result.notes:
            if note.outcome is not Outcome.CONVERTED:
                level = "warning" if note.outcome is Outcome.TODO else "notice"
                found.append(Finding(result.path, level, note.rule, note.message, result.locate(note), note.column))
    return found


def _github_escape(text: str, *, in_property: bool = False) -> str:
    """Escape as GitHub's workflow commands require (`%`, CR and LF everywhere; `:` and `,` in properties)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if in_property else text


def github_annotations(results: list[FileResult], output: Output) -> list[str]:
    """`::warning file=…,line=…,col=…,title=…::message` per finding, as ruff's `--output-format github`.

    A notebook's lines count within cells, which GitHub cannot place: its findings name the cell in the
    message and annotate the file.
    """
    lines = []
    for finding in findings(results, output):
        properties = {"file": Path(finding.path).as_posix()}
        if finding.file_line is not None:
            properties["line"] = str(finding.file_line)
            if finding.column:
                properties["col"] = str(finding.column)
        properties["title"] = f"haiku2flax ({finding.rule})" if finding.rule else "haiku2flax"
        fields = ",".join(f"{key}={_github_escape(value, in_property=True)}" for key, value in properties.items())
        lines.append(f"::{finding.level} {fields}::{_github_escape(finding.text)}")
    return lines


SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVELS = {"error": "error", "warning": "warning", "notice": "note"}


def _sarif_location(finding: Finding) -> dict[str, object]:
    physical: dict[str, object] = {"artifactLocation": {"uri": Path(finding.path).as_posix(), "uriBaseId": "%SRCROOT%"}}
    if finding.file_line is not None:
        physical["region"] = {"startLine": finding.file_line, **({"startColumn": finding.column} if finding.column else {})}
    return {"physicalLocation": physical}


def sarif_report(results: list[FileResult], output: Output) -> dict[str, object]:
    """SARIF 2.1.0: one result per finding with its rule id, the rules they name (with their
    documentation link when it is a URL), and files that could not be processed as notifications."""
    from . import __version__
    from .engine.registry import all_rules
    from .rules_doc import rule_link

    known = {rule.id: rule for rule in all_rules()}
    found = findings(results, output)
    rule_ids = sorted({finding.rule for finding in found if finding.rule})
    rules = []
    for rule in rule_ids:
        descriptor = {"id": rule, "name": known[rule].name, "shortDescription": {"text": known[rule].summary}}
        link = rule_link(rule)
        rules.append({**descriptor, "helpUri": link} if "://" in link else descriptor)
    sarif_results = [
        {
            "ruleId": finding.rule,
            "ruleIndex": rule_ids.index(finding.rule),
            "level": SARIF_LEVELS[finding.level],
            "message": {"text": finding.text},
            "locations": [_sarif_location(finding)],
        }
        for finding in found
        if finding.rule
    ]
    errors = [
        {"level": "error", "message": {"text": finding.text}, "locations": [_sarif_location(finding)]}
        for finding in found
        if finding.level == "error"
    ]
    run = {
        "tool": {"driver": {"name": "haiku2flax", "version": __version__, "rules": rules}},
        "results": sarif_results,
        "invocations": [{"executionSuccessful": not errors, "toolExecutionNotifications": errors}],
    }
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}

"""Render a VerifyResult for people (a rich table) or for programs (JSON)."""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .equivalence import VerifyResult

VERDICT_STYLES = {"equivalent": "bold green", "not equivalent": "bold red", "could not run": "bold yellow"}


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def render(result: VerifyResult, console: Console) -> None:
    """The table and verdict; every piece of user text (paths, specs, messages) escaped, so `[/x]` in it
    is printed as written rather than read as rich markup."""
    table = Table(title=f"{escape(result.path)} -> {result.target} ({escape(result.entry)})", show_lines=False)
    table.add_column("check", no_wrap=True)
    for column in ("Haiku", "Flax"):
        table.add_column(column, overflow="fold")  # whole paths: they are what the reader acts on
    table.add_column("shape", no_wrap=True)
    for column in ("max abs", "max rel"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("status", overflow="fold")
    for row in result.rows:
        table.add_row(
            escape(row.section),
            escape(row.haiku),
            escape(row.flax),
            str(row.shape),
            _number(row.max_abs),
            _number(row.max_rel),
            escape(row.status),
            style=None if row.ok else "red",
        )
    if result.rows:
        console.print(table)
    for note in result.notes:
        console.print(f"note: {escape(note)}", highlight=False)
    for problem in result.problems:
        console.print(f"[red]problem:[/red] {escape(problem)}", highlight=False)
    if result.error:
        console.print(f"[yellow]could not run:[/yellow] {escape(result.error)}", highlight=False)
    console.print(f"devices: {escape(', '.join(result.devices))}", highlight=False)
    console.print(f"verdict: [{VERDICT_STYLES[result.verdict]}]{result.verdict}[/]")


def to_json(result: VerifyResult) -> str:
    return json.dumps(result.to_dict(), indent=2)

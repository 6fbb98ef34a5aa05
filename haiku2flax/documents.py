"""What the engine sees of a file, and how its converted code goes back into the file's own format.

A `.py` file is its decoded text. A notebook is the code of all its code cells as one module (see
`haiku2flax.notebooks`), so that names imported in one cell and used in another resolve as they do
when the notebook runs. Either way the engine converts Python text, and the document maps the result
back: `render` gives the file's new bytes, `locate` turns a line of that text into a place the user
can find (a line, or a cell and a line), and `show` gives back a line as the user wrote it.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import PurePath
from typing import Protocol

from .engine.notes import Note, todo_comment
from .files import Decoded, decode


@dataclass(frozen=True)
class Location:
    """A place in a file: `line` counts from 1 within the file, or within `cell` (1-based) of a notebook."""

    line: int
    cell: int | None = None

    def __str__(self) -> str:
        return f"{self.line}" if self.cell is None else f"cell {self.cell}:{self.line}"


class Document(Protocol):
    @property
    def text(self) -> str:
        """The Python code the engine converts."""
        ...

    def adjust(self, code: str) -> str:
        """Fix up converted code for this format (e.g. keep a new import in the cell that needs it)."""
        ...

    def render(self, code: str) -> bytes:
        """The file's bytes with `code` (the engine's text, converted) in place of `text`."""
        ...

    def locate(self, line: int, code: str | None = None) -> Location:
        """Where line `line` of `text` (of `code`, when given) is in the file."""
        ...

    def show(self, line: str) -> str:
        """A line of `text` (or of converted code) as the user wrote it."""
        ...

    def diff(self, path: str, code: str) -> bytes:
        """A unified diff from `text` to `code`, in the form that suits the format."""
        ...

    def problems(self, code: str) -> list[Note]:
        """What the engine could not see of this file (a notebook's broken cells), positioned in `code`."""
        ...


@dataclass(frozen=True)
class PythonDocument:
    decoded: Decoded
    original: bytes

    @classmethod
    def load(cls, data: bytes) -> PythonDocument:
        return cls(decode(data), data)

    @property
    def text(self) -> str:
        return self.decoded.text

    def adjust(self, code: str) -> str:
        return code

    def render(self, code: str) -> bytes:
        return self.original if code == self.text else self.decoded.encode(code)

    def locate(self, line: int, code: str | None = None) -> Location:
        return Location(line)

    def show(self, line: str) -> str:
        return line

    def diff(self, path: str, code: str) -> bytes:
        return unified_diff(path, self.original, self.render(code))

    def problems(self, code: str) -> list[Note]:
        return []


def unified_diff(path: str, before: bytes, after: bytes) -> bytes:
    """A unified diff of exact bytes (encoding, BOM, CRLF), so `git apply` and `patch -p1` take it."""
    if before == after:
        return b""
    name = os.fsencode(PurePath(path).as_posix())
    lines = difflib.diff_bytes(
        difflib.unified_diff,
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        b"a/" + name,
        b"b/" + name,
    )
    return b"".join(line if line.endswith(b"\n") else line + b"\n\\ No newline at end of file\n" for line in lines)


def positioned_in_output(note: Note) -> bool:
    """Whether a note's line counts in the converted code rather than the original.

    The safety net (HK000, HK800) marks statements after every rule ran, so it positions its notes at
    the statement in the output; every other rule positions them at the construct in the original.
    """
    from .engine.leftovers import RULE_NO_EQUIVALENT, RULE_UNSUPPORTED  # loads LibCST, which files without Haiku never need

    return note.rule in (RULE_UNSUPPORTED, RULE_NO_EQUIVALENT)


def anchor_output_notes(notes: list[Note], code: str) -> list[Note]:
    """Output-positioned notes moved to where their TODO comment's statement now is in `code`
    (after further edits of the converted code); other notes as they are."""
    lines = code.split("\n")
    anchored: list[Note] = []
    searched_from: dict[str, int] = {}  # each TODO comment's next line to search from, so repeated ones match in turn
    for note in notes:
        if not positioned_in_output(note):
            anchored.append(note)
            continue
        comment = todo_comment(note.rule, note.message)
        start = searched_from.get(comment, 0)
        index = next((i for i in range(start, len(lines)) if lines[i].strip() == comment), None)
        if index is None:
            anchored.append(note)
            continue
        searched_from[comment] = index + 1
        statement = next((i for i in range(index, len(lines)) if not lines[i].lstrip().startswith("#")), index)
        anchored.append(Note(note.rule, note.outcome, note.message, statement + 1, note.column))
    return anchored

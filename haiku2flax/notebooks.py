"""Jupyter notebooks: convert the code cells, touch nothing else.

The code cells are converted as one module, in order, because that is how they run: a cell uses the
names that earlier cells imported and defined, so converting each cell alone would lose `hk` in every
cell but the first. Each cell starts with a marker statement (`pass  # haiku2flax-cell N`), and lines
that are IPython rather than Python (`%matplotlib inline`, `!pip install dm-haiku`, `x = !ls`, `obj?`,
and the first line of a cell magic whose body is Python, like `%%time`) become placeholder statements
that are put back verbatim afterwards. A cell that still does not parse (`%%bash`, or a broken cell)
is masked whole and left as it is. A notebook is one program, so what the engine cannot see is
reported with its cell (a broken cell, an IPython line that uses Haiku, like `hk.Linear?` or
`%timeit model.apply(...)`), and an import that masked code names is kept. A cell written with CRLF
line endings keeps them. nbformat 3 (`worksheets`) is refused with a message.

Writing back replaces only the `source` of the code cells that changed, in the notebook's own JSON
layout (list or string, indentation, escapes): markdown, outputs, metadata, cell ids and every other
byte stay as they were. Diffs and messages name the cell (`model.ipynb:cell 3:2`), counting every
cell from 1 as a notebook's reader sees them.
"""

from __future__ import annotations

import ast
import bisect
import difflib
import json
import re
from dataclasses import dataclass
from pathlib import PurePath

from .documents import Location
from .engine.notes import Note, Outcome
from .files import FileError

CELL_MARKER = "pass  # haiku2flax-cell {}"
PLACEHOLDER = "pass  # haiku2flax-ipython {}"
CELL_MARKER_LINE = re.compile(r"^pass  # haiku2flax-cell (\d+)\n", re.MULTILINE)
PLACEHOLDER_LINE = re.compile(r"^[ \t]*pass  # haiku2flax-ipython (\d+)$", re.MULTILINE)
# Line magics, shell escapes, `x = !cmd` / `x = %magic` assignments, and `obj?` help.
IPYTHON_LINE = re.compile(
    r"^[ \t]*(?:[%!?]|[A-Za-z_][\w.]*(?:[ \t]*,[ \t]*[A-Za-z_][\w.]*)*[ \t]*=[ \t]*[%!]|[A-Za-z_][\w.]*\?\??[ \t]*$)"
)
# Cell magics whose body is Python (`%%time` and friends): only their first line is masked.
PYTHON_CELL_MAGIC = re.compile(r"^%%(?:time|timeit|capture|prun|debug)\b")
TOP_LEVEL_IMPORT = re.compile(r"^(?:import|from)[ \t]")
HAIKU_IMPORT = re.compile(r"^(?:import[ \t]+haiku\b|from[ \t]+haiku\b)")
# Names a Haiku import binds (`hk`, `haiku`, `nets`), and the transformed objects' `init` / `apply`.
HAIKU_BINDING = re.compile(r"^(?:import[ \t]+haiku(?:[ \t]+as[ \t]+(\w+))?|from[ \t]+haiku[\w.]*[ \t]+import[ \t]+(\w+)(?:[ \t]+as[ \t]+(\w+))?)", re.MULTILINE)
HAIKU_CALL = re.compile(r"\.(?:init|apply)\(")
WORD = re.compile(r"[A-Za-z_]\w*")
UNSUPPORTED_RULE = "HK000"  # engine.leftovers.RULE_UNSUPPORTED, not imported: it loads LibCST
BOM = b"\xef\xbb\xbf"
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


# -- reading the notebook's JSON with positions --------------------------------------------------------


def _skip(text: str, index: int) -> int:
    whitespace = _WHITESPACE.match(text, index)
    assert whitespace is not None  # the pattern matches the empty string too
    return whitespace.end()


def _expect(text: str, index: int, char: str) -> int:
    if text[index : index + 1] != char:
        raise ValueError(f"expected {char!r} at offset {index}")
    return index + 1


def _value_end(text: str, index: int) -> int:
    return _DECODER.raw_decode(text, index)[1]


def _key(text: str, index: int) -> tuple[str, int]:
    """The member name (a JSON string) at `index`, and the offset after it."""
    _expect(text, index, '"')
    key, end = _DECODER.raw_decode(text, index)
    return str(key), end


def _members(text: str, index: int) -> dict[str, tuple[int, int]]:
    """The (start, end) offsets of each member value of the JSON object at `index`."""
    index = _expect(text, _skip(text, index), "{")
    members: dict[str, tuple[int, int]] = {}
    index = _skip(text, index)
    if text[index : index + 1] == "}":
        return members
    while True:
        key, index = _key(text, index)
        start = _skip(text, _expect(text, _skip(text, index), ":"))
        end = _value_end(text, start)
        members[key] = (start, end)
        index = _skip(text, end)
        if text[index : index + 1] != ",":
            _expect(text, index, "}")
            return members
        index = _skip(text, index + 1)


def _elements(text: str, index: int) -> list[tuple[int, int]]:
    """The (start, end) offsets of each element of the JSON array at `index`."""
    index = _skip(text, _expect(text, _skip(text, index), "["))
    elements: list[tuple[int, int]] = []
    if text[index : index + 1] == "]":
        return elements
    while True:
        end = _value_end(text, index)
        elements.append((index, end))
        index = _skip(text, end)
        if text[index : index + 1] != ",":
            _expect(text, index, "]")
            return elements
        index = _skip(text, index + 1)


@dataclass(frozen=True)
class SourceLayout:
    """How a cell's `source` is written: a list of lines (with its whitespace) or one string."""

    is_list: bool
    opening: str = ""  # whitespace after `[`
    separator: str = ", "  # between items
    closing: str = ""  # whitespace before `]`

    @classmethod
    def of(cls, text: str, start: int, end: int) -> SourceLayout:
        if text[start] != "[":
            return cls(is_list=False)
        items = _elements(text, start)
        if not items:
            return cls(is_list=True)
        opening = text[start + 1 : items[0][0]]
        closing = text[items[-1][1] : end - 1]
        separator = text[items[0][1] : items[1][0]] if len(items) > 1 else "," + (opening or " ")
        return cls(True, opening, separator, closing)

    def write(self, source: str, ensure_ascii: bool) -> str:
        if not self.is_list:
            return json.dumps(source, ensure_ascii=ensure_ascii)
        lines = re.findall(r"[^\n]*\n|[^\n]+$", source)
        if not lines:
            return "[]"
        items = self.separator.join(json.dumps(line, ensure_ascii=ensure_ascii) for line in lines)
        return f"[{self.opening}{items}{self.closing}]"


def _cell_source(value: object, number: int) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "".join(value)
    raise FileError(f"not a notebook: the source of cell {number} is neither text nor a list of lines")


def _object(value: object) -> dict[str, object]:
    """The members of a JSON object; none for any other value (metadata is optional and may be malformed)."""
    return value if isinstance(value, dict) else {}


def _is_python(notebook: dict[str, object]) -> bool:
    metadata = _object(notebook.get("metadata"))
    language = _object(metadata.get("kernelspec")).get("language") or _object(metadata.get("language_info")).get("name")
    return language is None or str(language).lower() == "python"


# -- masking IPython syntax ------------------------------------------------------------------------------


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _mask(cell: str, masks: list[str]) -> tuple[str, bool]:
    """The cell with IPython-only lines replaced by placeholders (appended to `masks`), or masked whole
    (then True)."""
    if _parses(cell):
        return cell, False
    lines = cell.split("\n")
    masked: list[str] = []
    added: list[str] = []
    continues = None  # the indentation of a masked line that ends with a backslash
    for number, line in enumerate(lines):
        python_cell_magic = number == 0 and PYTHON_CELL_MAGIC.match(line)
        if continues is not None or python_cell_magic or (not line.startswith("%%") and IPYTHON_LINE.match(line)):
            indent = continues if continues is not None else line[: len(line) - len(line.lstrip(" \t"))]
            masked.append(indent + PLACEHOLDER.format(len(masks) + len(added)))
            added.append(line)
            continues = indent if line.endswith("\\") else None
        else:
            masked.append(line)
    candidate = "\n".join(masked)
    whole = not added or not _parses(candidate)
    if whole:  # a cell magic or not Python at all: leave the whole cell
        added = cell.removesuffix("\n").split("\n")
        candidate = "\n".join(PLACEHOLDER.format(len(masks) + index) for index in range(len(added)))
        candidate += "\n" if cell.endswith("\n") else ""
    masks.extend(added)
    return candidate, whole


def _unmask(code: str, masks: tuple[str, ...], seen: set[int]) -> str:
    def restore(match: re.Match[str]) -> str:
        number = int(match.group(1))
        seen.add(number)
        return masks[number]

    return PLACEHOLDER_LINE.sub(restore, code)


def _marker_lines(code: str) -> tuple[int, ...]:
    return tuple(number for number, line in enumerate(code.split("\n"), 1) if CELL_MARKER_LINE.match(line + "\n"))


def _haiku_names(code: str) -> set[str]:
    return {match.group(3) or match.group(2) or match.group(1) or "haiku" for match in HAIKU_BINDING.finditer(code)}


def _uses_haiku(masked: str, haiku_names: set[str]) -> bool:
    return bool(HAIKU_CALL.search(masked) or haiku_names & set(WORD.findall(masked)))


def _hides_haiku(masked: str) -> str:
    return f"IPython line `{masked.strip()}` uses Haiku, which is not converted there: convert it by hand"


def _bound_names(import_line: str) -> set[str]:
    """The names an import statement binds (`import a.b as c` -> c, `import a.b` -> a); none if it is not one line."""
    try:
        statement = ast.parse(import_line).body[0]
    except (SyntaxError, IndexError):
        return set()
    if not isinstance(statement, ast.Import | ast.ImportFrom):
        return set()
    return {alias.asname or alias.name.split(".")[0] for alias in statement.names}


# -- the document -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeCell:
    number: int  # 1-based position among all cells
    span: tuple[int, int]  # offsets of the `source` value in the notebook's text
    source: str  # as written, line endings included
    layout: SourceLayout

    @property
    def crlf(self) -> bool:
        return "\r\n" in self.source

    @property
    def code(self) -> str:
        """The source with `\n` line endings, as the engine reads it."""
        return self.source.replace("\r\n", "\n")


@dataclass(frozen=True)
class NotebookDocument:
    original: bytes
    json_text: str
    has_bom: bool
    ensure_ascii: bool
    cells: tuple[CodeCell, ...]
    masks: tuple[str, ...]  # what each placeholder stands for
    text: str
    marker_lines: tuple[int, ...]  # the 1-based line of each code cell's marker in `text`
    hidden: tuple[tuple[int, str], ...] = ()  # (placeholder, why) of masked code that may hide Haiku

    @classmethod
    def load(cls, data: bytes) -> NotebookDocument:
        has_bom = data.startswith(BOM)
        try:
            json_text = data[len(BOM) if has_bom else 0 :].decode("utf-8")
            notebook = json.loads(json_text)
            cells_value = _members(json_text, 0).get("cells") if isinstance(notebook, dict) else None
        except (UnicodeDecodeError, ValueError) as error:
            raise FileError(f"not a notebook: {error}") from None
        version = notebook.get("nbformat") if isinstance(notebook, dict) else None
        if isinstance(version, int) and version < 4:
            raise FileError(
                f"nbformat {version} notebooks are not supported: convert it to nbformat 4 first "
                "(`jupyter nbconvert --to notebook --nbformat 4`)"
            )
        if cells_value is None or not isinstance(notebook.get("cells"), list):
            raise FileError("not a notebook: no `cells` list")
        cells: list[CodeCell] = []
        if _is_python(notebook):
            for number, ((start, end), cell) in enumerate(zip(_elements(json_text, cells_value[0]), notebook["cells"]), 1):
                span = _members(json_text, start).get("source")
                if isinstance(cell, dict) and cell.get("cell_type") == "code" and span is not None:
                    layout = SourceLayout.of(json_text, *span)
                    cells.append(CodeCell(number, span, _cell_source(cell.get("source"), number), layout))
        masks: list[str] = []
        parts, marker_lines, line, hidden = [], [], 1, []
        haiku_names = _haiku_names("\n".join(cell.code for cell in cells))
        for index, cell in enumerate(cells):
            first = len(masks)
            masked, whole = _mask(cell.code, masks)
            if whole and not cell.code.startswith("%%") and cell.code.strip():
                hidden.append((first, "this cell does not parse as Python: it was left as it is; convert it by hand"))
            elif not whole:
                hidden += [(first + i, _hides_haiku(text)) for i, text in enumerate(masks[first:]) if _uses_haiku(text, haiku_names)]
            chunk = CELL_MARKER.format(index) + "\n" + masked + ("" if masked.endswith("\n") or not masked else "\n")
            marker_lines.append(line)
            line += chunk.count("\n")
            parts.append(chunk)
        ensure_ascii = json_text.isascii() and "\\u" in json_text
        return cls(
            data, json_text, has_bom, ensure_ascii, tuple(cells), tuple(masks), "".join(parts), tuple(marker_lines), tuple(hidden)
        )

    # -- mapping code back to cells ---------------------------------------------------------------------
    def sources(self, code: str) -> list[str]:
        """Each code cell's new source, from the converted module text."""
        chunks = CELL_MARKER_LINE.split(code)
        numbers = [int(n) for n in chunks[1::2]]
        if chunks[0] or numbers != list(range(len(self.cells))):
            raise FileError("internal error: the converted notebook code lost its cell markers")
        seen: set[int] = set()
        sources = []
        for cell, chunk in zip(self.cells, chunks[2::2]):
            if not cell.source.endswith("\n") and chunk.endswith("\n"):
                chunk = chunk[:-1]
            source = _unmask(chunk, self.masks, seen)
            sources.append(source.replace("\n", "\r\n") if cell.crlf else source)
        if seen != set(range(len(self.masks))):
            raise FileError("internal error: the converted notebook code lost IPython lines")
        return sources

    def adjust(self, code: str) -> str:
        """Move imports that the conversion added to a later cell into the cell of the Haiku import.

        The import pass adds imports after the module's last import, which in a notebook can be a cell
        that runs after the cells using them.
        """
        code = self._keep_imports_of_masked_code(code)
        home = next((index for index, cell in enumerate(self.cells) if any(map(HAIKU_IMPORT.match, cell.source.split("\n")))), None)
        if home is None:
            return code
        existing = {line for line in self.text.split("\n") if TOP_LEVEL_IMPORT.match(line)}
        lines = code.split("\n")
        cell_of, cell = [], -1
        for line in lines:
            if CELL_MARKER_LINE.match(line + "\n"):
                cell += 1
            cell_of.append(cell)
        moved = [i for i, line in enumerate(lines) if cell_of[i] > home and TOP_LEVEL_IMPORT.match(line) and line not in existing]
        anchors = [i for i, line in enumerate(lines) if cell_of[i] == home and (TOP_LEVEL_IMPORT.match(line) or CELL_MARKER_LINE.match(line + "\n"))]
        if not moved or not anchors:
            return code
        at = anchors[-1] + 1
        kept = [line for i, line in enumerate(lines) if i not in set(moved)]
        kept[at:at] = [lines[i] for i in moved]
        return "\n".join(kept)

    def _keep_imports_of_masked_code(self, code: str) -> str:
        """Put back, where they were, the imports the conversion removed that masked code (a broken
        cell, an IPython line) names: the engine cannot see those uses, the notebook still has them."""
        masked_words = {word for text in self.masks for word in WORD.findall(text)}
        lines = code.split("\n")
        kept = set(lines)
        removed: dict[int, list[str]] = {}  # cell index -> its import lines to put back, in order
        cell = -1
        for line in self.text.split("\n"):
            if CELL_MARKER_LINE.match(line + "\n"):
                cell += 1
            elif TOP_LEVEL_IMPORT.match(line) and line not in kept and _bound_names(line) & masked_words:
                removed.setdefault(cell, []).append(line)
        for cell, imports in removed.items():
            marker = lines.index(CELL_MARKER.format(cell))
            lines[marker + 1 : marker + 1] = imports
        return "\n".join(lines)

    def problems(self, code: str) -> list[Note]:
        """A TODO for each piece of masked code that may hide Haiku, at its line in `code` (the converted text)."""
        if not self.hidden:
            return []
        lines = {int(match.group(1)): number for number, line in enumerate(code.split("\n"), 1) if (match := PLACEHOLDER_LINE.match(line))}
        return [Note(UNSUPPORTED_RULE, Outcome.TODO, why, lines[placeholder], 1) for placeholder, why in self.hidden]

    def render(self, code: str) -> bytes:
        if code == self.text:
            return self.original
        pieces, position = [], 0
        for cell, source in zip(self.cells, self.sources(code)):
            if source == cell.source:
                continue
            start, end = cell.span
            pieces += [self.json_text[position:start], cell.layout.write(source, self.ensure_ascii)]
            position = end
        pieces.append(self.json_text[position:])
        return (BOM if self.has_bom else b"") + "".join(pieces).encode("utf-8")

    def locate(self, line: int, code: str | None = None) -> Location:
        markers = self.marker_lines if code is None else _marker_lines(code)
        index = bisect.bisect_right(markers, line) - 1
        if index < 0 or index >= len(self.cells):
            return Location(line)
        return Location(max(line - markers[index], 1), self.cells[index].number)

    def show(self, line: str) -> str:
        marker = CELL_MARKER_LINE.match(line + "\n")
        if marker:
            return f"# ── cell {self.cells[int(marker.group(1))].number} ──"
        return _unmask(line, self.masks, set())

    def diff(self, path: str, code: str) -> bytes:
        """One unified diff per changed cell, named `path:cell N` (as ruff and nbQA show notebooks)."""
        name = PurePath(path).as_posix()
        out: list[str] = []
        for cell, source in zip(self.cells, self.sources(code)):
            if source == cell.source:
                continue
            newline = "" if cell.source.endswith("\n") else "\n"  # a cell's last line has none, as a rule
            lines = difflib.unified_diff(
                (cell.source + newline).splitlines(keepends=True),
                (source + newline).splitlines(keepends=True),
                f"a/{name}:cell {cell.number}",
                f"b/{name}:cell {cell.number}",
            )
            out += [line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines]
        return "".join(out).encode("utf-8")

"""Everything about files: which ones to migrate, how to read them exactly, how to write them safely.

Files are read as bytes and decoded here (PEP 263 coding cookie, UTF-8 BOM, newline style), so the
engine only ever sees `\\n`-separated text and `Decoded.encode` gives back bytes that differ from the
original only where the code changed. Writes go to a temporary file beside the target that is then
renamed over it, so a user's file is always either the old one or the new one; a file is replaced
only if it is still what was read (an editor may have saved it meanwhile), is not read-only, and keeps
its owner, group and mode bits.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import os
import re
import shutil
import stat
import tempfile
import tokenize
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

# Not walked unless a project's `exclude` setting says otherwise: ruff's default exclusions (version control,
# build output, installed packages, environments, tool caches, notebook checkpoints) and bytecode caches.
SKIP_DIRS = frozenset(
    {
        ".bzr", ".direnv", ".eggs", ".git", ".git-rewrite", ".hg", ".ipynb_checkpoints", ".mypy_cache", ".nox",
        ".pants.d", ".pyenv", ".pytest_cache", ".pytype", ".ruff_cache", ".svn", ".tox", ".venv", ".vscode",
        "__pycache__", "__pypackages__", "_build", "buck-out", "build", "dist", "node_modules", "site-packages", "venv",
    }
)
VENV_MARKER = "pyvenv.cfg"
GIT_DIR = ".git"  # never walked, whatever the exclusions
GITIGNORE = ".gitignore"
NEWLINE = re.compile(r"\r\n|\r|\n")


class FileError(Exception):
    """A file that cannot be migrated, shown as one `path:line:col: error: message` line."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message, line, column)  # all in `args`, so it survives pickling from a worker
        self.message = " ".join(message.split())
        self.line = max(line, 1)  # unknown positions (0) point at the file's start
        self.column = max(column, 1)

    def describe(self, path: str) -> str:
        return f"{path}:{self.line}:{self.column}: error: {self.message}"


def _position(before: str | bytes) -> tuple[int, int]:
    """1-based (line, column) of the character that follows `before`."""
    if isinstance(before, bytes):  # latin-1 maps each byte to one character, so counts stay in bytes
        before = before.decode("latin-1")
    return before.count("\n") + 1, len(before) - before.rfind("\n")


@dataclass(frozen=True)
class Decoded:
    """A source file's text with `\\n` newlines, and what it takes to write it back byte for byte."""

    text: str
    encoding: str  # "utf-8-sig" when the file starts with a BOM, which then round-trips
    newline: str  # the file's first line ending

    def encode(self, text: str) -> bytes:
        if self.newline != "\n":
            text = text.replace("\n", self.newline)
        try:
            return text.encode(self.encoding)
        except UnicodeEncodeError as error:
            line, column = _position(error.object[: error.start])
            raise FileError(f"the converted code cannot be written as {self.encoding}: {error.reason}", line, column) from None


def decode(data: bytes) -> Decoded:
    """Decode Python source the way the interpreter does: BOM, then the coding cookie, then UTF-8."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as error:  # an unknown or contradictory coding cookie
        raise FileError(str(error)) from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        line, column = _position(data[: error.start])
        raise FileError(f"cannot decode as {encoding}: {error.reason}", line, column) from None
    first_newline = NEWLINE.search(text)
    newline = first_newline.group() if first_newline else "\n"
    return Decoded(text.replace("\r\n", "\n").replace("\r", "\n"), encoding, newline)


def display_path(path: Path) -> str:
    """The path relative to the working directory when it lies inside it (as diffs want), else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return absolute if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative


def mirrored(path: str, out_dir: Path) -> Path:
    """Where `--out-dir` puts a file shown as `path` (see `display_path`)."""
    relative = Path(path)
    return out_dir / (relative.relative_to(relative.anchor) if relative.is_absolute() else relative)


@dataclass(frozen=True)
class Snapshot:
    """A file as it was read, to tell whether it changed before the converted text replaces it."""

    size: int
    mtime_ns: int
    digest: bytes

    @classmethod
    def of(cls, data: bytes, status: os.stat_result) -> Snapshot:
        return cls(len(data), status.st_mtime_ns, hashlib.blake2b(data).digest())

    def matches(self, path: Path) -> bool:
        """Size and mtime first (cheap); the content's hash as well, since a write can keep both."""
        with open(path, "rb") as file:
            status = os.fstat(file.fileno())
            if status.st_size != self.size or status.st_mtime_ns != self.mtime_ns:
                return False
            return hashlib.blake2b(file.read()).digest() == self.digest


class ChangedOnDisk(Exception):
    """The file is no longer what was read: it was left as it is."""


def read_file(path: Path) -> tuple[bytes, Snapshot]:
    with open(path, "rb") as file:
        status = os.fstat(file.fileno())
        data = file.read()
    return data, Snapshot.of(data, status)


def write_atomic(path: Path, data: bytes, mode: int | None = None, expected: Snapshot | None = None) -> None:
    """Replace `path` with `data` through a renamed temporary file, keeping the file's mode bits.

    Replacing an existing file (no `mode` given) also keeps its owner and group, refuses a read-only
    file (PermissionError, as black and ruff do) and, with `expected`, raises `ChangedOnDisk` instead of
    replacing a file that is no longer what was read. A symlink is written through (its target is
    replaced), so the link survives.
    """
    target = Path(os.path.realpath(path))
    owner = None
    if mode is None:
        status = target.stat()
        mode = stat.S_IMODE(status.st_mode)
        if not mode & 0o222 or not os.access(target, os.W_OK):
            raise PermissionError(errno.EACCES, "the file is read-only")
        owner = (status.st_uid, status.st_gid)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        if owner is not None:
            _keep_owner(temporary, *owner)
        if expected is not None and not expected.matches(target):
            raise ChangedOnDisk(target)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _keep_owner(path: str, uid: int, gid: int) -> None:
    status = os.stat(path)
    if (status.st_uid, status.st_gid) == (uid, gid):
        return
    try:
        os.chown(path, uid if status.st_uid != uid else -1, gid if status.st_gid != gid else -1)
    except PermissionError:
        raise PermissionError(errno.EPERM, "its owner and group could not be kept") from None


def write_mirrored(source: Path, destination: Path, data: bytes | None) -> None:
    """`--out-dir`: write `data` (or copy `source` when None) to `destination`, keeping the mode bits."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        shutil.copy2(source, destination)
    else:
        write_atomic(destination, data, mode=stat.S_IMODE(source.stat().st_mode))


# -- discovery -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IgnoreRule:
    """One .gitignore line: a `/`-split glob, relative to the directory of its .gitignore."""

    base: tuple[str, ...]
    pattern: tuple[str, ...]  # `**` segments match any number of directories
    negated: bool
    directories_only: bool

    @classmethod
    def parse(cls, line: str, base: tuple[str, ...]) -> IgnoreRule | None:
        line = line.rstrip()
        if not line or line.startswith("#"):
            return None
        negated = line.startswith("!")
        line = line.removeprefix("!").removeprefix("\\")  # `\#` and `\!` start literal patterns
        directories_only = line.endswith("/")
        segments = tuple(segment for segment in line.strip("/").split("/") if segment)
        if not segments:
            return None
        if "/" not in line.rstrip("/"):  # a bare name matches at any depth
            segments = ("**", *segments)
        return cls(base, segments, negated, directories_only)

    def matches(self, parts: tuple[str, ...], is_dir: bool) -> bool:
        if (self.directories_only and not is_dir) or parts[: len(self.base)] != self.base:
            return False
        return _glob_match(self.pattern, parts[len(self.base) :])


def _glob_match(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Segment-wise matching, so `*` never crosses a `/` (plain fnmatch on whole paths would)."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_glob_match(pattern[1:], parts[start:]) for start in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], pattern[0]) and _glob_match(pattern[1:], parts[1:])


def _read_gitignore(directory: Path, base: tuple[str, ...]) -> list[IgnoreRule]:
    try:
        text = (directory / GITIGNORE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [rule for line in text.splitlines() if (rule := IgnoreRule.parse(line, base)) is not None]


def _is_ignored(parts: tuple[str, ...], is_dir: bool, rules: list[IgnoreRule]) -> bool:
    """Git's rule: the last matching pattern decides, and `!pattern` re-includes."""
    ignored = False
    for rule in rules:
        if rule.matches(parts, is_dir):
            ignored = not rule.negated
    return ignored


def repository_root(directory: Path) -> Path:
    """The enclosing git work tree (so its top-level .gitignore applies), else `directory` itself."""
    for candidate in (directory, *directory.parents):
        if (candidate / ".git").exists():
            return candidate
    return directory


@dataclass(frozen=True)
class Exclusions:
    """What discovery leaves out besides .gitignore: gitignore-style patterns relative to `root`.

    The defaults skip version control, build output, installed packages and caches by name; a project's
    `exclude` setting replaces them and `extend-exclude` adds to them. Configured patterns also apply
    to files named on the command line, so a pre-commit hook (which names files) respects them too.
    """

    root: Path
    patterns: tuple[str, ...] = tuple(sorted(SKIP_DIRS))
    applies_to_given_files: bool = False

    @functools.cached_property
    def _rules(self) -> list[IgnoreRule]:
        return [rule for pattern in self.patterns if (rule := IgnoreRule.parse(pattern, ())) is not None]

    def excludes(self, path: Path, is_dir: bool) -> bool:
        """Whether `path`, or a directory it lies in below `root`, matches a pattern."""
        absolute = Path(os.path.abspath(path))
        try:
            parts = absolute.relative_to(os.path.abspath(self.root)).parts
        except ValueError:  # outside the project: only bare names can match
            parts = (absolute.name,)
        folders = any(_is_ignored(parts[:depth], True, self._rules) for depth in range(1, len(parts)))
        return folders or _is_ignored(parts, is_dir, self._rules)


def walk(top: Path, exclude: Collection[Path] = (), patterns: Exclusions | None = None) -> Iterator[Path]:
    """Files under `top`, skipping `patterns` (by default SKIP_DIRS), virtualenvs, `exclude` and what
    .gitignore files exclude."""
    absolute = Path(os.path.abspath(top))
    root = repository_root(absolute)
    parts = absolute.relative_to(root).parts
    rules = [rule for depth in range(len(parts)) for rule in _read_gitignore(root.joinpath(*parts[:depth]), parts[:depth])]
    excluded = {Path(os.path.abspath(path)) for path in exclude}
    yield from _walk_directory(top, parts, rules, excluded, patterns or Exclusions(absolute))


def _walk_directory(
    directory: Path, parts: tuple[str, ...], inherited: list[IgnoreRule], excluded: set[Path], patterns: Exclusions
) -> Iterator[Path]:
    rules = inherited + _read_gitignore(directory, parts)
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        path = directory / entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if entry.name == GIT_DIR or _is_ignored((*parts, entry.name), is_dir, rules) or patterns.excludes(path, is_dir):
            continue
        if is_dir:
            if (path / VENV_MARKER).exists() or Path(os.path.abspath(path)) in excluded:
                continue
            yield from _walk_directory(path, (*parts, entry.name), rules, excluded, patterns)
        elif _is_file(entry):
            yield path


def _is_file(entry: os.DirEntry[str]) -> bool:
    """Whether a directory entry is a file to read; a symlink that loops or cannot be followed counts as
    one, so that reading it reports the problem in its place and the walk goes on."""
    try:
        return entry.is_file()
    except OSError:
        return True


@dataclass(frozen=True)
class Discovery:
    sources: list[Path]  # the files to migrate, sorted
    others: list[Path]  # every other file found by walking: `--out-dir` copies them


def discover(
    paths: Collection[Path], suffixes: Collection[str], exclude: Collection[Path] = (), patterns: Exclusions | None = None
) -> Discovery:
    """Files to migrate: those with one of `suffixes` in the directories given, and every file given
    (unless a configured exclusion says otherwise).

    A given file is kept even when it does not exist, so reading it reports the error in its place.
    """
    sources: dict[str, Path] = {}
    others: dict[str, Path] = {}
    for path in paths:
        if patterns is not None and patterns.applies_to_given_files and patterns.excludes(path, path.is_dir()):
            continue
        if not path.is_dir():
            sources[os.path.abspath(path)] = path
            continue
        for file in walk(path, exclude, patterns):
            readable = os.path.exists(file)  # else a symlink loop: reading it reports it, whatever its suffix
            (sources if file.suffix in suffixes or not readable else others).setdefault(os.path.abspath(file), file)
    for key in sources.keys() & others.keys():  # a file given explicitly and also found by walking
        del others[key]
    return Discovery(sorted(sources.values(), key=display_path), sorted(others.values(), key=display_path))

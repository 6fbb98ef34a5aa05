"""`haiku2flax migrate`: exit codes, what is written (and what never is), file encodings, discovery.

Real conversions use `--to linen` on the migration guide's Basic Example; tests about the command's
plumbing replace the engine with a stub so they do not depend on what the rules convert.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from haiku2flax import runner
from haiku2flax.cli import main
from haiku2flax.engine import Conversion, Note, Outcome
from haiku2flax.files import IgnoreRule, discover

EXAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "guide" / "basic_example" / "haiku.py"
TODO_SOURCE = textwrap.dedent(
    """\
    import haiku as hk
    import jax


    def noise(x):
      key = hk.next_rng_key()
      return x + jax.random.normal(key, x.shape)
    """
)
NO_HAIKU = b"import os\n\nprint(os.getcwd())\n"
SYNTAX_ERROR = b"import haiku as hk\n\nx = (\n"


def migrate(*args: str, input: bytes | None = None) -> Result:
    return CliRunner().invoke(main, ["migrate", *args], input=input, catch_exceptions=False)


@pytest.fixture
def source() -> str:
    return EXAMPLE.read_text(encoding="utf-8")


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, so displayed paths are short and relative."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def make_tree(root: Path, source: str) -> dict[str, bytes]:
    """Two convertible files, one without Haiku and one with a TODO; returns their original bytes."""
    files = {
        "pkg/model.py": source.encode(),
        "pkg/sub/other.py": source.replace("Block", "Layer").encode(),
        "pkg/plain.py": NO_HAIKU,
        "pkg/noise.py": TODO_SOURCE.encode(),
    }
    for name, data in files.items():
        write(root / name, data)
    return files


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


class StubEngine:
    """Stands in for `convert_source`: records its calls; `fail` maps a marker in the text to an error."""

    def __init__(self, fail: dict[str, Exception] | None = None) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.fail = fail or {}

    def __call__(self, text: str, target: str, **options) -> Conversion:
        self.calls.append((target, options))
        for marker, error in self.fail.items():
            if marker in text:
                raise error
        return Conversion(text, text.replace("hk", "nn"), [Note("HK001", Outcome.CONVERTED, "converted", 1, 1)])


# -- exit codes and what gets written ----------------------------------------------------------------


def test_rewrites_in_place(work: Path, source: str):
    path = write(work / "model.py", source)
    result = migrate("--to", "linen", "model.py")
    assert result.exit_code == 0, result.stderr
    converted = path.read_text(encoding="utf-8")
    assert "flax.linen" in converted and "import haiku" not in converted
    assert "migrated model.py" in result.stderr


def test_quiet_prints_errors_only_and_verbose_every_construct(work: Path, source: str):
    write(work / "model.py", source)
    write(work / "broken.py", SYNTAX_ERROR)
    quiet = migrate("--to", "linen", "-q", "--check", ".")
    assert quiet.exit_code == 2
    assert quiet.stderr.splitlines() == [next(line for line in quiet.stderr.splitlines() if line.startswith("broken.py:"))]
    verbose = migrate("--to", "linen", "-v", "--check", "model.py")
    assert verbose.exit_code == 1
    assert "model.py:" in verbose.stderr and ": converted: " in verbose.stderr


def test_progress_bar_path_gives_the_same_results(work: Path, source: str, monkeypatch: pytest.MonkeyPatch):
    paths = [write(work / f"m{index}.py", source) for index in range(3)]
    settings, output = runner.Settings("linen"), runner.Output(check=True)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with_bar = runner.migrate_paths(paths, settings, output, jobs=1)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert with_bar == runner.migrate_paths(paths, settings, output, jobs=1)
    assert all(result.changed for result in with_bar)


def test_check_writes_nothing_and_exits_1(work: Path, source: str):
    make_tree(work, source)
    before = snapshot(work)
    result = migrate("--to", "linen", "--check", ".")
    assert result.exit_code == 1
    assert snapshot(work) == before
    assert "would migrate pkg/model.py" in result.stderr
    assert "would migrate pkg/sub/other.py" in result.stderr
    assert "would migrate pkg/plain.py" not in result.stderr
    assert "still use Haiku" in result.stderr and "haiku2flax migrate" in result.stderr


def test_check_passes_on_migrated_code(work: Path, source: str):
    make_tree(work, source)
    assert migrate("--to", "linen", ".").exit_code == 0
    assert migrate("--to", "linen", "--check", ".").exit_code == 0


def test_second_run_changes_nothing(work: Path, source: str):
    make_tree(work, source)
    migrate("--to", "linen", ".")
    after_first = snapshot(work)
    result = migrate("--to", "linen", "--diff", ".")
    assert result.exit_code == 0 and result.stdout_bytes == b""
    assert migrate("--to", "linen", ".").exit_code == 0
    assert snapshot(work) == after_first


def test_file_without_haiku_is_never_rewritten(work: Path):
    path = write(work / "plain.py", NO_HAIKU)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    result = migrate("plain.py")  # the default target, whatever it converts
    assert result.exit_code == 0, result.stderr
    assert path.read_bytes() == NO_HAIKU
    assert path.stat().st_mtime_ns == 1_000_000_000


def test_strict_fails_on_todos(work: Path):
    write(work / "noise.py", TODO_SOURCE)
    result = migrate("--to", "linen", "--strict", "noise.py")
    assert result.exit_code == 1
    assert "noise.py:6:" in result.stderr and "todo:" in result.stderr
    assert migrate("--to", "linen", "noise.py").exit_code == 0, "without --strict a TODO is not a failure"



def test_strict_fails_on_todos_an_earlier_run_left(work: Path):
    write(work / "new.py", "import haiku as hk\n\ny = hk.SomethingNew(3)\n")
    assert migrate("--to", "linen", "new.py").exit_code == 0
    again = migrate("--to", "linen", "--check", "--strict", "new.py")
    assert again.exit_code == 1 and "new.py:3:1: todo:" in again.stderr and "(left by an earlier run)" in again.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--to", "jax", "x.py"],
        ["-", "x.py"],
        ["--out-dir", "out", "--check", "x.py"],
        ["--out-dir", ".", "x.py"],
        ["-q", "-v", "x.py"],
        ["--rules", "missing.toml", "x.py"],
        [],
    ],
)
def test_usage_errors_exit_2(work: Path, args: list[str]):
    write(work / "x.py", NO_HAIKU)
    assert migrate(*args).exit_code == 2


def test_unwritable_report_exits_2(work: Path, source: str):
    write(work / "model.py", source)
    result = migrate("--to", "linen", "--report", "missing/report.json", "model.py")
    assert result.exit_code == 2
    assert "cannot write the report" in result.stderr


def test_bad_rule_table_is_a_usage_error(work: Path):
    write(work / "bad.toml", "[[construct]\n")
    result = migrate("--rules", "bad.toml", "--to", "linen", "-")
    assert result.exit_code == 2
    assert "bad.toml" in result.stderr


# -- files that cannot be processed --------------------------------------------------------------------


def test_syntax_error_is_one_line_and_other_files_are_converted(work: Path, source: str):
    write(work / "a.py", source)
    write(work / "b_broken.py", SYNTAX_ERROR)
    write(work / "c.py", source)
    result = migrate("--to", "linen", ".")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1
    assert errors[0].startswith("b_broken.py:3:") or errors[0].startswith("b_broken.py:4:")
    assert "import haiku" not in (work / "a.py").read_text() and "import haiku" not in (work / "c.py").read_text()
    assert (work / "b_broken.py").read_bytes() == SYNTAX_ERROR


def test_undecodable_file_exits_2_and_is_left_alone(work: Path, source: str):
    data = b"import haiku as hk\n# caf\xe9\n"
    path = write(work / "latin.py", data)
    write(work / "good.py", source)
    result = migrate("--to", "linen", ".")
    assert result.exit_code == 2
    [error] = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert error.startswith("latin.py:2:6: error: cannot decode as utf-8")
    assert path.read_bytes() == data
    assert "import haiku" not in (work / "good.py").read_text()


def test_missing_file_is_reported_and_others_processed(work: Path, source: str):
    write(work / "good.py", source)
    result = migrate("--to", "linen", "missing.py", "good.py")
    assert result.exit_code == 2
    assert "missing.py:1:1: error: cannot read: No such file or directory" in result.stderr
    assert "import haiku" not in (work / "good.py").read_text()


def test_engine_crash_costs_only_its_file(work: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(runner, "convert_source", StubEngine({"BOOM": RuntimeError("rule bug")}))
    write(work / "a.py", "import haiku as hk  # BOOM\n")
    write(work / "b.py", "import haiku as hk\n")
    result = migrate("-j", "1", ".")
    assert result.exit_code == 2
    assert "a.py:1:1: error: internal error: RuntimeError: rule bug" in result.stderr
    assert (work / "b.py").read_text() == "import haiku as nn\n"


def test_failed_write_keeps_the_original(work: Path, source: str, monkeypatch: pytest.MonkeyPatch):
    path = write(work / "model.py", source)

    def replace_fails(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace_fails)
    result = migrate("--to", "linen", "model.py")
    assert result.exit_code == 2
    assert "model.py:1:1: error: cannot write: No space left on device" in result.stderr
    assert path.read_text(encoding="utf-8") == source
    assert sorted(p.name for p in work.iterdir()) == ["model.py"], "the temporary file is removed"


# -- encodings, newlines, mode bits -------------------------------------------------------------------


def test_latin1_with_coding_cookie_round_trips(work: Path, source: str):
    text = "# -*- coding: latin-1 -*-\n# Modèle écrit par René\n" + source
    path = write(work / "model.py", text.encode("latin-1"))
    assert migrate("--to", "linen", "model.py").exit_code == 0
    data = path.read_bytes()
    assert data.startswith("# -*- coding: latin-1 -*-\n# Modèle écrit par René\n".encode("latin-1"))
    assert "flax.linen" in data.decode("latin-1")


def test_crlf_and_bom_are_kept(work: Path, source: str):
    crlf = write(work / "crlf.py", source.replace("\n", "\r\n").encode())
    bom = write(work / "bom.py", b"\xef\xbb\xbf" + source.encode())
    assert migrate("--to", "linen", ".").exit_code == 0
    crlf_data = crlf.read_bytes()
    assert b"flax.linen" in crlf_data and crlf_data.count(b"\r\n") == crlf_data.count(b"\n")
    bom_data = bom.read_bytes()
    assert bom_data.startswith(b"\xef\xbb\xbf") and bom_data.count(b"\xef\xbb\xbf") == 1 and b"flax.linen" in bom_data
    assert crlf_data.replace(b"\r\n", b"\n") == bom_data[3:], "same code whatever the file's form"


def test_mode_bits_are_kept(work: Path, source: str):
    path = write(work / "script.py", source)
    path.chmod(0o755)
    assert migrate("--to", "linen", "script.py").exit_code == 0
    assert "flax.linen" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o755


def test_symlink_is_written_through(work: Path, source: str):
    target = write(work / "real.py", source)
    (work / "link.py").symlink_to("real.py")
    assert migrate("--to", "linen", "link.py").exit_code == 0
    assert (work / "link.py").is_symlink()
    assert "flax.linen" in target.read_text()


# -- stdin, diff, out-dir, report, parallel ---------------------------------------------------------


def test_stdin_to_stdout(work: Path, source: str):
    result = migrate("--to", "linen", "-", input=source.encode())
    assert result.exit_code == 0
    assert b"flax.linen" in result.stdout_bytes and b"import haiku" not in result.stdout_bytes
    assert migrate("--to", "linen", "--check", "-", input=source.encode()).exit_code == 1
    diff = migrate("--to", "linen", "--diff", "-", input=source.encode())
    assert diff.stdout_bytes.startswith(b"--- a/-\n+++ b/-\n")


def test_stdin_with_error_echoes_the_input(work: Path):
    result = migrate("--to", "linen", "-", input=SYNTAX_ERROR)
    assert result.exit_code == 2
    assert result.stdout_bytes == SYNTAX_ERROR
    assert result.stderr.startswith("-:3:")


@pytest.mark.skipif(shutil.which("git") is None or shutil.which("patch") is None, reason="needs git and patch")
def test_diff_applies_with_git_apply_and_patch(work: Path, source: str):
    tree = make_tree(work, source)
    write(work / "pkg/crlf.py", source.replace("\n", "\r\n"))
    write(work / "pkg/latin.py", ("# -*- coding: latin-1 -*-\n# é\n" + source).encode("latin-1"))
    write(work / "pkg/bom.py", b"\xef\xbb\xbf" + source.encode())
    write(work / "pkg/no_newline.py", source.rstrip("\n"))
    before = snapshot(work)
    result = migrate("--to", "linen", "--diff", "pkg")
    assert result.exit_code == 0
    assert snapshot(work) == before, "--diff writes nothing"
    patch = work.parent / "migration.patch"
    patch.write_bytes(result.stdout_bytes)
    assert b"--- a/pkg/model.py\n+++ b/pkg/model.py\n" in result.stdout_bytes

    expected = work.parent / "expected"
    shutil.copytree(work, expected)
    assert migrate("--to", "linen", str(expected / "pkg")).exit_code == 0

    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run(["git", "apply", "--check", str(patch)], cwd=work, check=True)
    subprocess.run(["patch", "-p1", "-s", "-i", str(patch)], cwd=work, check=True)
    assert {name: data for name, (data, _) in snapshot(work / "pkg").items()} == {
        name: data for name, (data, _) in snapshot(expected / "pkg").items()
    }
    assert (work / "pkg/plain.py").read_bytes() == tree["pkg/plain.py"]


def test_out_dir_mirrors_the_tree(work: Path, source: str):
    tree = make_tree(work, source)
    write(work / "pkg/README.md", "notes\n")
    before = snapshot(work)
    result = migrate("--to", "linen", "--out-dir", "out", "pkg")
    assert result.exit_code == 0
    assert {k: v for k, v in snapshot(work).items() if not k.startswith("out")} == before
    assert "flax.linen" in (work / "out/pkg/model.py").read_text()
    assert "flax.linen" in (work / "out/pkg/sub/other.py").read_text()
    assert (work / "out/pkg/plain.py").read_bytes() == tree["pkg/plain.py"]
    assert (work / "out/pkg/README.md").read_text() == "notes\n"
    assert "migrated pkg/model.py into out/pkg/model.py" in result.stderr
    again = migrate("--to", "linen", "--out-dir", "pkg/out", "pkg")
    assert again.exit_code == 0
    assert not (work / "pkg/out/pkg/out").exists(), "the output folder is not walked"


def test_report_lists_every_construct_and_file(work: Path, source: str):
    write(work / "model.py", source)
    write(work / "noise.py", TODO_SOURCE)
    write(work / "plain.py", NO_HAIKU)
    write(work / "broken.py", SYNTAX_ERROR)
    result = migrate("--to", "linen", "--report", "report.json", ".")
    assert result.exit_code == 2
    report = json.loads((work / "report.json").read_text())
    assert report["target"] == "linen"
    statuses = {entry["path"]: entry["status"] for entry in report["files"]}
    assert statuses == {"broken.py": "error", "model.py": "changed", "noise.py": "changed", "plain.py": "unchanged"}
    broken = next(entry for entry in report["files"] if entry["path"] == "broken.py")
    assert broken["error"]["line"] >= 3 and broken["error"]["message"]
    constructs = report["constructs"]
    assert {c["file"] for c in constructs} == {"model.py", "noise.py"}
    assert all(set(c) == {"file", "line", "column", "rule", "outcome", "message"} for c in constructs)
    assert any(c["outcome"] == "todo" and c["file"] == "noise.py" for c in constructs)
    assert sum(c["outcome"] == "converted" for c in constructs) == report["summary"]["converted"] > 0
    assert report["summary"]["errors"] == 1 and report["summary"]["todos"] >= 1


def test_jobs_2_gives_the_same_output_as_jobs_1(work: Path, source: str):
    make_tree(work, source)
    for index in range(4):
        write(work / f"more/m{index}.py", source.replace("Model", f"Model{index}"))
    write(work / "more/broken.py", SYNTAX_ERROR)
    outputs = []
    for jobs in ("1", "2"):
        result = migrate("--to", "linen", "--diff", "-j", jobs, "--report", f"report{jobs}.json", "pkg", "more")
        assert result.exit_code == 2
        outputs.append((result.stdout_bytes, result.stderr, (work / f"report{jobs}.json").read_text()))
    assert outputs[0] == outputs[1]


def test_options_reach_the_engine(work: Path, monkeypatch: pytest.MonkeyPatch):
    engine = StubEngine()
    monkeypatch.setattr(runner, "convert_source", engine)
    write(work / "a.py", "import haiku as hk\n")
    result = migrate("--to", "linen", "--select", "HK001, HK002", "--select", "HK3", "--ignore", "HK004", "--check", "a.py")
    assert result.exit_code == 1
    [(target, options)] = engine.calls
    assert target == "linen"
    assert options["select"] == frozenset({"HK001", "HK002", "HK3"})
    assert options["ignore"] == frozenset({"HK004"})
    assert options["tables"] is None


# -- discovery --------------------------------------------------------------------------------------


def test_walk_respects_gitignore_and_skips_environments(work: Path):
    names = [
        "keep.py",
        "generated/gen.py",  # .gitignore: generated/
        "proto_pb2.py",  # .gitignore: *_pb2.py
        "keep_pb2.py",  # .gitignore: !keep_pb2.py
        "top_only.py",  # .gitignore: /top_only.py
        "sub/top_only.py",
        "sub/local.py",  # sub/.gitignore: local.py
        "sub/deep/a/b/c.py",  # .gitignore: sub/**/b/
        "env/lib/x.py",  # a virtualenv by its pyvenv.cfg
        ".venv/x.py",
        "venv/x.py",
        "build/x.py",
        "dist/x.py",
        "node_modules/x.py",
        "__pycache__/x.py",
        "lib/site-packages/x.py",
        ".git/x.py",
        "notes.txt",
    ]
    for name in names:
        write(work / name, "")
    write(work / "env/pyvenv.cfg", "")
    write(work / ".gitignore", "# generated code\ngenerated/\n*_pb2.py\n!keep_pb2.py\n/top_only.py\nsub/**/b/\n")
    write(work / "sub/.gitignore", "local.py\n")
    found = discover([Path(".")], {".py"})
    assert [str(p) for p in found.sources] == ["keep.py", "keep_pb2.py", "sub/top_only.py"]
    assert [str(p) for p in found.others] == [".gitignore", "notes.txt", "sub/.gitignore"]
    assert [str(p) for p in discover([Path("sub")], {".py"}).sources] == ["sub/top_only.py"]
    explicit = discover([Path("build/x.py"), Path("proto_pb2.py"), Path("notes.txt")], {".py"})
    assert [str(p) for p in explicit.sources] == ["build/x.py", "notes.txt", "proto_pb2.py"], "given files always count"


def test_root_gitignore_applies_when_walking_a_subfolder(work: Path):
    (work / ".git").mkdir()
    write(work / ".gitignore", "generated/\n")
    write(work / "src/generated/x.py", "")
    write(work / "src/y.py", "")
    assert [str(p) for p in discover([Path("src")], {".py"}).sources] == ["src/y.py"]


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "matches"),
    [
        ("*.py", ("a", "b.py"), False, True),
        ("/b.py", ("a", "b.py"), False, False),
        ("a/*.py", ("a", "c", "b.py"), False, False),
        ("a/**/b.py", ("a", "c", "d", "b.py"), False, True),
        ("out/", ("out",), False, False),
        ("out/", ("x", "out"), True, True),
    ],
)
def test_ignore_patterns(pattern: str, path: tuple[str, ...], is_dir: bool, matches: bool):
    rule = IgnoreRule.parse(pattern, ())
    assert rule is not None and rule.matches(path, is_dir) is matches


# -- start-up and packaging ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["migrate", "--to", "linen", "-j", "2", "."], 0),
        (["migrate", "--check", "--strict", "--output-format", "github", "--report", "r.sarif", "--report", "r.md", "."], 1),
        (["rules"], 0),
        (["rules", "HK005", "--markdown"], 0),
    ],
)
def test_migrate_and_rules_never_import_the_verify_extra(tmp_path: Path, source: str, args: list[str], status: int):
    """What the pre-commit hooks and a lean install run must not need jax, flax, haiku, optax, orbax or numpy."""
    write(tmp_path / "a.py", source)
    write(tmp_path / "b.py", TODO_SOURCE)
    script = textwrap.dedent(
        """
        import json, sys
        from haiku2flax.cli import main
        try:
            main(json.loads(sys.argv[1]))
        except SystemExit as exit:
            assert exit.code == int(sys.argv[2]), exit.code
        loaded = {name.split(".")[0] for name in sys.modules} & {"jax", "jaxlib", "flax", "haiku", "optax", "orbax", "numpy"}
        assert not loaded, loaded
        """
    )
    subprocess.run([sys.executable, "-c", script, json.dumps(args), str(status)], cwd=tmp_path, check=True, capture_output=True)
    if args[:3] == ["migrate", "--to", "linen"]:
        assert "flax.linen" in (tmp_path / "a.py").read_text()


def test_only_the_harness_imports_beyond_the_lean_core():
    """Every import in the package outside `harness/`, anywhere in a module (functions included), and the
    module-level imports of the harness modules the command line loads, name the standard library,
    LibCST, click, rich or haiku2flax: paths the runtime tests do not take cannot need jax either."""
    import ast

    package = Path(runner.__file__).parent
    allowed = set(sys.stdlib_module_names) | {"libcst", "click", "rich", "haiku2flax"}
    loaded_by_cli = {package / "harness" / "__init__.py", package / "harness" / "commands.py"}
    offending = []
    for path in sorted(package.rglob("*.py")):
        if path.parent.name == "harness" and path not in loaded_by_cli:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = tree.body if path in loaded_by_cli else list(ast.walk(tree))
        for node in nodes:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offending += [f"{path.relative_to(package)}:{node.lineno}: {name}" for name in names if name.split(".")[0] not in allowed]
    assert not offending, offending


def test_verify_extra_lists_what_the_harness_checks_for():
    """`verify` tells a lean install what is missing from the same list pyproject.toml's extra declares."""
    import tomllib

    from haiku2flax.harness.commands import VERIFY_EXTRA

    project = tomllib.loads((EXAMPLE.parents[3] / "pyproject.toml").read_text())["project"]
    declared = [re.match(r"[A-Za-z0-9._-]+", requirement).group() for requirement in project["optional-dependencies"]["verify"]]
    assert tuple(declared) == VERIFY_EXTRA
    assert not set(declared) & {re.match(r"[A-Za-z0-9._-]+", r).group() for r in project["dependencies"]}
    assert "haiku2flax[verify]" in project["optional-dependencies"]["test"], "the tests run verify"


def test_verify_without_the_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch):
    from haiku2flax.harness import commands

    monkeypatch.setattr(commands, "VERIFY_EXTRA", ("jax", "no-such-distribution-haiku2flax"))
    result = CliRunner().invoke(main, ["verify", "x.py", "--to", "nnx", "--entry", "m", "--input", "f32[1]", "--arg", "a=1"])
    assert result.exit_code == 2
    assert result.stderr == "error: `haiku2flax verify` needs no-such-distribution-haiku2flax: pip install 'haiku2flax[verify]'\n"


def test_pre_commit_hooks_are_declared():
    yaml = pytest.importorskip("yaml")
    manifest = Path(__file__).resolve().parent.parent / ".pre-commit-hooks.yaml"
    hooks = {hook["id"]: hook for hook in yaml.safe_load(manifest.read_text())}
    assert hooks["haiku2flax"]["entry"] == "haiku2flax migrate"
    assert hooks["haiku2flax-check"]["entry"] == "haiku2flax migrate --check --strict"
    for hook in hooks.values():
        assert hook["language"] == "python" and hook["types_or"] == ["python", "jupyter"]
    clientlib = pytest.importorskip("pre_commit.clientlib")
    clientlib.load_manifest(str(manifest))

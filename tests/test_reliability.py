"""What a user wrote is never lost and a failure is never reported as success: files edited during a
run, read-only files, ownership, interrupts, symlink loops, excluded folders, repeated runs.

The CLI is driven as a user drives it (click's runner, or a real process where signals matter); where
a test needs something to happen in the middle of a run, it wraps the engine so the edit happens
while a file is being converted.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from haiku2flax import runner
from haiku2flax.cli import main
from haiku2flax.engine import Conversion

SOURCE = textwrap.dedent(
    """\
    import haiku as hk


    class Block(hk.Module):
      def __call__(self, x):
        return hk.Linear(3)(x)
    """
)


def migrate(*args: str) -> Result:
    return CliRunner().invoke(main, ["migrate", *args], catch_exceptions=False)


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def engine_that(during: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Wrap the conversion: while a text containing a key is converted, call its value; returns the order seen."""
    convert, seen = runner.convert_text, []

    def wrapped(text: str, settings: runner.Settings) -> Conversion:
        for marker, action in during.items():
            if marker in text:
                seen.append(marker)
                action()  # type: ignore[operator]
        return convert(text, settings)

    monkeypatch.setattr(runner, "convert_text", wrapped)
    return seen


# -- 1. edits made during a run --------------------------------------------------------------------------


def test_a_file_edited_while_it_is_converted_is_left_as_edited(work: Path, monkeypatch: pytest.MonkeyPatch):
    edited = SOURCE + "\n\n# the user's edit, saved during the run\n"
    path = work / "model.py"
    path.write_text(SOURCE)
    engine_that({"class Block": lambda: path.write_text(edited)}, monkeypatch)
    result = migrate("-j", "1", "model.py")
    assert path.read_text() == edited
    assert result.exit_code == 2
    assert "model.py:1:1: error: changed since it was read" in result.stderr


def test_an_edit_keeping_size_and_mtime_is_caught_by_the_content_hash(work: Path, monkeypatch: pytest.MonkeyPatch):
    path = work / "model.py"
    path.write_text(SOURCE)
    read = path.stat()
    edited = SOURCE.replace("Linear(3)", "Linear(4)")

    def edit() -> None:
        path.write_text(edited)
        os.utime(path, ns=(read.st_atime_ns, read.st_mtime_ns))

    engine_that({"class Block": edit}, monkeypatch)
    result = migrate("-j", "1", "model.py")
    assert path.read_text() == edited
    assert result.exit_code == 2


def test_each_file_is_written_as_soon_as_it_is_converted(work: Path, monkeypatch: pytest.MonkeyPatch):
    first, second = work / "a.py", work / "b.py"
    first.write_text(SOURCE)
    second.write_text(SOURCE.replace("Block", "Other"))
    written_before_second: list[bool] = []
    engine_that({"class Other": lambda: written_before_second.append("flax" in first.read_text())}, monkeypatch)
    result = migrate("-j", "1", "a.py", "b.py")
    assert result.exit_code == 0, result.stderr
    assert written_before_second == [True]
    assert "flax" in second.read_text()


# -- 7. read-only files, ownership, interrupts, idempotency -----------------------------------------------


def test_a_read_only_file_is_refused_and_left_as_it_is(work: Path):
    path = work / "model.py"
    path.write_text(SOURCE)
    path.chmod(0o444)
    result = migrate("model.py")
    assert result.exit_code == 2
    assert "model.py:1:1: error: cannot write: the file is read-only" in result.stderr
    assert path.read_text() == SOURCE
    assert stat.S_IMODE(path.stat().st_mode) == 0o444


def test_owner_and_group_are_kept(work: Path):
    path = work / "model.py"
    path.write_text(SOURCE)
    if os.geteuid() == 0:
        owner = (12345, 54321)  # root can give the file any owner and group, as a shared checkout has
    else:
        others = [group for group in os.getgroups() if group != os.getegid()]
        if not others:
            pytest.skip("needs root or a second group to give the file")
        owner = (os.geteuid(), others[0])
    os.chown(path, *owner)
    result = migrate("model.py")
    assert result.exit_code == 0, result.stderr
    assert "flax" in path.read_text()
    assert (path.stat().st_uid, path.stat().st_gid) == owner


def test_ctrl_c_with_workers_stops_within_a_second(tmp_path: Path):
    for index in range(2000):  # minutes of work for two workers: still running when interrupted
        (tmp_path / f"m{index:04d}.py").write_text(SOURCE.replace("Block", f"Block{index}") * 20)
    process = subprocess.Popen(
        [sys.executable, "-m", "haiku2flax", "migrate", "--check", "-q", "-j", "2", "."],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(3)  # the workers are busy converting by now
    assert process.poll() is None, "the run ended before it could be interrupted"
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    status = process.wait(timeout=30)
    # Within a second when the machine is idle (it took 11-13 s); the bound leaves room for a loaded one.
    assert time.monotonic() - interrupted < 5
    stderr = process.stderr.read()  # type: ignore[union-attr]
    assert b"Traceback" not in stderr and b"interrupted" in stderr
    assert status == 130, "not 1, which would read as `--check` finding files to migrate"


# -- 4. symlink loops and folders that are never walked ------------------------------------------------


def test_a_symlink_loop_is_reported_and_the_run_goes_on(work: Path):
    (work / "model.py").write_text(SOURCE)
    (work / "loop.py").symlink_to("loop.py")
    (work / "a").symlink_to("b")
    (work / "b").symlink_to("a")
    result = migrate(".")
    assert result.exit_code == 2
    for name in ("a", "b", "loop.py"):
        assert f"{name}:1:1: error: cannot read: Too many levels of symbolic links" in result.stderr
    assert "flax" in (work / "model.py").read_text()


@pytest.mark.parametrize("folder", [".ipynb_checkpoints", ".tox", "__pypackages__", ".nox", "buck-out", ".pytype", "_build"])
def test_folders_ruff_excludes_are_not_walked(work: Path, folder: str):
    inside = work / "pkg" / folder / "model.py"
    inside.parent.mkdir(parents=True)
    inside.write_text(SOURCE)
    result = migrate("--check", ".")
    assert result.exit_code == 0, result.stderr
    assert inside.read_text() == SOURCE


STATEFUL_AND_LEFT_IN_HAIKU = textwrap.dedent(
    """\
    import haiku as hk
    import jax
    import jax.numpy as jnp


    class Counter(hk.Module):
      def __call__(self, x):
        count = hk.get_state("count", [], init=jnp.zeros)
        hk.set_state("count", count + 1)
        return hk.Linear(10)(x)


    def noise(x):
      key = hk.next_rng_key()
      return x + jax.random.normal(key, x.shape)
    """
)


def test_a_second_nnx_run_over_a_partly_converted_file_changes_nothing(work: Path):
    path = work / "model.py"
    path.write_text(STATEFUL_AND_LEFT_IN_HAIKU)
    assert migrate("--to", "nnx", "model.py").exit_code == 0
    once = path.read_text()
    assert "import haiku as hk" in once and once.count("class State(nnx.Variable)") == 1
    again = migrate("--to", "nnx", "model.py")
    assert again.exit_code == 0, again.stderr
    assert path.read_text() == once


@pytest.mark.parametrize(
    ("tree", "found"),
    [
        ([1.0, 2.0], "expected a Haiku tree, a dict of dicts ({module: {name: array}}), found a list"),
        ({"w": [[1.0]]}, "a dict of dicts ({module: {name: array}}), found 'w' holding a list"),
        ({"linear": {"w": "abc"}}, "leaf linear/w is a str, not an array of numbers"),
    ],
)
def test_convert_params_names_a_pickle_that_is_not_a_haiku_tree_in_one_line(work: Path, tree: object, found: str):
    import pickle

    model = Path(__file__).resolve().parent.parent / "fixtures" / "guide" / "basic_example" / "haiku.py"
    (work / "params.pkl").write_bytes(pickle.dumps(tree))
    args = ["convert-params", str(model), "--to", "nnx", "--entry", "model", "--input", "f32[2,784]", "--params", "params.pkl"]
    result = CliRunner().invoke(main, [*args, "--out", "out"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and found in result.stderr
    assert not (work / "out").exists()


# -- 6. valid input never ends in an internal error ----------------------------------------------------


def converted(source: str, target: str) -> str:
    from haiku2flax.engine import convert_source

    return convert_source(source, target).code


def test_a_lambda_building_a_module_of_another_file_is_a_todo_under_nnx():
    source = textwrap.dedent(
        """\
        import haiku as hk
        import jax
        import jax.numpy as jnp
        from mylib import Model

        model = hk.transform(lambda x: Model()(x))
        params = model.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))
        """
    )
    code = converted(source, "nnx")
    assert "# TODO(haiku2flax:HK004): `lambda x: Model()(x)` builds no module this file converts" in code


def test_a_todo_quoting_a_multi_line_expression_is_one_comment_line(work: Path):
    source = textwrap.dedent(
        """\
        import haiku as hk


        class Model(hk.Module):
          def __call__(self, x):
            return hk.Flatten()(x * 2 +
                                x)
        """
    )
    (work / "model.py").write_text(source)
    result = migrate("--to", "linen", "model.py")
    assert result.exit_code == 0, result.stderr
    assert "# TODO(haiku2flax:HK012): `hk.Flatten` keeps the input's leading axes, so the input is read twice: assign `x * 2 + x`" in (
        work / "model.py"
    ).read_text()
    assert "model.py:6:12: todo: `hk.Flatten` keeps the input's leading axes, so the input is read twice: assign `x * 2 + x` to a" in result.stderr


@pytest.mark.parametrize(
    "expression",
    [" + ".join(f"x{i}" for i in range(350)), "(" + " ".join(f'"part {i}"' for i in range(2000)) + ")"],
    ids=["plus-chain", "implicit-concatenation"],
)
def test_deeply_nested_valid_code_converts(expression: str):
    code = converted(f"{SOURCE}\n\ny = {expression}\n", "nnx")
    assert "nnx.Linear" in code and f"y = {expression}\n" in code


# -- 3. verify never reports a pass that is not one ------------------------------------------------------

BASIC = Path(__file__).resolve().parent.parent / "fixtures" / "guide" / "basic_example" / "haiku.py"
VERIFY_BASIC = ["--to", "nnx", "--entry", "model", "--input", "f32[2,784]", "--arg", "training=false"]


def verify(path: Path | str, *args: str) -> Result:
    return CliRunner().invoke(main, ["verify", str(path), *args])


@pytest.mark.parametrize("status", [0, 3])
def test_verify_of_a_file_calling_sys_exit_could_not_run(work: Path, status: int):
    path = work / "model.py"
    path.write_text(BASIC.read_text() + f"\nimport sys\nsys.exit({status})\n")
    result = verify(path, *VERIFY_BASIC)
    assert result.exit_code == 2, result.output
    assert f"model.py called sys.exit({status}) while it was imported" in result.output
    assert "verdict: could not run" in result.output


def test_verify_imports_the_file_with_its_own_argv(work: Path):
    path = work / "model.py"
    flags = "import argparse\nparser = argparse.ArgumentParser()\nparser.add_argument('--lr', type=float, default=0.1)\nFLAGS = parser.parse_args()\n"
    path.write_text(flags + BASIC.read_text())
    result = verify(path, *VERIFY_BASIC)
    assert result.exit_code == 0, result.output
    assert "verdict: equivalent" in result.output


def test_verify_says_first_that_the_rewrite_left_todos(work: Path):
    path = work / "model.py"
    path.write_text(
        "import haiku as hk\n\n\nclass Model(hk.Module):\n  def __call__(self, x):\n    return hk.Linear(10)(x)\n\n\n"
        "def forward(x):\n  return Model()(x)\n\n\nmodel = hk.transform(forward)\n\n\n"
        "def predict(params, x):  # applied here, initialised nowhere: no input shows the size\n  return model.apply(params, None, x)\n"
    )
    result = verify(path, "--to", "nnx", "--entry", "model", "--input", "f32[2,3]")
    assert result.exit_code == 2
    assert "could not run: the rewrite left 1 TODO(s): line 13: pass the model's input feature size" in result.output
    assert "[HK006]; running the rewrite failed: " in result.output


def test_verify_rejects_a_bad_input_spec_before_loading_jax(work: Path):
    script = textwrap.dedent(
        """\
        import sys
        from click.testing import CliRunner
        from haiku2flax.cli import main
        args = ["verify", sys.argv[1], "--to", "nnx", "--entry", "model", "--input", "f32[2,,784]"]
        result = CliRunner().invoke(main, args)
        print(result.exit_code, "jax" in sys.modules)
        print(result.output)
        """
    )
    run = subprocess.run([sys.executable, "-c", script, str(BASIC)], capture_output=True, text=True, check=True)
    assert run.stdout.startswith("2 False\n")
    assert "bad input spec 'f32[2,,784]': dimension 2 is empty" in run.stdout


def test_verify_prints_user_text_with_markup_as_written(work: Path):
    path = work / "[b]x[/x]" / "model.py"  # folders `[b]x[` and `x]`
    path.parent.mkdir(parents=True)
    path.write_text(BASIC.read_text())
    result = verify(path, *VERIFY_BASIC)
    assert result.exit_code == 0, result.output
    assert "[b]x[/x]/model.py" in result.output


def test_migrate_prints_paths_with_markup_as_written(work: Path):
    path = work / "[b]x[/x]" / "model.py"
    path.parent.mkdir(parents=True)
    path.write_text(SOURCE)
    result = migrate("--check", ".")
    assert result.exit_code == 1
    assert "│ [b]x[/x]/model.py │ would migrate" in result.stderr


def test_rules_prints_an_unknown_id_as_written():
    result = CliRunner().invoke(main, ["rules", "HK[/x]"])
    assert result.exit_code == 0
    assert "no rule id starts with HK[/x]" in result.output


# -- 5. cost linear in a file's size (timings are in bench/scaling.py; this checks the mechanism) --------


class CountingText(str):
    """A file's text that counts the substring searches made in it."""

    searches = 0

    def __contains__(self, word: object) -> bool:
        type(self).searches += 1
        return super().__contains__(word)  # type: ignore[operator]


def test_rules_search_a_files_text_once_per_word_not_once_per_method():
    import libcst as cst

    from haiku2flax.engine.context import Context
    from haiku2flax.engine.names import ImportedNames
    from haiku2flax.engine.tables import load_tables

    names = ImportedNames.from_module(cst.parse_module(SOURCE), frozenset())
    ctx = Context("nnx", load_tables(), names, source=CountingText(SOURCE))
    for _ in range(1000):  # as a rule asks for each method of a 1,000-module file
        assert ctx.mentions("LSTM", "GRU") is False
        assert ctx.mentions("Linear") is True
    assert CountingText.searches == 3


def test_note_positions_are_exact_on_a_long_file():
    import libcst as cst

    from haiku2flax.engine import positions

    module = cst.parse_module("".join(f"x{i} = {i}\r\n" if i % 2 else f"y{i} = {i}\n" for i in range(3000)))
    wanted = [module.body[i] for i in (0, 1, 1500, 2999)]
    _, starts = positions.generate(module, wanted)
    assert [starts[id(node)] for node in wanted] == [(1, 0), (2, 0), (1501, 0), (3000, 0)]

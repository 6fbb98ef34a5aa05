"""`migrate --interactive`: answers from stdin, only accepted changes written, always valid Python."""

from __future__ import annotations

import ast
import itertools
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from haiku2flax.cli import main
from haiku2flax.engine import convert_source
from haiku2flax.review import Plan

EXAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "guide" / "basic_example" / "haiku.py"
THREE_PARTS = textwrap.dedent(
    """\
    import haiku as hk
    import jax


    class A(hk.Module):
      def __call__(self, x):
        return hk.Linear(3)(x)


    class B(hk.Module):
      def __call__(self, x):
        return hk.Linear(4)(x)


    def noise(x):
      return x + jax.random.normal(hk.next_rng_key(), x.shape)
    """
)


def review(answers: str, *paths: str, target: str = "linen"):
    return CliRunner().invoke(main, ["migrate", "-i", "-j", "1", "--to", target, *paths], input=answers, catch_exceptions=False)


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_accept_reject_accept(work: Path):
    path = work / "two.py"
    path.write_text(THREE_PARTS)
    result = review("y\nn\ny\n", "two.py")
    assert result.exit_code == 0, result.output
    code = path.read_text()
    ast.parse(code)
    assert "class A(nn.Module)" in code and "nn.Dense(3)" in code
    assert "class B(hk.Module)" in code and "hk.Linear(4)" in code
    assert "import haiku as hk" in code and "import flax.linen as nn" in code, "both APIs are still used"
    assert "# TODO(haiku2flax:HK005)" in code
    assert "[1/3]" in result.stdout and "[3/3]" in result.stdout
    assert "@@ two.py:5 @@ HK001, HK002" in result.stdout, "each hunk names the rules whose notes fall in it"
    assert "todo [HK005]: draw keys with" in result.stdout, "and shows their TODOs"
    assert "+    return nn.Dense(3)(x)" in result.stdout and "-    return hk.Linear(3)(x)" in result.stdout


def test_accept_rest_reject_rest_then_quit(work: Path):
    for name in ("a.py", "b.py", "c.py"):
        (work / name).write_text(THREE_PARTS)
    result = review("n\na\nd\ny\nq\n", "a.py", "b.py", "c.py")
    assert result.exit_code == 0
    a, b, c = ((work / name).read_text() for name in ("a.py", "b.py", "c.py"))
    assert "class A(hk.Module)" in a and "class B(nn.Module)" in a and "# TODO(haiku2flax" in a, "n, then a: the rest"
    assert "class A(hk.Module)" in b and "class B(hk.Module)" in b and "TODO" not in b, "d: nothing in b"
    assert b == THREE_PARTS
    assert "class A(nn.Module)" in c and "class B(hk.Module)" in c and "TODO" not in c, "y, then q keeps that y"


def test_quit_keeps_what_was_decided_and_leaves_later_files(work: Path):
    for name in ("a.py", "b.py"):
        (work / name).write_text(THREE_PARTS)
    result = review("y\nq\n", "a.py", "b.py")
    assert result.exit_code == 0
    a = (work / "a.py").read_text()
    assert "class A(nn.Module)" in a and "class B(hk.Module)" in a and "TODO" not in a
    assert (work / "b.py").read_text() == THREE_PARTS


def test_end_of_input_counts_as_quit(work: Path):
    (work / "a.py").write_text(THREE_PARTS)
    result = review("y\n", "a.py")
    assert result.exit_code == 0
    assert "class A(nn.Module)" in (work / "a.py").read_text() and "class B(hk.Module)" in (work / "a.py").read_text()


def test_help_and_unknown_answers_ask_again(work: Path):
    (work / "a.py").write_text(THREE_PARTS)
    result = review("?\nmaybe\na\n", "a.py")
    assert result.stdout.count("q - quit") == 2
    assert (work / "a.py").read_text() == convert_source(THREE_PARTS, "linen").code


def test_dependent_hunks_are_offered_together(work: Path):
    """In the Basic Example everything hangs together: Block is used by Model, Model by `model`, ..."""
    source = EXAMPLE.read_text()
    plan = Plan(source, convert_source(source, "nnx").code, [])
    assert len(plan.groups) == 1 and len(plan.groups[0].hunks) > 3
    (work / "model.py").write_text(source)
    result = review("n\n", "model.py", target="nnx")
    assert "hunks depend on each other and are offered together" in result.stdout
    assert (work / "model.py").read_text() == source


@pytest.mark.parametrize("target", ["linen", "nnx"])
def test_every_subset_of_answers_gives_valid_code_with_its_imports(target: str):
    conversion = convert_source(THREE_PARTS, target)
    plan = Plan(THREE_PARTS, conversion.code, conversion.notes)
    assert len(plan.groups) == 3
    ns = "nn" if target == "linen" else "nnx"
    for size in range(len(plan.groups) + 1):
        for accepted in itertools.combinations(plan.groups, size):
            code = plan.assemble(list(accepted))
            tree = ast.parse(code)
            imported = {alias.asname or alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom) for alias in node.names}
            used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
            assert {ns, "hk"} & used <= imported, code
            assert not ({ns, "hk"} & imported - used), f"an import nothing uses is left:\n{code}"


def test_interactive_review_of_a_notebook_names_cells(work: Path):
    import json

    cells = ["%matplotlib inline\nimport haiku as hk", "class A(hk.Module):\n  def __call__(self, x):\n    return hk.Linear(3)(x)"]
    data = {"cells": [{"cell_type": "code", "id": str(i), "metadata": {}, "outputs": [], "execution_count": None, "source": c} for i, c in enumerate(cells)], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (work / "nb.ipynb").write_text(json.dumps(data, indent=1))
    result = review("y\n", "nb.ipynb")
    assert "@@ nb.ipynb:cell 2:1 @@" in result.stdout
    assert "haiku2flax-" not in result.stdout, "masked IPython lines and cell markers are shown as written"
    sources = [c["source"] for c in json.loads((work / "nb.ipynb").read_text())["cells"]]
    assert sources[0] == "%matplotlib inline\nimport flax.linen as nn" and "nn.Dense(3)" in sources[1]


@pytest.mark.parametrize("extra", [["--diff"], ["--check"]])
def test_interactive_is_for_writing(work: Path, extra: list[str]):
    (work / "a.py").write_text(THREE_PARTS)
    assert CliRunner().invoke(main, ["migrate", "-i", *extra, "a.py"]).exit_code == 2
    assert CliRunner().invoke(main, ["migrate", "-i", "-"], input=THREE_PARTS).exit_code == 2

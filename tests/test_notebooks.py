"""Notebooks: code cells are converted as one module; every other byte of the notebook is kept.

The fixture (fixtures/notebooks/basic_example) is the migration guide's Basic Example split over cells,
with magics, shell escapes, a `%%time` cell, a `%%bash` cell, outputs, ids and non-ASCII markdown.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from haiku2flax import runner
from haiku2flax.cli import main
from haiku2flax.engine.pipeline import TARGETS
from haiku2flax.notebooks import NotebookDocument

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "notebooks" / "basic_example"
IPYTHON = re.compile(r"^\s*(%|!)|= *!")


def notebook(*cells: str, indent: int | None = 1, as_list: bool = True, language: str = "python") -> bytes:
    def source(text: str):
        return text.splitlines(keepends=True) if as_list else text

    data = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": source(text)} for i, text in enumerate(cells)],
        "metadata": {"kernelspec": {"language": language, "name": language}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return (json.dumps(data, indent=indent, ensure_ascii=False) + "\n").encode()


def code_cells(data: bytes) -> list[str]:
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in json.loads(data)["cells"] if c["cell_type"] == "code"]


def migrate(*args: str):
    return CliRunner().invoke(main, ["migrate", *args], catch_exceptions=False)


@pytest.mark.parametrize("target", TARGETS)
def test_golden(target: str):
    result = runner.convert_bytes("model.ipynb", (FIXTURE / "model.ipynb").read_bytes(), runner.Settings(target))
    assert result.error is None
    assert result.converted == (FIXTURE / f"{target}.ipynb").read_bytes()
    again = runner.convert_bytes("model.ipynb", result.converted, runner.Settings(target))
    assert again.converted == result.converted, "idempotent"


@pytest.mark.parametrize("target", TARGETS)
def test_only_code_cell_sources_change(target: str):
    before = (FIXTURE / "model.ipynb").read_bytes()
    after = (FIXTURE / f"{target}.ipynb").read_bytes()
    old, new = json.loads(before), json.loads(after)
    assert old["metadata"] == new["metadata"] and old["nbformat"] == new["nbformat"]
    for old_cell, new_cell in zip(old["cells"], new["cells"], strict=True):
        assert {k: v for k, v in old_cell.items() if k != "source"} == {k: v for k, v in new_cell.items() if k != "source"}
        if old_cell["cell_type"] != "code":
            assert old_cell["source"] == new_cell["source"]
    layout = json.dumps(new, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    assert after.decode() == layout, "the notebook keeps nbformat's layout (indent 1, non-ASCII as is)"
    magic = [[line for line in cell.split("\n") if IPYTHON.search(line)] for cell in code_cells(before)]
    assert magic == [[line for line in cell.split("\n") if IPYTHON.search(line)] for cell in code_cells(after)]
    assert code_cells(after)[-1] == "%%bash\necho done", "a cell that is not Python is left alone"


@pytest.mark.parametrize("target", TARGETS)
def test_converted_notebook_runs(target: str):
    """Run the converted code cells in order (IPython lines skipped), as Jupyter would."""
    pytest.importorskip("flax")
    namespace: dict = {}
    for cell in code_cells((FIXTURE / f"{target}.ipynb").read_bytes()):
        if cell.startswith("%%bash"):
            continue
        exec("\n".join(line for line in cell.split("\n") if not IPYTHON.search(line)), namespace)
    shapes = {"/".join(str(getattr(k, "key", k)) for k in path): leaf.shape for path, leaf in __import__("jax").tree_util.tree_leaves_with_path(namespace["params"])}
    assert sorted(shapes.values()) == sorted([(256,), (784, 256), (10,), (256, 10)])


def test_imports_in_one_cell_are_used_by_later_cells():
    """Converting cells one by one would lose `hk` in the class cell; as one module it resolves."""
    data = notebook("import haiku as hk\nimport optax", "class M(hk.Module):\n  def __call__(self, x):\n    return hk.Linear(2)(x)\n", "import numpy as np\nnoise = hk.next_rng_key")
    result = runner.convert_bytes("nb.ipynb", data, runner.Settings("nnx"))
    first, second, third = code_cells(result.converted)
    assert "class M(nnx.Module)" in second
    assert "from flax import nnx" in first, "a new import goes to the cell of the Haiku import, not after the last import"
    assert "from flax import nnx" not in third


def test_messages_and_report_name_the_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nb.ipynb").write_bytes(notebook("import haiku as hk\nimport jax", "%time 1\n\ndef noise(x):\n  return jax.random.normal(hk.next_rng_key(), x.shape)"))
    result = migrate("--to", "linen", "--report", "report.json", "--diff", "nb.ipynb")
    assert "nb.ipynb:cell 2:4:" in result.stderr and "[HK005]" in result.stderr
    assert "--- a/nb.ipynb:cell 2\n+++ b/nb.ipynb:cell 2\n" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    [todo] = [c for c in report["constructs"] if c["outcome"] == "todo"]
    assert (todo["cell"], todo["line"]) == (2, 4)


def test_walks_notebooks_and_skips_other_languages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    source = "import haiku as hk\n\nclass M(hk.Module):\n  def __call__(self, x):\n    return hk.Linear(2)(x)\n"
    (tmp_path / "a.ipynb").write_bytes(notebook(source, indent=2, as_list=False))
    julia = notebook(source, language="julia")
    (tmp_path / "b.ipynb").write_bytes(julia)
    assert migrate("--to", "linen", "-j", "1", ".").exit_code == 0
    converted = (tmp_path / "a.ipynb").read_text()
    assert json.dumps(json.loads(converted), indent=2, ensure_ascii=False) + "\n" == converted, "indent 2, string sources"
    assert isinstance(json.loads(converted)["cells"][0]["source"], str)
    assert "nn.Dense(2)" in converted
    assert (tmp_path / "b.ipynb").read_bytes() == julia


def test_broken_notebook_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.ipynb").write_text('{"cells": [')
    result = migrate("bad.ipynb")
    assert result.exit_code == 2 and "bad.ipynb:1:1: error: not a notebook" in result.stderr


def test_masking_round_trips_ipython_syntax():
    cell = textwrap.dedent(
        """\
        %load_ext autoreload
        !pip install dm-haiku \\
            optax
        files = !ls
        if True:
            %time x = 1
        obj?
        import haiku as hk"""
    )
    document = NotebookDocument.load(notebook(cell))
    assert "pass  # haiku2flax-ipython" in document.text and "!pip" not in document.text
    compile(document.text, "nb", "exec")
    assert document.render(document.text) == notebook(cell)
    assert document.sources(document.text) == [cell]

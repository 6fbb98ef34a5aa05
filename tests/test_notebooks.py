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


def test_malformed_metadata_counts_as_missing():
    source = "import haiku as hk\n\nclass M(hk.Module):\n  def __call__(self, x):\n    return hk.Linear(2)(x)\n"
    data = json.loads(notebook(source))
    for metadata in ({"kernelspec": "python3"}, {"kernelspec": None, "language_info": ["python"]}, "python"):
        data["metadata"] = metadata
        result = runner.convert_bytes("a.ipynb", json.dumps(data).encode(), runner.Settings("linen"))
        assert result.error is None and "nn.Dense(2)" in code_cells(result.converted)[0], metadata
        assert json.loads(result.converted)["metadata"] == metadata


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


MODULE_CELL = "class M(hk.Module):\n  def __call__(self, x):\n    return hk.Linear(3)(x)\n"


def test_a_cell_that_does_not_parse_is_reported_and_keeps_what_it_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    broken = "y = hk.Linear(3)\nz = foo(\n"
    (tmp_path / "nb.ipynb").write_bytes(notebook("import haiku as hk\n", MODULE_CELL, broken))
    check = migrate("--to", "nnx", "--check", "--strict", "nb.ipynb")
    assert check.exit_code == 1
    assert "nb.ipynb:cell 3:1:1: todo: this cell does not parse as Python" in check.stderr
    assert migrate("--to", "nnx", "nb.ipynb").exit_code == 0
    first, module, kept = code_cells((tmp_path / "nb.ipynb").read_bytes())
    assert "import haiku as hk\n" in first and "nnx.Module" in module
    assert kept == broken


def test_ipython_lines_hiding_haiku_are_reported_with_their_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nb.ipynb").write_bytes(notebook("import haiku as hk\n", MODULE_CELL, "hk.Linear?\n", "%timeit model.apply(params, x)\n", "%matplotlib inline\n"))
    result = migrate("--to", "nnx", "--strict", "nb.ipynb")
    assert result.exit_code == 1
    assert "nb.ipynb:cell 3:1:1: todo: IPython line `hk.Linear?` uses Haiku" in result.stderr
    assert "nb.ipynb:cell 4:1:1: todo: IPython line `%timeit model.apply(params, x)` uses Haiku" in result.stderr
    assert "matplotlib" not in result.stderr
    cells = code_cells((tmp_path / "nb.ipynb").read_bytes())
    assert "import haiku as hk\n" in cells[0] and cells[2:] == ["hk.Linear?\n", "%timeit model.apply(params, x)\n", "%matplotlib inline\n"]


def test_a_cell_source_that_is_not_text_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    data = json.loads(notebook("import haiku as hk\n", "x = 1\n"))
    data["cells"][1]["source"] = ["x = 1\n", 2]
    (tmp_path / "bad.ipynb").write_text(json.dumps(data))
    result = migrate("bad.ipynb")
    assert result.exit_code == 2
    assert "bad.ipynb:1:1: error: not a notebook: the source of cell 2 is neither text nor a list of lines" in result.stderr


def test_nbformat_3_is_refused_with_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    cell = {"cell_type": "code", "input": ["import haiku as hk\n"], "language": "python", "outputs": []}
    data = json.dumps({"metadata": {}, "nbformat": 3, "nbformat_minor": 0, "worksheets": [{"cells": [cell]}]})
    (tmp_path / "old.ipynb").write_text(data)
    result = migrate("old.ipynb")
    assert result.exit_code == 2
    assert "old.ipynb:1:1: error: nbformat 3 notebooks are not supported: convert it to nbformat 4 first" in result.stderr
    assert (tmp_path / "old.ipynb").read_text() == data


def test_crlf_inside_cells_stays_crlf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nb.ipynb").write_bytes(notebook("import haiku as hk\r\n", MODULE_CELL.replace("\n", "\r\n"), "print(1)\n"))
    assert migrate("--to", "nnx", "nb.ipynb").exit_code == 0
    first, module, plain = code_cells((tmp_path / "nb.ipynb").read_bytes())
    assert "nnx.Module" in module and "self.linear = nnx.Linear(din, 3, rngs=rngs)\r\n" in module
    for converted in (first, module):
        assert converted.count("\n") == converted.count("\r\n") > 0
    assert plain == "print(1)\n"

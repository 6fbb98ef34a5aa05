"""Reports people read: the Markdown report, the JSON one beside it, and the end-of-run table."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from haiku2flax.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "guide" / "basic_example" / "haiku.py"
NOISE = textwrap.dedent(
    """\
    import haiku as hk
    import jax


    def noise(x):
      return x + jax.random.normal(hk.next_rng_key(), x.shape)
    """
)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.py").write_text(EXAMPLE.read_text())
    (tmp_path / "noise.py").write_text(NOISE)
    (tmp_path / "plain.py").write_text("print('no haiku')\n")
    (tmp_path / "broken.py").write_text("import haiku as hk\nx = (\n")
    return tmp_path


def migrate(*args: str):
    return CliRunner().invoke(main, ["migrate", "-j", "1", "--to", "linen", *args], catch_exceptions=False)


def test_markdown_and_json_reports_side_by_side(tree: Path):
    result = migrate("--report", "report.json", "--report", "report.md", ".")
    assert result.exit_code == 2
    assert json.loads((tree / "report.json").read_text())["summary"]["todos"] == 1
    report = (tree / "report.md").read_text()
    assert report.startswith("# haiku2flax migration report\n")
    assert "| `model.py` | changed |" in report and "| `plain.py` | unchanged | 0 | 0 | 0 |" in report
    assert "## `noise.py`" in report
    assert "| 6:32 | TODO | [HK005 next-rng-key](docs/rules.md#hk005) | draw keys with" in report
    assert "Converted: [HK001 module-class](docs/rules.md#hk001) ×2" in report
    assert "## `broken.py`" in report and "**Error** at line" in report
    assert "## `plain.py`" not in report, "files with nothing to say get a table row only"


def test_summary_table_lists_files_needing_attention_first(tree: Path):
    result = migrate("--check", ".")
    table = result.stderr[result.stderr.index("haiku2flax migrate") :]
    rows = [line for line in table.splitlines() if line.startswith("│")]
    files = [row.split("│")[1].strip() for row in rows]
    assert files[:3] == ["broken.py", "noise.py", "model.py"], "errors and TODOs first, in file order"
    assert "would migrate" in rows[1] and rows[-1].split("│")[1].strip() == "4 files"
    assert "2 file(s) still use Haiku; run `haiku2flax migrate` on them:\n  model.py\n  noise.py\n" in result.stderr


def test_strict_lists_files_with_todos(tree: Path):
    (tree / "broken.py").unlink()
    assert migrate(".").exit_code == 0
    result = migrate("--check", "--strict", ".")
    assert result.exit_code == 1
    assert "TODO(s) left where haiku2flax could not convert the code" in result.stderr and "  noise.py (1 TODO)" in result.stderr
    assert "still use Haiku" not in result.stderr

"""Reports people read: the Markdown report, the JSON one beside it, and the end-of-run table."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from haiku2flax.cli import main
from haiku2flax.reports import _github_escape

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
EXAMPLE = FIXTURES / "guide" / "basic_example" / "haiku.py"
NOTEBOOK = FIXTURES / "notebooks" / "basic_example" / "model.ipynb"
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


# -- CI formats ----------------------------------------------------------------------------------------

ANNOTATION = re.compile(r"::(?P<level>error|warning|notice) (?P<properties>[^:]*)::(?P<message>.*)")


def annotations(stdout: str) -> list[dict[str, str]]:
    """Each `::level key=value,...::message` line, its properties unescaped as GitHub reads them."""
    found = []
    for line in stdout.splitlines():
        match = ANNOTATION.fullmatch(line)
        assert match, f"not a workflow command: {line!r}"
        properties = dict(part.split("=", 1) for part in match["properties"].split(","))
        unescape = lambda text: text.replace("%2C", ",").replace("%3A", ":").replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")
        found.append({**{key: unescape(value) for key, value in properties.items()}, "level": match["level"], "message": unescape(match["message"])})
    return found


def test_github_annotations_per_todo_per_file_to_migrate_and_per_error(tree: Path):
    result = migrate("--check", "--output-format", "github", ".")
    assert result.exit_code == 2
    found = annotations(result.stdout)
    by_file = {(a["file"], a["level"], a["title"]): a for a in found}
    assert len(by_file) == len(found) == 4, found
    todo = by_file["noise.py", "warning", "haiku2flax (HK005)"]
    assert (todo["line"], todo["col"]) == ("6", "32") and todo["message"].startswith("draw keys with")
    model = by_file["model.py", "warning", "haiku2flax (HK001)"]
    assert EXAMPLE.read_text().splitlines()[int(model["line"]) - 1].startswith("class Block(hk.Module)")
    assert re.match(r"model.py still uses Haiku: 10 Haiku construct\(s\) to convert \(HK001, HK002, .*\); run `haiku2flax migrate model.py`", model["message"])
    assert ("noise.py", "warning", "haiku2flax (HK000)") in by_file, "a file changed only by its TODO comment"
    error = by_file["broken.py", "error", "haiku2flax"]
    assert error["line"] == "2" and "col" in error
    assert "model.py:" not in result.stderr, "the annotations replace the text messages"
    assert "2 file(s) still use Haiku" in result.stderr, "the summary stays on stderr"


def test_github_annotations_escape_properties_and_data(tree: Path):
    (tree / "broken.py").unlink()
    (tree / "noise.py").rename(tree / "v1,100%:x.py")
    found = annotations(migrate("--check", "--strict", "--output-format", "github", "v1,100%:x.py").stdout)
    assert {a["file"] for a in found} == {"v1,100%:x.py"}
    raw = migrate("--check", "--output-format", "github", "v1,100%:x.py").stdout
    assert "file=v1%2C100%25%3Ax.py," in raw and "::v1,100%25:x.py still uses Haiku" in raw
    assert _github_escape("a%b\r\nc,d:e") == "a%25b%0D%0Ac,d:e"
    assert _github_escape("a%b\r\nc,d:e", in_property=True) == "a%25b%0D%0Ac%2Cd%3Ae"


def test_github_annotations_name_notebook_cells(tree: Path):
    shutil.copy(NOTEBOOK, tree / "model.ipynb")
    found = annotations(migrate("--check", "--output-format", "github", "model.ipynb").stdout)
    assert found and all("line" not in a for a in found), "cell lines are not file lines"
    assert re.match(r"cell \d+:\d+:\d+: model.ipynb still uses Haiku", found[0]["message"])


def test_written_files_are_not_reported_as_left_to_migrate(tree: Path):
    (tree / "broken.py").unlink()
    found = annotations(migrate("--output-format", "github", ".").stdout)
    assert [(a["file"], a["title"]) for a in found] == [("noise.py", "haiku2flax (HK005)")]


def test_sarif_output_and_report(tree: Path):
    result = migrate("--check", "--output-format", "sarif", "--report", "out.sarif", ".")
    assert result.exit_code == 2
    sarif = json.loads(result.stdout)
    assert sarif == json.loads((tree / "out.sarif").read_text())
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    (run,) = sarif["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert run["tool"]["driver"]["name"] == "haiku2flax"
    assert [rule["id"] for rule in rules] == ["HK000", "HK001", "HK005"]
    assert all(rule["shortDescription"]["text"] for rule in rules)
    for entry in run["results"]:
        assert rules[entry["ruleIndex"]]["id"] == entry["ruleId"]
    places = {
        (r["ruleId"], r["level"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]): r["locations"][0]["physicalLocation"]["region"]
        for r in run["results"]
    }
    assert places[("HK005", "warning", "noise.py")] == {"startLine": 6, "startColumn": 32}
    assert EXAMPLE.read_text().splitlines()[places[("HK001", "warning", "model.py")]["startLine"] - 1].startswith("class Block")
    assert ("HK000", "warning", "noise.py") in places
    (invocation,) = run["invocations"]
    assert invocation["executionSuccessful"] is False
    (error,) = invocation["toolExecutionNotifications"]
    assert error["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "broken.py"
    assert error["locations"][0]["physicalLocation"]["region"]["startLine"] == 2


@pytest.mark.parametrize("args", [["--diff", "."], ["-i", "."], ["-"]])
def test_ci_formats_refuse_to_share_stdout_with_code(tree: Path, args: list[str]):
    result = CliRunner().invoke(main, ["migrate", "--output-format", "github", *args], input="x = 1\n")
    assert result.exit_code == 2 and "prints on stdout" in result.stderr

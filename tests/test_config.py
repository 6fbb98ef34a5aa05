"""`[tool.haiku2flax]` in the nearest pyproject.toml, and command-line options winning over it.

The fixture (fixtures/config/project) sets `to = "linen"`, excludes `legacy/`, adds a rule table that
gives Linen's Dense Haiku-free highest precision, turns `strict` on and ignores HK003 (dropout).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from haiku2flax.cli import main
from haiku2flax.config import Config, ConfigError, find_config, load_config

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "config" / "project"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    monkeypatch.chdir(root)
    return root


def migrate(*args: str):
    return CliRunner().invoke(main, ["migrate", "-j", "1", *args], catch_exceptions=False)


def test_settings_come_from_the_nearest_pyproject(project: Path):
    legacy = (project / "legacy/old.py").read_text()
    result = migrate(".")
    assert result.exit_code == 1, "strict = true, and the ignored dropout rule leaves a TODO"
    code = (project / "models/mlp.py").read_text()
    assert "class Mlp(nn.Module)" in code, "to = linen"
    assert "nn.Dense(self.features, precision=jax.lax.Precision.HIGHEST)" in code, "the project's rule table"
    assert "hk.dropout(" in code, "HK003 ignored"
    assert (project / "legacy/old.py").read_text() == legacy, "extend-exclude"
    assert "TODO(s) left" in result.stderr and "models/mlp.py (1 TODO)" in result.stderr


def test_found_from_a_subfolder_and_excludes_files_named_explicitly(project: Path, monkeypatch: pytest.MonkeyPatch):
    legacy = (project / "legacy/old.py").read_text()
    monkeypatch.chdir(project / "models")
    assert migrate("mlp.py", "../legacy/old.py").exit_code == 1
    assert "nn.Module" in (project / "models/mlp.py").read_text()
    assert (project / "legacy/old.py").read_text() == legacy, "pre-commit names files: exclusions still apply"


def test_command_line_wins(project: Path):
    result = migrate("--to", "nnx", "--no-strict", "--ignore", "HK005", ".")
    assert result.exit_code == 0
    code = (project / "models/mlp.py").read_text()
    assert "class Mlp(nnx.Module)" in code and "nnx.Dropout(" in code
    assert "precision=jax.lax.Precision.HIGHEST" in code, "rules still come from the file"


def test_exclude_replaces_the_defaults(project: Path):
    (project / "pyproject.toml").write_text('[tool.haiku2flax]\nto = "linen"\nexclude = ["models"]\n')
    (project / "build").mkdir()
    (project / "build/gen.py").write_text("import haiku as hk\nx = hk.Linear(2)\n")
    assert migrate("--check", ".").exit_code == 1
    result = migrate("--check", "-q", ".")
    assert "models/mlp.py" not in result.stderr
    assert find_config([Path("build")]).exclude == ("models",)
    assert "would migrate build/gen.py" in migrate("--check", ".").stderr, "build/ is only skipped by default"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('colour = "blue"', "unknown key(s) in [tool.haiku2flax]: colour"),
        ('to = "jax"', "to must be one of nnx, linen"),
        ("to = 1", "to must be one of nnx, linen, not 1"),
        ("strict = 1", "strict must be true or false"),
        ('exclude = "build"', "exclude must be a list of strings"),
        ('rules = ["missing.toml"]', "no such file or folder"),
    ],
)
def test_bad_settings_are_usage_errors(project: Path, table: str, message: str):
    (project / "pyproject.toml").write_text(f"[tool.haiku2flax]\n{table}\n")
    result = migrate(".")
    assert result.exit_code == 2
    assert "pyproject.toml" in result.stderr and message in result.stderr


def test_pyproject_without_the_table_is_skipped(project: Path):
    (project / "models/pyproject.toml").write_text("[project]\nname = 'inner'\n")
    config = find_config([Path("models/mlp.py")])
    assert config.path == project / "pyproject.toml" and config.to == "linen"
    assert find_config([project.parent]) == Config()


def test_explicit_config_file(project: Path, tmp_path: Path):
    other = tmp_path / "other.toml"
    other.write_text('[tool.haiku2flax]\nto = "nnx"\n')
    assert load_config(other).to == "nnx"
    assert migrate("--config", str(other), "models/mlp.py").exit_code == 0
    assert "nnx.Module" in (project / "models/mlp.py").read_text()
    with pytest.raises(ConfigError):
        other.write_text("[tool.haiku2flax\n")
        load_config(other)


def test_keep_haiku_modules_setting(project: Path):
    (project / "pyproject.toml").write_text('[tool.haiku2flax]\nto = "linen"\nkeep-haiku-modules = true\n')
    assert find_config([Path(".")]).keep_haiku_modules is True

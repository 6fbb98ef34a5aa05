"""`haiku2flax rules` and docs/rules.md, both generated from the registry and the rule tables."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from haiku2flax.cli import main
from haiku2flax.engine.registry import all_rules
from haiku2flax.rules_doc import markdown, rule_link

PAGE = Path(__file__).resolve().parent.parent / "docs" / "rules.md"


def test_docs_page_is_up_to_date():
    assert PAGE.read_text(encoding="utf-8") == markdown(), "run `python scripts/generate_rules_doc.py`"


def test_every_rule_has_its_anchor_and_documentation():
    page = markdown()
    for rule in all_rules():
        assert f"\n## {rule.id}\n" in page, f"#{rule.id.lower()} is the anchor reports link to"
        assert rule.doc, f"{rule.id}: its module needs a docstring"
    assert "| `hk.Linear` | `nn.Dense` | `nnx.Linear` |" in page
    assert rule_link("HK005").endswith("rules.md#hk005")


def test_rules_command():
    runner = CliRunner()
    listing = runner.invoke(main, ["rules"], terminal_width=200)
    assert listing.exit_code == 0
    for rule in all_rules():
        assert rule.id in listing.output
    assert "hk.Linear" in listing.output and "nnx.Linear" in listing.output
    one = runner.invoke(main, ["rules", "HK005"], terminal_width=200)
    assert "next-rng-key" in one.output and "HK003" not in one.output
    assert runner.invoke(main, ["rules", "--markdown"]).output == markdown()

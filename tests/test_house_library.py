"""User rule tables for a house library (`examples/house_library`): `module = "mylib.nn"` entries make
`from mylib.nn import Dense` convert like a built-in layer, and the harness checks the result."""

from __future__ import annotations

from pathlib import Path

import pytest

from haiku2flax.engine import convert_source
from haiku2flax.engine.tables import load_tables
from haiku2flax.harness import verify
from haiku2flax.harness.pytest_helper import report_text

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "house_library"
TARGETS = ("linen", "nnx")


@pytest.fixture
def house_tables(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))  # the harness imports `mylib` on the Haiku side
    return load_tables((EXAMPLE / "house_rules.toml",))


@pytest.mark.parametrize("target", TARGETS)
def test_house_layers_convert_and_verify(target: str, house_tables):
    source = (EXAMPLE / "model.py").read_text(encoding="utf-8")
    code = convert_source(source, target, tables=house_tables).code
    assert "mylib" not in code and "import haiku" not in code and "TODO" not in code
    layer = "nn.Dense(32)" if target == "linen" else "nnx.Linear(din, 32, rngs=rngs)"
    assert layer in code
    result = verify(EXAMPLE / "model.py", target, "model", ["f32[2,16]"], steps=1, tables=house_tables)
    assert result.ok, report_text(result)


def test_without_the_table_the_house_layer_is_user_code(house_tables):
    """Built-in tables alone do not know `mylib`: its layer is left alone (it is not a Haiku name)."""
    code = convert_source((EXAMPLE / "model.py").read_text(encoding="utf-8"), "linen").code
    assert "from mylib.nn import Dense" in code and "Dense(32)(x)" in code


def test_house_api_left_behind_gets_a_todo(house_tables):
    source = "from mylib.nn import Dense\n\nlayers = [Dense(3) for _ in range(2)]\n"
    code = convert_source(source, "nnx", tables=house_tables).code
    assert "`mylib.nn.Dense`" in code and "TODO(haiku2flax" in code


def test_other_names_of_a_house_module_are_not_flagged(house_tables):
    source = "import haiku as hk\nfrom mylib import nn as house\n\ny = house.helper(3)\nz = hk.Linear\n"
    lines = convert_source(source, "linen", tables=house_tables).code.splitlines()
    helper = lines.index("y = house.helper(3)")
    assert "TODO" not in lines[helper - 1]  # `hk.Linear` below gets one: it is a Haiku name

"""The `[[type]]` and `[[guidance]]` tables: every entry names real APIs and reaches the output.

Types (HK030) are rewritten inside annotations only; guidance (HK800) turns what Flax has no faithful
equivalent for into a TODO that says why and what to write, per target, instead of HK000's generic one.
"""

from __future__ import annotations

import importlib
import textwrap

import flax.linen as nn
import haiku as hk
import pytest
from flax import nnx

from haiku2flax.engine import convert_source
from haiku2flax.engine.notes import todo_comment
from haiku2flax.engine.tables import TableError, load_tables, parse_table

TABLES = load_tables()
TARGETS = ("linen", "nnx")


def _haiku(path: str) -> object:
    value: object = hk
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _flax(dotted: str) -> object:
    namespace, _, rest = dotted.partition(".")
    if namespace in ("nn", "nnx"):
        value: object = nn if namespace == "nn" else nnx
        for part in rest.split("."):
            value = getattr(value, part)
        return value
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("api", sorted(TABLES.types))
def test_type_entries_name_real_types(api: str):
    _haiku(api)
    typename = TABLES.types[api]
    for target in TARGETS:
        if typename.imports:  # a type expression: it evaluates with its imports
            eval(typename.flax[target], {module: importlib.import_module(module) for module in typename.imports})
        else:
            _flax(typename.flax[target])


@pytest.mark.parametrize("api", sorted(TABLES.guidance))
def test_guidance_entries_name_real_haiku_apis(api: str):
    _haiku(api)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("api", sorted(TABLES.guidance))
def test_guidance_reaches_the_todo(api: str, target: str):
    source = f"import haiku as hk\n\n\ndef f(x):\n  return hk.{api}(x)\n"
    conversion = convert_source(source, target)
    reason = f"`hk.{api}`: {TABLES.guidance[api].reason(target)}"
    assert todo_comment("HK800", reason) in conversion.code
    assert [(n.rule, n.message) for n in conversion.notes] == [("HK800", reason)]
    assert convert_source(conversion.code, target).code == conversion.code


def test_guidance_covers_the_apis_under_an_entry():
    source = "import haiku as hk\n\nhk.mixed_precision.set_policy(hk.nets.ResNet50, policy)\nhk.Deferred(f)\n"
    code = convert_source(source, "nnx").code
    assert "TODO(haiku2flax:HK800): `hk.mixed_precision.set_policy`: Flax has no global precision policies" in code
    assert "TODO(haiku2flax:HK800): `hk.nets.ResNet50`: Flax ships no stock ResNet" in code
    assert "TODO(haiku2flax:HK000): `hk.Deferred` has no conversion rule" in code


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param(
            "linen",
            """\
            import flax.linen as nn
            from flax.typing import VariableDict


            def step(params: VariableDict, state: VariableDict) -> tuple[VariableDict, nn.Module]:
              return params, state  # hk.Params outside annotations is left to other rules
            """,
            id="linen",
        ),
        pytest.param(
            "nnx",
            """\
            from flax import nnx


            def step(params: nnx.State, state: nnx.State) -> tuple[nnx.State, nnx.Module]:
              return params, state  # hk.Params outside annotations is left to other rules
            """,
            id="nnx",
        ),
    ],
)
def test_types_in_annotations(target: str, expected: str):
    source = """\
    import haiku as hk


    def step(params: hk.Params, state: hk.State) -> tuple[hk.Params, hk.Transformed]:
      return params, state  # hk.Params outside annotations is left to other rules
    """
    assert convert_source(textwrap.dedent(source), target).code == textwrap.dedent(expected)


def test_types_imported_from_haiku():
    source = "from haiku import Params\n\n\ndef f(p: Params) -> None:\n  pass\n"
    assert convert_source(source, "nnx").code == "from flax import nnx\n\n\ndef f(p: nnx.State) -> None:\n  pass\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[guidance]]\nhaiku = "x"\nlinen = "a"\nnnx = "b"\n', "guidance 'x': missing key 'why'"),
        ('[[guidance]]\nhaiku = "x"\nwhy = "w"\nlinen = "a"\n', "guidance 'x': missing key 'flax'"),
        ('[[type]]\nhaiku = "T"\n', "type 'T': missing key 'flax'"),
    ],
)
def test_bad_entries_are_reported_with_their_file(text: str, message: str):
    with pytest.raises(TableError, match=f"^mine.toml: {message}"):
        parse_table(text, "mine.toml")


def test_nnx_signatures_rebuilt_by_the_class_conversion_get_their_types_too():
    source = textwrap.dedent("""\
    import haiku as hk


    class Scale(hk.Module):
      def __init__(self, size: int, init: hk.Params, name=None):
        super().__init__(name=name)
        self.init = init

      def __call__(self, x, state: hk.State) -> hk.State:
        return x * hk.get_parameter("s", [], init=self.init), state
    """)
    code = convert_source(source, "nnx").code
    assert "def __init__(self, size: int, init: nnx.State):" in code
    assert "def __call__(self, x, state: nnx.State) -> nnx.State:" in code
    assert convert_source(code, "nnx").code == code

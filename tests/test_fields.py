"""Linen fields vs. attributes (`haiku2flax.codemods.fields`): a constructor argument keeps its raw value
in its field; what `__init__` derives from it gets an attribute of its own, read under that name
everywhere; local rebindings stay local; attributes named like the Module API are renamed."""

from __future__ import annotations

import ast
import textwrap

import libcst as cst

from haiku2flax.engine import analysis, convert_source


def _linen(source: str) -> str:
    code = convert_source(textwrap.dedent(source), "linen").code
    ast.parse(code)
    return code


def _setup(code: str, cls: str = "M") -> list[str]:
    """The lines of `cls.setup`, dedented."""
    classdef = next(n for n in ast.parse(code).body if isinstance(n, ast.ClassDef) and n.name == cls)
    setup = next((n for n in classdef.body if isinstance(n, ast.FunctionDef) and n.name == "setup"), None)
    return [] if setup is None else [ast.unparse(s) for s in setup.body]


def _fields(code: str, cls: str = "M") -> list[str]:
    classdef = next(n for n in ast.parse(code).body if isinstance(n, ast.ClassDef) and n.name == cls)
    return [n.target.id for n in classdef.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]


def test_plain_copy_stays_the_field():
    code = _linen("""\
    import haiku as hk

    class M(hk.Module):
      def __init__(self, units, name=None):
        super().__init__(name=name)
        self.units = units

      def __call__(self, x):
        return hk.Linear(self.units)(x)
    """)
    assert _fields(code) == ["units"]
    assert _setup(code) == []
    assert "nn.Dense(self.units)" in code


def test_rebound_field_gets_its_own_attribute():
    code = _linen("""\
    import haiku as hk
    import jax.numpy as jnp

    class M(hk.Module):
      def __init__(self, units, scale, name=None):
        super().__init__(name=name)
        self.units = list(units) + [1]
        self.scale = jnp.asarray(scale)

      def __call__(self, x):
        return hk.Linear(self.units[-1])(x) * self.scale
    """)
    assert _fields(code) == ["units", "scale"]
    assert _setup(code) == ["self._units = list(self.units) + [1]", "self._scale = jnp.asarray(self.scale)"]
    assert "nn.Dense(self._units[-1])(x) * self._scale" in code


def test_local_rebinding_stays_local():
    code = _linen("""\
    import haiku as hk

    class M(hk.Module):
      def __init__(self, sizes, name=None):
        super().__init__(name=name)
        sizes = tuple(sizes)
        self.layers = [hk.Linear(size) for size in sizes]
        self.sizes = sizes[:-1]
        self.last = sizes[-1]
    """)
    assert _setup(code) == [
        "sizes = tuple(self.sizes)",
        "self.layers = [nn.Dense(size) for size in sizes]",
        "self._sizes = sizes[:-1]",
        "self.last = sizes[-1]",
    ]


def test_copy_of_a_rebound_local_is_not_the_field():
    """`sizes = sizes[1:]` then `self.sizes = sizes`: the attribute holds the derived value, the field the raw one."""
    code = _linen("""\
    import haiku as hk

    class M(hk.Module):
      def __init__(self, sizes, name=None):
        super().__init__(name=name)
        sizes = sizes[1:]
        self.sizes = sizes

      def __call__(self, x):
        return hk.Linear(self.sizes[0])(x)
    """)
    assert _setup(code) == ["sizes = self.sizes[1:]", "self._sizes = sizes"]
    assert "nn.Dense(self._sizes[0])" in code


def test_conditional_rebinding_starts_the_local_from_the_field():
    code = _linen("""\
    import haiku as hk

    class M(hk.Module):
      def __init__(self, size, mid=None, name=None):
        super().__init__(name=name)
        if mid is None:
          mid = 2 * size
        self.mid = mid
    """)
    assert _setup(code) == ["mid = self.mid", "if mid is None:\n    mid = 2 * self.size", "self._mid = mid"]


def test_copy_then_conditional_rebinding_keeps_the_copy():
    code = _linen("""\
    import haiku as hk

    class M(hk.Module):
      def __init__(self, final, depth, name=None):
        super().__init__(name=name)
        self.final = final
        if depth > 3:
          self.final = True
        self.final += 0
    """)
    assert _setup(code) == ["self._final = self.final", "if self.depth > 3:\n    self._final = True", "self._final += 0"]


def test_attributes_named_like_the_module_api_are_renamed():
    code = _linen("""\
    import haiku as hk

    class M(hk.Module):
      def __init__(self, size, name=None):
        super().__init__(name=name)
        self.scope = "block"
        self.variables = {"size": size}

      def __call__(self, x):
        return hk.Linear(self.variables["size"], name=self.name)(x) if self.scope else x
    """)
    assert _setup(code) == ["self._scope = 'block'", "self._variables = {'size': self.size}"]
    assert 'self._variables["size"]' in code and "if self._scope" in code
    assert "name=self.name" in code  # read, never stored: Linen's own name, as Haiku's was


def test_new_name_avoids_the_names_in_use():
    code = _linen("""\
    import haiku as hk

    class M(hk.Module):
      def __init__(self, units, name=None):
        super().__init__(name=name)
        self._units = 2
        self.units = units * self._units

      def __call__(self, x):
        return hk.Linear(self.units + self._units)(x)
    """)
    assert _setup(code) == ["self._units = 2", "self._units_1 = self.units * self._units"]
    assert "nn.Dense(self._units_1 + self._units)" in code


def test_subclass_reads_the_renamed_attribute():
    code = _linen("""\
    import haiku as hk

    class Base(hk.Module):
      def __init__(self, units, name=None):
        super().__init__(name=name)
        self.units = units + 1

    class M(Base):
      def __call__(self, x):
        return hk.Linear(self.units)(x)
    """)
    assert "nn.Dense(self._units)" in code


def test_parameter_of_a_nested_function_is_not_the_argument():
    code = _linen("""\
    import haiku as hk

    class M(hk.Module):
      def __init__(self, units, name=None):
        super().__init__(name=name)
        self.act = lambda units: units * 2
        self.size = units
    """)
    assert _setup(code) == ["units = self.units", "self.act = lambda units: units * 2", "self.size = units"]


def test_dataclass_module_name_field_is_dropped():
    """Every Linen module has a `name` field with Haiku's meaning; declaring it again is an error there."""
    code = _linen("""\
    import dataclasses
    import haiku as hk

    @dataclasses.dataclass
    class M(hk.Module):
      size: int
      name: str | None = None

      def __call__(self, x):
        return hk.Linear(self.size)(x)
    """)
    assert _fields(code) == ["size"]


def test_read_init_fields_are_plain_copies_only():
    init = cst.parse_statement(textwrap.dedent("""\
    def __init__(self, a, b, c, d, name=None):
      super().__init__(name=name)
      self.a = a
      b = b + 1
      self.b = b
      self.c = c
      self.c += 1
      self.d = d
    """))
    read = analysis.read_init(init)  # type: ignore[arg-type]
    assert list(read.fields) == ["a", "d"]
    assert len(read.statements) == 6 and len(read.other_statements) == 4


def test_nnx_keeps_the_order_of_a_copy_after_a_rebinding():
    code = convert_source(textwrap.dedent("""\
    import haiku as hk

    class M(hk.Module):
      def __init__(self, sizes, units, name=None):
        super().__init__(name=name)
        self.units = units
        sizes = tuple(sizes)[1:]
        self.sizes = sizes
        self.units += 1

      def __call__(self, x):
        return hk.Linear(self.sizes[0] + self.units)(x)
    """), "nnx").code
    lines = [line.strip() for line in code.splitlines()]
    assert lines.index("sizes = tuple(sizes)[1:]") < lines.index("self.sizes = sizes")
    assert lines.index("self.units = units") < lines.index("self.units += 1")
    assert "self.sizes[0] + self.units" in code


def test_argument_named_like_the_module_api_gets_a_todo_and_keeps_its_reads():
    """Renaming such a field would change the keywords of every caller, in other files too."""
    code = _linen("""\
    import haiku as hk

    class M(hk.Module):
      def __init__(self, scope, nn=2, name=None):
        super().__init__(name=name)
        self.scope = scope
        self.nn = nn

      def __call__(self, x):
        return hk.Linear(self.scope)(x) * self.nn
    """)
    todos = [line for line in code.splitlines() if line.startswith("# TODO(haiku2flax:HK001)")]
    assert len(todos) == 2
    assert "`scope` is `nn.Module.scope`" in todos[0] and "a field `nn` shadows the `nn` module" in todos[1]
    assert "nn.Dense(self.scope)(x) * self.nn" in code


def test_list_grown_in_place_is_built_in_a_local():
    """Linen freezes a list assigned in setup into a tuple: `self.layers.append` would fail there."""
    code = _linen("""\
    import haiku as hk

    class M(hk.Module):
      def __init__(self, sizes, name=None):
        super().__init__(name=name)
        self.layers = []
        for size in sizes:
          self.layers.append(hk.Linear(size))
        if len(sizes) > 1:
          self.extra = []
          self.extra.append(1)

      def __call__(self, x):
        for layer in self.layers:
          x = layer(x)
        return x
    """)
    assert _setup(code) == [
        "layers = []",
        "for size in self.sizes:\n    layers.append(nn.Dense(size))",
        "if len(self.sizes) > 1:\n    self.extra = []\n    self.extra.append(1)",  # not bound on every path: left as it is
        "self.layers = layers",
    ]
    assert "for layer in self.layers:" in code

"""Linen: the layers of a class with several compact methods are named as Haiku names them
(`haiku2flax.codemods.compact_names`); the fixtures under fixtures/lifted/*two* verify the weights."""

from __future__ import annotations

import textwrap

from haiku2flax.engine import convert_source


def _linen(methods: str) -> str:
    source = "import haiku as hk\nimport jax\n\n\nclass Net(hk.Module):\n" + textwrap.indent(textwrap.dedent(methods), "    ")
    return convert_source(source, "linen").code


def test_layers_of_each_method_get_haiku_names_with_the_method_as_prefix():
    code = _linen("""
        def encode(self, x):
            return hk.Linear(4)(hk.Linear(4)(x))

        def __call__(self, x):
            return hk.LayerNorm(-1, True, True)(self.encode(x)) + hk.Linear(4)(x)
    """)
    # in the order Python builds them, as Haiku numbers them: the called layer first, then its argument's
    assert 'nn.Dense(4, name="encode_linear")(nn.Dense(4, name="encode_linear_1")(x))' in code
    assert 'name="layer_norm"' in code and 'nn.Dense(4, name="linear")(x)' in code


def test_a_single_compact_method_keeps_automatic_names():
    code = _linen("""
        def __call__(self, x):
            return hk.Linear(4)(x)
    """)
    assert "nn.Dense(4)(x)" in code


def test_names_given_in_haiku_are_kept_and_never_reused():
    code = _linen("""
        def encode(self, x):
            return hk.Linear(4, name="encode_linear")(x)

        def decode(self, x):
            return hk.Linear(4)(x)
    """)
    assert 'name="encode_linear"' in code and 'name="decode_linear"' in code


def test_layers_built_repeatedly_keep_automatic_names():
    """A literal name in a loop, a lambda or a function called twice would be taken twice."""
    code = _linen("""
        def encode(self, x):
            for _ in range(2):
                x = hk.Linear(4)(x)
            return x

        def decode(self, x):
            def block(y):
                return hk.Linear(4)(y)
            return block(block(x))
    """)
    assert code.count("nn.Dense(4)(") == 2
    assert "name=" not in code


def test_a_subclass_that_becomes_a_function_is_not_given_a_name():
    source = textwrap.dedent("""\
        import haiku as hk


        class Block(hk.Module):
            def __init__(self, width, name=None):
                super().__init__(name=name)
                self.width = width

            def __call__(self, x):
                return hk.Linear(self.width)(x)


        class Wide(Block):
            def __init__(self):
                super().__init__(8)


        class Net(hk.Module):
            def encode(self, x):
                return Wide()(x)

            def decode(self, x):
                return Block(4)(x)
        """)
    code = convert_source(source, "linen").code
    assert "def Wide(" in code and "Wide()(x)" in code and 'Block(4, name="decode_block")(x)' in code

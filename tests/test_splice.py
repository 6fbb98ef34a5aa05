"""Hiding the top-level statements nothing converts (`engine.splice`) changes no output and no position.

Each case converts a file twice: as `migrate` does (hidden statements spliced back) and with every
statement shown to the rules; code and notes (rule, message, line, column) must be the same.
"""

from __future__ import annotations

import textwrap

import pytest

from haiku2flax.engine import convert_source, splice
from haiku2flax.engine.notes import earlier_todos
from haiku2flax.engine.rewrite import _convert
from haiku2flax.engine.tables import load_tables
from haiku2flax.engine.tree import EMPTY_VIEW

# Haiku classes, transforms and a training step among helpers, a data class, a `main` and comments.
MIXED = '''\
"""A training script."""

import argparse
import dataclasses

import haiku as hk
import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class Config:
    """Not a Haiku module: hidden."""
    batch_size: int = 8
    path: str = (
        "data/"
        "train.npz"
    )


# A data helper: hidden.
def batches(images: np.ndarray, size: int):
    for start in range(0, len(images), size):
        yield images[start : start + size]

HIDDEN = 32;  SCALE = 2.0


class Block(hk.Module):
    def __call__(self, x):
        x = hk.Linear(HIDDEN)(x)
        return hk.custom_getter(x)


def load(path):
    """Hidden too."""
    return np.load(path)
    # an indented comment after the body keeps this one shown


def forward(x):
    return Block()(x) * SCALE


model = hk.transform(forward)


def main():
    parser = argparse.ArgumentParser()
    config = Config()
    params = model.init(jax.random.PRNGKey(0), np.zeros((1, 4)))
    for batch in batches(load(config.path), config.batch_size):
        model.apply(params, None, batch)
'''


def _whole_file(source: str, target: str) -> tuple[str, list]:
    """The conversion with every statement shown to the rules."""
    converted = _convert(source, target, load_tables(), None, frozenset(), EMPTY_VIEW)
    code, input_notes, output_notes = converted.code, converted.input_notes, converted.output_notes
    notes = input_notes + output_notes
    return code, sorted(notes + earlier_todos(code, notes), key=lambda n: (n.line, n.column))


def test_mixed_file_hides_helpers_and_keeps_what_rules_read() -> None:
    spliced = splice.hide(MIXED, frozenset())
    assert spliced is not None
    hidden = [h.stand_in for h in spliced.hidden]
    # the data class and the helper hide as a class and a def; `load` has a trailing indented comment
    assert hidden == ["class _haiku2flax_hidden_0: ...", "def _haiku2flax_hidden_1(): ..."]
    assert "HIDDEN = 32" in spliced.source  # read by a shown statement: its binding stays shown
    assert "def load(path):" in spliced.source


@pytest.mark.parametrize("target", ["linen", "nnx"])
def test_spliced_conversion_equals_whole_file_conversion(target: str) -> None:
    conversion = convert_source(MIXED, target)
    code, notes = _whole_file(MIXED, target)
    assert conversion.code == code
    assert conversion.notes == notes
    assert any(note.line > 30 for note in notes)  # positions below the hidden statements were moved back


def test_non_ascii_names_link_statements() -> None:
    source = "import haiku as hk\n\nα = hk.Linear(3)\n\n\ndef apply_α(x):\n    return α(x)\n\n\ndef unrelated():\n    return 1\n"
    spliced = splice.hide(source, frozenset())
    assert spliced is not None
    assert "def apply_α(x):" in spliced.source and "def unrelated" not in spliced.source


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_other_line_ends(newline: str) -> None:
    source = MIXED.replace("\n", newline)
    conversion = convert_source(source, "nnx")
    assert splice.hide(source, frozenset()) is not None
    assert (conversion.code, conversion.notes) == _whole_file(source, "nnx")


def test_last_statement_hidden_without_final_newline() -> None:
    source = MIXED + "\n\ndef unrelated():\n    return 1"
    spliced = splice.hide(source, frozenset())
    assert spliced is not None and spliced.source.endswith("def _haiku2flax_hidden_2(): ...")
    assert convert_source(source, "linen").code.endswith("def unrelated():\n    return 1")


def test_nothing_to_hide_or_unreadable() -> None:
    only_haiku = textwrap.dedent(
        """\
        import haiku as hk

        def f(x):
            return hk.Linear(2)(x)
        """
    )
    assert splice.hide(only_haiku, frozenset()) is None
    assert splice.hide("import haiku as hk\nx = (\n", frozenset()) is None  # LibCST reports the error
    assert splice.hide(MIXED + "\n_haiku2flax_hidden_0 = 1\n", frozenset()) is None


def test_a_stand_in_a_rule_moved_means_the_whole_file_is_converted() -> None:
    spliced = splice.hide(MIXED, frozenset())
    assert spliced is not None
    assert spliced.restore(spliced.source, []) is not None
    dropped = spliced.source.replace(spliced.hidden[1].stand_in + "\n", "")
    assert spliced.restore(dropped, []) is None
    swapped = spliced.source.replace("_hidden_0", "_hidden_x").replace("_hidden_1", "_hidden_0").replace("_hidden_x", "_hidden_1")
    assert spliced.restore(swapped, []) is None

"""Pooling (HK010/HK011): what must stay a TODO, and the trap a wrong mapping would hit."""

from pathlib import Path

import pytest

from haiku2flax.engine import convert_source
from haiku2flax.harness.pytest_helper import FixtureCase

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

MODULE = '''import haiku as hk


class Net(hk.Module):
  def __call__(self, x):
    return {expression}
'''


def convert(expression: str, target: str) -> str:
    return convert_source(MODULE.format(expression=expression), target).code


@pytest.mark.parametrize("target", ["linen", "nnx"])
@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ('hk.max_pool(x, 2, 2, "VALID")', "the input's rank is not known here"),
        ('hk.max_pool(x, (3, 3), (2, 2), "SAME")', "Haiku pools the last axis here"),  # (3, 3) on NHWC pools W and C
        ('hk.avg_pool(x, (1, 1, 3, 3), (1, 1, 2, 2), "SAME", channel_axis=1)', "move the channels last with `jnp.moveaxis`"),
        ('hk.max_pool(x, window, 2, "SAME")', "write `window_shape`, `strides` and `channel_axis` as literals"),
        ('hk.MaxPool(3, 2, "SAME")(x)', "the input's rank is not known here"),
    ],
)
def test_unconvertible_pools_keep_a_todo_with_the_reason(expression: str, reason: str, target: str) -> None:
    code = convert(expression, target)
    assert "# TODO(haiku2flax:HK01" in code and reason in code
    assert expression in code  # left as it was


@pytest.mark.parametrize("target", ["linen", "nnx"])
def test_short_tuple_after_padding_to_full_rank_keeps_only_spatial_axes(target: str) -> None:
    """`(3, 3, 1)` is left-padded with a batch 1: the same as Flax's `(3, 3)` on NHWC."""
    code = convert('hk.max_pool(x, (3, 3, 1), (2, 2, 1), "VALID")', target)
    assert 'max_pool(x, window_shape=(3, 3), strides=(2, 2), padding="VALID")' in code


@pytest.mark.parametrize("target", ["linen", "nnx"])
def test_avg_pool_without_count_include_pad_is_caught_by_verify(target: str) -> None:
    """Trap 6: Flax's default averages the SAME padding in; the fixture's odd size and stride show it."""
    case = FixtureCase.load(FIXTURES / "pooling" / "avg_pool_same" / "case.toml")
    golden = (case.directory / f"{target}.py").read_text(encoding="utf-8")
    assert "count_include_pad=False" in golden
    assert not case.verify(target, golden.replace(", count_include_pad=False", "")).ok


@pytest.mark.parametrize("target", ["linen", "nnx"])
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (
            'functools.partial(hk.max_pool, window_shape=(1, 3, 3, 1), strides=(1, 2, 2, 1), padding="SAME")(x)',
            'functools.partial({ns}.max_pool, window_shape=(3, 3), strides=(2, 2), padding="SAME")(x)',
        ),
        (
            'partial(hk.avg_pool, window_shape=(2, 2, 1), strides=(2, 2, 1), padding="SAME")(x)',
            'partial({ns}.avg_pool, window_shape=(2, 2), strides=(2, 2), padding="SAME", count_include_pad=False)(x)',
        ),
    ],
)
def test_partial_pool_converts_its_keywords(expression: str, expected: str, target: str) -> None:
    code = convert(expression, target)
    assert expected.format(ns="nn" if target == "linen" else "nnx") in code and "TODO" not in code


@pytest.mark.parametrize("target", ["linen", "nnx"])
@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ('functools.partial(hk.max_pool, 2, 2, "SAME")(x)', "binds `hk.max_pool`'s input by position"),
        ('functools.partial(hk.max_pool, window_shape=2, strides=2, padding="SAME")(x)', "the input's rank is not known here"),
    ],
)
def test_unconvertible_partial_pools_keep_a_todo_with_the_reason(expression: str, reason: str, target: str) -> None:
    code = convert(expression, target)
    assert "# TODO(haiku2flax:HK010)" in code and reason in code and expression in code

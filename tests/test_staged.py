"""`--keep-haiku-modules`: an unconvertible module stays in Haiku and the converted Flax code runs it.

The fixture (fixtures/staged/attention_encoder) keeps an attention encoder whose values are wider than
its keys (no Flax equivalent) in Haiku; its
goldens are reviewed like the others, and the side-by-side run below shows the staged model computes
the Haiku model's function on the same weights, in Linen and in NNX.
"""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from haiku2flax.cli import main
from haiku2flax.codemods.keep_haiku import RULE_KEEP, convert_keeping_haiku
from haiku2flax.engine import Outcome, convert_source
from haiku2flax.engine.notes import TODO_PREFIX
from haiku2flax.engine.pipeline import TARGETS

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "staged" / "attention_encoder"
SOURCE = (FIXTURE / "source.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("target", TARGETS)
def test_golden(target: str):
    conversion = convert_keeping_haiku(SOURCE, target)
    assert conversion.code == (FIXTURE / f"{target}.py").read_text(encoding="utf-8")
    todos = [note for note in conversion.notes if note.outcome is Outcome.TODO]
    assert [note.rule for note in todos] == [RULE_KEEP]
    assert conversion.code.count(TODO_PREFIX) == len(todos)
    assert convert_keeping_haiku(conversion.code, target).code == conversion.code, "idempotent"


def test_nothing_kept_is_a_plain_conversion():
    source = (FIXTURE.parent.parent / "guide" / "basic_example" / "haiku.py").read_text()
    for target in TARGETS:
        assert convert_keeping_haiku(source, target).code == convert_source(source, target).code


def test_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(FIXTURE / "source.py", tmp_path / "model.py")
    result = CliRunner().invoke(main, ["migrate", "--to", "linen", "--keep-haiku-modules", "model.py"], catch_exceptions=False)
    assert result.exit_code == 0
    assert (tmp_path / "model.py").read_text() == (FIXTURE / "linen.py").read_text()
    assert "[HK900]" in result.stderr and "`Encoder` stays in Haiku" in result.stderr


def test_side_by_side():
    """Same weights, same input: the staged Linen and NNX models give the Haiku model's output."""
    jax = pytest.importorskip("jax")
    nnx = pytest.importorskip("flax.nnx")
    import numpy as np

    jax.config.update("jax_default_matmul_precision", "highest")
    haiku = runpy.run_path(str(FIXTURE / "source.py"))
    linen = runpy.run_path(str(FIXTURE / "linen.py"))
    staged_nnx = runpy.run_path(str(FIXTURE / "nnx.py"))
    xs = jax.random.normal(jax.random.key(1), (2, 5, 8))
    params = haiku["model"].init(jax.random.key(2), xs)
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(3), p.shape), params)  # no zero biases
    expected = haiku["model"].apply(params, None, xs)

    encoder: dict = {}  # the kept module's Haiku params, nested by path as the Flax wrapper holds them
    for path, leaves in params.items():
        if path.startswith("model/encoder/"):
            node = encoder
            for part in path.split("/")[1:]:
                node = node.setdefault(part, {})
            node.update(leaves)
    linen_params = {
        "Dense_0": {"kernel": params["model/linear"]["w"], "bias": params["model/linear"]["b"]},
        "Module_0": encoder,
    }
    assert jax.tree.structure(linen_params) == jax.tree.structure(linen["params"])
    linen_out = linen["model"].apply({"params": linen_params}, xs)

    model = staged_nnx["Model"](8, 16, 32, rngs=nnx.Rngs(0))
    nnx.bridge.lazy_init(model, xs)
    nnx.update(model, {"linear": {"kernel": params["model/linear"]["w"], "bias": params["model/linear"]["b"]}, "encoder": encoder})
    nnx_out = model(xs)

    for out in (linen_out, nnx_out):
        assert out.shape == expected.shape == (2, 32)
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)

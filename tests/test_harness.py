"""The equivalence harness and the parameter conversion: inputs, matching, entry kinds, CLI, checkpoints."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from click.testing import CliRunner
from flax import nnx, serialization

from haiku2flax.cli import main
from haiku2flax.harness import ConversionRefused, convert_params, verify
from haiku2flax.harness.haiku_side import flatten
from haiku2flax.harness.inputs import make_inputs, parse_arg, parse_input_spec
from haiku2flax.harness.loading import find_flax_model, haiku_entry, load_module
from haiku2flax.harness.pytest_helper import assert_equivalent, report_text
from haiku2flax.harness.tolerances import EXACT, tolerance_for

GUIDE = Path(__file__).resolve().parent.parent / "fixtures" / "guide"
BASIC = GUIDE / "basic_example"
TARGETS = ("linen", "nnx")


def write_case(folder: Path, sources: dict[str, str]) -> Path:
    """Write haiku.py / linen.py / nnx.py into `folder`; returns the Haiku file."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in sources.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(text), encoding="utf-8")
    return folder / "haiku.py"


# --- inputs, arguments, tolerances -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "dtype", "shape"),
    [
        pytest.param("f32[2,784]", "float32", (2, 784), id="float"),
        pytest.param("bf16[4,8]", "bfloat16", (4, 8), id="bfloat16"),
        pytest.param("i32[7,3]:0..50", "int32", (7, 3), id="int range"),
        pytest.param("bool[2,5]", "bool", (2, 5), id="bool"),
        pytest.param("f32[]", "float32", (), id="scalar"),
    ],
)
def test_input_specs(spec, dtype, shape):
    (array,) = make_inputs([parse_input_spec(spec)])
    assert (array.dtype.name, array.shape) == (dtype, shape)
    assert array.any(), "inputs are never all zeros"


def test_int_range_is_respected_and_inputs_are_reproducible():
    specs = [parse_input_spec("i32[7,3]:0..50"), parse_input_spec("f32[3]")]
    first, again = make_inputs(specs), make_inputs(specs)
    assert 0 <= int(first[0].min()) and int(first[0].max()) < 50
    assert all(bool((a == b).all()) for a, b in zip(first, again))


@pytest.mark.parametrize("spec", ["f32[2", "x32[2]", "f32[2]:0..5", "i32[2]:5..1", "f32(2)"])
def test_bad_input_specs_are_refused(spec):
    with pytest.raises(ValueError, match="bad input spec"):
        parse_input_spec(spec)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("training=false", False), ("training=True", True), ("n=3", 3), ("rate=0.5", 0.5), ("mode=fast", "fast")],
)
def test_keyword_arguments(text, expected):
    assert parse_arg(text)[1] == expected and type(parse_arg(text)[1]) is type(expected)


def test_tolerances_per_dtype():
    assert tolerance_for(jnp.float32, "cpu").atol == 1e-5
    assert tolerance_for(jnp.bfloat16, "gpu").atol > tolerance_for(jnp.float32, "gpu").atol
    assert tolerance_for(jnp.int32, "cpu") == EXACT
    assert tolerance_for(jnp.bool_, "tpu") == EXACT


# --- entry kinds and model lookup --------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_function_entry_finds_the_model_bound_to_its_transform(target):
    """`--entry forward` (the function) finds `model = Model(...)`, bound where Haiku transforms it."""
    result = verify(BASIC / "haiku.py", target, "forward", ["f32[2,784]"], {"training": False})
    assert result.ok, report_text(result)


def test_missing_entry_could_not_run():
    result = verify(BASIC / "haiku.py", "linen", "no_such_thing", ["f32[2,784]"], {"training": False})
    assert (result.verdict, result.exit_code) == ("could not run", 2)
    assert "no_such_thing" in result.error


USER_LEAVES = {
    "haiku": """
        import haiku as hk
        import jax.numpy as jnp


        class Scaled(hk.Module):
          def __call__(self, x):
            x = hk.Linear(4)(x)
            scale = hk.get_parameter("scale", [4], init=jnp.ones)
            count = hk.get_state("count", [], jnp.float32, init=jnp.zeros)
            hk.set_state("count", count + 1)
            return x * scale + count


        def forward(x):
          return Scaled()(x)


        model = hk.without_apply_rng(hk.transform_with_state(forward))
        """,
    "linen": """
        import flax.linen as nn
        import jax.numpy as jnp


        class Scaled(nn.Module):
          @nn.compact
          def __call__(self, x):
            x = nn.Dense(4)(x)
            scale = self.param("scale", nn.initializers.ones, (4,))
            count = self.variable("state", "count", lambda: jnp.zeros(()))
            value = count.value
            if not self.is_initializing():
              count.value = value + 1
            return x * scale + value


        model = Scaled()
        """,
    "nnx": """
        import jax.numpy as jnp
        from flax import nnx


        class Count(nnx.Variable):
          pass


        class Scaled(nnx.Module):
          def __init__(self, din, *, rngs):
            self.linear = nnx.Linear(din, 4, rngs=rngs)
            self.scale = nnx.Param(jnp.ones((4,)))
            self.count = Count(jnp.zeros(()))

          def __call__(self, x):
            x = self.linear(x)
            value = self.count[...]
            self.count[...] = value + 1
            return x * self.scale[...] + value


        model = Scaled(3, rngs=nnx.Rngs(0))
        """,
}


@pytest.mark.parametrize("target", TARGETS)
def test_user_created_leaves_map_by_name(tmp_path, target):
    """hk.get_parameter / hk.get_state in a user module: the same names in the matching Flax module."""
    haiku_file = write_case(tmp_path, USER_LEAVES)
    result = assert_equivalent(
        haiku_file, target, "model", ["f32[2,3]"], flax_source=(tmp_path / f"{target}.py").read_text(), steps=1
    )
    mapped = {(row.haiku, row.flax) for row in result.rows if row.section in ("parameters", "state")}
    prefix = "params/" if target == "linen" else ""
    assert ("scaled/scale", f"{prefix}scale") in mapped
    assert ("scaled/count", "state/count" if target == "linen" else "count") in mapped
    assert any(row.section == "state after call" and row.ok for row in result.rows)


@pytest.mark.parametrize("target", TARGETS)
def test_user_leaf_with_another_name_is_reported(tmp_path, target):
    sources = dict(USER_LEAVES)
    sources[target] = sources[target].replace('"scale"', '"gain"').replace("self.scale", "self.gain")
    haiku_file = write_case(tmp_path, sources)
    result = verify(haiku_file, target, "model", ["f32[2,3]"], flax_source=(tmp_path / f"{target}.py").read_text())
    assert result.verdict == "not equivalent"
    assert any("'scale' missing" in p for p in result.problems), report_text(result)
    assert any("gain" in p and "left over in Flax" in p for p in result.problems), report_text(result)


def test_model_lookup_prefers_the_same_name(tmp_path):
    haiku_file = write_case(tmp_path, {"haiku": USER_LEAVES["haiku"], "linen": USER_LEAVES["linen"]})
    source = haiku_file.read_text()
    flax_module = load_module((tmp_path / "linen.py").read_text(), haiku_file, "linen")
    assert find_flax_model(flax_module, source, "model", "linen") is flax_module.model
    assert find_flax_model(flax_module, source, "forward", "linen") is flax_module.model
    entry = haiku_entry(load_module(source, haiku_file, "haiku"), "model")
    assert not entry.is_multi and len(entry.applies) == 1


def test_multi_transform_checks_each_method():
    result = assert_equivalent(
        GUIDE / "multiple_methods" / "haiku.py",
        "linen",
        "model",
        ["f32[2,784]"],
        method_inputs={"decode": ["f32[2,256]"]},
        flax_source=(GUIDE / "multiple_methods" / "linen.py").read_text(),
    )
    assert {row.haiku for row in result.rows if row.section == "outputs"} == {"encode", "decode"}


def test_multi_transform_method_selection():
    result = verify(
        GUIDE / "multiple_methods" / "haiku.py",
        "nnx",
        "model",
        ["f32[2,784]"],
        method="encode",
        flax_source=(GUIDE / "multiple_methods" / "nnx.py").read_text(),
    )
    assert result.ok, report_text(result)
    assert [row.haiku for row in result.rows if row.section == "outputs"] == ["encode"]


# --- the command line --------------------------------------------------------------------------------

BASIC_ARGS = [str(BASIC / "haiku.py"), "--entry", "model", "--input", "f32[2,784]", "--arg", "training=false"]


@pytest.mark.parametrize("target", TARGETS)
def test_cli_verify_json(target):
    outcome = CliRunner().invoke(main, ["verify", *BASIC_ARGS, "--to", target, "--steps", "1", "--json"])
    assert outcome.exit_code == 0, outcome.output
    report = json.loads(outcome.output)
    assert report["verdict"] == "equivalent" and report["devices"]
    assert {row["section"] for row in report["rows"]} >= {"parameters", "outputs", "after 1 steps"}


def test_cli_verify_table_and_exit_codes(tmp_path):
    table = CliRunner().invoke(main, ["verify", *BASIC_ARGS, "--to", "linen"])
    assert table.exit_code == 0 and "verdict: equivalent" in table.output and "devices:" in table.output
    missing = CliRunner().invoke(main, ["verify", *BASIC_ARGS, "--to", "linen", "--entry", "nope"])
    assert missing.exit_code == 2 and "could not run" in missing.output
    # a wrong table (Linear's kernel transposed) makes every kernel mis-shaped: not equivalent
    layers = (Path(__file__).resolve().parent.parent / "rules" / "layers.toml").read_text()
    right = 'params = { w = "kernel", b = "bias" }'
    assert right in layers
    rules = tmp_path / "wrong.toml"
    rules.write_text(layers.replace(right, 'params = { w = { name = "kernel", reshape = "swap_last" }, b = "bias" }'))
    wrong = CliRunner().invoke(main, ["verify", *BASIC_ARGS, "--to", "nnx", "--rules", str(rules)])
    assert wrong.exit_code == 1 and "not equivalent" in wrong.output


def test_cli_import_does_not_import_jax():
    code = "import sys, haiku2flax.cli; sys.exit(any(m in sys.modules for m in ('jax', 'flax', 'haiku')))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- convert-params ----------------------------------------------------------------------------------


def haiku_weights(case: Path, inputs: list[str], args: dict) -> tuple[dict, dict]:
    """Haiku's own params and state for a fixture, as a user's training run would have saved them."""
    entry = haiku_entry(load_module((case / "haiku.py").read_text(), case / "haiku.py", "haiku"), "model")
    params, state = entry.init(jax.random.key(42), *make_inputs([parse_input_spec(s) for s in inputs]), **args)
    return jax.tree.map(np.asarray, params), jax.tree.map(np.asarray, state)


def save(tree: dict, path: Path) -> Path:
    if path.suffix == ".pkl":
        path.write_bytes(pickle.dumps(tree))
    elif path.suffix == ".npz":  # AlphaFold's layout: flat `module/path//name` keys
        np.savez(path, **{key.rsplit("/", 1)[0] + "//" + key.rsplit("/", 1)[1]: v for key, v in flatten(tree).items()})
    else:
        path.write_bytes(serialization.msgpack_serialize(tree))
    return path


def restored_outputs(case: Path, target: str, checkpoint: Path, x):
    """Restore the checkpoint the way a user of the rewritten model would, and run it in eval mode."""
    model = load_module((case / f"{target}.py").read_text(), case / "haiku.py", target).model
    if target == "linen":
        return model.apply(ocp.StandardCheckpointer().restore(checkpoint), x, training=False)
    state = nnx.state(model, nnx.Not(nnx.RngState))
    nnx.replace_by_pure_dict(state, ocp.StandardCheckpointer().restore(checkpoint, nnx.to_pure_dict(state)))
    nnx.update(model, state)
    model.eval()
    return model(x)


@pytest.mark.parametrize(
    ("case", "target", "suffix"),
    [
        pytest.param("basic_example", "linen", ".pkl", id="linen-pickle"),
        pytest.param("basic_example", "nnx", ".npz", id="nnx-npz"),
        pytest.param("handling_state", "linen", ".msgpack", id="linen-batchnorm-msgpack"),
        pytest.param("handling_state", "nnx", ".pkl", id="nnx-batchnorm-pickle"),
    ],
)
def test_convert_params_restores_and_matches_haiku(tmp_path, case, target, suffix):
    folder = GUIDE / case
    params, state = haiku_weights(folder, ["f32[4,784]"], {"training": True})
    written = convert_params(
        folder / "haiku.py",
        target,
        "model",
        save(params, tmp_path / f"params{suffix}"),
        ["f32[4,784]"],
        tmp_path / "checkpoint",
        state=save(state, tmp_path / f"state{suffix}") if state else None,
        args={"training": True},
        flax_source=(folder / f"{target}.py").read_text(),
    )
    assert written.leaves == len(flatten(params)) + len(flatten(state)) - len(written.dropped)
    x = make_inputs([parse_input_spec("f32[4,784]")], seed=3)[0]
    entry = haiku_entry(load_module((folder / "haiku.py").read_text(), folder / "haiku.py", "haiku"), "model")
    with jax.default_matmul_precision("highest"):
        expected, _ = entry.applies[0].fn(params, state, jax.random.key(0), x, training=False)
        actual = restored_outputs(folder, target, written.directory, x)
    tolerance = tolerance_for(jnp.float32, jax.default_backend())
    np.testing.assert_allclose(actual, expected, rtol=tolerance.rtol, atol=tolerance.atol)


def test_convert_params_refuses_bad_trees_and_writes_nothing(tmp_path):
    params, _ = haiku_weights(BASIC, ["f32[2,784]"], {"training": False})
    del params["model/linear"]["b"]
    params["model/block/linear"]["w"] = params["model/block/linear"]["w"][:100]
    params["model/extra"] = {"w": np.zeros((2, 2), np.float32)}
    with pytest.raises(ConversionRefused) as refused:
        convert_params(
            BASIC / "haiku.py", "nnx", "model", params, ["f32[2,784]"], tmp_path / "out", args={"training": False}
        )
    text = "\n".join(refused.value.problems)
    assert "missing params leaf model/linear/b" in text
    assert "unexpected params leaf model/extra/w" in text
    assert "model/block/linear/w: file has (100, 256)" in text
    assert not (tmp_path / "out").exists()


def test_cli_convert_params(tmp_path):
    params, _ = haiku_weights(BASIC, ["f32[2,784]"], {"training": False})
    path = save(params, tmp_path / "params.pkl")
    args = [
        str(BASIC / "haiku.py"),
        "--to",
        "linen",
        "--entry",
        "model",
        "--input",
        "f32[2,784]",
        "--params",
        str(path),
    ]
    written = CliRunner().invoke(
        main, ["convert-params", *args, "--arg", "training=false", "--out", str(tmp_path / "a")]
    )
    assert written.exit_code == 0, written.output
    assert (tmp_path / "a").is_dir()
    del params["model/linear"]["w"]
    save(params, path)
    refused = CliRunner().invoke(
        main, ["convert-params", *args, "--arg", "training=false", "--out", str(tmp_path / "b")]
    )
    assert refused.exit_code == 1 and "missing params leaf model/linear/w" in refused.output


def test_every_reshape_the_tables_accept_is_implemented():
    """The engine validates `reshape` names without jax; the harness must implement each one it accepts."""
    from haiku2flax.engine.tables import RESHAPES
    from haiku2flax.harness.conversions import ONE_TO_ONE, SHAPED, SPLITS

    assert set(RESHAPES) <= set(ONE_TO_ONE) | set(SHAPED) | set(SPLITS)

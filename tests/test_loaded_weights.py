"""Loaded weights reach the converted model.

A Haiku program that loads its trained weights from pickles (`params = pickle.load(f)`;
`net.apply(params, x)`, or restored by a helper and passed to the function that applies them) is
migrated; its Haiku checkpoint is converted once with `haiku2flax convert-params --out converted.pkl`;
the converted program, loading the converted file the same way, computes what the Haiku program
computes on the Haiku weights (within the project's tolerance table), in both targets.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

from haiku2flax.cli import main
from haiku2flax.engine import convert_source
from haiku2flax.engine.pipeline import TARGETS
from haiku2flax.harness.inputs import make_inputs, parse_input_spec
from haiku2flax.harness.loading import load_module
from haiku2flax.harness.tolerances import tolerance_for

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "transforms"


@dataclass(frozen=True)
class Program:
    """A fixture whose program loads weights: how it is called and where it reads them."""

    folder: str
    entry: str  # the transformed object convert-params converts for
    run: str  # the program's function: run(location, x)
    reads_folder: bool  # `run` takes a folder holding params.pkl and state.pkl, else the params file
    spec: str = "f32[3,20]"
    args: dict[str, Any] = field(default_factory=dict)  # the model's other arguments, in eval mode


PROGRAMS = [
    Program("loaded_weights", "classifier", "predict", reads_folder=False),
    Program("loaded_weights_variant", "regressor", "main", reads_folder=True, spec="f32[5,6]", args={"is_training": False}),
    # parameters from `init` (constant initialisers: the same in every framework), state loaded over init's
    Program("loaded_state", "normaliser", "main", reads_folder=True, spec="f32[5,6]", args={"is_training": False}),
]


def _trained(program: Program, transformed: Any, x: jax.Array) -> tuple[dict, dict]:
    """Haiku weights as a training run leaves them: parameters moved off their initial values, and batch
    statistics gathered over a few training-mode batches. Plain numpy arrays, as users pickle them."""
    key = jax.random.key(7)
    init = transformed.init(key, x, **{name: True for name in program.args})
    params, state = init if isinstance(init, tuple) else (init, {})
    leaves, tree = jax.tree.flatten(params)
    noise = [0.3 * jax.random.normal(k, leaf.shape) for k, leaf in zip(jax.random.split(key, len(leaves)), leaves)]
    params = jax.tree.unflatten(tree, [leaf + n for leaf, n in zip(leaves, noise)])
    for seed in range(3 if state else 0):
        batch = make_inputs([parse_input_spec(program.spec)], seed=10 + seed)[0] * 2.0 + 1.0
        _, state = transformed.apply(params, state, None, batch, **{name: True for name in program.args})
    return jax.tree.map(np.asarray, params), jax.tree.map(np.asarray, state)


def _save(tree: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(tree))
    return path


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.folder for p in PROGRAMS])
def test_converted_program_computes_with_the_loaded_weights(tmp_path: Path, program: Program):
    haiku_path = FIXTURES / program.folder / "haiku.py"
    source = haiku_path.read_text(encoding="utf-8")
    x = make_inputs([parse_input_spec(program.spec)], seed=3)[0]
    haiku = load_module(source, haiku_path, "haiku")
    params, state = _trained(program, getattr(haiku, program.entry), x)
    haiku_files = tmp_path / "haiku"
    params_file = _save(params, haiku_files / "params.pkl")
    if state:
        _save(state, haiku_files / "state.pkl")
    location = haiku_files if program.reads_folder else params_file
    with jax.default_matmul_precision("highest"):
        expected = np.asarray(getattr(haiku, program.run)(str(location), x))
        untrained = getattr(haiku, program.entry).init(jax.random.key(0), x, **{name: True for name in program.args})
        # (a transform with state takes an rng; the stateless one here is `without_apply_rng`)
        fresh = getattr(haiku, program.entry).apply(*untrained, None, x, **program.args)[0] if state else getattr(haiku, program.entry).apply(untrained, x)
    assert not np.allclose(expected, fresh, atol=1e-3)  # the loaded weights matter to the outputs
    tolerance = tolerance_for(jnp.float32, jax.default_backend())

    for target in TARGETS:
        converted_files = tmp_path / target
        converted_files.mkdir()
        command = [
            "convert-params", str(haiku_path), "--to", target, "--entry", program.entry, "--input", program.spec,
            "--params", str(params_file), "--out", str(converted_files / "params.pkl"),
            *(["--state", str(haiku_files / "state.pkl"), "--state-out", str(converted_files / "state.pkl")] if state else []),
            *(arg for name in program.args for arg in ("--arg", f"{name}=true")),  # (Haiku makes BatchNorm's state in training)
        ]
        written = CliRunner().invoke(main, command)
        assert written.exit_code == 0, written.output
        rewritten = load_module(convert_source(source, target).code, haiku_path, target)
        converted_location = converted_files if program.reads_folder else converted_files / "params.pkl"
        with jax.default_matmul_precision("highest"):
            actual = np.asarray(getattr(rewritten, program.run)(str(converted_location), x))
        np.testing.assert_allclose(actual, expected, rtol=tolerance.rtol, atol=tolerance.atol, err_msg=target)


def test_convert_params_to_a_pickle_refuses_to_overwrite_or_drop_the_state(tmp_path: Path):
    """A pickle `--out` never replaces a file, and a model with state needs `--state-out` for it."""
    program = PROGRAMS[1]
    haiku_path = FIXTURES / program.folder / "haiku.py"
    haiku = load_module(haiku_path.read_text(encoding="utf-8"), haiku_path, "haiku")
    x = make_inputs([parse_input_spec(program.spec)])[0]
    params, state = _trained(program, getattr(haiku, program.entry), x)
    common = [
        "convert-params", str(haiku_path), "--to", "nnx", "--entry", program.entry, "--input", program.spec,
        "--arg", "is_training=true", "--params", str(_save(params, tmp_path / "params.pkl")),
        "--state", str(_save(state, tmp_path / "state.pkl")),
    ]
    existing = _save({"kept": 1}, tmp_path / "converted.pkl")
    refused = CliRunner().invoke(main, [*common, "--out", str(existing), "--state-out", str(tmp_path / "new.pkl")])
    assert refused.exit_code == 2 and "converted.pkl: exists" in refused.output
    assert pickle.loads(existing.read_bytes()) == {"kept": 1} and not (tmp_path / "new.pkl").exists()
    no_state_file = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "other.pkl")])
    assert no_state_file.exit_code == 2 and "--state-out" in no_state_file.output
    assert not (tmp_path / "other.pkl").exists()

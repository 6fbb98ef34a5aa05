"""Whole-tree migration: modules of one file, a model transformed in another and initialised in a third
are migrated as one program, with `-j`, and the converted training script runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from haiku2flax.engine import convert_source
from haiku2flax.engine.tree import index_tree

LAYERS = '''\
"""A library of Haiku modules."""

import haiku as hk
import jax


class Block(hk.Module):
    def __init__(self, hidden, name=None):
        super().__init__(name=name)
        self.hidden = hidden

    def __call__(self, x):
        return jax.nn.relu(hk.Linear(self.hidden)(x))
'''

MODEL = '''\
"""The model, from modules of the library; nothing here calls `init`."""

import haiku as hk

from layers import Block


class Net(hk.Module):
    def __call__(self, x):
        x = Block(32, name="hidden")(x)
        return hk.Linear(1)(x)


def forward(x):
    return Net()(x)


net = hk.without_apply_rng(hk.transform(forward))
'''

TRAIN = '''\
"""Training: no Haiku here, only the model of model.py."""

import jax
import jax.numpy as jnp

from model import net


def loss_fn(params, x, y):
    pred = net.apply(params, x)
    return jnp.mean((pred - y) ** 2)


@jax.jit
def train_step(params, x, y):
    grads = jax.grad(loss_fn)(params, x, y)
    params = jax.tree_util.tree_map(lambda p, g: p - 0.01 * g, params, grads)
    return params


x = jnp.ones((8, 12))
y = jnp.zeros((8, 1))
params = net.init(jax.random.PRNGKey(0), x)
before = float(loss_fn(params, x, y))
params = train_step(params, x, y)
after = float(loss_fn(params, x, y))
assert after < before, (before, after)
print("one step", before, after)
'''

UNRELATED = '''\
"""No Haiku and nothing of the model: left alone."""

import json

net = json.loads("{}")
'''


def _tree(folder: Path) -> Path:
    folder.mkdir()
    for name, text in {"layers.py": LAYERS, "model.py": MODEL, "train.py": TRAIN, "unrelated.py": UNRELATED}.items():
        (folder / name).write_text(text)
    return folder


def _migrate(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from haiku2flax.cli import main; main()", "migrate", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("target", ["nnx", "linen"])
def test_a_library_a_model_and_a_training_script_migrate_together_and_the_script_trains(tmp_path, target):
    _tree(tmp_path / "project")
    out = tmp_path / "out"
    migrated = _migrate(tmp_path, "--to", target, "-j", "2", "--out-dir", "out", "project")
    assert migrated.returncode == 0, migrated.stderr
    converted = out / "project"
    train = (converted / "train.py").read_text()
    assert "import haiku" not in train and "..." not in train
    assert (converted / "unrelated.py").read_text() == UNRELATED
    if target == "nnx":
        assert "net = make_net(x, rngs=nnx.Rngs(jax.random.PRNGKey(0)))" in train
        assert "from model import make_net" in train
        model = (converted / "model.py").read_text()
        assert "def make_net(sample, *, rngs: nnx.Rngs):" in model
        assert "self.hidden = Block(din, 32, rngs=rngs)" in model and "nnx.Linear(32, 1, rngs=rngs)" in model  # sizes from layers.py
    else:
        assert "net.init(jax.random.PRNGKey(0), x)['params']" in train
    run = subprocess.run([sys.executable, "train.py"], cwd=converted, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("one step")


def test_without_the_tree_a_script_that_never_imports_haiku_is_left_alone():
    assert convert_source(TRAIN, "nnx").code == TRAIN


def test_the_index_follows_aliases_and_relative_imports_within_the_tree(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text(MODEL)
    (package / "train.py").write_text("from .model import net as model\n")
    (package / "evaluate.py").write_text("from pkg.model import net\nfrom other import net as elsewhere\n")
    index = index_tree(sorted(package.iterdir()))
    relative = index.view(package / "train.py").imported
    assert list(relative) == ["model"] and relative["model"].name == "net" and not relative["model"].apply_rng
    assert list(index.view(package / "evaluate.py").imported) == ["net"]
    assert not index.view(package / "model.py").imported


SAME_FILE = '''\
import haiku as hk
import jax
import jax.numpy as jnp


class Net(hk.Module):
    def __call__(self, x):
        return hk.Linear(3)(jax.nn.relu(hk.Linear(16)(x)))


def forward(x):
    return Net()(x)


net = hk.without_apply_rng(hk.transform(forward))


def main(batch):
    params = net.init(jax.random.PRNGKey(0), batch)
    return net.apply(params, batch)


out = main(jnp.ones((2, 12)))
'''


def test_init_in_another_function_on_a_runtime_input_builds_the_model_there(tmp_path):
    """NNX: the input's size shows only when `main` runs, so `main` builds the model from it."""
    code = convert_source(SAME_FILE, "nnx").code
    assert "..." not in code and "TODO" not in code
    assert "    net = make_net(batch, rngs=nnx.Rngs(jax.random.PRNGKey(0)))\n    params = nnx.state(net, nnx.Param)\n" in code
    script = tmp_path / "converted.py"
    script.write_text(code + "print(out.shape)\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "(2, 3)", run.stderr[-3000:]


def test_a_transform_applied_in_its_own_file_is_built_there(tmp_path):
    """Only a transform its file never initialises nor applies becomes a factory (NNX)."""
    library = SAME_FILE.split("\n\ndef main")[0] + "\n"
    applied = library + "\n\ndef predict(params, x):\n    return net.apply(params, x)\n"
    code = convert_source(applied, "nnx").code
    assert "def make_net" not in code and "net = Net(" in code
    factory = convert_source(library, "nnx").code
    assert "def make_net(sample, *, rngs: nnx.Rngs):" in factory and "return Net(sample.shape[-1], rngs=rngs)" in factory
    assert "..." not in factory


SERVE = '''\
import pickle

from model import net


def predict(path, x):
    with open(path, "rb") as f:
        params = pickle.load(f)
    return net.apply(params, x)
'''


def test_a_script_applying_an_imported_model_to_loaded_weights_builds_it_there_and_loads_them(tmp_path):
    """NNX: `serve.py` never initialises `net`; it builds the model from the input the loaded weights are
    applied to, with the factory of the model's file, and loads them into it."""
    project = _tree(tmp_path / "project")
    (project / "serve.py").write_text(SERVE)
    migrated = _migrate(tmp_path, "--to", "nnx", "--out-dir", "out", "project")
    assert migrated.returncode == 0, migrated.stderr
    serve = (tmp_path / "out" / "project" / "serve.py").read_text()
    assert "from model import make_net" in serve and "TODO" not in serve
    assert "    net = make_net(x, rngs=nnx.Rngs(0))\n    nnx.update(net, params)\n    return net(x)\n" in serve
    assert "are loaded, not made by `init`" in migrated.stdout + migrated.stderr

"""Whole-tree migration: modules of one file, a model transformed in another and initialised in a third
are migrated as one program, with `-j`, and the converted training script runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from haiku2flax.engine import convert_source
from haiku2flax.engine.tree import index_tree
from haiku2flax.signatures import changed_classes

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


def _through_modules(folder: Path) -> Path:
    """The tree with each file reaching the other files' objects through their modules (`import model` …
    `model.net.apply`, `import layers as lib` … `lib.Block(...)`)."""
    _tree(folder)
    model = MODEL.replace("from layers import Block", "import layers as lib").replace("Block(32", "lib.Block(32")
    train = TRAIN.replace("from model import net", "import model").replace("net.", "model.net.")
    (folder / "model.py").write_text(model)
    (folder / "train.py").write_text(train)
    return folder


@pytest.mark.parametrize("target", ["nnx", "linen"])
def test_objects_reached_through_their_module_follow_the_conversion(tmp_path, target):
    _through_modules(tmp_path / "project")
    migrated = _migrate(tmp_path, "--to", target, "-j", "2", "--out-dir", "out", "project")
    assert migrated.returncode == 0, migrated.stderr
    converted = tmp_path / "out" / "project"
    train, model = (converted / "train.py").read_text(), (converted / "model.py").read_text()
    assert "import model\n" in train and "from model import" not in train and "from layers import" not in model
    if target == "nnx":
        assert "net = model.make_net(x, rngs=nnx.Rngs(jax.random.PRNGKey(0)))" in train
        assert "self.hidden = lib.Block(din, 32, rngs=rngs)" in model and "nnx.Linear(32, 1, rngs=rngs)" in model
    else:
        assert "params = model.net.init(jax.random.PRNGKey(0), x)['params']" in train
        assert "model.net.apply({'params': params}, x)" in train
    run = subprocess.run([sys.executable, "train.py"], cwd=converted, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("one step")


OUTSIDE = '''\
from layers import Block
import project.model as m


def build(x):
    return Block(3, name="b")(x) + m.Net()(x)
'''


@pytest.mark.parametrize("target", ["nnx", "linen"])
def test_changed_constructors_are_reported_once_with_their_calls_outside_the_migrated_files(tmp_path, target):
    (tmp_path / ".git").mkdir()  # the project: the git work tree around the migrated folder
    _tree(tmp_path / "project")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "use.py").write_text(OUTSIDE)
    migrated = _migrate(tmp_path, "--to", target, "--check", "--report", "report.json", "project")
    notes = [note for note in json.loads((tmp_path / "report.json").read_text())["constructs"] if " is now " in note["message"]]
    if target == "linen":  # a Linen module still takes its arguments, and `name`
        assert notes == [] and " is now " not in migrated.stdout + migrated.stderr
        return
    block = "`Block(hidden, name=None)` is now `Block(din: int, hidden, *, rngs: nnx.Rngs)`"
    net = "`Net(name=None)` is now `Net(din: int, *, rngs: nnx.Rngs)`"
    outside = "update its calls outside the migrated files: scripts/use.py:6"
    assert [(note["outcome"], note["message"]) for note in notes] == [
        ("converted", f"hk.Module subclass Block -> nnx.Module; {block}"),
        ("warning", f"{block}: {outside}"),
        ("converted", f"hk.Module subclass Net -> nnx.Module; {net}"),
        ("warning", f"{net}: {outside}"),
    ]
    assert f"project/layers.py:7:1: warning: {block}: {outside} [HK001]" in migrated.stdout + migrated.stderr


LOADED_WEIGHTS_MODEL = Path(__file__).resolve().parent.parent / "fixtures" / "transforms" / "loaded_weights" / "haiku.py"

EVALUATE = '''\
import jax
import jax.numpy as jnp

from model import classifier

x = jnp.ones((4, 20))
params = classifier.init(jax.random.PRNGKey(1), x)
print("logits", classifier.apply(params, x).shape)
'''


def test_a_model_its_file_builds_by_a_factory_is_built_with_it_by_the_files_importing_it(tmp_path):
    """NNX: model.py initialises `classifier` on a run-time input and applies it to loaded weights, so its
    conversion makes the model a factory (`make_classifier`), which what the index guesses from `init` /
    `apply` calls alone cannot tell: the file importing `classifier` follows what that conversion made."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "model.py").write_text(LOADED_WEIGHTS_MODEL.read_text())
    (project / "evaluate.py").write_text(EVALUATE)
    migrated = _migrate(tmp_path, "--to", "nnx", "-j", "2", "--out-dir", "out", "project")
    assert migrated.returncode == 0, migrated.stderr
    converted = tmp_path / "out" / "project"
    assert "def make_classifier(sample, *, rngs: nnx.Rngs):" in (converted / "model.py").read_text()
    evaluate = (converted / "evaluate.py").read_text()
    assert "from model import make_classifier" in evaluate
    assert "classifier = make_classifier(x, rngs=nnx.Rngs(jax.random.PRNGKey(1)))" in evaluate
    run = subprocess.run([sys.executable, "evaluate.py"], cwd=converted, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout == "logits (4, 10)\n"


CONSTRUCTORS = '''\
import haiku as hk


class Plain(hk.Module): pass


class Sized(hk.Module):
    """A docstring with a parenthesis ("""

    def __init__(self, sizes=(1, 2), act=dict(a=")"),
                 *args, name=None, **kwargs):
        super().__init__(name=name)

    def __call__(self, x):
        def __init__(unrelated):
            pass
        return x
'''


def test_changed_constructors_are_read_from_the_class_headers_alone():
    conversion = convert_source(CONSTRUCTORS, "nnx")
    changed = {c.name: (c.line, c.before, c.after) for c in changed_classes(CONSTRUCTORS, conversion.code, conversion.notes, ("layers",))}
    assert changed == {
        "Plain": (4, "name=None", ""),  # an NNX module without layers takes nothing
        "Sized": (7, "sizes=(1, 2), act=dict(a=')'), *args, name=None, **kwargs", "sizes=(1, 2), act=dict(a=')')"),
    }


@pytest.mark.parametrize("target", ["nnx", "linen"])
def test_an_object_reached_through_its_module_under_a_name_the_file_uses_keeps_that_name(tmp_path, target):
    """`net` is a name of the file already: the conversion reads `model.net` under another name, which
    the converted code never shows where it reaches the model through its module."""
    project = _through_modules(tmp_path / "project")
    train = project / "train.py"
    train.write_text(train.read_text() + "net = 'a name of its own'\n")
    view = index_tree(sorted(project.glob("*.py"))).view(train)
    assert view.qualified == {"model_net": ("model", "model", "net")}
    code = convert_source(train.read_text(), target, tree=view).code
    assert "import model\n" in code and "from model import" not in code and "net = 'a name of its own'\n" in code
    if target == "linen":
        assert "model_net" not in code and "pred = model.net.apply({'params': params}, x)" in code
    else:  # the model is a variable where it is built
        assert "model_net = model.make_net(x, rngs=nnx.Rngs(jax.random.PRNGKey(0)))" in code

"""The `hk.nets` models shipped inside dm-haiku, converted and verified against the originals.

Real Haiku code nobody here wrote (`haiku2flax.harness.hk_nets`). Every model/target pair that
converts without a TODO is verified by the harness on a small configuration: the installed source
plus a driver (a forward function, `model = hk.transform_with_state(forward)` — `hk.transform` for a
stateless model — and an `init` call, from which NNX learns the input sizes). Every pair that does not
is pinned to the TODO reasons that block it, so its test fails when support lands: then move the pair
to the verified ones.
"""

from __future__ import annotations

import ast
import runpy
import textwrap
import warnings
from dataclasses import dataclass, field

import pytest

from haiku2flax.engine import convert_source
from haiku2flax.engine.notes import TODO_PREFIX, Outcome
from haiku2flax.harness.hk_nets import installed_nets
from haiku2flax.harness.pytest_helper import assert_equivalent

NETS = installed_nets()

USER_IMPORTS = """\
import haiku as hk
import jax
import jax.numpy as jnp
"""


@dataclass(frozen=True)
class Model:
    """An `hk.nets` model run by `driver`, appended to its installed file (None: to a user's imports)."""

    file: str | None
    driver: str
    inputs: list[str]
    args: dict[str, object] = field(default_factory=dict)
    train_args: dict[str, object] | None = None
    steps: int = 1

    def haiku_source(self) -> str:
        return (USER_IMPORTS if self.file is None else NETS[self.file]) + "\n\n" + textwrap.dedent(self.driver)


MOBILENET = Model(
    "hk.nets/mobilenetv1.py",
    """\
    def forward(x, is_training):
      return MobileNetV1(strides=(1, 2), channels=(8, 16), num_classes=10)(x, is_training)


    model = hk.transform_with_state(forward)

    params, state = model.init(jax.random.key(0), jnp.ones((2, 16, 16, 3)), is_training=True)
    """,
    ["f32[2,16,16,3]"],
    {"is_training": False},
    {"is_training": True},
)
MLP = Model(  # through the MLP rule (HK014); the MLP class itself is blocked, below
    None,
    """\
    def forward(x):
      mlp = hk.nets.MLP([16, 16, 4], w_init=hk.initializers.TruncatedNormal(0.5), activation=jax.nn.gelu)
      return mlp(x)


    model = hk.transform(forward)

    params = model.init(jax.random.key(0), jnp.ones((2, 8)))
    """,
    ["f32[2,8]"],
)


# MobileNetV1 in NNX: the input size of `logits` (after `jnp.mean(out, axis=(1, 2))` of a rank nothing fixes) is probed
VERIFIED = {("MobileNetV1", "linen"): MOBILENET, ("MobileNetV1", "nnx"): MOBILENET, ("MLP", "linen"): MLP, ("MLP", "nnx"): MLP}


@pytest.mark.parametrize(("model", "target"), [pytest.param(m, t, id=f"{name}-{t}") for (name, t), m in VERIFIED.items()])
def test_converted_model_is_equivalent(model: Model, target: str, tmp_path):
    haiku = model.haiku_source()
    (tmp_path / "haiku.py").write_text(haiku, encoding="utf-8")
    for name in ("linen", "nnx"):
        (tmp_path / f"{name}.py").write_text(convert_source(haiku, name).code, encoding="utf-8")
    converted = (tmp_path / f"{target}.py").read_text(encoding="utf-8")
    assert TODO_PREFIX not in converted, converted
    assert "import haiku" not in converted, converted
    if target == "nnx":  # as a script would run it: no deprecated Flax API
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            runpy.run_path(str(tmp_path / "nnx.py"))
    result = assert_equivalent(
        tmp_path / "haiku.py",
        target,
        "model",
        model.inputs,
        model.args,
        train_args=model.train_args,
        steps=model.steps,
        flax_source=converted,
    )
    for section in dict.fromkeys(row.section for row in result.rows if row.max_abs is not None):
        print(f"{section}: max abs diff {max(row.max_abs for row in result.rows if row.section == section):.3g}")


@dataclass(frozen=True)
class Blocked:
    """A model that converts with TODOs: its classes in an installed file, and the (rule, reason) pairs
    (a phrase of the reason) that every one of their TODOs is, each at least once."""

    source: str
    classes: tuple[str, ...] | None  # None: every class of the file
    reasons: set[tuple[str, str]]


NO_VARIANCE_SCALING = ("HK000", "`hk.initializers.VarianceScaling`")  # bound to a variable, passed to `hk.get_parameter`
PROPERTY_BUILDS = ("HK001", "a property cannot be `@nn.compact`")  # Linen: `embeddings` reads a parameter in a property
NO_MOVING_AVERAGE = ("HK800", "`hk.ExponentialMovingAverage`: Flax has no moving-average module")
BLOCKED = {
    ("MLP-class", "linen"): Blocked(
        "hk.nets/mlp.py",
        None,
        {
            ("HK800", "`hk.initializers.Initializer`: Haiku initializers take `(shape, dtype)`"),
            ("HK021", "it is not assigned to a name"),  # (`w_init=None` handed to each layer converts)
        },
    ),
    ("MLP-class", "nnx"): Blocked(
        "hk.nets/mlp.py",
        None,
        {
            ("HK800", "`hk.initializers.Initializer`: Haiku initializers take `(shape, dtype)`"),
            ("HK000", "`hk.Linear` is used in a way its rule cannot convert"),
            ("HK002", "`hk.Linear` w_init: `w_init` is not an `hk.initializers` call the tables know"),
            ("HK000", "`hk.PRNGSequence` is used in a way HK020 (prng-sequence) cannot convert here"),
            ("HK002", "its arguments use dropout_rate, which `__init__` does not have"),  # a call argument as the rate
        },
    ),
    ("ResNet", "linen"): Blocked(
        "hk.nets/resnet.py",
        None,
        {
            ("HK002", "`hk.BatchNorm` is called with `**bn_config`, whose keys are not seen in this file"),  # built by `dict(...)`
            ("HK002", "`hk.Conv2D` is called with `**initial_conv_config`, whose keys are not seen in this file"),
            ("HK002", "`hk.Linear` is called with `**logits_config`, whose keys are not seen in this file"),
            ("HK002", "calling `hk.BatchNorm` with `test_local_stats`"),
        },
    ),
    ("ResNet", "nnx"): Blocked(
        "hk.nets/resnet.py",
        None,
        {
            ("HK000", "`hk.BatchNorm` is used in a way its rule cannot convert"),
            ("HK000", "`hk.Conv2D` is used in a way its rule cannot convert"),
            ("HK000", "`hk.Linear` is used in a way its rule cannot convert"),
            ("HK002", "`hk.Conv2D` is called with `**initial_conv_config`, whose keys are not seen in this file"),
            ("HK002", "`hk.Linear` is called with `**logits_config`, whose keys are not seen in this file"),
            # layers `__init__` builds under an `if` convert (the shortcut conv), or say at their call why not
            ("HK002", "`hk.BatchNorm` is called with `**bn_config`, whose keys are not seen in this file"),
            ("HK002", "calling `hk.BatchNorm` with `test_local_stats`"),
            ("HK006", "the input feature size of `proj_conv` could not be inferred"),  # it reads a BatchNorm left as it was
        },
    ),
    ("VectorQuantizer", "linen"): Blocked(
        "hk.nets/vqvae.py", ("VectorQuantizer",), {NO_VARIANCE_SCALING, PROPERTY_BUILDS}
    ),
    ("VectorQuantizer", "nnx"): Blocked(
        "hk.nets/vqvae.py",
        ("VectorQuantizer",),
        {NO_VARIANCE_SCALING, ("HK002", "its arguments use initializer, which `__init__` does not have")},
    ),
    ("VectorQuantizerEMA", "linen"): Blocked(
        "hk.nets/vqvae.py", ("VectorQuantizerEMA",), {NO_MOVING_AVERAGE, NO_VARIANCE_SCALING, PROPERTY_BUILDS}
    ),
    ("VectorQuantizerEMA", "nnx"): Blocked(
        "hk.nets/vqvae.py",
        ("VectorQuantizerEMA",),
        {
            NO_MOVING_AVERAGE,
            NO_VARIANCE_SCALING,
            ("HK002", "its arguments use initializer, which `__init__` does not have"),
            ("HK201", "no `hk.get_state('embeddings', ...)` before this"),
        },
    ),
}


def _todos(source: str, target: str, classes: tuple[str, ...] | None) -> list[tuple[str, str]]:
    """(rule, reason) of the TODOs a conversion leaves in `classes` (None: anywhere in the file)."""
    spans = [
        (node.lineno, node.end_lineno)
        for node in ast.parse(source).body
        if isinstance(node, ast.ClassDef) and (classes is None or node.name in classes)
    ]
    notes = convert_source(source, target).notes
    return [
        (note.rule, note.message)
        for note in notes
        if note.outcome is Outcome.TODO and (classes is None or any(a <= note.line <= b for a, b in spans))
    ]


@pytest.mark.parametrize(("model", "target"), [pytest.param(*key, id=f"{key[0]}-{key[1]}") for key in BLOCKED])
def test_blocked_model_leaves_the_expected_todos(model: str, target: str):
    blocked = BLOCKED[model, target]
    todos = _todos(NETS[blocked.source], target, blocked.classes)
    unexpected = [t for t in todos if not any(rule == t[0] and phrase in t[1] for rule, phrase in blocked.reasons)]
    gone = [r for r in sorted(blocked.reasons) if not any(r[0] == rule and r[1] in reason for rule, reason in todos)]
    assert not unexpected, f"{model} ({target}) has TODOs this test does not expect: {unexpected}"
    assert not gone, (
        f"{model} ({target}) no longer leaves these TODOs: {gone}. If it now converts without TODOs, verify "
        "it in test_converted_model_is_equivalent instead; otherwise update the expected reasons"
    )


def test_every_installed_file_is_verified_or_blocked_in_both_targets():
    """A new file in `hk.nets` (a dm-haiku upgrade) must be looked at."""
    looked_at = {(m.file, target) for (_, target), m in VERIFIED.items()} | {(b.source, target) for (_, target), b in BLOCKED.items()}
    missing = {(file, target) for file in NETS for target in ("linen", "nnx")} - looked_at
    assert not missing, sorted(missing)

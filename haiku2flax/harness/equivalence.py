"""`verify`: run the Haiku original and its Flax rewrite on the same weights and inputs, and compare.

Four checks, each a section of the result: parameters (every leaf maps one-to-one, same shape and
dtype after the tables' reshapes), outputs (each apply function / method), state (after one call with
the training arguments: BatchNorm statistics, counters) and steps (N SGD steps on a fixed loss give the
same parameters, i.e. the gradients agree).
"""

from __future__ import annotations

import tempfile
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from ..engine import Note, Outcome, convert_source
from ..engine.tables import Tables, load_tables
from ..engine.tree import EMPTY_VIEW, index_tree
from ..runner import Settings, convert_tree
from .conversions import Array
from .flax_side import flax_model
from .haiku_side import apply as haiku_apply
from .haiku_side import init_and_trace, method_name, settled
from .inputs import make_inputs, parse_input_spec
from .loading import HaikuApply, HaikuEntry, describe_failure, find_flax_model, haiku_entry, imported, loaded_frames
from .matching import MAPPED, convert_leaves, flax_table_types, group_leaves, match_records
from .randomness import Draw, pinned_bernoulli
from .tolerances import EXACT, Tolerance, tolerance_for

PERTURBATION = 0.1  # relative size of the noise added to Haiku's initial weights (see `_perturbed`)
LEARNING_RATE = 0.05  # of the SGD steps


@dataclass(frozen=True)
class Row:
    """One line of the report: a Haiku leaf and its Flax counterpart, and how far apart they are."""

    section: str  # "parameters", "state" (the mapping), "outputs", "state after call", "after N steps"
    haiku: str
    flax: str
    shape: tuple[int, ...]
    status: str  # "ok", or what is wrong
    max_abs: float | None = None
    max_rel: float | None = None
    ok: bool = True


@dataclass
class VerifyResult:
    path: str
    target: str
    entry: str
    devices: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why it is not equivalent, in words
    notes: list[str] = field(default_factory=list)  # how things were compared
    error: str | None = None  # why it could not run
    error_frames: list[tuple[str, int]] = field(default_factory=list)  # (role, line) in the user's files

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return "could not run"
        return "not equivalent" if self.problems else "equivalent"

    @property
    def ok(self) -> bool:
        return self.verdict == "equivalent"

    @property
    def exit_code(self) -> int:
        return {"equivalent": 0, "not equivalent": 1, "could not run": 2}[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: NaN and infinite differences become strings, as JSON has no such numbers."""
        data = asdict(self)
        data["verdict"] = self.verdict
        for row in data["rows"]:
            for key in ("max_abs", "max_rel"):
                if row[key] is not None and not np.isfinite(row[key]):
                    row[key] = str(row[key])
        return data


def _compare(haiku: Array, flax: Array, tolerance: Tolerance) -> tuple[float, float, bool]:
    """(max abs diff, max diff relative to |haiku|, within tolerance); NaNs must sit in the same places."""
    expected = np.asarray(haiku, dtype=np.float64)
    actual = np.asarray(flax, dtype=np.float64)
    if expected.size == 0:
        return 0.0, 0.0, True
    diff = np.abs(actual - expected)
    diff = np.where(np.isnan(expected) & np.isnan(actual), 0.0, diff)  # NaN on one side only fails below
    relative = diff / np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
    ok = bool(np.all(diff <= tolerance.atol + tolerance.rtol * np.abs(expected)))
    return float(np.max(diff)), float(np.max(relative)), ok


def _perturbed(values: Mapping[str, Array], seed: int, multiplicative: bool) -> dict[str, Array]:
    """Noise on every float leaf, so that zero biases, unit scales and empty statistics hide nothing.

    Parameters get additive noise, PERTURBATION times their own spread (absolute for constant leaves
    such as zero biases): wide layers keep their scale, so outputs and SGD steps stay moderate. State
    is scaled by 1 ± PERTURBATION and shifted up by up to PERTURBATION: variances stay positive, and
    statistics that start at zero become non-zero. Drawn with numpy: nothing to compile per shape.
    """
    out: dict[str, Array] = {}
    for index, (key, value) in enumerate(sorted(values.items())):
        if not jnp.issubdtype(value.dtype, jnp.floating):
            out[key] = value
            continue
        array = np.asarray(value, dtype=np.float64)
        noise = PERTURBATION * np.random.default_rng([seed, index]).standard_normal(array.shape)
        if multiplicative:
            array = array * (1 + noise) + np.abs(noise)
        else:
            spread = np.std(array)
            array = array + noise * (spread if spread > 0 else 1.0)
        out[key] = jnp.asarray(array.astype(value.dtype))
    return out


def _loss(outputs: Any, weights: list[Array]) -> Array:
    """sum over float output leaves of mean(w * out**2): every output element gets its own gradient."""
    return sum(
        jnp.mean(w * jnp.square(leaf.astype(jnp.float32)))
        for leaf, w in zip(jax.tree.leaves(outputs), weights)
        if jnp.issubdtype(leaf.dtype, jnp.floating)
    )


@dataclass(frozen=True)
class _ApplyCheck:
    """One Haiku apply function, the Flax method that stands for it, and its inputs."""

    apply: HaikuApply
    method: str  # the Flax method: "__call__" unless a multi_transform names another
    label: str
    inputs: list[Array]


@dataclass(frozen=True)
class _Calls:
    """One call on each side from the same weights, with dropout pinned (see `randomness`)."""

    haiku_out: Any
    haiku_state: dict[str, Array]
    haiku_draws: list[Draw]
    flax_out: Any
    flax_values: dict[str, Array]
    flax_draws: list[Draw]


@dataclass
class _Verification:
    """What one `verify` call asked for, and the result it fills in, check by check."""

    result: VerifyResult
    tables: Tables
    input_specs: list[str]
    args: dict[str, object]
    train_args: dict[str, object] | None
    method: str | None
    method_inputs: dict[str, list[str]]
    steps: int
    rtol: float | None
    atol: float | None
    seed: int

    def __post_init__(self) -> None:
        self.platform = jax.default_backend()
        self.rng = jax.random.key(self.seed + 1)
        self.todos: list[Note] = []  # what the in-memory rewrite left undone: the likely cause when it fails

    @property
    def call_args(self) -> dict[str, object]:
        """The arguments of the training-mode call: state check, SGD steps, and Haiku's init."""
        return self.args if self.train_args is None else self.train_args

    def inputs(self, specs: Sequence[str]) -> list[Array]:
        return make_inputs([parse_input_spec(s) for s in specs], self.seed)

    def tolerance(self, dtype: DTypeLike) -> Tolerance:
        """The table's tolerance for `dtype` on this platform, with the caller's overrides (floats only)."""
        found = tolerance_for(dtype, self.platform)
        if found == EXACT:
            return found
        return Tolerance(found.rtol if self.rtol is None else self.rtol, found.atol if self.atol is None else self.atol)

    def row(self, section: str, haiku_label: str, flax_label: str, haiku_value: Array, flax_value: Array) -> None:
        shape = tuple(np.shape(haiku_value))
        if shape != tuple(np.shape(flax_value)):
            status, max_abs, max_rel, ok = f"shape {shape} != Flax {np.shape(flax_value)}", None, None, False
        else:
            tolerance = self.tolerance(np.asarray(haiku_value).dtype)
            max_abs, max_rel, ok = _compare(haiku_value, flax_value, tolerance)
            status = "ok" if ok else f"differs (rtol {tolerance.rtol:g}, atol {tolerance.atol:g})"
        self.result.rows.append(Row(section, haiku_label, flax_label, shape, status, max_abs, max_rel, ok))
        if not ok:
            self.result.problems.append(f"{section}: {haiku_label} -> {flax_label}: {status}")

    def run(self, path: Path, target: str, entry: str, flax_source: str | None, flax_path: Path, scratch: Path) -> None:
        """`flax_source` loaded as `flax_path` (the rewrite of its folder beside it), or `path` converted."""
        source = path.read_text(encoding="utf-8")
        if flax_source is None:
            flax_source, flax_path, notes = self.converted(path, target, scratch)
            self.todos = [note for note in notes if note.outcome is Outcome.TODO]
        haiku = haiku_entry(imported(source, path, "haiku"), entry)
        inputs = self.inputs(self.input_specs)
        flax_module = imported(flax_source, flax_path, target)
        self.flax = flax_model(find_flax_model(flax_module, source, entry, target, inputs[0] if inputs else None), target)

        # Haiku's BatchNorm cannot initialise in eval mode: both sides initialise with the training arguments
        model = init_and_trace(haiku, jax.random.key(self.seed), inputs, self.call_args, self.tables, target)
        flax_calls = self.flax.trace(self.rng, inputs, self.call_args)  # Linen: also finds the leaves
        flax_records = group_leaves(self.flax.leaves, flax_calls, flax_table_types(self.tables, target))
        self.mapping = match_records(model.records, flax_records, self.tables, target)
        self.mapping_rows()
        if not self.mapping.ok:
            self.result.notes.append("outputs, state and steps not compared: the weights do not map one-to-one")
            return
        self.params = _perturbed(model.params, self.seed + 2, multiplicative=False)
        self.state = settled(_perturbed(model.state, self.seed + 3, multiplicative=True), model.moving_averages)
        self.values = convert_leaves(self.mapping, {**self.params, **self.state})

        checks = self.apply_checks(haiku, inputs)
        for check in checks:
            self.check_outputs(check)
        self.check_state(checks[0])
        if self.steps:
            self.check_steps(checks)

    def converted(self, path: Path, target: str, scratch: Path) -> tuple[str, Path, list[Note]]:
        """(the rewrite, the path to load it as, its notes): a file that uses models or module classes of
        the other files of its folder is converted with them as one tree, written under `scratch`."""
        siblings = sorted(path.parent.glob("*.py"))
        if index_tree(siblings).view(path) == EMPTY_VIEW:
            conversion = convert_source(path.read_text(encoding="utf-8"), target, tables=self.tables)
            return conversion.code, path, conversion.notes
        results = dict(zip(siblings, convert_tree(siblings, Settings(target, tables=self.tables))))
        for sibling, result in results.items():
            if result.error is not None:
                raise ValueError(result.error.describe(result.path))
            (scratch / sibling.name).write_bytes(result.converted)
        return results[path].converted.decode("utf-8"), scratch / path.name, results[path].notes

    def mapping_rows(self) -> None:
        """One row per leaf pair: which Haiku leaf becomes which Flax leaf, or why it does not."""
        for pair in self.mapping.pairs:
            leaf = pair.flax or pair.haiku
            assert leaf is not None, "a pair holds at least one leaf"
            status = "ok" if pair.status == MAPPED else pair.status
            self.result.rows.append(
                Row(
                    "parameters" if leaf.is_param else "state",
                    pair.haiku.key if pair.haiku else "-",
                    pair.flax.key if pair.flax else "-",
                    leaf.shape,
                    status + (f" ({pair.reshape})" if pair.reshape and pair.ok else ""),
                    ok=pair.ok,
                )
            )
            if not pair.ok:
                self.result.problems.append(f"mapping: {pair.key}: {pair.status}")
        self.result.problems.extend(f"structure: {p}" for p in self.mapping.problems)

    def apply_checks(self, haiku: HaikuEntry, inputs: list[Array]) -> list[_ApplyCheck]:
        if not haiku.is_multi:
            return [_ApplyCheck(haiku.applies[0], "__call__", "output", inputs)]
        names = [method_name(a, self.params, self.state, self.rng) for a in haiku.applies]
        if self.method is not None and self.method not in names:
            raise ValueError(f"no apply function runs method {self.method!r}; the Haiku entry runs {names}")
        return [
            _ApplyCheck(
                apply, name, name, self.inputs(self.method_inputs[name]) if name in self.method_inputs else inputs
            )
            for apply, name in zip(haiku.applies, names)
            if self.method in (None, name)
        ]

    def call_both(self, check: _ApplyCheck, args: Mapping[str, object]) -> _Calls:
        with pinned_bernoulli(self.seed) as haiku_draws:
            haiku_out, haiku_state = haiku_apply(check.apply, self.params, self.state, self.rng, check.inputs, args)
        with pinned_bernoulli(self.seed) as flax_draws:
            flax_out, flax_values = self.flax.apply(self.values, check.method, check.inputs, args, self.rng)
        return _Calls(haiku_out, haiku_state, haiku_draws, flax_out, flax_values, flax_draws)

    def check_draws(self, label: str, haiku_draws: list[Draw], flax_draws: list[Draw]) -> None:
        """Dropout is compared through its draws: the same kinds (shape, probability) on both sides.

        Kinds, not counts: a framework may trace a scanned body more than once. A lost or extra dropout
        of a kind already drawn changes the outputs instead.
        """
        haiku_kinds, flax_kinds = sorted(set(haiku_draws), key=repr), sorted(set(flax_draws), key=repr)
        if haiku_kinds != flax_kinds:
            self.result.problems.append(
                f"{label}: the random draws differ (dropout lost or added): Haiku drew {haiku_kinds}, "
                f"Flax drew {flax_kinds} (shape, keep probability)"
            )
        elif haiku_kinds and not any("dropout is on" in note for note in self.result.notes):
            self.result.notes.append(
                f"{label}: dropout is on ({haiku_kinds}). Haiku and Flax derive dropout keys differently, so "
                "masks as drawn cannot be compared bitwise: draws of the same shape and rate were given the "
                "same key on both sides, and the results compared exactly"
            )

    def check_outputs(self, check: _ApplyCheck) -> None:
        """Outputs of one apply function / method, leaf by leaf."""
        calls = self.call_both(check, self.args)
        with pinned_bernoulli(self.seed):  # another Haiku rng: whatever still changes is random beyond dropout
            other, _ = haiku_apply(
                check.apply, self.params, self.state, jax.random.key(self.seed + 7), check.inputs, self.args
            )
        if not all(bool((a == b).all()) for a, b in zip(jax.tree.leaves(calls.haiku_out), jax.tree.leaves(other))):
            raise ValueError(
                f"{check.label}: the Haiku outputs depend on the rng beyond dropout (e.g. sampling noise), so "
                "they cannot be compared; verify with arguments that make the model deterministic"
            )
        self.check_draws(check.label, calls.haiku_draws, calls.flax_draws)
        self.result.notes.append(f"{check.label} compared with {self.args}")
        haiku_leaves = jax.tree_util.tree_flatten_with_path(calls.haiku_out)[0]
        flax_leaves = jax.tree_util.tree_flatten_with_path(calls.flax_out)[0]
        if len(haiku_leaves) != len(flax_leaves):
            self.result.problems.append(
                f"{check.label}: Haiku returns {len(haiku_leaves)} arrays, Flax {len(flax_leaves)}"
            )
        for (h_path, h_value), (f_path, f_value) in zip(haiku_leaves, flax_leaves):
            keystr = jax.tree_util.keystr
            self.row("outputs", check.label + keystr(h_path), check.label + keystr(f_path), h_value, f_value)

    def check_state(self, check: _ApplyCheck) -> None:
        """State after one call with the training arguments: the updated statistics must agree."""
        compared = [p for p in self.mapping.mapped if not p.haiku.is_param]
        if not compared:
            return
        calls = self.call_both(check, self.call_args)
        converted = convert_leaves(self.mapping, calls.haiku_state)
        self.result.notes.append(
            f"state compared after one call of {check.label} with {self.call_args}, from settled moving averages "
            "(see haiku_side.settled); Haiku-only state is not compared"
        )
        for pair in compared:
            self.row(
                "state after call",
                pair.haiku.key,
                pair.flax.key,
                converted[pair.flax.key],
                calls.flax_values[pair.flax.key],
            )

    def check_steps(self, checks: list[_ApplyCheck]) -> None:
        """`steps` SGD steps on one fixed loss must give the same parameters: the gradients agree.

        The loss is sum(mean(w * out**2)) over the outputs of every checked apply function (so a
        multi_transform's encoder and decoder both get gradients), with fixed random weights w; state
        is threaded through the calls as training does.
        """
        args, flax = self.call_args, self.flax
        param_keys = {p.flax.key for p in self.mapping.mapped if p.flax.is_param}
        weights = []  # fixed, random, in [0.5, 1.5): one per output element
        for index, check in enumerate(checks):
            shapes = jax.eval_shape(
                lambda c=check: haiku_apply(c.apply, self.params, self.state, self.rng, c.inputs, args)[0]
            )
            rng = np.random.default_rng([self.seed, 5, index])
            weights.append(
                [jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), jnp.float32) for leaf in jax.tree.leaves(shapes)]
            )

        def haiku_loss(params: Mapping[str, Array], state: Mapping[str, Array]) -> tuple[Array, Mapping[str, Array]]:
            total = 0.0
            for check, w in zip(checks, weights):
                out, state = haiku_apply(check.apply, params, state, self.rng, check.inputs, args)
                total += _loss(out, w)
            return total, state

        def flax_loss(params: Mapping[str, Array], rest: Mapping[str, Array]) -> tuple[Array, Mapping[str, Array]]:
            total = 0.0
            for check, w in zip(checks, weights):
                out, values = flax.apply({**params, **rest}, check.method, check.inputs, args, self.rng)
                rest = {k: v for k, v in values.items() if k not in param_keys}
                total += _loss(out, w)
            return total, rest

        # jitted: compiled once for all the steps (scanned layers would recompile at each eager step); the
        # draws are recorded while tracing, i.e. during the first step
        haiku_grads = jax.jit(jax.grad(haiku_loss, has_aux=True))
        flax_grads_of = jax.jit(jax.grad(flax_loss, has_aux=True))
        params, state = self.params, self.state
        flax_params = {k: v for k, v in self.values.items() if k in param_keys}
        flax_rest = {k: v for k, v in self.values.items() if k not in param_keys}
        for step in range(self.steps):
            with pinned_bernoulli(self.seed) as haiku_draws:
                grads, state = haiku_grads(params, state)
            with pinned_bernoulli(self.seed) as flax_draws:
                flax_grads, flax_rest = flax_grads_of(flax_params, flax_rest)
            if step == 0:
                self.check_draws("the SGD steps", haiku_draws, flax_draws)
            params = jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads)
            flax_params = jax.tree.map(lambda p, g: p - LEARNING_RATE * g, flax_params, flax_grads)
        moved = max((float(jnp.max(jnp.abs(params[k] - self.params[k]))) for k in params), default=0.0)
        self.result.notes.append(
            f"parameters compared after {self.steps} SGD step(s) (lr {LEARNING_RATE}) on "
            f"{', '.join(c.label for c in checks)} with {args}; the steps moved a Haiku parameter by up to {moved:.3g}"
        )
        converted = convert_leaves(self.mapping, params)
        for pair in self.mapping.mapped:
            if pair.flax.key in param_keys:
                self.row(
                    f"after {self.steps} steps",
                    pair.haiku.key,
                    pair.flax.key,
                    converted[pair.flax.key],
                    flax_params[pair.flax.key],
                )


def verify(
    path: str | Path,
    target: str,
    entry: str,
    inputs: Sequence[str],
    args: Mapping[str, object] | None = None,
    *,
    method: str | None = None,
    method_inputs: Mapping[str, Sequence[str]] | None = None,
    train_args: Mapping[str, object] | None = None,
    steps: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
    flax_source: str | None = None,
    flax_path: str | Path | None = None,
    tables: Tables | None = None,
    seed: int = 0,
) -> VerifyResult:
    """Convert `path` to `target` in memory (or take `flax_source`) and check it equals the Haiku model.

    `inputs` are specs such as "f32[2,784]"; `args` keyword arguments of every call (`training=False`);
    `train_args` those of the training-mode call (Haiku's init, the state check and the SGD steps;
    default: `args`); `method` picks one apply function of a multi_transform (default: each), and
    `method_inputs` gives the input specs of methods that take other inputs than `inputs`. `flax_source`
    is loaded as `flax_path` (default: `path`), so that it imports the rewritten files beside that path.
    """
    path = Path(path)
    result = VerifyResult(str(path), target, entry, devices=[str(d) for d in jax.devices()])
    verification = _Verification(
        result,
        tables or load_tables(),
        list(inputs),
        dict(args or {}),
        None if train_args is None else dict(train_args),
        method,
        {name: list(specs) for name, specs in (method_inputs or {}).items()},
        steps,
        rtol,
        atol,
        seed,
    )
    try:
        with jax.default_matmul_precision("highest"), tempfile.TemporaryDirectory() as scratch:
            verification.run(path, target, entry, flax_source, Path(flax_path or path), Path(scratch))
    except (Exception, SystemExit) as error:  # the user's code, either side: report it, never crash the caller
        result.error = describe_failure(error)
        if verification.todos:  # the cause to fix first, before the error it leads to
            result.error = f"{_left_todos(verification.todos)}; running the rewrite failed: {result.error}"
        result.error_frames = loaded_frames(error)
        result.notes.append("".join(traceback.format_exception(error)[-3:]).rstrip())
    return result


def _left_todos(todos: list[Note], shown: int = 3) -> str:
    listed = "; ".join(f"line {note.line}: {note.message} [{note.rule}]" for note in todos[:shown])
    return f"the rewrite left {len(todos)} TODO(s): {listed}" + ("; …" if len(todos) > shown else "")

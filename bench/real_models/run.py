"""Run the real-models suite: build each case, check the Haiku original runs, verify both targets; a table.

    python bench/real_models/run.py [--to linen|nnx|both] [--only NAME ...] [--subset ci] [--json OUT]
                                    [--timeout S] [--record]

Each model runs in its own process (a hung compilation or a crash costs that model, not the run), which
checks the original (init, and apply unless it is a multi_transform) and then runs `verify --steps 2`
for each target. Statuses: equivalent; not equivalent; could not run with a `# TODO(haiku2flax…)` at or
above the failing statement ("TODO at cause") or without one ("silent breakage": a bug of the tool, as
is every "not equivalent"); the original does not run (a manifest bug); timeout. `--record` writes the
statuses into `expected.toml`, which `tests/test_real_models.py` holds the CI subset to.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite import (  # noqa: E402
    EQUIVALENT,
    EXPECTED,
    HAIKU_FAILED,
    NOT_EQUIVALENT,
    SILENT,
    STATUSES,
    TARGETS,
    TIMEOUT,
    TODO_AT_CAUSE,
    Model,
    Outcome,
    build,
    load_manifest,
    outcome,
)

DEFAULT_TIMEOUT_S = 300
STEPS = 2


def _original_runs(model: Model, path: Path, source: str) -> None:
    """Raise whatever stops the Haiku original: its init and (single-apply models) its apply."""
    import jax

    from haiku2flax.harness.inputs import make_inputs, parse_input_spec
    from haiku2flax.harness.loading import haiku_entry, imported

    entry = haiku_entry(imported(source, path, "haiku"), model.entry)
    inputs = make_inputs([parse_input_spec(spec) for spec in model.inputs])
    key = jax.random.key(0)
    params, state = entry.init(key, *inputs, **(model.args if model.train_args is None else model.train_args))
    if not entry.is_multi:
        jax.block_until_ready(entry.applies[0].fn(params, state, key, *inputs, **model.args))


def verify_model(model: Model, path: Path, targets: tuple[str, ...], steps: int = STEPS) -> dict[str, Outcome]:
    """The outcome per target, in this process; the rewrites are written next to the case file."""
    from haiku2flax.engine import convert_source
    from haiku2flax.harness import verify

    source = path.read_text(encoding="utf-8")
    try:
        _original_runs(model, path, source)
    except Exception as error:  # the original's own failure: the manifest entry is wrong
        reason = f"{type(error).__name__}: {error}".splitlines()[0][:200]
        return {target: Outcome(HAIKU_FAILED, reason) for target in targets}
    outcomes = {}
    for target in targets:
        try:
            converted = convert_source(source, target).code
        except Exception as error:  # the tool itself crashed on the file: no TODO anywhere
            outcomes[target] = Outcome(SILENT, f"migrate crashed: {type(error).__name__}: {error}"[:200])
            continue
        path.with_name(f"{target}.py").write_text(converted, encoding="utf-8")
        result = verify(
            path,
            target,
            model.entry,
            model.inputs,
            model.args,
            method=model.method,
            method_inputs=model.method_inputs,
            train_args=model.train_args,
            steps=steps,
            flax_source=converted,
        )
        outcomes[target] = outcome(result, converted)
    return outcomes


def run_isolated(model: Model, targets: tuple[str, ...], timeout_s: float) -> dict[str, Outcome]:
    """`verify_model` in a child process, with a time limit for the model."""
    build(model)  # here, so that a manifest error stops the run with its message
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "outcomes.json"
        command = [sys.executable, __file__, "--worker", model.name, "--to", *targets, "--worker-out", str(out)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {t: Outcome(TIMEOUT, f"over {timeout_s:.0f} s (both targets together)") for t in targets}
        if not out.exists():
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
            return {t: Outcome(SILENT, f"worker died (exit {done.returncode}): {tail}") for t in targets}
        data = json.loads(out.read_text())
    return {t: Outcome(d["status"], d["reason"], tuple(d["todo_rules"])) for t, d in data.items()}


# --- the report ----------------------------------------------------------------------------------------


def _cell(result: Outcome) -> str:
    text = result.status
    if result.reason and result.status != EQUIVALENT:
        text += f": {result.reason}"
    if result.todo_rules:
        text += f" [TODO: {', '.join(sorted(set(result.todo_rules)))}]"
    return text.replace("|", "\\|")


def report(models: list[Model], results: dict[str, dict[str, Outcome]], targets: tuple[str, ...]) -> str:
    lines = ["| model | package | kind | " + " | ".join(targets) + " |", "|---|---|---|" + "---|" * len(targets)]
    for model in models:
        cells = " | ".join(_cell(results[model.name][t]) for t in targets)
        lines.append(f"| {model.name} | {model.package} | {model.kind} | {cells} |")
    lines.append("")
    for target in targets:
        counts = Counter(results[m.name][target].status for m in models)
        n = len(models)
        lines.append(
            f"**{target}**: equivalent {counts[EQUIVALENT]}/{n} ({counts[EQUIVALENT] / n:.0%}); could not run "
            f"with a TODO at the cause {counts[TODO_AT_CAUSE]}; silent breakages {counts[SILENT]}; not "
            f"equivalent {counts[NOT_EQUIVALENT]}; original does not run {counts[HAIKU_FAILED]}; timeouts "
            f"{counts[TIMEOUT]}"
        )
    pairs = [results[m.name][t].status for m in models for t in targets]
    lines.append(
        f"**overall**: equivalent {pairs.count(EQUIVALENT)}/{len(pairs)} model-target pairs; silent breakages "
        f"{pairs.count(SILENT)}; not equivalent {pairs.count(NOT_EQUIVALENT)} (both bugs of the tool)"
    )
    lines += ["", "| package | models | " + " | ".join(f"{t} equivalent" for t in targets) + " |"]
    lines.append("|---|---|" + "---|" * len(targets))
    for package in sorted({m.package for m in models}):
        mine = [m for m in models if m.package == package]
        rates = [sum(results[m.name][t].status == EQUIVALENT for m in mine) for t in targets]
        lines.append(f"| {package} | {len(mine)} | " + " | ".join(f"{r}/{len(mine)}" for r in rates) + " |")
    lines += ["", "TODOs left by the rewrite, by rule (all models' outputs):", ""]
    lines += ["| rule | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]
    by_rule = {t: Counter(rule for m in models for rule in results[m.name][t].todo_rules) for t in targets}
    for rule in sorted(set().union(*by_rule.values())):
        lines.append(f"| {rule} | " + " | ".join(str(by_rule[t][rule]) for t in targets) + " |")
    lines.append("| total | " + " | ".join(str(sum(by_rule[t].values())) for t in targets) + " |")
    return "\n".join(lines)


def record(results: dict[str, dict[str, Outcome]], path: Path = EXPECTED) -> None:
    """Merge these statuses into the expectations file (models not run keep theirs)."""
    import tomllib

    expected = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    for name, outcomes in results.items():
        expected.setdefault(name, {}).update({t: o.status for t, o in outcomes.items()})
    lines = [
        "# Status per model and target of the last recorded run (python bench/real_models/run.py --record).",
        "# tests/test_real_models.py fails when the CI subset no longer matches: a regression, or an",
        "# improvement to record. Statuses: " + ", ".join(STATUSES) + ".",
        "",
    ]
    for name in sorted(expected):
        lines.append(f'["{name}"]')
        lines += [f'{t} = "{status}"' for t, status in sorted(expected[name].items())]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def select(models: list[Model], only: list[str] | None, subset: str | None) -> list[Model]:
    if only:
        unknown = sorted(set(only) - {m.name for m in models})
        if unknown:
            raise SystemExit(f"unknown model(s): {', '.join(unknown)}")
        models = [m for m in models if m.name in only]
    if subset:
        models = [m for m in models if subset in m.subsets]
    return models


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--to", nargs="+", choices=[*TARGETS, "both"], default=["both"])
    parser.add_argument("--only", nargs="+", metavar="NAME")
    parser.add_argument("--subset", help="only the models of this subset (ci)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per model")
    parser.add_argument("--json", type=Path, help="also write the outcomes as JSON here")
    parser.add_argument("--record", action="store_true", help="write the statuses into expected.toml")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    targets = TARGETS if "both" in args.to else tuple(t for t in TARGETS if t in args.to)
    models = load_manifest()
    if args.worker:
        (model,) = select(models, [args.worker], None)
        outcomes = verify_model(model, build(model), targets)
        args.worker_out.write_text(json.dumps({t: o.as_dict() for t, o in outcomes.items()}))
        return 0
    models = select(models, args.only, args.subset)
    results = {}
    started = time.perf_counter()
    for number, model in enumerate(models, 1):
        results[model.name] = run_isolated(model, targets, args.timeout)
        statuses = ", ".join(f"{t}: {o.status}" for t, o in results[model.name].items())
        print(f"[{number}/{len(models)}] {model.name}: {statuses}", file=sys.stderr, flush=True)
    print(report(models, results, targets))
    print(f"\n{len(models)} models, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({n: {t: o.as_dict() for t, o in r.items()} for n, r in results.items()}, indent=1))
    if args.record:
        record(results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

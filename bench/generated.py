"""Differential testing: N generated Haiku programs, each migrated to TARGET and checked by the oracle.

    python bench/generated.py --programs 1000 --seed 0 --to linen [--shrink] [--record out.jsonl]

Prints the idiom mix with the rate per idiom, the TODOs by cause, the violations grouped by cause
(with `--shrink`, the first of each group is shrunk and written as a case, see
tests/generated_programs/shrink.py), and ends with exactly:

    generated TARGET: N programs, E equivalent, D todo, V violations
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from generated_programs.generator import generate  # noqa: E402
from generated_programs.oracle import check  # noqa: E402
from generated_programs.shrink import shrink, slug, write_case  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0, help="the first program's seed; the others follow")
    parser.add_argument("--to", dest="target", choices=["linen", "nnx"], required=True)
    parser.add_argument("--timeout", type=float, default=60.0, help="CPU seconds per program")
    parser.add_argument("--shrink", action="store_true", help="shrink the first violation of each cause")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "generated_programs" / "shrunk")
    parser.add_argument("--record", type=Path, help="append one JSON line per program here")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per program as it runs")
    options = parser.parse_args(argv)

    outcomes = []
    record = options.record.open("a", encoding="utf-8") if options.record else None
    for seed in range(options.seed, options.seed + options.programs):
        program = generate(seed)
        outcome = check(program, options.target, options.timeout)
        outcomes.append((program, outcome))
        if options.verbose:
            print(f"seed {seed}: {outcome.verdict} {outcome.cause} ({outcome.seconds:.1f} s)", flush=True)
        if record:
            line = {"seed": seed, "target": options.target, "verdict": outcome.verdict, "cause": outcome.cause,
                    "seconds": round(outcome.seconds, 2), "idioms": program.idioms}
            record.write(json.dumps(line) + "\n")
            record.flush()
    if record:
        record.close()

    print_idioms(outcomes)
    print_todos(outcomes)
    print_violations(outcomes, options)
    verdicts = Counter(outcome.verdict for _, outcome in outcomes)
    print(
        f"generated {options.target}: {len(outcomes)} programs, {verdicts['equivalent']} equivalent, "
        f"{verdicts['todo']} todo, {verdicts['violation']} violations"
    )
    return 1 if verdicts["violation"] else 0


def print_idioms(outcomes: list) -> None:
    """Each idiom: in how many programs it appears, and how those programs ended."""
    by_idiom: dict[str, Counter] = defaultdict(Counter)
    for program, outcome in outcomes:
        for idiom in program.idioms:
            by_idiom[idiom][outcome.verdict] += 1
    print(f"{'idiom':40} {'programs':>8} {'equiv %':>8} {'todo %':>8} {'viol %':>8}")
    for idiom in sorted(by_idiom):
        counts = by_idiom[idiom]
        total = sum(counts.values())
        rates = [100 * counts[v] / total for v in ("equivalent", "todo", "violation")]
        print(f"{idiom:40} {total:8} " + " ".join(f"{r:8.0f}" for r in rates))
    print()


def print_todos(outcomes: list) -> None:
    causes = Counter(outcome.cause for _, outcome in outcomes if outcome.verdict == "todo")
    if causes:
        print("TODO at the failing statement, by what failed:")
        for cause, count in causes.most_common():
            print(f"  {count:5}  {cause}")
        print()


def print_violations(outcomes: list, options) -> None:
    groups: dict[str, list] = defaultdict(list)
    for program, outcome in outcomes:
        if outcome.verdict == "violation":
            groups[outcome.cause].append((program, outcome))
    for cause, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        seeds = ", ".join(str(program.seed) for program, _ in members[:12])
        print(f"VIOLATION x{len(members)}: {cause}")
        print(f"  seeds: {seeds}{' …' if len(members) > 12 else ''}")
        print("  " + members[0][1].detail.strip().replace("\n", "\n  ")[:1200])
        if options.shrink:
            program = shrink(members[0][0], options.target, cause, log=lambda _: None)
            folder = write_case(program, options.target, cause, options.out / f"{options.target}_{slug(cause)}")
            print(f"  shrunk to {len(program.source.splitlines())} lines: {folder}")
        print()


if __name__ == "__main__":
    raise SystemExit(main())

"""The `haiku2flax` command line: migrate, verify, convert-params, rules.

Importing this module must not import jax, flax, haiku or optax: the harness commands load them only
when they run.
"""

from __future__ import annotations

from pathlib import Path

import click

from . import runner
from .engine.tables import TableError, load_tables
from .harness.commands import convert_params_command, verify_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="haiku2flax")
def main() -> None:
    """Migrate Haiku code to Flax Linen or NNX, and prove the rewrite computes the same function."""


main.add_command(verify_command)
main.add_command(convert_params_command)


class _Failure(click.ClickException):
    """An error that is not about one source file; exit status 2 like a usage error."""

    exit_code = 2


def _rule_ids(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> frozenset[str] | None:
    """`--select A,B --select C` -> {A, B, C}; None when the option was not given."""
    if not values:
        return None
    return frozenset(part.strip() for value in values for part in value.split(",") if part.strip())


@main.command("migrate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, allow_dash=True))
@click.option("--to", "target", type=click.Choice(["nnx", "linen"]), default="nnx", show_default=True, help="The Flax API to write.")
@click.option("--diff", is_flag=True, help="Print a unified diff (for `git apply`); write nothing.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if any file would change.")
@click.option(
    "--out-dir", type=click.Path(file_okay=False, path_type=Path), help="Write the migrated tree here, leaving the sources alone."
)
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Worker processes (default: one per core).")
@click.option("-q", "--quiet", is_flag=True, help="Print errors only.")
@click.option("-v", "--verbose", is_flag=True, help="Print every construct converted.")
@click.option(
    "--report", type=click.Path(dir_okay=False, path_type=Path), help="Write every construct seen and every file's status as JSON."
)
@click.option("--strict", is_flag=True, help="Exit 1 if any TODO is left.")
@click.option(
    "--rules", multiple=True, type=click.Path(exists=True, path_type=Path), help="Extra rule table (TOML file or folder); repeatable."
)
@click.option("--select", multiple=True, callback=_rule_ids, help="Run only these rule ids or families (comma-separated).")
@click.option("--ignore", multiple=True, callback=_rule_ids, help="Skip these rule ids or families (comma-separated).")
@click.pass_context
def migrate_command(
    ctx: click.Context,
    paths: tuple[Path, ...],
    target: str,
    diff: bool,
    check: bool,
    out_dir: Path | None,
    jobs: int | None,
    quiet: bool,
    verbose: bool,
    report: Path | None,
    strict: bool,
    rules: tuple[Path, ...],
    select: frozenset[str] | None,
    ignore: frozenset[str] | None,
) -> None:
    """Rewrite the Haiku code in PATHS (files or folders; `-` for stdin to stdout) in place.

    Exit status: 0 done, 1 `--check` found files to migrate or `--strict` found TODOs, 2 a usage
    error or a file that could not be processed (the other files are processed all the same).
    """
    reads_stdin = Path(runner.STDIN) in paths
    if reads_stdin and (len(paths) > 1 or out_dir is not None):
        raise click.UsageError("`-` (stdin) cannot be combined with other paths or --out-dir")
    if out_dir is not None and (diff or check):
        raise click.UsageError("--out-dir writes files; --diff and --check write none")
    if out_dir is not None and out_dir.resolve() == Path.cwd().resolve():
        raise click.UsageError("--out-dir mirrors paths relative to the working directory, so it cannot be that directory")
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose contradict each other")
    try:
        tables = load_tables(rules) if rules else None
    except TableError as error:
        raise click.BadParameter(str(error), param_hint="--rules") from None

    settings = runner.Settings(target, tables, select, ignore or frozenset())
    output = runner.Output(diff=diff, check=check, out_dir=out_dir, verbose=verbose, quiet=quiet)
    results = runner.migrate_stdin(settings, output) if reads_stdin else runner.migrate_paths(paths, settings, output, jobs)
    if report is not None:
        try:
            runner.write_report(report, results, settings)
        except OSError as error:
            raise _Failure(f"cannot write the report {report}: {error.strerror or error}") from None
    summary = runner.Summary.of(results)
    if not quiet:
        runner.print_summary(summary, output)
    if summary.errors:
        ctx.exit(2)
    ctx.exit(1 if (check and summary.changed) or (strict and summary.todos) else 0)

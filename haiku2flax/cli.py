"""The `haiku2flax` command line: migrate, verify, convert-params, rules.

Importing this module must not import jax, flax, haiku or optax: the harness commands load them only
when they run.
"""

from __future__ import annotations

from pathlib import Path

import click

from . import runner
from .config import ConfigError, find_config, load_config
from .engine.tables import TableError, load_tables
from .harness.commands import convert_params_command, verify_command
from .reports import OUTPUT_FORMATS, Summary, print_findings, print_summary, write_report

INTERRUPTED = 128 + 2  # the shell's status for a command ended by SIGINT


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
@click.option("--to", "target", type=click.Choice(["nnx", "linen"]), help="The Flax API to write.  [default: nnx]")
@click.option("--diff", is_flag=True, help="Print a unified diff (for `git apply`; per cell for notebooks); write nothing.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if any file would change.")
@click.option("-i", "--interactive", is_flag=True, help="Review every change (y/n/a/d/q, read from stdin) and write only what is accepted.")
@click.option(
    "--out-dir", type=click.Path(file_okay=False, path_type=Path), help="Write the migrated tree here, leaving the sources alone."
)
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Worker processes (default: one per core).")
@click.option("-q", "--quiet", is_flag=True, help="Print errors only.")
@click.option("-v", "--verbose", is_flag=True, help="Print every construct converted.")
@click.option(
    "--report",
    "reports",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a report: Markdown for people when FILE ends in .md, SARIF when .sarif, else JSON (every construct seen); repeatable.",
)
@click.option(
    "--output-format",
    type=click.Choice(OUTPUT_FORMATS),
    default="text",
    show_default=True,
    help="How to show TODOs, warnings, errors and files to migrate: text on stderr, or on stdout GitHub annotations or SARIF.",
)
@click.option("--strict/--no-strict", default=None, help="Exit 1 if any TODO is left.")
@click.option(
    "--rules", multiple=True, type=click.Path(exists=True, path_type=Path), help="Extra rule table (TOML file or folder); repeatable."
)
@click.option("--select", multiple=True, callback=_rule_ids, help="Run only these rule ids or families (comma-separated).")
@click.option("--ignore", multiple=True, callback=_rule_ids, help="Skip these rule ids or families (comma-separated).")
@click.option(
    "--keep-haiku-modules/--no-keep-haiku-modules",
    default=None,
    help="Leave module classes that cannot be converted in Haiku, run from the Flax code via hk.experimental.flax.Module.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The pyproject.toml to read [tool.haiku2flax] from (default: the nearest one above PATHS).",
)
@click.pass_context
def migrate_command(
    ctx: click.Context,
    paths: tuple[Path, ...],
    target: str | None,
    diff: bool,
    check: bool,
    interactive: bool,
    out_dir: Path | None,
    jobs: int | None,
    quiet: bool,
    verbose: bool,
    reports: tuple[Path, ...],
    output_format: str,
    strict: bool | None,
    rules: tuple[Path, ...],
    select: frozenset[str] | None,
    ignore: frozenset[str] | None,
    keep_haiku_modules: bool | None,
    config_path: Path | None,
) -> None:
    """Rewrite the Haiku code in PATHS (files or folders; `-` for stdin to stdout) in place.

    Folders are searched for .py files and Jupyter notebooks (.ipynb), skipping what .gitignore and
    the `exclude` settings leave out. Settings come from [tool.haiku2flax] in the nearest pyproject.toml;
    options given here win.

    Exit status: 0 done, 1 `--check` found files to migrate or `--strict` found TODOs, 2 a usage
    error or a file that could not be processed (the other files are processed all the same), 130
    interrupted (Ctrl-C).
    """
    reads_stdin = Path(runner.STDIN) in paths
    if reads_stdin and (len(paths) > 1 or out_dir is not None or interactive):
        raise click.UsageError("`-` (stdin) cannot be combined with other paths, --out-dir or --interactive")
    if out_dir is not None and (diff or check):
        raise click.UsageError("--out-dir writes files; --diff and --check write none")
    if interactive and (diff or check):
        raise click.UsageError("--interactive writes what you accept; --diff and --check write nothing")
    if out_dir is not None and out_dir.resolve() == Path.cwd().resolve():
        raise click.UsageError("--out-dir mirrors paths relative to the working directory, so it cannot be that directory")
    if output_format != "text" and (diff or interactive or (reads_stdin and not check)):
        raise click.UsageError(f"--output-format {output_format} prints on stdout, where --diff, --interactive and `-` write")
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose contradict each other")
    try:
        config = load_config(config_path) if config_path else find_config(list(paths))
    except ConfigError as error:
        raise _Failure(str(error)) from None
    try:
        tables = load_tables(rules or config.rules) if (rules or config.rules) else None
    except TableError as error:
        raise click.BadParameter(str(error), param_hint="--rules" if rules else "rules in [tool.haiku2flax]") from None

    settings = runner.Settings(
        target or config.to or "nnx",
        tables,
        select if select is not None else config.select,
        (ignore if ignore is not None else config.ignore) or frozenset(),
        keep_haiku_modules if keep_haiku_modules is not None else bool(config.keep_haiku_modules),
    )
    strict = strict if strict is not None else bool(config.strict)
    output = runner.Output(
        diff=diff, check=check, out_dir=out_dir, verbose=verbose, quiet=quiet, interactive=interactive, messages=output_format == "text"
    )
    try:
        if reads_stdin:
            results = runner.migrate_stdin(settings, output)
        else:
            results = runner.migrate_paths(paths, settings, output, jobs, exclude=config.exclusions())
    except KeyboardInterrupt:  # not click's "Aborted!" and exit 1, which reads as "--check found files"
        click.echo("interrupted: each file is either as it was or fully converted", err=True)
        ctx.exit(INTERRUPTED)
    for report in reports:
        try:
            write_report(report, results, settings, output)
        except OSError as error:
            raise _Failure(f"cannot write the report {report}: {error.strerror or error}") from None
    print_findings(output_format, results, output)
    summary = print_summary(results, output, strict) if not quiet else Summary.of(results)
    if summary.errors:
        ctx.exit(2)
    ctx.exit(1 if (check and summary.changed) or (strict and summary.todos) else 0)


@main.command("rules")
@click.argument("ids", nargs=-1)
@click.option("--markdown", is_flag=True, help="Print the rules page (docs/rules.md) as Markdown.")
@click.option(
    "--rules", multiple=True, type=click.Path(exists=True, path_type=Path), help="Extra rule table (TOML file or folder); repeatable."
)
def rules_command(ids: tuple[str, ...], markdown: bool, rules: tuple[Path, ...]) -> None:
    """List every rule (id, name, status, summary) and table-driven construct; with IDS (ids or
    prefixes, e.g. HK005 or HK00), print those rules' documentation."""
    from .rules_doc import markdown as rules_markdown
    from .rules_doc import print_rules

    try:
        tables = load_tables(rules)
    except TableError as error:
        raise click.BadParameter(str(error), param_hint="--rules") from None
    if markdown:
        click.echo(rules_markdown(tables), nl=False)
    else:
        print_rules(ids, tables)

"""Click commands for the harness. jax, flax and haiku are imported inside the commands only.

They come with the `verify` extra; without it, the commands say in one line what to install (exit 2).
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ..engine.tables import Tables

TARGET = click.Choice(["linen", "nnx"])
# The distributions of the `verify` extra in pyproject.toml (a test keeps the two lists equal).
VERIFY_EXTRA = ("jax", "flax", "dm-haiku", "optax", "orbax-checkpoint")
INSTALL_VERIFY = "pip install 'haiku2flax[verify]'"
Command = TypeVar("Command", bound=Callable[..., Any])


def missing_verify_packages() -> list[str]:
    """The distributions of the `verify` extra that are not installed."""
    missing = []
    for name in VERIFY_EXTRA:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


class HarnessCommand(click.Command):
    """A command that needs the `verify` extra: checked before its options are parsed (their callbacks
    import jax), so a lean install gets one line saying what to install, and `--help` still works."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        asks_help = bool(set(args) & set(self.get_help_option_names(ctx)))
        missing = [] if asks_help or ctx.resilient_parsing else missing_verify_packages()
        if missing:
            click.echo(f"error: `haiku2flax {self.name}` needs {', '.join(missing)}: {INSTALL_VERIFY}", err=True)
            ctx.exit(2)
        return super().parse_args(ctx, args)


def _keyword_args(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, object]:
    """`--arg is_training=false --arg n=3` -> {"is_training": False, "n": 3}."""
    from .inputs import parse_arg

    try:
        return dict(parse_arg(value) for value in values)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _checked_specs(specs: list[str]) -> None:
    """Parse `--input` specs here, before the command loads jax, so a typo costs nothing to find."""
    from .inputs import parse_input_spec

    try:
        for spec in specs:
            parse_input_spec(spec)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _input_specs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    _checked_specs(list(values))
    return values


def _method_inputs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, list[str]]:
    """`--method-input decode=f32[2,256]` (repeatable) -> {"decode": ["f32[2,256]"]}."""
    found: dict[str, list[str]] = {}
    for value in values:
        method, sep, spec = value.partition("=")
        if not sep:
            raise click.BadParameter(f"{value!r}: expected METHOD=SPEC")
        found.setdefault(method, []).append(spec)
    _checked_specs([spec for specs in found.values() for spec in specs])
    return found


def _tables(rules: tuple[Path, ...]) -> Tables:
    from ..engine.tables import TableError, load_tables

    try:
        return load_tables(rules)
    except TableError as error:
        raise click.ClickException(str(error)) from None


def _common(fn: Command) -> Command:
    """The options verify and convert-params share: what to convert, and how to build the model."""
    for option in reversed(
        [
            click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
            click.option("--to", "target", type=TARGET, required=True, help="The Flax API the file is rewritten to."),
            click.option(
                "--entry", required=True, help="The Haiku model: a transformed object, or the function to transform."
            ),
            click.option(
                "--input",
                "inputs",
                multiple=True,
                required=True,
                callback=_input_specs,
                help="An example input, e.g. f32[2,784] or i32[7,3]:0..50; repeatable, in order.",
            ),
            click.option(
                "--arg",
                "args",
                multiple=True,
                callback=_keyword_args,
                help="A keyword argument of every call, KEY=VALUE (e.g. training=false); repeatable.",
            ),
            click.option(
                "--rules",
                multiple=True,
                type=click.Path(exists=True, path_type=Path),
                help="Extra rule table (TOML file or folder); repeatable.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


@click.command("verify", cls=HarnessCommand)
@_common
@click.option(
    "--train-arg",
    "train_args",
    multiple=True,
    callback=_keyword_args,
    help="Keyword arguments of the call after which state is compared (default: --arg).",
)
@click.option("--method", help="The multi_transform apply function to check, by method name (default: each).")
@click.option(
    "--method-input",
    "method_inputs",
    multiple=True,
    callback=_method_inputs,
    help="METHOD=SPEC: inputs of one method when they differ from --input; repeatable.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="SGD steps whose parameters must agree (checks gradients).",
)
@click.option("--rtol", type=float, help="Relative tolerance for floating outputs (default: per dtype and device).")
@click.option("--atol", type=float, help="Absolute tolerance for floating outputs (default: per dtype and device).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_command(
    file: Path,
    target: str,
    entry: str,
    inputs: tuple[str, ...],
    args: dict[str, object],
    rules: tuple[Path, ...],
    train_args: dict[str, object],
    method: str | None,
    method_inputs: dict[str, list[str]],
    steps: int,
    rtol: float | None,
    atol: float | None,
    as_json: bool,
) -> None:
    """Convert FILE in memory and check the Flax model equals the Haiku one on the same weights.

    Exit status: 0 equivalent, 1 not equivalent, 2 could not run.
    """
    from rich.console import Console

    from .equivalence import verify
    from .report import render, to_json

    result = verify(
        file,
        target,
        entry,
        list(inputs),
        args,
        method=method,
        method_inputs=method_inputs,
        train_args=train_args or None,
        steps=steps,
        rtol=rtol,
        atol=atol,
        tables=_tables(rules),
    )
    if as_json:
        click.echo(to_json(result))
    else:  # piped (CI logs): wide enough that leaf paths stay on one line
        render(result, Console(width=None if sys.stdout.isatty() else 200))
    raise SystemExit(result.exit_code)


@click.command("convert-params", cls=HarnessCommand)
@_common
@click.option(
    "--params",
    "params_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Haiku params: .pkl (nested dicts), .npz (flat module/path//name keys) or .msgpack.",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Haiku state, same formats.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="The Orbax checkpoint directory to write (must not exist), or a new .pkl file: the converted params "
    "for code that loads its own pickle (Linen's 'params' collection, or the NNX Param state as a pure dict).",
)
@click.option(
    "--state-out",
    "state_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --state and a .pkl --out: the new .pkl file for the converted state.",
)
def convert_params_command(
    file: Path,
    target: str,
    entry: str,
    inputs: tuple[str, ...],
    args: dict[str, object],
    rules: tuple[Path, ...],
    params_path: Path,
    state_path: Path | None,
    out_dir: Path,
    state_out: Path | None,
) -> None:
    """Convert a trained Haiku params/state tree into the rewritten model's variables (Orbax checkpoint,
    or pickles in place of the ones the user's code loads).

    Every leaf is renamed and reshaped by the rule tables; any missing, unexpected or mis-shaped leaf
    is listed and nothing is written. Exit status: 0 written, 1 refused, 2 could not run.
    """
    from .convert import ConversionRefused, convert_params
    from .loading import describe_failure

    tables = _tables(rules)
    try:
        written = convert_params(
            file, target, entry, params_path, list(inputs), out_dir,
            state=state_path, state_out=state_out, args=args, tables=tables,
        )
    except ConversionRefused as refused:
        click.echo(f"refused: {refused}", err=True)
        for problem in refused.problems:
            click.echo(f"  {problem}", err=True)
        raise SystemExit(1) from None
    except (Exception, SystemExit) as error:  # the user's code or files: say what failed, as verify does
        click.echo(f"could not run: {describe_failure(error)}", err=True)
        raise SystemExit(2) from None
    for key in written.dropped:
        click.echo(f"dropped {key}: Haiku-only state, no Flax counterpart")
    click.echo(f"wrote {written.leaves} arrays to {written.directory}" + (f" and {written.state_file}" if written.state_file else ""))

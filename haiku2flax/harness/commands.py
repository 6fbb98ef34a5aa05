"""Click commands for the harness. jax, flax and haiku are imported inside the commands only."""

from __future__ import annotations

import click


@click.command("verify")
def verify_command() -> None:
    """Convert FILE in memory and check the Flax model equals the Haiku one on the same weights."""
    raise click.ClickException("not implemented yet")


@click.command("convert-params")
def convert_params_command() -> None:
    """Convert a trained Haiku params/state tree into the rewritten model's variables."""
    raise click.ClickException("not implemented yet")

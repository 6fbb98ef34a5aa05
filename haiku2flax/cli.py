"""The `haiku2flax` command line: migrate, verify, convert-params, rules.

Importing this module must not import jax, flax, haiku or optax: the harness commands load them only
when they run.
"""

from __future__ import annotations

import click

from .harness.commands import convert_params_command, verify_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="haiku2flax")
def main() -> None:
    """Migrate Haiku code to Flax Linen or NNX, and prove the rewrite computes the same function."""


main.add_command(verify_command)
main.add_command(convert_params_command)

"""`rlsmon-device`: the device side's command line.

Each command imports what it needs inside its body, so `--help` stays fast and no hardware library
is imported on a path that tests or the server use.
"""

from __future__ import annotations

import click

from device import __version__


@click.group()
@click.version_option(__version__, prog_name="rlsmon-device")
def cli() -> None:
    """rlsmon bedside monitor: read the ankle IMU, detect leg movements, score PLMs."""


def main() -> None:
    """Console-script entry point."""
    cli()

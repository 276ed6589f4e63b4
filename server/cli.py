"""`rlsmon-server`: the clinic side's command line."""

from __future__ import annotations

import click

from server import __version__


@click.group()
@click.version_option(__version__, prog_name="rlsmon-server")
def cli() -> None:
    """rlsmon clinic server: collect nightly summaries over MQTT and serve the dashboard."""


def main() -> None:
    """Console-script entry point."""
    cli()

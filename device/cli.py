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


@cli.command()
@click.option("--scenario", required=True, help="control, plmd, severe, restless_wake, gaps or faint.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same night.")
@click.option("--hours", type=click.FloatRange(min=0.01), default=8.0, show_default=True,
              help="Length of the recording.")
@click.option("--odr-hz", type=click.FloatRange(min=1.0), default=52.0, show_default=True,
              help="Sample rate.")
@click.option("--out", "out_csv", type=click.Path(dir_okay=False), required=True,
              help="Recording CSV to write.")
@click.option("--truth", "truth_json", type=click.Path(dir_okay=False), required=True,
              help="Ground-truth JSON to write.")
def simulate(scenario: str, seed: int, hours: float, odr_hz: float, out_csv: str, truth_json: str) -> None:
    """Simulate a night seen by a shin IMU, with its exact ground truth.

    Every true LM, every confounder (twitches, turning over, a bed partner, a tugged cable,
    walking), the gaps, in-bed spans and the reference PLM figures go to the truth JSON.

    Example:

        rlsmon-device simulate --scenario plmd --seed 1 --hours 8 --out night.csv --truth night.json
    """
    from device.sim import SCENARIOS, simulate_night, write_night

    if scenario not in SCENARIOS:
        raise click.BadParameter(f"{scenario!r}; choose one of {', '.join(SCENARIOS)}", param_hint="--scenario")
    night = simulate_night(scenario, seed, hours, odr_hz)
    write_night(night, out_csv, truth_json)
    lms = night.truth["lms"]
    click.echo(f"{scenario} seed {seed}: {hours:g} h at {odr_hz:g} Hz, {len(lms)} true LMs, "
               f"{len(night.truth['confounders'])} confounders -> {out_csv}, {truth_json}")


def main() -> None:
    """Console-script entry point."""
    cli()

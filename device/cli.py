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


@cli.command()
@click.option("--seconds", type=click.FloatRange(min=0.1), default=None,
              help="With the real sensor: how long to record.")
@click.option("--out", "out_csv", type=click.Path(dir_okay=False), required=True,
              help="The recording CSV to write.")
@click.option("--emulate", "recording", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Play this recording CSV through the emulated chip instead, as fast as possible.")
@click.option("--driver", type=click.Choice(["fifo", "polled"]), default="fifo", show_default=True,
              help="fifo: smbus2 FIFO bursts; polled: the adafruit_lsm6ds driver.")
@click.option("--chip", default=None, help="Chip variant (emulated chip; default LSM6DSOX), or the "
              "one expected on the bus (needed to tell an LSM6DSO32 from an LSM6DSOX).")
@click.option("--odr-hz", type=float, default=None,
              help="Output data rate [default: 52, or the recording's rate with --emulate].")
@click.option("--accel-fs-g", type=float, default=4.0, show_default=True, help="Accelerometer full scale.")
@click.option("--gyro-fs-dps", type=float, default=500.0, show_default=True, help="Gyroscope full scale.")
@click.option("--faults", default=None,
              help="With --emulate: bus faults, e.g. 'eio=0.01,nack=0.001,disconnect=600+60,reset=1200,seed=1'.")
@click.option("--bus", "bus_number", type=int, default=1, show_default=True, help="I2C bus number.")
def capture(seconds, out_csv, recording, driver, chip, odr_hz, accel_fs_g, gyro_fs_dps, faults,
            bus_number) -> None:
    """Record the IMU to a recording CSV, to check the wiring, or replay a recording through the
    emulated chip and read it back, to check the readers.

    \b
    Example:
        rlsmon-device capture --seconds 30 --out wiring-check.csv
        rlsmon-device capture --emulate night.csv --driver polled --chip LSM6DS3TR-C --out back.csv
        rlsmon-device capture --emulate night.csv --faults eio=0.01,disconnect=600+60 --out back.csv
    """
    from device.errors import RlsmonError
    from device.sensor.capture import capture_emulated, capture_live

    try:
        if recording is not None:
            summary = capture_emulated(recording, out_csv, driver=driver, chip=chip, odr_hz=odr_hz,
                                       accel_fs_g=accel_fs_g, gyro_fs_dps=gyro_fs_dps, faults=faults)
        else:
            if seconds is None:
                raise click.UsageError("give --seconds N for the real sensor, or --emulate RECORDING.csv")
            if faults:
                raise click.UsageError("--faults works only with --emulate")
            summary = capture_live(out_csv, seconds, bus_number=bus_number, driver=driver, chip=chip,
                                   odr_hz=odr_hz or 52.0, accel_fs_g=accel_fs_g, gyro_fs_dps=gyro_fs_dps)
    except (RlsmonError, ValueError, OSError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(summary, err=True)

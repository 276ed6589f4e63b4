"""`rlsmon-device`: the device side's command line.

Each command imports what it needs inside its body, so `--help` stays fast and no hardware library
is imported on a path that tests or the server use.
"""

from __future__ import annotations

import click

from device import __version__


def _new_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A file option to write: its directory must exist and be writable, checked before any work."""
    import os

    if value is None:
        return None
    directory = os.path.dirname(os.path.abspath(value))
    if not os.path.isdir(directory):
        raise click.BadParameter(f"{value}: there is no directory {directory}; create it or choose another path")
    if not os.access(directory, os.W_OK):
        raise click.BadParameter(f"{value}: the directory {directory} is not writable by you; choose another path")
    if os.path.isdir(value):
        raise click.BadParameter(f"{value} is a directory; give a file name")
    return value


@click.group()
@click.version_option(__version__, prog_name="rlsmon-device")
def cli() -> None:
    """rlsmon bedside monitor: read the ankle IMU, detect leg movements, score PLMs."""


@cli.command()
@click.option("--scenario", required=True, help="control, plmd, severe, restless_wake, gaps, faint, sitting, strap_off, sit or tibialis.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Same seed, same night.")
@click.option("--hours", type=click.FloatRange(min=0.01), default=8.0, show_default=True,
              help="Length of the recording.")
@click.option("--odr-hz", type=click.FloatRange(min=1.0), default=52.0, show_default=True,
              help="Sample rate.")
@click.option("--out", "out_csv", required=True, callback=_new_file, help="Recording CSV to write.")
@click.option("--truth", "truth_json", required=True, callback=_new_file, help="Ground-truth JSON to write.")
@click.option("--right-out", "right_csv", default=None, callback=_new_file,
              help="Also put a sensor on the other leg, and write its recording here.")
def simulate(scenario: str, seed: int, hours: float, odr_hz: float, out_csv: str, truth_json: str,
             right_csv: str | None) -> None:
    """Simulate a night seen by a shin IMU, with its exact ground truth.

    Every true LM, every confounder (twitches, turning over, a bed partner, a tugged cable,
    walking), the gaps, in-bed spans and the reference PLM figures go to the truth JSON.

    \b
    Example:
      rlsmon-device simulate --scenario plmd --seed 1 --hours 8 --out night.csv --truth night.json
      rlsmon-device simulate --scenario severe --out left.csv --right-out right.csv --truth night.json
    """
    from device.sim import SCENARIOS, simulate_night, write_night

    if scenario not in SCENARIOS:
        raise click.BadParameter(f"{scenario!r}; choose one of {', '.join(SCENARIOS)}", param_hint="--scenario")
    night = simulate_night(scenario, seed, hours, odr_hz, legs=1 if right_csv is None else 2)
    try:
        write_night(night, out_csv, truth_json, other_leg_csv=right_csv)
    except OSError as e:
        raise click.ClickException(f"cannot write {e.filename}: {e.strerror}") from e
    lms = night.truth["lms"]
    click.echo(f"{scenario} seed {seed}: {hours:g} h at {odr_hz:g} Hz, {len(lms)} true LMs, "
               f"{len(night.truth['confounders'])} confounders -> {out_csv}, {truth_json}")


@cli.command()
@click.argument("recording", type=click.Path(exists=True, dir_okay=False))
@click.argument("right_leg", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--rules", type=click.Choice(["WASM2016", "AASM2012"]), default="WASM2016", show_default=True,
              help="The scoring rule set.")
@click.option("--json", "as_json", is_flag=True, help="Print the night summary core as JSON.")
@click.option("--plot", "plot_png", default=None, callback=_new_file, help="Draw the night to this PNG.")
@click.option("--start", "start_iso", default=None,
              help="Wall-clock time of t = 0 with its UTC offset, e.g. 2026-03-02T22:40:00+01:00, for clock hours.")
@click.option("--sit", is_flag=True,
              help="The recording is an evening test (SIT): score it by the SIT rules (docs/sit.md).")
def analyze(recording: str, right_leg: str | None, rules: str, as_json: bool, plot_png: str | None,
            start_iso: str | None, sit: bool) -> None:
    """Detect leg movements in a recorded night and score PLMs.

    RECORDING is a recording CSV (t,ax,ay,az,gx,gy,gz); give RIGHT_LEG too for a second sensor
    (RECORDING is then the left leg), and LMs on the two legs combine into bilateral LMs; each LM
    then says its leg (left, right or both). One recording alone names no leg. With --sit the recording is a Suggested
    Immobilization Test (an hour sitting in bed, legs outstretched), scored by the SIT rules.

    \b
    Example:
      rlsmon-device analyze night.csv
      rlsmon-device analyze left.csv right.csv --rules AASM2012 --json > summary.json
      rlsmon-device analyze night.csv --plot night.png --start 2026-03-02T22:40:00+01:00
      rlsmon-device analyze evening.csv --sit
    """
    import sys

    from device.analyze import analyze_recordings, estimate_rows
    from device.errors import RecordingFormatError, RecordingMismatchError

    paths = [recording] + ([right_leg] if right_leg else [])
    if sit:
        _analyze_sit(paths, as_json, rules, plot_png, start_iso)
        return
    start = _recording_start(start_iso)
    try:
        if sys.stderr.isatty():  # a bar on a terminal only, never into a pipe or a log
            total = sum(estimate_rows(p) for p in paths)
            with click.progressbar(length=total, label="Analysing", file=sys.stderr) as bar:
                analysis = analyze_recordings(paths, rules, progress=bar.update, recording_start=start)
        else:
            analysis = analyze_recordings(paths, rules, recording_start=start)
    except (RecordingFormatError, RecordingMismatchError, OSError) as e:
        raise click.ClickException(str(e)) from None
    _print_night(analysis, paths, as_json, plot_png)


def _analyze_sit(paths: list[str], as_json: bool, rules: str, plot_png: str | None, start_iso: str | None) -> None:
    """`analyze --sit`: the SIT rules, its report or its JSON (`rlsmon.sit/1` core)."""
    import json

    from device.analyze import analyze_sit, sit_report
    from device.errors import RecordingFormatError, RecordingMismatchError

    if rules != "WASM2016" or plot_png or start_iso:
        raise click.UsageError("--sit scores by the SIT rule set and takes no --rules, --plot or --start")
    try:
        result = analyze_sit(paths)
    except (RecordingFormatError, RecordingMismatchError, OSError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(result, indent=1) if as_json else sit_report(result, paths))


def _recording_start(start_iso: str | None):
    """The `--start` value as an aware datetime, or None."""
    from datetime import datetime

    if not start_iso:
        return None
    try:
        start = datetime.fromisoformat(start_iso)
    except ValueError:
        raise click.BadParameter(f"{start_iso!r} is not an ISO 8601 datetime", param_hint="--start") from None
    if start.utcoffset() is None:
        raise click.BadParameter(f"{start_iso!r} needs its UTC offset, e.g. +01:00 or Z", param_hint="--start")
    return start


def _print_night(analysis, names: list[str], as_json: bool, plot_png: str | None) -> None:
    """The night as `analyze` and `score` print it: the report or the JSON, and the plot if asked."""
    import json

    from device.analyze import report

    if plot_png:
        from device.plot import plot_night

        try:
            plot_night(analysis, plot_png)
        except OSError as e:
            raise click.ClickException(f"cannot write the plot {plot_png}: {e.strerror or e}") from None
    if as_json:
        click.echo(json.dumps(analysis.summary, indent=1))
    else:
        click.echo(report(analysis, names))
        if plot_png:
            click.echo(f"  Plot            {plot_png}")


def _span(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[tuple[float, float]]:
    """`--gap START-END` values, in seconds, as (start, end) pairs."""
    spans = []
    for value in values:
        try:
            start_s, end_s = (float(x) for x in value.split("-"))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not START-END in seconds, e.g. 3600-3720") from None
        if not 0 <= start_s < end_s:
            raise click.BadParameter(f"{value!r}: START must be at least 0 and before END")
        spans.append((start_s, end_s))
    return spans


def _labels(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """`--label TEXT=KIND` values as {text: kind}."""
    from device.lm_import import KINDS

    table = {}
    for value in values:
        text, _, kind = value.rpartition("=")
        if not text or kind not in KINDS:
            raise click.BadParameter(f"{value!r} is not TEXT=KIND with KIND one of {', '.join(KINDS)}")
        table[text] = kind
    return table


@cli.command()
@click.argument("events", type=click.Path(exists=True, dir_okay=False))
@click.option("--rules", type=click.Choice(["WASM2016", "AASM2012"]), default="WASM2016", show_default=True,
              help="The scoring rule set.")
@click.option("--lights-off", "lights_off_s", type=click.FloatRange(min=0), default=None,
              help="Seconds from the start when the lights went off (default: the file's own marker, or 0).")
@click.option("--lights-on", "lights_on_s", type=click.FloatRange(min=0), default=None,
              help="Seconds from the start when the lights went on (default: the file's own marker, or the end).")
@click.option("--gap", "gaps", multiple=True, callback=_span, metavar="START-END",
              help="A span in seconds that was not recorded; repeat for more.")
@click.option("--duration", "duration_s", type=click.FloatRange(min=0), default=None,
              help="Length of the recording in seconds (default: the file's records, or its last LM).")
@click.option("--label", "labels", multiple=True, callback=_labels, metavar="TEXT=KIND",
              help="Count an EDF+ label the table does not know, KIND left, right, bilateral, unsided, "
                   "lights_off, lights_on or gap; repeat for more.")
@click.option("--json", "as_json", is_flag=True, help="Print the night summary core as JSON.")
@click.option("--plot", "plot_png", default=None, callback=_new_file, help="Draw the night to this PNG.")
@click.option("--start", "start_iso", default=None,
              help="Wall-clock time of t = 0 with its UTC offset, e.g. 2026-03-02T22:40:00+01:00, for clock hours.")
def score(events: str, rules: str, lights_off_s: float | None, lights_on_s: float | None,
          gaps: list[tuple[float, float]], duration_s: float | None, labels: dict[str, str], as_json: bool,
          plot_png: str | None, start_iso: str | None) -> None:
    """Score leg movements scored elsewhere, by WASM 2016 or AASM 2012.

    EVENTS is an EDF+ file, whose annotations are read through a table of the labels PSG software
    uses ("LM", "Limb movement - left", "LM/right", "PLM:left", "Lights off", ...; labels it does not
    know are listed on stderr, never guessed), or a CSV with the header onset_s,offset_s,leg (leg
    left, right or bilateral). Sided LMs say their leg in the summary. The scorer applies the rules itself: movements on one leg less than 0.5 s apart are
    one LM, shorter LMs are dropped, and the legs combine into bilateral LMs. In bed runs from
    lights off to lights on. The report, --json and --plot are those of `analyze`.

    \b
    Example:
      rlsmon-device score psg.edf
      rlsmon-device score psg.edf --rules AASM2012 --json > summary.json
      rlsmon-device score lms.csv --lights-off 1800 --lights-on 29400 --gap 7200-7260 --plot night.png
    """
    from device.analyze import score_events
    from device.detect.events import Interval
    from device.errors import EventsFormatError
    from device.lm_import import read_events

    start = _recording_start(start_iso)
    try:
        imported = read_events(events, labels)
    except (EventsFormatError, OSError) as e:
        raise click.ClickException(str(e)) from None
    if imported.unknown_labels:
        listed = ", ".join(f"{text!r} x{n}" for text, n in imported.unknown_labels.most_common())
        click.echo(f"Not scored, labels not in the LM table (add one with --label 'TEXT=left'): {listed}", err=True)
    given = {kind: t for kind, t in (("lights_off", lights_off_s), ("lights_on", lights_on_s)) if t is not None}
    markers = [m for m in imported.markers if m[1] not in given] + [(t, kind) for kind, t in given.items()]
    analysis = score_events(imported, rules, markers, [Interval(*g) for g in gaps], duration_s, start)
    _print_night(analysis, [events], as_json, plot_png)


def main() -> None:
    """Console-script entry point."""
    cli()


def _aware_datetime(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A `--start-at` value must be an ISO datetime with a UTC offset."""
    import datetime as dt

    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO datetime, e.g. 2026-03-01T21:00:00+01:00") from None
    if parsed.tzinfo is None:
        raise click.BadParameter(f"{value!r} needs a UTC offset, e.g. 2026-03-01T21:00:00+01:00")
    return value


def _aware_datetimes(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """Each `--press` value must be an ISO datetime with a UTC offset."""
    return tuple(_aware_datetime(ctx, param, v) for v in values)


def _fault_spec(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A `--faults` value must parse as a fault schedule."""
    from device.sensor.emulator import FaultSchedule, FaultSpecError

    try:
        FaultSchedule.parse(value)
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config file (default /etc/rlsmon/device.toml).")
@click.option("--emulate", "recordings", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Play this recording CSV through the emulated chip; repeat for night after night.")
@click.option("--speed", type=click.FloatRange(min=0.001), default=1.0, show_default=True,
              help="With --emulate: how many times faster than real time the clock runs.")
@click.option("--start-at", default=None, callback=_aware_datetime,
              help="With --emulate: ISO datetime the clock reads once the daemon is ready (default: an hour "
                   "before the next window; idle time before each window is skipped).")
@click.option("--origin", type=float, default=None,
              help="With --emulate: the Unix time at which the clock read --start-at (to resume a timeline).")
@click.option("--nights", type=click.IntRange(min=0), default=None,
              help="Exit once this many nights are closed and their summaries receipted by the collector "
                   "(0: forward what is waiting, then exit).")
@click.option("--stay", is_flag=True,
              help="With --nights: stay connected and idle once they are done, as a bedside device waits "
                   "for the next evening, until stopped (the demo's devices do).")
@click.option("--faults", default="", callback=_fault_spec,
              help="With --emulate: bus faults, e.g. 'eio=0.01,disconnect=600+600,reset=900'.")
@click.option("--chip", default="LSM6DSOX", show_default=True, help="With --emulate: the chip variant.")
@click.option("--press", "presses", multiple=True, callback=_aware_datetimes,
              help="With --emulate: the emulated patient presses the button at this ISO datetime "
                   "(repeat), e.g. to take the evening test (docs/sit.md).")
def run(config_path, recordings, speed, start_at, origin, nights, stay, faults, chip, presses) -> None:
    """Run the bedside daemon: record every night and forward each summary.

    \b
    Example:
      rlsmon-device run --config /etc/rlsmon/device.toml
      rlsmon-device run --config dev.toml --emulate n1.csv --emulate n2.csv --speed 600 --nights 2
      rlsmon-device run --config dev.toml --emulate sit.csv --press 2026-03-01T21:01:00+01:00 --nights 1
    """
    import errno

    from device.config import EX_CONFIG
    from device.daemon import run_command

    try:
        code = run_command(config_path, recordings, speed, start_at, origin, nights, faults, chip, stay, presses)
    except OSError as e:
        if not e.filename:
            raise
        # A path the config names (data_dir, above all) that cannot be made or written: fixing the
        # config or the directory is the cure, so exit 78 and systemd does not retry in vain.
        error = click.ClickException(
            f"cannot use {e.filename} ({e.strerror}): check the paths in {config_path or '/etc/rlsmon/device.toml'}; "
            "data_dir must be a directory the daemon can create and write (the installer makes /var/lib/rlsmon)")
        if e.errno in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EROFS):
            error.exit_code = EX_CONFIG
        raise error from None
    raise SystemExit(code)


@cli.command()
@click.option("--seconds", type=click.FloatRange(min=0.1), default=None,
              help="With the real sensor: how long to record.")
@click.option("--out", "out_csv", required=True, callback=_new_file, help="The recording CSV to write.")
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
    except (RlsmonError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        if e.filename:
            raise click.ClickException(f"cannot use {e.filename}: {e.strerror}") from None
        raise click.ClickException(f"the sensor on /dev/i2c-{bus_number} stopped answering ({e.strerror or e}); "
                                   "check its cable and solder joints (SDA, SCL, 3V3, GND)") from None
    click.echo(summary, err=True)


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config file (default /etc/rlsmon/device.toml).")
@click.option("--emulate", "recording", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Check against the emulated chip playing this recording instead of the real sensor.")
def doctor(config_path, recording) -> None:
    """Check the installation: I2C, the sensor, INT1, the clock, the broker, free disk, the config.

    Each check prints one line, PASS, WARN or FAIL, with the fix. Exits 1 when a check fails.

    \b
    Example:
      rlsmon-device doctor --config /etc/rlsmon/device.toml
    """
    from device.doctor import run_doctor

    raise SystemExit(run_doctor(config_path, recording, click.echo))

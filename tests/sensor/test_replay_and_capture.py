"""The CSV replay reader, the `capture` command, and the ODR estimate."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from device.cli import cli
from device.errors import RecordingFormatError
from device.sensor import open_emulated
from device.sensor.replay import ReplayReader
from tests.sensor.conftest import assert_reproduces, collect, load


def test_replay_reader_gives_the_recording_and_its_gaps(tmp_path):
    from device.recording import write_recording
    from device.samples import SampleBlock

    t = np.concatenate([np.arange(100), np.arange(160, 200)]) / 52.0
    write_recording(tmp_path / "r.csv", [SampleBlock(t, np.zeros((140, 3)), np.ones((140, 3)), 52.0)])
    reader = ReplayReader(tmp_path / "r.csv", block_rows=32)
    out = np.concatenate([b.t_s for b in reader])
    np.testing.assert_allclose(out, t, atol=1e-4)
    assert len(reader.gaps) == 1 and reader.gaps[0].start_s == pytest.approx(99 / 52, abs=1e-4)


def test_replay_reader_names_the_bad_line(tmp_path, recording):
    lines = recording.read_text().splitlines()
    lines[57] = "1.0962,0.1,0.2,oops,1,2,3"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordingFormatError, match="line 58"):
        list(ReplayReader(bad))


def test_capture_names_the_bad_line(tmp_path, recording):
    lines = recording.read_text().splitlines()
    lines[9] = "0.1731,0.1,0.2"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["capture", "--emulate", str(bad), "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 1
    assert "bad.csv, line 10" in result.output


@pytest.mark.parametrize("driver, chip", [("fifo", "ISM330DHCX"), ("polled", "LSM6DS33")])
def test_capture_emulate_reproduces_the_recording(tmp_path, recording, driver, chip):
    out_csv = tmp_path / "back.csv"
    result = CliRunner().invoke(cli, ["capture", "--emulate", str(recording), "--driver", driver,
                                      "--chip", chip, "--out", str(out_csv)])
    assert result.exit_code == 0, result.output
    assert f"{chip} (WHO_AM_I" in result.output and "0 gaps" in result.output
    expected, out = load(recording), load(out_csv)
    assert len(out) == len(expected)
    assert_reproduces(out, expected, 0.000122, 0.0175, 52.0)


def test_capture_with_faults_only_adds_gaps(tmp_path, long_recording):
    out_csv = tmp_path / "back.csv"
    result = CliRunner().invoke(cli, ["capture", "--emulate", str(long_recording), "--out", str(out_csv),
                                      "--faults", "eio=0.02,nack=0.01,disconnect=20+5,reset=40,seed=5"])
    assert result.exit_code == 0, result.output
    assert "2 gaps" in result.output
    expected, out = load(long_recording), load(out_csv)
    assert_reproduces(out, expected, 0.000122, 0.0175, 52.0, exact_times=False)
    jumps = np.flatnonzero(np.diff(out[:, 0]) > 1.5 / 52)
    assert len(jumps) == 2  # exactly the disconnect and the reset
    kept = np.diff(out[:, 0])[np.diff(out[:, 0]) <= 1.5 / 52]
    np.testing.assert_allclose(kept, 1 / 52, atol=2e-4)  # elsewhere not one sample missing


def test_capture_refuses_bad_options(tmp_path, recording):
    runner = CliRunner()
    result = runner.invoke(cli, ["capture", "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2 and "--seconds" in result.output
    result = runner.invoke(cli, ["capture", "--emulate", str(recording), "--out", str(tmp_path / "o.csv"),
                                 "--faults", "disconnect=5"])
    assert result.exit_code == 1 and "disconnect=5" in result.output


def test_drifting_chip_rate_is_measured(long_recording):
    """A chip 3 % fast, with no FREQ_FINE register: the reader measures the real rate."""
    reader = open_emulated(long_recording, chip="LSM6DS3TR-C", odr_error=0.03)
    collect(reader, 40.0)
    assert reader.measured_odr_hz == pytest.approx(52 * 1.03, rel=2e-3)
    assert reader.timebase.rate_hz == pytest.approx(52 * 1.03, rel=2e-3)


def test_freq_fine_gives_the_rate_from_the_start(long_recording):
    """The DSOX family reports its rate error in INTERNAL_FREQ_FINE: timestamps are right at once."""
    reader = open_emulated(long_recording, chip="LSM6DSOX", odr_error=0.03)
    out = collect(reader, 5.0)
    actual_hz = 52 * (1 + 0.0015 * 20)  # 3 % is 20 steps of 0.15 %
    np.testing.assert_allclose(np.diff(out[:, 0]), 1 / actual_hz, rtol=1e-9)

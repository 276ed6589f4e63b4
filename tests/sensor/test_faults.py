"""Each fault kind, each recovering: the stream goes on, gaps show as jumps in t, nothing else is lost."""

from __future__ import annotations

import numpy as np
import pytest

from device.sensor import open_emulated
from device.sensor.emulator import FaultSchedule, FaultSpecError
from tests.sensor.conftest import assert_reproduces, collect, load

ACCEL_LSB, GYRO_LSB = 0.000122, 0.0175  # ±4 g, ±500 dps


def _run(recording, faults, driver="fifo", chip="LSM6DSOX"):
    expected = load(recording)
    reader = open_emulated(recording, driver=driver, chip=chip, faults=faults)
    out = collect(reader, expected[-1, 0])
    # A chip that restarts samples with a new phase: after a gap, times match to half a period.
    assert_reproduces(out, expected, ACCEL_LSB, GYRO_LSB, 52.0, exact_times=not reader.gaps)
    return reader, out, expected


def _covered(out, gaps, expected):
    """Every input row either came out (within half a period) or lies inside a recorded gap."""
    j = np.clip(np.searchsorted(out[:, 0], expected[:, 0]), 1, len(out) - 1)
    nearest = np.minimum(np.abs(out[j - 1, 0] - expected[:, 0]), np.abs(out[j, 0] - expected[:, 0]))
    missing = expected[nearest > 0.5 / 52.0, 0]
    inside = [any(g.start_s < t < g.end_s for g in gaps) for t in missing]
    assert all(inside), f"{sum(not x for x in inside)} samples lost outside any gap"


@pytest.mark.parametrize("chip", ["LSM6DSOX", "LSM6DS3TR-C"])
@pytest.mark.parametrize("faults", ["eio=0.05,seed=1", "nack=0.05,seed=2"])
def test_transfer_errors_are_retried_and_lose_nothing(long_recording, faults, chip):
    reader, out, expected = _run(long_recording, faults, chip=chip)
    assert reader.errors > 0
    assert len(out) == len(expected) and reader.gaps == []


def test_polled_reader_survives_transfer_errors(recording):
    reader, out, expected = _run(recording, "eio=0.03,seed=4", driver="polled")
    assert reader.errors > 0
    _covered(out, reader.gaps, expected)


@pytest.mark.parametrize("driver", ["fifo", "polled"])
def test_disconnect_becomes_one_gap(long_recording, driver):
    reader, out, expected = _run(long_recording, "disconnect=20+5", driver=driver)
    assert len(reader.gaps) == 1
    gap = reader.gaps[0]
    assert gap.start_s < 20.0 and 25.0 < gap.end_s < 27.0
    assert out[-1, 0] == pytest.approx(expected[-1, 0], abs=0.02)  # the stream went on to the end
    _covered(out, reader.gaps, expected)


@pytest.mark.parametrize("driver", ["fifo", "polled"])
def test_reset_chip_is_configured_again(long_recording, driver):
    reader, out, expected = _run(long_recording, "reset=30", driver=driver)
    chip = reader.bus.chips[0x6A]
    assert chip.config_losses == 1
    assert chip.regs[0x10] >> 4 == 3  # 52 Hz again
    assert len(reader.gaps) == 1 and 28.0 < reader.gaps[0].start_s < 30.0 <= reader.gaps[0].end_s < 32.0
    _covered(out, reader.gaps, expected)


def test_recording_gap_comes_out_as_a_gap(tmp_path):
    """A gap in the input recording is played as a pulled cable, so it comes back as a gap."""
    from device.recording import write_recording
    from device.samples import SampleBlock

    t = np.concatenate([np.arange(300), np.arange(600, 900)]) / 52.0
    accel = np.column_stack([np.sin(t), np.cos(t), 0 * t])
    write_recording(tmp_path / "gappy.csv", [SampleBlock(t, accel, 10 * accel, 52.0)])
    reader, out, expected = _run(tmp_path / "gappy.csv", None)
    assert len(reader.gaps) == 1
    # The cable-off takes what sat in the FIFO since the last drain (at most one watermark, 1 s).
    assert 299 / 52 - 1.1 < reader.gaps[0].start_s <= 299 / 52
    assert 600 / 52 <= reader.gaps[0].end_s < 600 / 52 + 2.0


def test_fault_spec_parses():
    f = FaultSchedule.parse("eio=0.01, nack=0.001,disconnect=600+60,disconnect=900+5,reset=1200,seed=7")
    assert f == FaultSchedule(0.01, 0.001, [(600.0, 60.0), (900.0, 5.0)], [1200.0], 7)
    assert FaultSchedule.parse("") == FaultSchedule()


@pytest.mark.parametrize("spec, words", [
    ("eio=1.5", "'eio=1.5'"), ("disconnect=600", r"START\+SECONDS"), ("warp=3", "known keys"),
    ("reset", "key=value"), ("nack=lots", "'nack=lots'")])
def test_bad_fault_spec_names_the_item(spec, words):
    with pytest.raises(FaultSpecError, match=words):
        FaultSchedule.parse(spec)


def test_same_seed_fails_the_same_transfers(recording):
    runs = [open_emulated(recording, faults="eio=0.1,seed=9") for _ in range(2)]
    for r in runs:
        collect(r, 5.0)
    assert runs[0].errors == runs[1].errors > 0
    assert runs[0].bus.stats == runs[1].bus.stats

"""Fixtures for the sensor tests: short recordings, and a way to read a reader's output back."""

from __future__ import annotations

import numpy as np
import pytest

from device.recording import read_recording, write_recording
from device.samples import SampleBlock


def make_recording(path, seconds: float = 8.0, odr_hz: float = 52.0, seed: int = 0):
    """A recording of a restless shin: slow tilts, a few kicks and sensor noise, within ±4 g, ±500 dps."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * odr_hz)) / odr_hz
    tilt = 0.3 * np.sin(2 * np.pi * 0.2 * t)
    accel = np.column_stack([np.sin(tilt), 0.05 * np.cos(t), np.cos(tilt)]) + 0.01 * rng.standard_normal((len(t), 3))
    gyro = np.column_stack([20 * np.sin(3 * t), 150 * np.sin(2 * np.pi * 0.5 * t) ** 9, 2.0 + 0 * t])
    gyro += 0.5 * rng.standard_normal((len(t), 3))
    write_recording(path, [SampleBlock(t, accel, gyro, odr_hz)])
    return path


def load(path) -> np.ndarray:
    """A recording CSV as one (n, 7) array: t, ax, ay, az, gx, gy, gz."""
    return np.concatenate([np.column_stack([b.t_s, b.accel_g, b.gyro_dps]) for b in read_recording(path)])


def collect(reader, end_s: float) -> np.ndarray:
    """Read blocks until `t_s` reaches `end_s`; the rows as one (n, 7) array."""
    rows, slack_s = [], 0.0
    for block in reader:
        rows.append(np.column_stack([block.t_s, block.accel_g, block.gyro_dps]))
        slack_s = 0.5 / block.odr_hz  # after a restart the chip's phase is new: half a period
        if block.t_s[-1] >= end_s - slack_s:
            reader.stop()
    out = np.concatenate(rows)
    return out[out[:, 0] <= end_s + slack_s]


def assert_reproduces(out: np.ndarray, expected: np.ndarray, accel_lsb_g: float, gyro_lsb_dps: float,
                      odr_hz: float, exact_times: bool = True) -> None:
    """Every output row equals the input row at its time, to one LSB (plus the CSV's rounding)."""
    assert len(out), "no samples came out"
    assert np.all(np.diff(out[:, 0]) > 0), "timestamps must increase"
    i = np.clip(np.searchsorted(expected[:, 0], out[:, 0]), 1, len(expected) - 1)
    i = np.where(np.abs(expected[i - 1, 0] - out[:, 0]) <= np.abs(expected[i, 0] - out[:, 0]), i - 1, i)
    dt = np.abs(expected[i, 0] - out[:, 0])
    assert dt.max() <= (1e-4 if exact_times else 0.5 / odr_hz), f"timestamps differ by up to {dt.max()} s"
    da = np.abs(out[:, 1:4] - expected[i, 1:4]).max()
    dg = np.abs(out[:, 4:7] - expected[i, 4:7]).max()
    assert da <= accel_lsb_g + 1e-5, f"accel off by {da} g, more than one LSB ({accel_lsb_g} g)"
    assert dg <= gyro_lsb_dps + 1e-4, f"gyro off by {dg} dps, more than one LSB ({gyro_lsb_dps} dps)"


@pytest.fixture(scope="session")
def recording(tmp_path_factory):
    """8 s at 52 Hz."""
    return make_recording(tmp_path_factory.mktemp("rec") / "shin.csv")


@pytest.fixture(scope="session")
def long_recording(tmp_path_factory):
    """60 s at 52 Hz, for faults and rate estimation."""
    return make_recording(tmp_path_factory.mktemp("rec") / "long.csv", seconds=60.0, seed=1)

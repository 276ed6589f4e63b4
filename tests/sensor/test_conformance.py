"""Every chip variant through both readers: the recording comes back to one LSB, same timestamps."""

from __future__ import annotations

import pytest

from device.sensor import open_emulated
from device.sensor.lsm6ds import VARIANTS
from tests.sensor.conftest import assert_reproduces, collect, load


@pytest.mark.parametrize("driver", ["fifo", "polled"])
@pytest.mark.parametrize("chip", list(VARIANTS))
def test_reader_reproduces_the_recording(recording, chip, driver):
    expected = load(recording)
    reader = open_emulated(recording, driver=driver, chip=chip, accel_fs_g=4.0, gyro_fs_dps=500.0)
    assert (reader.chip_name, reader.who_am_i) == (chip, VARIANTS[chip].who_am_i)
    out = collect(reader, expected[-1, 0])
    assert len(out) == len(expected)
    v = VARIANTS[chip]
    assert_reproduces(out, expected, v.accel_scale(4.0).per_lsb, v.gyro_scale(500.0).per_lsb, 52.0)
    assert reader.gaps == [] and reader.errors == 0


@pytest.mark.parametrize("chip, accel_fs_g, gyro_fs_dps", [
    ("LSM6DSOX", 2.0, 125.0), ("LSM6DSO32", 32.0, 2000.0), ("ISM330DHCX", 16.0, 4000.0),
    ("LSM6DS3TR-C", 8.0, 1000.0)])
def test_other_full_scales_keep_one_lsb(recording, chip, accel_fs_g, gyro_fs_dps):
    expected = load(recording)
    reader = open_emulated(recording, chip=chip, accel_fs_g=accel_fs_g, gyro_fs_dps=gyro_fs_dps)
    out = collect(reader, expected[-1, 0])
    v = VARIANTS[chip]
    fs_a, fs_g = v.accel_scale(accel_fs_g), v.gyro_scale(gyro_fs_dps)
    # Saturation: the chip clips at its full scale, so compare with the clipped input.
    clipped = expected.copy()
    clipped[:, 1:4] = clipped[:, 1:4].clip(-32768 * fs_a.per_lsb, 32767 * fs_a.per_lsb)
    clipped[:, 4:7] = clipped[:, 4:7].clip(-32768 * fs_g.per_lsb, 32767 * fs_g.per_lsb)
    assert_reproduces(out, clipped, fs_a.per_lsb, fs_g.per_lsb, 52.0)


def test_saturation_at_full_scale(recording):
    """At ±125 dps the recording's 150 dps kicks clip at the full scale, as the real ADC does."""
    reader = open_emulated(recording, gyro_fs_dps=125.0)
    out = collect(reader, 8.0)
    assert out[:, 5].max() == pytest.approx(32767 * 0.004375)
    assert out[:, 5].min() == pytest.approx(-32768 * 0.004375)


def test_104_hz(tmp_path):
    from tests.sensor.conftest import make_recording

    rec = make_recording(tmp_path / "fast.csv", seconds=4.0, odr_hz=104.0)
    expected = load(rec)
    for driver in ("fifo", "polled"):
        reader = open_emulated(rec, driver=driver, chip="LSM6DS3TR-C")
        assert reader.nominal_odr_hz == 104.0
        assert_reproduces(collect(reader, expected[-1, 0]), expected, 0.000122, 0.0175, 104.0)


def test_unknown_rate_and_scale_are_refused(recording):
    with pytest.raises(ValueError, match="no 50"):
        open_emulated(recording, odr_hz=50.0, chip="LSM6DS33")
    with pytest.raises(ValueError, match="±3 g"):
        open_emulated(recording, accel_fs_g=3.0)

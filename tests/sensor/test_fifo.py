"""The emulated FIFO against the datasheet's rules, and the FIFO reader on top of it."""

from __future__ import annotations

import numpy as np
import pytest

from device.sensor import lsm6ds as reg
from device.sensor.emulator import EventClock, FunctionMotion, emulated_bus, still_motion
from device.sensor.fifo import read_block
from device.sensor.lsm6ds import VARIANTS


def _ramp(t):
    """Accel x counts up one step per sample, so every sample can be told apart."""
    n = len(t)
    x = (np.round(t * 52.0) % 1000) * 0.001
    return np.column_stack([x, np.zeros(n), np.ones(n)]), np.zeros((n, 3))


def _setup(chip, watermark_samples, int1_levels):
    clock = EventClock()
    bus = emulated_bus(chip, FunctionMotion(_ramp), clock, on_int1=int1_levels.append)
    v = VARIANTS[chip]
    for register, value in v.fifo.config_writes(v.odr_code(52.0), watermark_samples):
        bus.write_byte_data(0x6A, register, value)
    bus.write_byte_data(0x6A, reg.INT1_CTRL, reg.INT1_FIFO_TH)
    bus.write_byte_data(0x6A, reg.CTRL2_G, 3 << 4)
    bus.write_byte_data(0x6A, reg.CTRL1_XL, (3 << 4) | v.accel_scale(4.0).bits)
    return clock, bus, v


@pytest.mark.parametrize("chip", ["LSM6DSOX", "LSM6DS3TR-C"])
def test_watermark_flag_and_int1_rise_at_the_watermark(chip):
    levels = []
    clock, bus, v = _setup(chip, 10, levels)
    clock.sleep(9 / 52.0)
    status = read_block(bus, 0x6A, reg.FIFO_STATUS1, v.fifo.status_bytes)
    assert v.fifo.level_words(status) == 9 * v.fifo.words_per_sample
    assert not v.fifo.watermark_reached(status) and levels == []
    clock.sleep(1 / 52.0)
    status = read_block(bus, 0x6A, reg.FIFO_STATUS1, v.fifo.status_bytes)
    assert v.fifo.watermark_reached(status) and levels == [True]
    data = read_block(bus, 0x6A, v.fifo.data_out, 10 * v.fifo.words_per_sample * v.fifo.word_bytes)
    accel, gyro, rest = v.fifo.decode(data, v.fifo.pattern(status))
    assert rest == b"" and len(accel) == 10
    assert list(accel[:, 0]) == [round(k * 0.001 / 0.000122) for k in range(10)]
    assert levels == [True, False]  # drained below the watermark: INT1 falls


@pytest.mark.parametrize("chip", ["ISM330DHCX", "LSM6DS33"])
def test_overrun_keeps_the_newest_and_flags_it(chip):
    levels = []
    clock, bus, v = _setup(chip, 10, levels)
    capacity_samples = v.fifo.capacity_words // v.fifo.words_per_sample
    clock.sleep((capacity_samples + 50) / 52.0)
    status = read_block(bus, 0x6A, reg.FIFO_STATUS1, v.fifo.status_bytes)
    assert v.fifo.overrun(status)
    level = v.fifo.level_words(status)
    assert capacity_samples * v.fifo.words_per_sample - v.fifo.words_per_sample <= level <= v.fifo.capacity_words
    data = read_block(bus, 0x6A, v.fifo.data_out, level * v.fifo.word_bytes)
    accel, _, _ = v.fifo.decode(data, v.fifo.pattern(status))
    newest = capacity_samples + 50 - 1
    ks = np.arange(newest - len(accel) + 1, newest + 1)
    assert list(accel[:, 0]) == list(np.rint((ks % 1000) * 0.001 / 0.000122))  # the newest, none torn
    status = read_block(bus, 0x6A, reg.FIFO_STATUS1, v.fifo.status_bytes)
    assert not v.fifo.overrun(status)


def test_smbus_block_read_stops_at_32_bytes():
    bus = emulated_bus("LSM6DSOX", FunctionMotion(still_motion), EventClock())
    with pytest.raises(ValueError, match="32"):
        bus.read_i2c_block_data(0x6A, 0x78, 33)


@pytest.mark.parametrize("chip, burst_bytes", [("LSM6DSOX", 8192), ("LSM6DSOX", 10), ("LSM6DS3TR-C", 10)])
def test_reader_recovers_from_overrun_with_a_gap(long_recording, chip, burst_bytes):
    """A reader that falls asleep past the FIFO's depth gets a gap, then the right samples."""
    from device.sensor import open_emulated
    from tests.sensor.conftest import assert_reproduces, load

    expected = load(long_recording)
    reader = open_emulated(long_recording, chip=chip, watermark_s=1.0, burst_bytes=burst_bytes)
    rows = []
    for i, block in enumerate(reader):
        rows.append(np.column_stack([block.t_s, block.accel_g, block.gyro_dps]))
        if i == 3:
            reader.clock.sleep(20.0)  # deeper than the FIFO (511 samples, 9.8 s; or 341, 6.6 s)
        if block.t_s[-1] > 50:
            reader.stop()
    out = np.concatenate(rows)
    assert len(reader.gaps) == 1
    gap = reader.gaps[0]
    held_s = VARIANTS[chip].fifo.capacity_words // VARIANTS[chip].fifo.words_per_sample / 52.0
    assert gap.duration_s == pytest.approx(20.0 - held_s, abs=1.0)  # 20 s asleep; the FIFO held the rest
    assert_reproduces(out, expected, 0.000122, 0.0175, 52.0)


def test_reader_without_int1_polls_once_a_second(recording):
    from device.sensor import open_emulated
    from tests.sensor.conftest import collect

    reader = open_emulated(recording, watermark_s=0.25, int1_wired=False)
    out = collect(reader, 415 / 52)
    assert len(out) == 8 * 52
    assert 7 <= reader.wakeups <= 10  # one a second, not one per watermark


def test_bdu_holds_the_outputs_between_low_and_high_byte():
    levels = []
    clock, bus, _ = _setup("LSM6DSOX", 10, levels)
    bus.write_byte_data(0x6A, reg.CTRL3_C, reg.CTRL3_BDU | reg.CTRL3_IF_INC)
    clock.sleep(100 / 52.0)
    low = bus.read_byte_data(0x6A, reg.OUTX_L_A)
    clock.sleep(60 / 52.0)  # 60 samples later; without BDU the high byte would be a newer sample's
    high = bus.read_byte_data(0x6A, reg.OUTX_L_A + 1)
    assert low | high << 8 == round(0.099 / 0.000122)  # sample 99, whole
    raw = bus.read_i2c_block_data(0x6A, reg.OUTX_L_A, 2)
    assert raw[0] | raw[1] << 8 == round(0.159 / 0.000122)  # released: now the newest

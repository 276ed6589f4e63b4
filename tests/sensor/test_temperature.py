"""The chip's temperature: OUT_TEMP_L/H at each variant's scale, in the emulator and through both readers.

The figures are the datasheets' (device/sensor/lsm6ds.py): 0 LSB at 25 °C, 256 LSB/°C, except the
LSM6DS33's 16 LSB/°C.
"""

from __future__ import annotations

import numpy as np
import pytest

from device.sensor import open_reader
from device.sensor import lsm6ds as reg
from device.sensor.emulator import DEFAULT_TEMP_C, EventClock, FunctionMotion, emulated_bus, still_motion

EXPECTED_LSB_PER_C = {"LSM6DSOX": 256.0, "LSM6DSO32": 256.0, "ISM330DHCX": 256.0, "LSM6DS3TR-C": 256.0,
                      "LSM6DS33": 16.0}


class _Warming(FunctionMotion):
    """A still leg whose sensor warms from 21 °C by 0.1 °C a second (a strap just put on)."""

    def __init__(self) -> None:
        super().__init__(still_motion)

    def temperature_c(self, t_s: np.ndarray) -> np.ndarray:
        return 21.0 + 0.1 * np.asarray(t_s)


def test_the_table_has_every_variants_scale():
    assert {name: v.temp_lsb_per_c for name, v in reg.VARIANTS.items()} == EXPECTED_LSB_PER_C


@pytest.mark.parametrize("chip", list(EXPECTED_LSB_PER_C))
def test_out_temp_registers_hold_the_temperature_at_the_variants_scale(chip):
    clock = EventClock()
    motion = FunctionMotion(still_motion)
    motion.temperature_c = lambda t: np.full(len(t), 33.5)  # on the skin
    with emulated_bus(chip, motion, clock) as bus:
        assert bus.read_i2c_block_data(0x6A, reg.OUT_TEMP_L, 2) == [0, 0]  # powered down: nothing sampled
        bus.write_byte_data(0x6A, reg.CTRL1_XL, 0x30)  # 52 Hz
        clock.advance(0.1)
        assert bus.read_byte_data(0x6A, reg.STATUS_REG) & 0x04  # TDA: a new temperature
        raw = int.from_bytes(bytes(bus.read_i2c_block_data(0x6A, reg.OUT_TEMP_L, 2)), "little", signed=True)
        assert not bus.read_byte_data(0x6A, reg.STATUS_REG) & 0x04  # read: TDA clears
    assert raw == round((33.5 - 25.0) * EXPECTED_LSB_PER_C[chip])  # 2176 LSB, or 136 on the LSM6DS33
    assert reg.variant(chip).celsius(raw) == pytest.approx(33.5, abs=1 / EXPECTED_LSB_PER_C[chip])


def test_a_source_without_temperature_reads_as_skin():
    clock = EventClock()
    with emulated_bus("LSM6DSOX", FunctionMotion(still_motion), clock) as bus:
        bus.write_byte_data(0x6A, reg.CTRL1_XL, 0x30)
        clock.advance(0.1)
        raw = int.from_bytes(bytes(bus.read_i2c_block_data(0x6A, reg.OUT_TEMP_L, 2)), "little", signed=True)
    assert reg.variant("LSM6DSOX").celsius(raw) == DEFAULT_TEMP_C


def test_the_temperature_saturates_at_the_int16_range():
    v = reg.variant("LSM6DSOX")
    assert v.temp_raw(200.0) == 32767 and v.temp_raw(-200.0) == -32768


@pytest.mark.parametrize("driver", ["fifo", "polled"])
@pytest.mark.parametrize("chip", ["LSM6DSOX", "LSM6DS33"])
def test_readers_read_the_temperature_every_few_seconds(chip, driver):
    from device.sensor.fifo import TEMP_EVERY_S

    clock = EventClock()
    motion = _Warming()
    bus = emulated_bus(chip, motion, clock)
    reader = open_reader(driver, bus=bus, chip=chip, odr_hz=52.0, clock=clock)  # FIFO: polled each second
    readings = []  # (t_s of the block's end, temp_c)
    for block in reader:
        if block.temp_c is not None:
            readings.append((float(block.t_s[-1]), block.temp_c))
        if block.t_s[-1] >= 30.0:
            reader.stop()
    bus.close()
    times = np.array([t for t, _ in readings])
    assert len(readings) >= 30.0 / TEMP_EVERY_S - 1  # every few seconds, not once
    assert np.all(np.diff(times) >= TEMP_EVERY_S - 1.5)  # and never per block
    # Each reading is the chip's temperature near the block's end, to the chip's resolution and a
    # block's length (the reading is taken as the FIFO is drained, up to a second from its end).
    for t_s, temp_c in readings:
        assert abs(temp_c - (21.0 + 0.1 * t_s)) <= 0.1 * 1.5 + 1 / EXPECTED_LSB_PER_C[chip]

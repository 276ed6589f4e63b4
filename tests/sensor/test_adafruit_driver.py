"""The unmodified adafruit_lsm6ds driver against the emulator: our evidence that it is faithful.

The driver is imported as a user would and handed our busio-style adapter; `board` is never
imported (on x86 it cannot be).
"""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

from device.sensor.emulator import EventClock, FunctionMotion, emulated_bus
from device.sensor.lsm6ds import VARIANTS

ACCEL_G = (0.12, -0.5, 0.85)
GYRO_DPS = (10.0, -42.0, 3.0)


def _steady(t):
    n = len(t)
    return np.tile(ACCEL_G, (n, 1)), np.tile(GYRO_DPS, (n, 1))


def _driver(name):
    module, cls = VARIANTS[name].adafruit_class.split(":")
    return getattr(importlib.import_module(module), cls)


@pytest.mark.parametrize("chip", list(VARIANTS))
def test_driver_reads_the_emulated_chip(chip):
    clock = EventClock()
    bus = emulated_bus(chip, FunctionMotion(_steady), clock, address=0x6A)
    sensor = _driver(chip)(bus.busio(), address=0x6A)
    clock.sleep(0.1)  # the driver set 104 Hz: let samples come
    accel_g = np.array(sensor.acceleration) / 9.80665
    gyro_dps = np.degrees(sensor.gyro)
    accel_lsb = VARIANTS[chip].accel_scale_from_reg(bus.chips[0x6A].regs[0x10]).per_lsb
    assert np.abs(accel_g - ACCEL_G).max() <= accel_lsb
    assert np.abs(gyro_dps - GYRO_DPS).max() <= 0.00875
    assert "board" not in sys.modules


def test_driver_settings_land_in_the_registers():
    from adafruit_lsm6ds import AccelRange, GyroRange, Rate

    clock = EventClock()
    bus = emulated_bus("LSM6DSOX", FunctionMotion(_steady), clock)
    sensor = _driver("LSM6DSOX")(bus.busio())
    sensor.accelerometer_range = AccelRange.RANGE_16G
    sensor.gyro_range = GyroRange.RANGE_125_DPS
    sensor.accelerometer_data_rate = Rate.RATE_52_HZ
    regs = bus.chips[0x6A].regs
    assert regs[0x10] == (3 << 4) | (1 << 2)  # ODR 52 Hz, FS ±16 g (DS12814 CTRL1_XL)
    assert regs[0x11] & 0x02  # FS_125
    assert regs[0x12] & 0x40  # the driver turned BDU on
    clock.sleep(0.1)
    assert sensor.acceleration[2] == pytest.approx(ACCEL_G[2] * 9.80665, abs=0.000488 * 9.80665)


def test_driver_sees_the_wrong_chip():
    """WHO_AM_I is modelled: the LSM6DS33 class refuses an LSM6DSOX."""
    bus = emulated_bus("LSM6DSOX", FunctionMotion(_steady), EventClock())
    with pytest.raises(RuntimeError, match="Failed to find LSM6DS33"):
        _driver("LSM6DS33")(bus.busio())


def test_driver_reset_restores_power_on_defaults():
    clock = EventClock()
    bus = emulated_bus("ISM330DHCX", FunctionMotion(_steady), clock)
    sensor = _driver("ISM330DHCX")(bus.busio())
    chip = bus.chips[0x6A]
    assert chip.regs[0x10] != 0
    sensor.reset()
    assert chip.regs[0x10] == 0 and chip.regs[0x12] == 0x04  # CTRL3_C power-on: IF_INC only


def test_probe_and_scan():
    bus = emulated_bus("LSM6DS3TR-C", FunctionMotion(_steady), EventClock(), address=0x6B)
    i2c = bus.busio()
    assert i2c.scan() == [0x6B]
    assert i2c.probe(0x6B) and not i2c.probe(0x6A)
    with pytest.raises(ValueError, match="No I2C device at address: 0x6a"):
        _driver("LSM6DS3TR-C")(i2c, address=0x6A)


def test_busio_transfer_is_one_transaction():
    bus = emulated_bus("LSM6DSOX", FunctionMotion(_steady), EventClock())
    i2c = bus.busio()
    buf = bytearray(1)
    before = bus.stats.transactions
    assert i2c.try_lock()
    assert not i2c.try_lock()
    i2c.writeto_then_readfrom(0x6A, bytes([0x0F]), buf)
    i2c.unlock()
    assert buf[0] == 0x6C and bus.stats.transactions == before + 1


def test_importing_the_polled_reader_never_imports_board():
    """adafruit_lsm6ds imports Blinka's busio for a type hint (platform detection, harmless on x86);
    `board`, which would claim pins and need gpiod on a Pi, must never be imported."""
    import subprocess

    code = ("import sys, device.sensor.polled, adafruit_lsm6ds.lsm6dsox, adafruit_lsm6ds.lsm6ds3trc;"
            "print('board' in sys.modules, 'smbus2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_sensor_package_imports_no_hardware_library():
    import subprocess

    code = ("import sys, device.sensor, device.sensor.emulator, device.sensor.fifo, device.sensor.capture;"
            "print(*[m in sys.modules for m in ('smbus2', 'gpiozero', 'adafruit_lsm6ds', 'board')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"] * 4

"""The polled reader: Adafruit's adafruit_lsm6ds driver, unmodified, polled once per sample.

The driver talks to an `SMBusI2C` adapter over our smbus2 bus, so `board` is never imported. It
costs one wake-up and three transactions per sample (STATUS_REG, then the driver's accel and gyro
reads); the FIFO reader exists because that is too much for a night on battery, but this one works
with every variant the library supports and is the reference the FIFO reader is checked against.
The chip's temperature is read as the FIFO reader reads it (every `fifo.TEMP_EVERY_S`, at the
variant's own scale: the driver's `temperature` assumes 256 LSB/°C, wrong for the LSM6DS33).
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
from collections.abc import Iterator

import numpy as np

from device.clock import Clock, SystemClock
from device.samples import SampleBlock
from device.sensor import lsm6ds as reg
from device.sensor.busio_adapter import SMBusI2C
from device.sensor.fifo import TEMP_EVERY_S, identify, log_i2c_error, read_block
from device.sensor.timebase import Timebase, TimedReader

log = logging.getLogger(__name__)

_G_MS2 = 9.80665  # adafruit_lsm6ds reports m/s² with this standard gravity
_BACKOFF_FIRST_S = 0.002  # a tenth of a period at 52 Hz: a retry rarely costs a sample
_BACKOFF_MAX_S = 1.0


class PolledReader(TimedReader):
    """Yields `SampleBlock`s of about `block_s` seconds, one poll per sample."""

    def __init__(self, bus, *, addresses: tuple[int, ...] = (0x6A, 0x6B), chip: str | None = None,
                 odr_hz: float = 52.0, accel_fs_g: float = 4.0, gyro_fs_dps: float = 500.0,
                 clock: Clock | None = None, block_s: float = 1.0) -> None:
        self.bus, self.clock = bus, clock or SystemClock()
        self.address, self.variant = identify(bus, addresses, chip, self.clock)
        self.chip_name, self.who_am_i = self.variant.name, self.variant.who_am_i
        self.odr_code = self.variant.odr_code(odr_hz)
        self.nominal_odr_hz = self.variant.odr_codes_hz[self.odr_code]
        self.accel_fs_g, self.gyro_fs_dps = float(accel_fs_g), float(gyro_fs_dps)
        self.accel_scale = self.variant.accel_scale(accel_fs_g)
        self.gyro_scale = self.variant.gyro_scale(gyro_fs_dps)
        self.block_samples = max(1, round(block_s * self.nominal_odr_hz))
        self.timebase = Timebase(self.clock, self.nominal_odr_hz)
        self.errors = 0
        self.wakeups = 0
        self._stop = threading.Event()
        self._ready = False  # XLDA was seen and the sample not yet read
        self._temp_c: float | None = None  # read, not yet given to a block
        self._temp_read_at = -float("inf")
        module, cls = self.variant.adafruit_class.split(":")
        self._driver_class = getattr(importlib.import_module(module), cls)
        self._configure_with_retry()

    def stop(self) -> None:
        self._stop.set()

    def _configure(self) -> None:
        from adafruit_lsm6ds import AccelRange, GyroRange

        sensor = self._driver_class(SMBusI2C(self.bus), address=self.address)  # resets the chip
        sensor.accelerometer_range = _code_for(AccelRange, self.accel_fs_g)
        sensor.gyro_range = _code_for(GyroRange, self.gyro_fs_dps)
        sensor.gyro_data_rate = self.odr_code
        sensor.accelerometer_data_rate = self.odr_code
        t_on = self.clock.monotonic()
        self.sensor = sensor
        self._ctrl1_xl = self.bus.read_byte_data(self.address, reg.CTRL1_XL)
        self.timebase.start_segment(t_on, self.nominal_odr_hz)
        self._ready = False
        self._next = t_on + 1.0 / self.nominal_odr_hz

    def _configure_with_retry(self) -> None:
        delay = _BACKOFF_FIRST_S
        while not self._stop.is_set():
            try:
                self._configure()
                return
            except OSError as e:
                self.errors += 1
                log_i2c_error(self.address, e, self.errors)
                self.clock.wait(self._stop, delay)
                delay = min(delay * 2, _BACKOFF_MAX_S)

    def _recover(self) -> None:
        delay = _BACKOFF_FIRST_S
        while not self._stop.is_set():
            self.clock.wait(self._stop, delay)
            delay = min(delay * 2, _BACKOFF_MAX_S)
            try:
                if self.bus.read_byte_data(self.address, reg.CTRL1_XL) == self._ctrl1_xl:
                    return
                log.warning("the IMU lost its configuration; configuring it again")
                self._configure()
                return
            except OSError:
                self.errors += 1

    def _poll(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """One sample when a new one is ready, else None."""
        if not self._ready:
            status = self.bus.read_byte_data(self.address, reg.STATUS_REG)
            if not status & reg.STATUS_XLDA:
                if self.bus.read_byte_data(self.address, reg.CTRL1_XL) != self._ctrl1_xl:
                    log.warning("the IMU lost its configuration; configuring it again")
                    self._configure()
                return None
            # Reading the outputs clears XLDA: until both reads succeed, the sample stays ours.
            self._ready = True
        sample = self.sensor.acceleration, self.sensor.gyro
        self._ready = False
        return sample

    def __iter__(self) -> Iterator[SampleBlock]:
        period = 1.0 / self.nominal_odr_hz
        accel, gyro, times = [], [], []
        lost_track = False
        while not self._stop.is_set():
            self.clock.sleep(self._next - self.clock.monotonic())
            self.wakeups += 1
            try:
                sample = self._poll()
            except OSError as e:
                self.errors += 1
                log_i2c_error(self.address, e, self.errors)
                self._recover()
                lost_track = True
                continue
            now = self.clock.monotonic()
            if now - self._temp_read_at >= TEMP_EVERY_S:
                self._read_temperature(now)
            if sample is None:
                self._next = max(self._next, now) + 0.1 * period  # not ready yet: look again soon
                continue
            if lost_track or now - self._next > period:
                # After an error or a late wake-up the registers hold the newest sample, whichever
                # that is: place it by the clock (samples skipped become a gap).
                self.timebase.resync(1, now)
                lost_track = False
            times.append(self.timebase.stamp(1, now))
            accel.append(sample[0])
            gyro.append(sample[1])
            self._next = self.timebase.origin + float(times[-1][0]) + period
            if len(times) >= self.block_samples:
                yield self._block(times, accel, gyro)
                accel, gyro, times = [], [], []
        if times:
            yield self._block(times, accel, gyro)

    def _read_temperature(self, now: float) -> None:
        try:
            raw = int.from_bytes(read_block(self.bus, self.address, reg.OUT_TEMP_L, 2), "little", signed=True)
        except OSError as e:  # the samples go on; the temperature waits for the next try
            self.errors += 1
            log_i2c_error(self.address, e, self.errors)
            return
        self._temp_read_at, self._temp_c = now, self.variant.celsius(raw)

    def _block(self, times: list, accel: list, gyro: list) -> SampleBlock:
        temp_c, self._temp_c = self._temp_c, None
        return SampleBlock(np.concatenate(times), np.asarray(accel) / _G_MS2,
                           np.degrees(np.asarray(gyro)), self.timebase.rate_hz, temp_c)


def _code_for(table, full_scale: float) -> int:
    """The adafruit_lsm6ds register code whose full scale is `full_scale` (g or dps)."""
    for code, fs in table.string.items():
        if math.isclose(fs, full_scale):
            return code
    raise ValueError(f"adafruit_lsm6ds offers no ±{full_scale:g} range; it has {sorted(table.string.values())}")

"""The FIFO reader: the LSM6DS batching samples in its FIFO, drained in bursts over smbus2.

It identifies the chip by WHO_AM_I (at 0x6A, then 0x6B), configures ODR, full scale, continuous FIFO
mode and a watermark routed to INT1, then sleeps until INT1 rises (a gpiozero input device, or a
direct `on_int1` callback) or, with INT1 not wired, for one second at a time. Each wake-up reads the
FIFO status and then every word in `i2c_rdwr` bursts: smbus's `read_i2c_block_data` stops at 32
bytes, while the FIFO data-out registers roll back so one long read drains many words.

Recovery never ends the stream: an I2C error is retried with backoff; a chip found at its power-on
defaults is configured again; whatever broke the sample count (a reset, a pulled cable, an overrun)
becomes a gap, a jump in `t_s`, recorded in `gaps`.

Every `TEMP_EVERY_S` a wake-up also reads the chip's temperature (OUT_TEMP, two bytes in one
transaction) into the next block's `temp_c`: the skin warms and cools over minutes, so nothing is
gained by reading it, or batching it in the FIFO, at the sample rate.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator

import numpy as np

from device.clock import Clock, SystemClock
from device.errors import SensorError, SensorNotFound
from device.samples import SampleBlock
from device.sensor import lsm6ds as reg
from device.sensor.lsm6ds import ChipVariant
from device.sensor.timebase import Timebase, TimedReader

log = logging.getLogger(__name__)

_I2C_DEV_MAX_MSG = 8192  # linux i2c-dev refuses longer I2C_RDWR messages
_BACKOFF_FIRST_S = 0.01
_BACKOFF_MAX_S = 1.0
# Our choice: 12 readings per 60-s wear epoch (device/wear.py), whose thresholds take minutes to
# cross (the sensor's skin-to-room time constant), at one 2-byte transaction per 5 s.
TEMP_EVERY_S = 5.0


def identify(bus, addresses: tuple[int, ...], chip: str | None, clock: Clock,
             attempts: int = 3) -> tuple[int, ChipVariant]:
    """Find the chip: (address, variant). Raises SensorNotFound, or SensorError for a wrong chip."""
    seen = []
    for addr in addresses:
        for attempt in range(attempts):
            try:
                who = bus.read_byte_data(addr, reg.WHO_AM_I)
            except OSError:
                clock.sleep(_BACKOFF_FIRST_S * 2 ** attempt)
                continue
            candidates = reg.variants_for(who)
            if not candidates:
                seen.append(f"0x{addr:02X} answered WHO_AM_I 0x{who:02X}")
                break
            if chip is None:
                return addr, candidates[0]
            wanted = reg.variant(chip)
            if wanted in candidates:
                return addr, wanted
            raise SensorError(f"expected {wanted.name} (WHO_AM_I 0x{wanted.who_am_i:02X}) but "
                              f"0x{addr:02X} answered WHO_AM_I 0x{who:02X}")
    where = ", ".join(f"0x{a:02X}" for a in addresses)
    raise SensorNotFound(f"no LSM6DS chip at {where}" + (f" ({'; '.join(seen)})" if seen else ""))


def log_i2c_error(address: int, error: OSError, count: int) -> None:
    """Warn about a retried I2C error: the 1st, 2nd, 4th, 8th... so a flaky cable cannot flood the log."""
    if count & (count - 1) == 0:
        log.warning("I2C error on the IMU at 0x%02X: %s; retrying (%d errors so far)", address, error, count)


def read_block(bus, addr: int, register: int, n: int) -> bytes:
    """One combined transaction: write the register address, read `n` bytes (any length)."""
    from smbus2 import i2c_msg

    write, read = i2c_msg.write(addr, [register]), i2c_msg.read(addr, n)
    bus.i2c_rdwr(write, read)
    return bytes(read)


class FifoReader(TimedReader):
    """Yields `SampleBlock`s from the chip's FIFO. See the module docstring.

    `int1` is a gpiozero input device on the INT1 line (or None); emulated INT1 can instead call
    `on_int1(level)`. `watermark_s` sets how much data each wake-up drains; `burst_bytes` caps one
    read (i2c-dev takes at most 8192 bytes a message).
    """

    def __init__(self, bus, *, addresses: tuple[int, ...] = (0x6A, 0x6B), chip: str | None = None,
                 odr_hz: float = 52.0, accel_fs_g: float = 4.0, gyro_fs_dps: float = 500.0,
                 watermark_s: float = 1.0, int1=None, clock: Clock | None = None,
                 poll_s: float = 1.0, int1_wired: bool | None = None,
                 burst_bytes: int = _I2C_DEV_MAX_MSG) -> None:
        self.bus, self.clock = bus, clock or SystemClock()
        self.poll_s = poll_s
        self.burst_bytes = burst_bytes
        self.address, self.variant = identify(bus, addresses, chip, self.clock)
        self.chip_name, self.who_am_i = self.variant.name, self.variant.who_am_i
        self.odr_code = self.variant.odr_code(odr_hz)
        self.nominal_odr_hz = self.variant.odr_codes_hz[self.odr_code]
        self.accel_scale = self.variant.accel_scale(accel_fs_g)
        self.gyro_scale = self.variant.gyro_scale(gyro_fs_dps)
        fifo = self.variant.fifo
        self.watermark_samples = max(1, min(round(watermark_s * self.nominal_odr_hz),
                                            fifo.capacity_words // fifo.words_per_sample // 2))
        self.timebase = Timebase(self.clock, self.nominal_odr_hz)
        self.errors = 0  # I2C errors seen (each retried)
        self.wakeups = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending = bytearray()  # words read but not yet decoded (an incomplete sample)
        self._held: tuple[np.ndarray, np.ndarray] | None = None  # raw samples counted after a loss
        self._ready: list[SampleBlock] = []  # stamped, not yet yielded
        self._pending_pattern: int | None = None
        self._temp_c: float | None = None  # read, not yet given to a block
        self._temp_read_at = -float("inf")
        self.int1_wired = int1 is not None if int1_wired is None else int1_wired
        if int1 is not None:
            int1.when_activated = self._wake.set
        self._int1 = int1
        self._ctrl1_xl = (self.odr_code << 4) | self.accel_scale.bits
        try:
            self._configure()
        except OSError as e:
            self._recover(e)

    def on_int1(self, level: bool) -> None:
        """INT1 changed (for an emulated chip wired without gpiozero)."""
        if level:
            self._wake.set()

    def stop(self) -> None:
        """End the stream at the next wake-up."""
        self._stop.set()
        self._wake.set()

    # --- configuration ---------------------------------------------------------------------------
    def _configure(self) -> None:
        """Reset the chip and set it up; starts a new segment of the timebase."""
        b, a, fifo = self.bus, self.address, self.variant.fifo
        b.write_byte_data(a, reg.CTRL3_C, reg.CTRL3_SW_RESET)
        for _ in range(10):  # SW_RESET clears itself within 50 µs (DS12814 §10, CTRL3_C)
            if not b.read_byte_data(a, reg.CTRL3_C) & reg.CTRL3_SW_RESET:
                break
            self.clock.sleep(0.001)
        b.write_byte_data(a, reg.CTRL3_C, reg.CTRL3_BDU | reg.CTRL3_IF_INC)
        for register, value in fifo.config_writes(self.odr_code, self.watermark_samples):
            b.write_byte_data(a, register, value)
        b.write_byte_data(a, reg.INT1_CTRL, reg.INT1_FIFO_TH if self.int1_wired else 0)
        rate = self.nominal_odr_hz
        if self.variant.has_freq_fine:
            fine = b.read_byte_data(a, reg.INTERNAL_FREQ_FINE)
            rate *= 1.0 + reg.FREQ_FINE_STEP * (fine - 256 if fine > 127 else fine)
        b.write_byte_data(a, reg.CTRL2_G, (self.odr_code << 4) | self.gyro_scale.bits)
        b.write_byte_data(a, reg.CTRL1_XL, (self.odr_code << 4) | self.accel_scale.bits)
        self._release_held(self.clock.monotonic())  # the old count's last samples, before the new
        self.timebase.start_segment(self.clock.monotonic(), rate)
        self._pending.clear()
        self._pending_pattern = None

    def _configured(self) -> bool:
        return self.bus.read_byte_data(self.address, reg.CTRL1_XL) == self._ctrl1_xl

    def _recover(self, error: OSError) -> None:
        """Retry with backoff until the chip answers; configure it again if it lost its config."""
        self.errors += 1
        log_i2c_error(self.address, error, self.errors)
        delay = _BACKOFF_FIRST_S
        while not self._stop.is_set():
            try:
                if self.bus.read_byte_data(self.address, reg.WHO_AM_I) == self.who_am_i:
                    delay = _BACKOFF_FIRST_S  # it answers: retry what follows promptly
                    if not self._configured():
                        log.warning("the IMU lost its configuration; configuring it again")
                        self._configure()
                    self._wake.set()  # whatever the FIFO holds is still there: drain it now
                    return
            except OSError:
                self.errors += 1
            self.clock.wait(self._stop, delay)
            delay = min(delay * 2, _BACKOFF_MAX_S)

    # --- reading ------------------------------------------------------------------------------
    def _read_temperature(self) -> None:
        """Read OUT_TEMP when `TEMP_EVERY_S` has passed (before the FIFO, so an error loses nothing)."""
        if self.clock.monotonic() - self._temp_read_at < TEMP_EVERY_S:
            return
        raw = int.from_bytes(read_block(self.bus, self.address, reg.OUT_TEMP_L, 2), "little", signed=True)
        self._temp_read_at = self.clock.monotonic()
        self._temp_c = self.variant.celsius(raw)

    def _drain(self) -> SampleBlock | None:
        fifo = self.variant.fifo
        self._read_temperature()
        asked = self.clock.monotonic()
        status = read_block(self.bus, self.address, reg.FIFO_STATUS1, fifo.status_bytes)
        # Every sample counted below was taken by now: the time base's observation. The bursts
        # that follow take longer (90 ms for a full FIFO at 400 kHz) and are not part of it.
        now = self.clock.monotonic()
        level = fifo.level_words(status)
        if level == 0:
            if not self._configured():
                log.warning("the IMU lost its configuration; configuring it again")
                self._configure()
            return self._take_ready()
        overrun = fifo.overrun(status)
        if overrun:  # words were overwritten: a half sample kept from before no longer fits
            self._pending.clear()
            self._pending_pattern = None
        if self._pending_pattern is None:
            self._pending_pattern = fifo.pattern(status)
        burst_words = max(1, min(self.burst_bytes, _I2C_DEV_MAX_MSG) // fifo.word_bytes)
        # Had the FIFO filled up before the bursts ran (a thread held up that long), the chip
        # overwrote its oldest words, and clears its overrun flag as we read them: the words read
        # then end this many samples before its newest, counted back from the clock below.
        behind = (fifo.capacity_words - level) // fifo.words_per_sample
        may_have_filled = (self.clock.monotonic() - asked) * self.timebase.rate_hz >= behind
        while level > 0:
            n = min(level, burst_words)
            self._pending += read_block(self.bus, self.address, fifo.data_out, n * fifo.word_bytes)
            level -= n
        read_at = self.clock.monotonic()
        accel_raw, gyro_raw, rest = fifo.decode(bytes(self._pending), self._pending_pattern)
        self._pending[:] = rest
        self._pending_pattern = 0 if rest else None
        if overrun:
            log.warning("IMU FIFO overrun: the oldest samples were overwritten")
        lost = overrun or may_have_filled
        if self._held is not None and not lost:  # the count they were given, confirmed below
            accel_raw = np.concatenate([self._held[0], accel_raw])
            gyro_raw = np.concatenate([self._held[1], gyro_raw])
            self._held = None
        if lost:
            self._release_held(now)  # they came before this loss: placed as they stand
            # Counted back from the clock, any samples overwritten (flagged, or while we read) are
            # a gap. The clock read may have run late and counted too many: the samples wait for
            # the next read, which bounds their time from above, before they are stamped.
            if self.timebase.resync(len(accel_raw), read_at, lost_at_least=int(overrun), behind=behind):
                self._held = (accel_raw, gyro_raw)
                return None
        self._stamped(accel_raw, gyro_raw, now)
        return self._take_ready()

    def _stamped(self, accel_raw: np.ndarray, gyro_raw: np.ndarray, now: float) -> None:
        t_s = self.timebase.stamp(len(accel_raw), now)
        if len(t_s):
            self._ready.append(SampleBlock(t_s, accel_raw * self.accel_scale.per_lsb,
                                           gyro_raw * self.gyro_scale.per_lsb, self.timebase.rate_hz))

    def _release_held(self, now: float) -> None:
        if self._held is not None:
            self._stamped(*self._held, now)
            self._held = None

    def _take_ready(self) -> SampleBlock | None:
        if not self._ready:
            return None
        ready, self._ready = self._ready, []
        temp_c, self._temp_c = self._temp_c, None
        if len(ready) == 1:
            return dataclasses.replace(ready[0], temp_c=temp_c)
        return SampleBlock(np.concatenate([b.t_s for b in ready]), np.concatenate([b.accel_g for b in ready]),
                           np.concatenate([b.gyro_dps for b in ready]), ready[-1].odr_hz, temp_c)

    def __iter__(self) -> Iterator[SampleBlock]:
        while not self._stop.is_set():
            # INT1 late by half a watermark means the chip lost its config: look, then reconfigure.
            timeout = self.poll_s if not self.int1_wired else \
                1.5 * self.watermark_samples / self.nominal_odr_hz
            self.clock.wait(self._wake, timeout)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.wakeups += 1
            try:
                block = self._drain()
            except OSError as e:
                self._recover(e)
                continue
            if self._int1 is not None and getattr(self._int1, "is_active", False):
                self._wake.set()  # still above the watermark: go again
            if block is not None:
                yield block

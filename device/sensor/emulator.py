"""A register-level LSM6DS behind a virtual I2C bus: the chip for tests, the demo and installers.

`EmulatedChip` models what our readers and the unmodified adafruit_lsm6ds driver touch: WHO_AM_I,
SW_RESET back to the power-on values, BDU (outputs held between a low and a high byte) and IF_INC,
ODR and full scale, the output and STATUS registers (the temperature's too, OUT_TEMP at each
variant's scale), the FIFO (continuous mode, watermark, overrun,
status, tagged words on the DSOX family and the 6-word pattern on the DS3 family, with the address
rolling back so one read drains many words), and the INT1 watermark line. Every chip fact comes
from `lsm6ds.VARIANTS`.

Time comes from a `device.clock` Clock. The chip is lazy: on every bus transfer it catches up with
the clock, sampling its `MotionSource` once per ODR period, quantized to the full scale and
saturated at it. INT1 needs someone to look at the time between transfers: on an `EventClock` (a
`VirtualClock` that wakes the chip at the instant its FIFO reaches the watermark) that is free and
exact; on a real or `ScaledClock` call `start()`, which runs a small timer thread.

`EmulatedBus` answers the smbus2 `SMBus` calls our readers make, including `i2c_rdwr` with
`smbus2.i2c_msg`; `EmulatedBus.busio()` gives the busio-style object adafruit_lsm6ds wants.
`FaultSchedule` makes the bus fail the way real hardware does (see `FaultSchedule.parse`).
"""

from __future__ import annotations

import ctypes
import errno
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from device.clock import Clock, VirtualClock, wall_at
from device.errors import RecordingFormatError, RlsmonError
from device.sensor import lsm6ds as reg
from device.sensor.lsm6ds import ChipVariant

_I2C_M_RD = 0x0001  # linux/i2c.h: the message is a read
_SMBUS_BLOCK_MAX = 32  # linux/i2c.h I2C_SMBUS_BLOCK_MAX: smbus block transfers stop here


# A source that says nothing of temperature reads as a sensor on the skin (30-35 °C when worn,
# device/wear.py), so the emulator never makes a night look unworn that did not say so.
DEFAULT_TEMP_C = 32.0
STATUS_TDA = 0x04  # STATUS_REG bit 2: a new temperature sample (DS12814 §10)


class FaultSpecError(RlsmonError, ValueError):
    """A `--faults` string is malformed. The message names the item."""


class MotionSource(Protocol):
    """What the chip senses: physical acceleration (g) and rotation (dps) at given times.

    `t_s` is seconds from the chip's first sample, increasing between calls. A source may have
    `gaps`, spans (start_s, end_s) during which the sensor was not there at all (a recording's gaps):
    the chip treats them as a pulled cable. A source may have `started(wall_s)`, which the chip
    calls with the wall-clock time of its first sample before it reads `gaps` or calls `at`.
    A source may have `temperature_c(t_s)`, the chip's temperature (°C) at those times; without
    it the chip reads `DEFAULT_TEMP_C`.
    """

    def at(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(accel_g, gyro_dps), each (len(t_s), 3)."""


@dataclass
class FunctionMotion:
    """Motion from a function of time: `fn(t_s) -> (accel_g, gyro_dps)`; for tests and doctor."""

    fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    gaps: list[tuple[float, float]] = field(default_factory=list)

    def at(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.fn(t_s)


def still_motion(t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A leg lying still on its back: 1 g out of the shin's front, no rotation."""
    n = len(t_s)
    return np.tile([0.0, 0.0, 1.0], (n, 1)), np.zeros((n, 3))


class RecordingMotion:
    """Plays a recording CSV as motion: the sample nearest in time to each chip sample.

    Streams the file (memory stays small for a whole night). One first pass finds its rate,
    duration and gaps; a gap in the recording is played as a pulled cable, so it comes out of the
    readers as a gap. A recording with a `temp_c` column gives the chip its temperature too.
    """

    def __init__(self, path: str | os.PathLike, block_rows: int = 4096) -> None:
        from device.recording import read_recording

        self.path, self._block_rows = path, block_rows
        self.odr_hz, self.duration_s, self.n_samples = 0.0, 0.0, 0
        self.gaps: list[tuple[float, float]] = []
        last_t = None
        has_temp = False
        for block in read_recording(path, block_rows):
            has_temp = block.temp_c is not None
            self.odr_hz = block.odr_hz
            t = block.t_s
            if last_t is not None:
                t = np.concatenate([[last_t], t])
            jumps = np.flatnonzero(np.diff(t) > 1.5 / block.odr_hz)
            self.gaps += [(float(t[i]), float(t[i + 1])) for i in jumps]
            last_t = float(t[-1])
            self.n_samples += len(block)
        if last_t is None:
            raise RecordingFormatError(os.fspath(path), 2, "the recording has no samples")
        self.duration_s = last_t
        self._blocks: Iterator | None = None
        self._t = np.zeros(0)
        self._a = np.zeros((0, 3))
        self._g = np.zeros((0, 3))
        self._temp = np.zeros(0)
        if has_temp:
            self.temperature_c = self._temperature_c

    def _temperature_c(self, t_s: np.ndarray) -> np.ndarray:
        """The recorded temperature at `t_s` (after `at` was called for them)."""
        return self._temp[self._nearest(t_s)]

    def at(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from device.recording import read_recording

        if self._blocks is None:
            self._blocks = read_recording(self.path, self._block_rows)
        want = float(t_s[-1]) if len(t_s) else 0.0
        while (not len(self._t) or self._t[-1] < want) and self._blocks is not None:
            block = next(self._blocks, None)
            if block is None:
                break
            keep = max(0, np.searchsorted(self._t, float(t_s[0])) - 1) if len(t_s) else 0
            self._t = np.concatenate([self._t[keep:], block.t_s])
            self._a = np.concatenate([self._a[keep:], block.accel_g])
            self._g = np.concatenate([self._g[keep:], block.gyro_dps])
            temp_c = np.nan if block.temp_c is None else block.temp_c
            self._temp = np.concatenate([self._temp[keep:], np.full(len(block), temp_c)])
        i = self._nearest(t_s)
        return self._a[i], self._g[i]

    def _nearest(self, t_s: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(self._t, t_s), 1, len(self._t) - 1) if len(self._t) > 1 else \
            np.zeros(len(t_s), dtype=int)
        if len(self._t) > 1:
            i = np.where(np.abs(self._t[i - 1] - t_s) <= np.abs(self._t[i] - t_s), i - 1, i)
        return i


@dataclass
class FaultSchedule:
    """When and how the bus fails. Times are seconds of chip time (from the emulator's start).

    - `eio_fraction`: that fraction of transfers fail with EIO (a glitch on the wire);
    - `nack_fraction`: that fraction are not acknowledged (EREMOTEIO, as i2c-bcm2835 reports);
    - `disconnects`: (start_s, duration_s) windows where the cable is out: every transfer NACKs, the
      chip loses power, and it comes back at its power-on defaults;
    - `resets`: instants where the chip resets itself (a brown-out): config and FIFO lost, no error.
    The random draws come from `seed`, so a schedule always fails the same transfers.
    """

    eio_fraction: float = 0.0
    nack_fraction: float = 0.0
    disconnects: list[tuple[float, float]] = field(default_factory=list)
    resets: list[float] = field(default_factory=list)
    seed: int = 0

    @classmethod
    def parse(cls, spec: str) -> FaultSchedule:
        """Parse `eio=0.01,nack=0.001,disconnect=600+60,reset=1200,seed=7`.

        Items are comma-separated `key=value`; `disconnect` (START+SECONDS) and `reset` (AT) may
        repeat. An empty spec means no faults. Raises `FaultSpecError` naming the bad item.
        """
        out = cls()
        for item in filter(None, (s.strip() for s in spec.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip().lower()
            try:
                if not sep:
                    raise ValueError("expected key=value")
                if key in ("eio", "nack"):
                    p = float(value)
                    if not 0.0 <= p < 1.0:
                        raise ValueError("a fraction of transfers must be in [0, 1)")
                    setattr(out, f"{key}_fraction", p)
                elif key == "disconnect":
                    start, plus, dur = value.partition("+")
                    if not plus or float(start) < 0 or float(dur) <= 0:
                        raise ValueError("expected START+SECONDS, e.g. 600+60")
                    out.disconnects.append((float(start), float(dur)))
                elif key == "reset":
                    if float(value) < 0:
                        raise ValueError("a reset time must not be negative")
                    out.resets.append(float(value))
                elif key == "seed":
                    out.seed = int(value)
                else:
                    raise ValueError("known keys are eio, nack, disconnect, reset, seed")
            except ValueError as e:
                raise FaultSpecError(f"bad fault {item!r}: {e}") from None
        return out


class _CpuMeter:
    """CPU seconds spent by emulated chips (their timer threads and their side of each transfer),
    summed over every thread, so a benchmark can tell the emulator's cost from the daemon's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds = 0.0

    def add(self, seconds: float) -> None:
        with self._lock:
            self._seconds += seconds

    def seconds(self) -> float:
        """The total so far."""
        with self._lock:
            return self._seconds


EMULATOR_CPU = _CpuMeter()


class EventClock(VirtualClock):
    """A `VirtualClock` that stops at the instants emulated hardware wants to act.

    `sleep` and `wait` move time on as a VirtualClock does, but first run every waker due on the
    way, so an INT1 edge fires at its exact virtual instant and a reader waiting on it wakes then.
    """

    def __init__(self, start_wall: float = 1_700_000_000.0) -> None:
        super().__init__(start_wall)
        self._wakers: list[tuple[Callable[[], float | None], Callable[[], None]]] = []

    def add_waker(self, next_s: Callable[[], float | None], fire: Callable[[], None]) -> None:
        """Call `fire()` when time reaches `next_s()` (None: nothing planned)."""
        self._wakers.append((next_s, fire))

    def _run_until(self, deadline: float, event: threading.Event | None) -> bool:
        fired: set[tuple[int, float]] = set()
        while not (event is not None and event.is_set()):
            due = [(t, i, fire) for i, (next_s, fire) in enumerate(self._wakers)
                   if (t := next_s()) is not None and t <= deadline and (i, t) not in fired]
            if not due:
                break
            t, i, fire = min(due, key=lambda d: d[0])
            fired.add((i, t))  # a waker that asks for the same instant again is not looped on
            with self._lock:
                self._now = max(self._now, t)
            fire()
        with self._lock:
            if not (event is not None and event.is_set()):
                self._now = max(self._now, deadline)
        return event is not None and event.is_set()

    def advance(self, seconds: float) -> None:
        self._run_until(self._now + max(0.0, seconds), None)

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        if event.is_set():
            return True
        return self._run_until(self._now + max(0.0, timeout_s), event)


class EmulatedChip:
    """One LSM6DS variant at one I2C address, sampling `motion` on `clock`'s timeline.

    `odr_error` is the fraction by which the real rate differs from nominal (the DSOX family reports
    it in INTERNAL_FREQ_FINE, to 0.15 %). `on_int1(level)` is called when the INT1 line changes,
    e.g. with a gpiozero MockPin's `drive_high`/`drive_low`.
    """

    def __init__(self, variant: ChipVariant, motion: MotionSource, clock: Clock, *,
                 address: int = 0x6A, faults: FaultSchedule | None = None, odr_error: float = 0.0,
                 on_int1: Callable[[bool], None] | None = None) -> None:
        self.variant, self.motion, self.clock, self.address = variant, motion, clock, address
        self.faults = faults or FaultSchedule()
        self.on_int1 = on_int1
        if variant.has_freq_fine:
            self._freq_fine = int(np.clip(round(odr_error / reg.FREQ_FINE_STEP), -128, 127))
            self.odr_error = self._freq_fine * reg.FREQ_FINE_STEP
        else:
            self._freq_fine, self.odr_error = 0, odr_error
        self._lock = threading.RLock()
        self._rng = random.Random(self.faults.seed)
        self._t0 = clock.monotonic()
        self._motion_origin: float | None = None  # chip time of the motion's t = 0
        self._events: list[tuple[float, str]] = sorted(
            [(t, "reset") for t in self.faults.resets]
            + [(s, "off") for s, _ in self.faults.disconnects]
            + [(s + d, "on") for s, d in self.faults.disconnects])
        self._powered = True
        self.int1 = False
        self.config_losses = 0  # scheduled resets and power cycles so far
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._power_on()
        if isinstance(clock, EventClock):
            clock.add_waker(self._next_int1_abs, self.poll)

    # --- state -------------------------------------------------------------------------------
    def _power_on(self) -> None:
        self.regs = bytearray(256)
        for a, v in self.variant.defaults.items():
            self.regs[a] = v
        self.regs[reg.WHO_AM_I] = self.variant.who_am_i
        if self.variant.has_freq_fine:
            self.regs[reg.INTERNAL_FREQ_FINE] = self._freq_fine & 0xFF
        self._fifo = bytearray()
        self._pattern = 0  # pattern index of the word at the FIFO's head
        self._overrun = False
        self._rate_hz = 0.0
        self._t_on = 0.0
        self._slots = 0  # samples taken since _t_on
        self._latest = {"a": np.zeros(3, dtype=np.int16), "g": np.zeros(3, dtype=np.int16),
                        "t": np.zeros(1, dtype=np.int16)}
        self._out = dict(self._latest)  # what the output registers show
        self._held: set[str] = set()  # BDU: outputs whose low byte was read and high byte not yet
        self._status = 0
        self._pointer = 0

    def _now(self) -> float:
        return self.clock.monotonic() - self._t0

    def _set_rate(self, now: float) -> None:
        odr_xl, odr_g = self.regs[reg.CTRL1_XL] >> 4, self.regs[reg.CTRL2_G] >> 4
        code = odr_xl or odr_g
        rate = self.variant.odr_codes_hz.get(code, 0.0) * (1.0 + self.odr_error)
        if rate != self._rate_hz:
            self._rate_hz, self._t_on, self._slots = rate, now, 0

    def _slot_time(self, k: int) -> float:
        return self._t_on + k / self._rate_hz

    def _advance(self, now: float) -> None:
        """Catch up with `now`: take the samples due, applying scheduled faults in time order."""
        while self._events and self._events[0][0] <= now + 1e-9:
            t, what = self._events.pop(0)
            self._sample_until(t)
            if what == "reset" and self._powered:
                self._power_on()
                self.config_losses += 1
            elif what == "off":
                self._powered = False
            elif what == "on" and not self._powered:
                self._powered = True
                self._power_on()
                self.config_losses += 1
        self._sample_until(now)
        self._update_int1()

    def _sample_until(self, now: float) -> None:
        if not self._rate_hz or not self._powered:
            return
        due = math.floor((now - self._t_on) * self._rate_hz + 1e-9)
        n = due - self._slots
        if n <= 0:
            return
        if self._motion_origin is None:
            # The motion starts with the chip's first sample: a driver that tries rates in passing
            # (adafruit_lsm6ds sets 104 Hz before ours) does not shift it.
            self._motion_origin = self._slot_time(1)
            started = getattr(self.motion, "started", None)
            if started is not None:  # the source may place itself in time by its first sample
                started(wall_at(self.clock, self._t0 + self._motion_origin))
            gaps = getattr(self.motion, "gaps", [])
            self._events = sorted(self._events + [(self._motion_origin + s, "off") for s, _ in gaps]
                                  + [(self._motion_origin + e, "on") for _, e in gaps])
        fifo = self.variant.fifo
        cap_samples = fifo.capacity_words // fifo.words_per_sample + 1
        first = self._slots + 1 + max(0, n - cap_samples)  # older ones would be overwritten anyway
        ks = np.arange(first, due + 1)
        t = self._t_on + ks / self._rate_hz - self._motion_origin
        accel_g, gyro_dps = self.motion.at(t)
        xl_on, g_on = self.regs[reg.CTRL1_XL] >> 4, self.regs[reg.CTRL2_G] >> 4
        a_raw = _quantize(accel_g, self.variant.accel_scale_from_reg(self.regs[reg.CTRL1_XL]).per_lsb)
        g_raw = _quantize(gyro_dps, self.variant.gyro_scale_from_reg(self.regs[reg.CTRL2_G]).per_lsb)
        if xl_on:
            self._latest["a"], self._status = a_raw[-1], self._status | reg.STATUS_XLDA
        if g_on:
            self._latest["g"], self._status = g_raw[-1], self._status | reg.STATUS_GDA
        if xl_on or g_on:  # the temperature is sampled while either sensor runs
            temperature = getattr(self.motion, "temperature_c", None)
            celsius = DEFAULT_TEMP_C if temperature is None else float(temperature(t[-1:])[0])
            celsius = celsius if math.isfinite(celsius) else DEFAULT_TEMP_C
            self._latest["t"] = np.array([self.variant.temp_raw(celsius)], dtype=np.int16)
            self._status |= STATUS_TDA
        self._latch_outputs()
        continuous, xl_batched, g_batched = fifo.batching(self.regs)
        if continuous and xl_batched and g_batched:
            self._push(fifo.encode(a_raw, g_raw, first), skipped=first > self._slots + 1)
        self._slots = due

    def _push(self, data: bytes, skipped: bool) -> None:
        """Append words; when full, the newest overwrite the oldest and OVR is flagged."""
        fifo = self.variant.fifo
        self._fifo += data
        excess = len(self._fifo) - fifo.capacity_words * fifo.word_bytes
        if excess > 0 or skipped:
            words = -(-max(excess, 0) // fifo.word_bytes)
            del self._fifo[: words * fifo.word_bytes]
            self._pattern = (self._pattern + words) % fifo.words_per_sample
            self._overrun = True

    def _level_words(self) -> int:
        return len(self._fifo) // self.variant.fifo.word_bytes

    def _update_int1(self) -> None:
        wtm = self.variant.fifo.watermark_words(self.regs)
        level = bool(self.regs[reg.INT1_CTRL] & reg.INT1_FIFO_TH) and wtm > 0 \
            and self._level_words() >= wtm and self._powered
        if level != self.int1:
            self.int1 = level
            if self.on_int1 is not None:
                self.on_int1(level)

    def _next_int1_abs(self) -> float | None:
        """Clock time of the next INT1 rising edge, or of the next scheduled fault."""
        with self._lock:
            times = [self._t0 + t for t, _ in self._events[:1]]
            fifo = self.variant.fifo
            wtm = fifo.watermark_words(self.regs)
            if (self._rate_hz and self._powered and not self.int1 and wtm > 0
                    and self.regs[reg.INT1_CTRL] & reg.INT1_FIFO_TH and all(fifo.batching(self.regs))):
                need = -(-(wtm - self._level_words()) // fifo.words_per_sample)
                times.append(self._t0 + self._slot_time(self._slots + max(need, 1)))
            return min(times) if times else None

    # --- time without transfers ---------------------------------------------------------------
    def poll(self) -> None:
        """Catch up with the clock now (fires INT1 if due)."""
        with self._lock:
            self._advance(self._now())

    def start(self) -> None:
        """On a real or scaled clock, watch the time in a thread so INT1 fires without transfers.

        A no-op on a `VirtualClock`, whose time only moves when its owner says (an `EventClock`
        wakes the chip itself); a thread there would drive virtual time on its own.
        """
        if self._thread is None and not isinstance(self.clock, VirtualClock):
            self._thread = threading.Thread(target=self._tick, name="lsm6ds-emulator", daemon=True)
            self._thread.start()

    def _tick(self) -> None:
        used_s = time.thread_time()
        while not self._stop.is_set():
            nxt = self._next_int1_abs()
            delay = 0.25 if nxt is None else min(0.25, max(0.0, nxt - self.clock.monotonic()))
            self.clock.wait(self._stop, delay)
            self.poll()
            now_s = time.thread_time()
            EMULATOR_CPU.add(now_s - used_s)
            used_s = now_s

    def close(self) -> None:
        """Stop the timer thread, if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- the bus side ---------------------------------------------------------------------------
    def transfer(self, msgs: list[tuple[bool, bytes | int]]) -> list[bytes]:
        """One I2C transaction: a list of (is_read, data-to-write | bytes-to-read).

        Raises OSError (EREMOTEIO for a NACK, EIO for a glitch) with no effect on the chip.
        """
        start_s = time.thread_time()  # the reader's thread runs the chip here: count it as the chip's
        try:
            return self._transfer(msgs)
        finally:
            EMULATOR_CPU.add(time.thread_time() - start_s)

    def _transfer(self, msgs: list[tuple[bool, bytes | int]]) -> list[bytes]:
        with self._lock:
            self._advance(self._now())
            if not self._powered:
                raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))
            draw = self._rng.random()
            if draw < self.faults.eio_fraction:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            if draw < self.faults.eio_fraction + self.faults.nack_fraction:
                raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))
            out = []
            for is_read, data in msgs:
                if is_read:
                    out.append(self._read(int(data)))
                elif data:
                    self._pointer = data[0]
                    self._write(data[1:])
            self._update_int1()
            return out

    def _read(self, n: int) -> bytes:
        fifo = self.variant.fifo
        out = bytearray()
        inc = bool(self.regs[reg.CTRL3_C] & reg.CTRL3_IF_INC)
        while len(out) < n:
            p = self._pointer
            if fifo.data_out <= p < fifo.data_out + fifo.word_bytes and inc:
                out += self._read_fifo(n - len(out))
                continue
            out.append(self._reg_value(p))
            if inc:
                self._pointer = (p + 1) & 0xFF
        return bytes(out)

    def _read_fifo(self, n: int) -> bytes:
        """Read from the FIFO data-out registers, which roll back so words come one after another."""
        fifo = self.variant.fifo
        wb = fifo.word_bytes
        offset = self._pointer - fifo.data_out
        end = offset + n
        whole = min(end // wb, self._level_words())
        if self._level_words() == 0:
            data = bytes(n)  # an empty FIFO reads as zeros
        else:
            data = bytes(self._fifo[offset:end]) + bytes(max(0, end - len(self._fifo)))
        if whole:
            del self._fifo[: whole * wb]
            self._pattern = (self._pattern + whole) % fifo.words_per_sample
            self._overrun = False
        self._pointer = fifo.data_out + end % wb if end % wb else fifo.data_out
        return data

    def _latch_outputs(self) -> None:
        """Copy the newest sample to the output registers, except where BDU holds them."""
        for sensor in ("a", "g", "t"):
            if sensor not in self._held:
                self._out[sensor] = self._latest[sensor]

    def _read_output(self, sensor: str, offset: int) -> int:
        # BDU (CTRL3_C bit 6, DS12814 §10): between reading a low and a high byte, the outputs
        # are not updated, so a value is never half old, half new.
        if self.regs[reg.CTRL3_C] & reg.CTRL3_BDU:
            if offset % 2 == 0:
                self._held.add(sensor)
            else:
                self._held.discard(sensor)
        value = self._out[sensor].astype("<i2").tobytes()[offset]
        if sensor not in self._held:
            self._latch_outputs()
        return value

    def _reg_value(self, a: int) -> int:
        fifo = self.variant.fifo
        if reg.OUTX_L_G <= a < reg.OUTX_L_G + 6:
            self._status &= ~reg.STATUS_GDA
            return self._read_output("g", a - reg.OUTX_L_G)
        if reg.OUT_TEMP_L <= a < reg.OUT_TEMP_L + 2:
            self._status &= ~STATUS_TDA
            return self._read_output("t", a - reg.OUT_TEMP_L)
        if reg.OUTX_L_A <= a < reg.OUTX_L_A + 6:
            self._status &= ~reg.STATUS_XLDA
            return self._read_output("a", a - reg.OUTX_L_A)
        if a == reg.STATUS_REG:
            return self._status
        if a == reg.FIFO_STATUS1:
            return self._level_words() & 0xFF
        if a == reg.FIFO_STATUS2:
            level = self._level_words()
            wtm = fifo.watermark_words(self.regs)
            return ((level >> 8) & fifo.diff_high_mask) | (fifo.ovr_flag if self._overrun else 0) \
                | (fifo.wtm_flag if wtm and level >= wtm else 0)
        if fifo.kind == "pattern" and a in (reg.FIFO_STATUS2 + 1, reg.FIFO_STATUS2 + 2):
            return (self._pattern >> (8 * (a - reg.FIFO_STATUS2 - 1))) & 0xFF
        return self.regs[a]

    def _write(self, data: bytes) -> None:
        inc = bool(self.regs[reg.CTRL3_C] & reg.CTRL3_IF_INC)
        now = self._now()
        for value in data:
            a = self._pointer
            if a == reg.CTRL3_C and value & reg.CTRL3_SW_RESET:
                self._power_on()  # SW_RESET restores the defaults and clears itself at once
                now = self._now()
            elif a not in _READ_ONLY:
                old_mode = self.variant.fifo.batching(self.regs)[0]
                self.regs[a] = value & ~reg.CTRL3_BOOT if a == reg.CTRL3_C else value
                if a in (reg.CTRL1_XL, reg.CTRL2_G):
                    self._set_rate(now)
                if old_mode and not self.variant.fifo.batching(self.regs)[0]:
                    self._fifo.clear()  # leaving continuous (bypass) empties the FIFO
                    self._pattern, self._overrun = 0, False
            if inc:
                self._pointer = (a + 1) & 0xFF


_READ_ONLY = {reg.WHO_AM_I, reg.STATUS_REG, reg.FIFO_STATUS1, reg.FIFO_STATUS2, reg.INTERNAL_FREQ_FINE}


def _quantize(values: np.ndarray, per_lsb: float) -> np.ndarray:
    """Physical units to int16 counts, saturating at the full scale as the ADC does."""
    return np.clip(np.rint(np.asarray(values, dtype=float) / per_lsb), -32768, 32767).astype(np.int16)


@dataclass
class BusStats:
    """What went over the bus: transactions, payload bytes (register addresses included), errors."""

    transactions: int = 0
    bytes: int = 0
    errors: int = 0


class EmulatedBus:
    """An I2C bus with emulated chips on it, answering as smbus2's `SMBus` does."""

    def __init__(self, *chips: EmulatedChip) -> None:
        self.chips = {c.address: c for c in chips}
        self.stats = BusStats()

    def _do(self, addr: int, msgs: list[tuple[bool, bytes | int]]) -> list[bytes]:
        self.stats.transactions += 1
        self.stats.bytes += sum(int(d) if r else len(d) for r, d in msgs)
        chip = self.chips.get(addr)
        try:
            if chip is None:
                raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))
            return chip.transfer(msgs)
        except OSError:
            self.stats.errors += 1
            raise

    # smbus2.SMBus
    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        return self._do(i2c_addr, [(False, bytes([register])), (True, 1)])[0][0]

    def write_byte_data(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> None:
        self._do(i2c_addr, [(False, bytes([register, value & 0xFF]))])

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int,
                            force: bool | None = None) -> list[int]:
        if length > _SMBUS_BLOCK_MAX:
            raise ValueError(f"Desired block length over {_SMBUS_BLOCK_MAX} bytes")
        return list(self._do(i2c_addr, [(False, bytes([register])), (True, length)])[0])

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int],
                             force: bool | None = None) -> None:
        if len(data) > _SMBUS_BLOCK_MAX:
            raise ValueError(f"Data length cannot exceed {_SMBUS_BLOCK_MAX} bytes")
        self._do(i2c_addr, [(False, bytes([register, *data]))])

    def write_quick(self, i2c_addr: int, force: bool | None = None) -> None:
        self._do(i2c_addr, [])

    def i2c_rdwr(self, *i2c_msgs) -> None:
        """Combined transfer of smbus2 `i2c_msg`s; read messages are filled in place."""
        if not i2c_msgs:
            return
        addr = i2c_msgs[0].addr
        plan = [(True, m.len) if m.flags & _I2C_M_RD else (False, bytes(m)) for m in i2c_msgs]
        results = iter(self._do(addr, plan))
        for m in i2c_msgs:
            if m.flags & _I2C_M_RD:
                data = next(results)
                ctypes.memmove(m.buf, data, len(data))

    def close(self) -> None:
        for chip in self.chips.values():
            chip.close()

    def __enter__(self) -> EmulatedBus:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def busio(self):
        """A busio-style I2C object on this bus, for adafruit_lsm6ds."""
        from device.sensor.busio_adapter import SMBusI2C

        return SMBusI2C(self)


def emulated_bus(chip: str, motion: MotionSource, clock: Clock, *, address: int = 0x6A,
                 faults: FaultSchedule | str | None = None, odr_error: float = 0.0,
                 on_int1: Callable[[bool], None] | None = None) -> EmulatedBus:
    """An `EmulatedBus` holding one chip called `chip` (see `lsm6ds.VARIANTS`) at `address`.

    On a clock other than a `VirtualClock` the chip's timer thread is started, so INT1 fires in
    real (or scaled) time; `bus.close()` stops it.
    """
    if isinstance(faults, str):
        faults = FaultSchedule.parse(faults)
    c = EmulatedChip(reg.variant(chip), motion, clock, address=address, faults=faults,
                     odr_error=odr_error, on_int1=on_int1)
    c.start()
    return EmulatedBus(c)


__all__ = ["DEFAULT_TEMP_C", "EmulatedBus", "EmulatedChip", "EventClock", "FaultSchedule", "FaultSpecError",
           "FunctionMotion", "MotionSource", "RecordingMotion", "emulated_bus", "still_motion"]

"""Timestamps for a sampled stream: counted samples anchored to the clock, with gaps recorded.

Within a segment (from the moment the chip was configured until something breaks the count: a
reset, a pulled cable, a FIFO overrun) sample k is at `t_on + k / rate`: counting is exact, the clock
is only read to anchor. The chip's real rate is off nominal by up to a few percent, so the rate is
measured against the clock and taken over once the measurement is clearly better than what we use.
"""

from __future__ import annotations

import math

import numpy as np

from device.clock import Clock
from device.detect.events import Interval

# Switch to the measured rate only after this much of a segment: by then one sample of read jitter
# is a tiny fraction of the count.
_MIN_MEASURE_S = 10.0


class Timebase:
    """Turns sample counts into `t_s` (seconds from the stream's first sample) on `clock`."""

    def __init__(self, clock: Clock, nominal_hz: float) -> None:
        self.clock = clock
        self.nominal_hz = nominal_hz
        self.rate_hz = nominal_hz
        self.measured_hz: float | None = None
        self.gaps: list[Interval] = []
        self.origin: float | None = None  # clock time of t_s = 0
        self._last_t: float | None = None  # t_s of the last sample stamped
        self._k = 0  # samples counted in this segment
        self._seg_t0 = 0.0  # clock time of sample k0 of this segment
        self._seg_k0 = 0
        self._first_obs: tuple[float, int] | None = None

    def start_segment(self, t_on: float, rate_hz: float) -> None:
        """The chip started sampling at clock time `t_on`; its first sample comes one period later."""
        self.rate_hz = rate_hz
        self._seg_t0, self._seg_k0, self._k = t_on, 0, 0
        self._first_obs = None
        if self.origin is None:
            self.origin = t_on + 1.0 / rate_hz

    def resync(self, n_new: int, now: float) -> None:
        """Samples were lost (overrun, late poll): the `n_new` in hand end with the newest one due."""
        newest = self._seg_k0 + math.floor((now - self._seg_t0) * self.rate_hz + 1e-9)
        self._k = max(self._k, newest - n_new)
        self._first_obs = None

    def stamp(self, n: int, now: float) -> np.ndarray:
        """`t_s` for the next `n` samples of this segment, read at clock time `now`."""
        ks = np.arange(self._k + 1, self._k + n + 1)
        t = self._seg_t0 + (ks - self._seg_k0) / self.rate_hz - self.origin
        if n and self._last_t is not None and t[0] - self._last_t > 1.5 / self.rate_hz:
            self.gaps.append(Interval(self._last_t, float(t[0])))
        self._k += n
        if n:
            self._last_t = float(t[-1])
            self._measure(now)
        return t

    def _measure(self, now: float) -> None:
        if self._first_obs is None:
            self._first_obs = (now, self._k)
            return
        t_a, k_a = self._first_obs
        if now - t_a < _MIN_MEASURE_S or self._k == k_a:
            return
        measured = (self._k - k_a) / (now - t_a)
        self.measured_hz = measured
        # Each observation is late by less than one period, so the count error is under 2 samples.
        uncertainty = 2.0 / (self._k - k_a)
        if abs(measured / self.rate_hz - 1.0) > 2 * uncertainty:
            # Continue from the current sample at the new rate, so t_s stays continuous.
            self._seg_t0 += (self._k - self._seg_k0) / self.rate_hz
            self._seg_k0 = self._k
            self.rate_hz = measured

    def wall_of_origin(self) -> float | None:
        """The wall-clock time of `t_s = 0`."""
        if self.origin is None:
            return None
        return self.clock.wall() - (self.clock.monotonic() - self.origin)


class TimedReader:
    """What a chip reader tells about its timing, from its `timebase`."""

    timebase: Timebase

    @property
    def gaps(self) -> list[Interval]:
        """Spans with no samples, as `Interval`s of `t_s`."""
        return self.timebase.gaps

    @property
    def measured_odr_hz(self) -> float | None:
        """The rate measured against the clock; None until about 10 s of one segment."""
        return self.timebase.measured_hz

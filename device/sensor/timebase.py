"""Timestamps for a sampled stream: counted samples placed in time by a robust fit, gaps recorded.

Within a segment (from the moment the chip was configured until something breaks the count: a
reset, a pulled cable) the chip takes sample k at `a + k * s`, on its own oscillator. Counting is
exact; the clock is only read to learn `a` and `s`. Each read gives one observation: sample k
existed at clock time `now`. A read runs late by however long the scheduler kept it waiting (on a
scaled demo clock, milliseconds of real time become seconds), never early, so the time a read
happened to run is not the time of its samples. Instead:

- the observations are kept, per few seconds of samples, as the least late one (bounded memory:
  neighbouring bins merge as the night grows);
- `s` is the least-squares slope of clock against count over the segment, outliers out (the reads
  held up by the scheduler: the fit keeps the quarter that ran most nearly on time), and it
  replaces the chip's stated rate (nominal, corrected by INTERNAL_FREQ_FINE where the chip has it)
  only when it differs by more than 3 standard errors and, over the data, by more than the reads
  scatter;
- `a` is the configure time (the chip starts sampling on that write), or earlier where an
  observation proves it: no sample is read before it is taken;
- the stamps follow the fit, slewed by at most 5 % of a period a sample, so a better fit never
  opens a false gap nor runs time backwards.

Samples the chip dropped (a FIFO overrun) are counted back from the fit: the newest in hand is the
one due at the read, and what lies between is a gap. A gap is recorded, never interpolated.
"""

from __future__ import annotations

import math

import numpy as np

from device.clock import Clock, wall_at
from device.detect.events import Interval

_BIN_S = 4.0  # one observation kept per this many seconds of samples (the least late)
_MAX_BINS = 2048  # beyond this, neighbouring bins merge: memory stays bounded over any night
_MIN_FIT_S = 20.0  # the slope is fitted over at least this much of a segment
_MIN_FIT_BINS = 4
_LATE_ROUNDS = 2  # the fit keeps the quarter of reads that ran most nearly on time
_SIGNIFICANT_SE = 3.0  # the fitted rate replaces the stated one beyond this many standard errors
_MAX_RATE_ERROR = 0.05  # a fitted rate further than this from nominal is a fault, not the chip
_CLOCK_EPS_S = 1e-6  # below the clock's resolution: rounding, not evidence
_SLEW = 0.05  # stamps move toward the fit by at most this fraction of a period per sample


class _Segment:
    """One unbroken count: the prior, the kept observations, the fit and the stamped map."""

    def __init__(self, t_on: float, rate_hz: float) -> None:
        self.t_on: float | None = t_on  # the configure time, while the count runs from it
        self.stated_s = self.s0 = 1.0 / rate_hz  # the stated period; the prior of the fit
        self.k = 0  # samples counted
        self.bin_n = max(1, round(_BIN_S * rate_hz))
        self.bins_k: list[int] = []  # closed bins: the least late observation of each
        self.bins_t: list[float] = []
        self.open_bin: tuple[int, int, float] | None = None  # (bin index, k, t) of the bin filling
        self.a, self.s = t_on, self.s0
        self.measured_s: float | None = None
        self.map_k: int | None = None  # the last stamped sample and its clock time
        self.map_t = 0.0

    def observe(self, k: int, now: float) -> None:
        """Sample `k` existed at clock time `now`."""
        index = k // self.bin_n
        if self.open_bin is not None and self.open_bin[0] != index:
            self.bins_k.append(self.open_bin[1])
            self.bins_t.append(self.open_bin[2])
            self.open_bin = None
            if len(self.bins_k) > _MAX_BINS:
                self._merge_bins()
            self._fit()
        lateness = now - k * self.s0
        if self.open_bin is None or lateness < self.open_bin[2] - self.open_bin[1] * self.s0:
            self.open_bin = (index, k, now)
        self._envelope(k, now)

    def _merge_bins(self) -> None:
        self.bin_n *= 2
        merged_k, merged_t = [], []
        for i in range(0, len(self.bins_k) - 1, 2):
            pair = ((self.bins_k[i], self.bins_t[i]), (self.bins_k[i + 1], self.bins_t[i + 1]))
            k, t = min(pair, key=lambda kt: kt[1] - kt[0] * self.s0)
            merged_k.append(k)
            merged_t.append(t)
        if len(self.bins_k) % 2:
            merged_k.append(self.bins_k[-1])
            merged_t.append(self.bins_t[-1])
        self.bins_k, self.bins_t = merged_k, merged_t

    def _fit(self) -> None:
        k = np.asarray(self.bins_k, dtype=float)
        t = np.asarray(self.bins_t)
        if len(k) < _MIN_FIT_BINS or (k[-1] - k[0]) * self.s0 < _MIN_FIT_S:
            return
        # Least squares, outliers out. Reads run late, never early, and how late depends on the load
        # of the moment, which drifts (a fit through all of them would take that drift for the
        # chip's rate): each round drops the later half, so the fit settles on the reads that ran
        # on time, the lower edge of the cloud.
        inliers = np.ones(len(k), dtype=bool)
        for _ in range(_LATE_ROUNDS + 1):
            s, a = np.polyfit(k[inliers], t[inliers], 1)
            res = t - (a + s * k)
            keep = inliers & (res <= np.median(res[inliers]))
            if keep.sum() < _MIN_FIT_BINS:
                break
            inliers = keep
        s, a = np.polyfit(k[inliers], t[inliers], 1)
        res = t - (a + s * k)
        kk = k[inliers]
        spread = float(np.sum((kk - kk.mean()) ** 2))
        dof = max(1, len(kk) - 2)
        se = math.sqrt(float(np.sum(res[inliers] ** 2)) / dof / spread) if spread > 0 else math.inf
        if abs(s / self.stated_s - 1.0) > _MAX_RATE_ERROR:
            return
        self.measured_s = float(s)
        # Adopt the fitted rate only where it is clearly better: beyond its standard error, and
        # where the two rates part, over the data, by more than the reads scatter (on a demo clock
        # sped up 200x the scheduler's milliseconds scatter them by seconds).
        scatter = 1.4826 * float(np.median(np.abs(res - np.median(res))))
        apart = abs(s - self.s0) * (k[-1] - k[0])
        clear = abs(s - self.s0) > _SIGNIFICANT_SE * se and apart > _SIGNIFICANT_SE * scatter + self.s0
        new_s = float(s) if clear else self.s0
        if new_s != self.s:
            self.s = new_s
            # The anchor under the new slope: the lowest inlier, as no read comes before its sample.
            self.a = float(np.min(t[inliers] - new_s * k[inliers]))
            if self.t_on is not None:
                self.a = min(self.a, self.t_on)

    def _envelope(self, k: int, now: float) -> None:
        if now - k * self.s < self.a - _CLOCK_EPS_S:
            self.a = now - k * self.s

    def fit_t(self, k: int) -> float:
        """Clock time of sample `k` by the fit."""
        return self.a + k * self.s

    def recount(self, k: int) -> None:
        """The count was re-estimated from the clock (samples were lost): the observations before
        were counted differently, so the fit starts over from the rate in use."""
        self.k, self.t_on, self.s0 = k, None, self.s
        self.bins_k, self.bins_t, self.open_bin = [], [], None
        self.map_k = None  # the stamps start again from the fit, after a gap


class Timebase:
    """Turns sample counts into `t_s` (seconds from the stream's first sample) on `clock`."""

    def __init__(self, clock: Clock, nominal_hz: float) -> None:
        self.clock = clock
        self.nominal_hz = nominal_hz
        self.gaps: list[Interval] = []
        self.origin: float | None = None  # clock time of t_s = 0
        self._seg: _Segment | None = None
        self._last: float | None = None  # clock time of the last sample stamped
        self._last_s = 1.0 / nominal_hz

    @property
    def rate_hz(self) -> float:
        """The rate the stamps use: the chip's stated one, or the fitted one once clearly better."""
        return 1.0 / self._seg.s if self._seg is not None else self.nominal_hz

    @property
    def measured_hz(self) -> float | None:
        """The rate fitted against the clock; None until about 20 s of one segment."""
        s = self._seg.measured_s if self._seg is not None else None
        return None if s is None else 1.0 / s

    def start_segment(self, t_on: float, rate_hz: float) -> None:
        """The chip started sampling at clock time `t_on`; its first sample comes one period later."""
        self._seg = _Segment(t_on, rate_hz)
        if self.origin is None:
            self.origin = t_on + 1.0 / rate_hz

    def resync(self, n_new: int, now: float, lost_at_least: int = 0, behind: int = 0) -> bool:
        """Samples may have been lost (overrun, late poll): the `n_new` in hand end `behind`
        samples before the one due at `now`, and at least `lost_at_least` came before them unseen.
        Nothing changes when the count already accounts for them; returns whether it changed."""
        seg = self._seg
        # A read runs late, so this may count a sample or more too many (stamps a little late);
        # the next read that runs on time lowers the fit's anchor again (`_Segment._envelope`).
        newest = math.floor((now - seg.a) / seg.s + 1e-9) - behind
        if newest - n_new > seg.k or lost_at_least:
            seg.recount(max(seg.k + lost_at_least, newest - n_new))
            return True
        return False

    def stamp(self, n: int, now: float) -> np.ndarray:
        """`t_s` for the next `n` samples of this segment, all of them taken by clock time `now`."""
        seg = self._seg
        if not n:
            return np.zeros(0)
        seg.observe(seg.k + n, now)
        s = seg.s
        if seg.map_k is None:  # a new segment, or samples lost: start on the fit, after the last
            first = seg.fit_t(seg.k + 1)
            if self._last is not None:
                first = max(first, self._last + s)
            t = first + np.arange(n) * s
        else:
            # Slew toward the fit: per-sample steps within 1 ± _SLEW periods.
            step = (seg.fit_t(seg.k + n) - seg.map_t) / n
            step = min(max(step, s * (1 - _SLEW)), s * (1 + _SLEW))
            t = seg.map_t + np.arange(1, n + 1) * step
        if self._last is not None and t[0] - self._last > 1.5 * self._last_s:
            self.gaps.append(Interval(self._last - self.origin, float(t[0]) - self.origin))
        seg.k += n
        seg.map_k, seg.map_t = seg.k, float(t[-1])
        self._last, self._last_s = float(t[-1]), s
        return t - self.origin

    def wall_of_origin(self) -> float | None:
        """The wall-clock time of `t_s = 0`."""
        if self.origin is None:
            return None
        return wall_at(self.clock, self.origin)


class TimedReader:
    """What a chip reader tells about its timing, from its `timebase`."""

    timebase: Timebase

    @property
    def gaps(self) -> list[Interval]:
        """Spans with no samples, as `Interval`s of `t_s`."""
        return self.timebase.gaps

    @property
    def measured_odr_hz(self) -> float | None:
        """The rate fitted against the clock; None until about 20 s of one segment."""
        return self.timebase.measured_hz

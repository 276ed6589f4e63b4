"""Is the sensor worn? Minute epochs of the chip's temperature and stillness in, not-worn spans out.

Pure: no I/O, no clock. `WearEpochs` folds a leg's `SampleBlock`s into 60-s epochs (the mean
temperature read in it, and how much the acceleration varied), streaming, with memory that does
not grow with the night; `not_worn_spans` turns a night's epochs into the spans the sensor was off
the leg.

On the skin the sensor settles near 30-35 °C; off the leg, on a bedside table, it falls toward the
room's temperature over minutes and lies perfectly still. Neither sign alone will do: a sleeping
leg can be motionless for many minutes, and a worn sensor in a cold room under no duvet can read
cool (Zhou et al., BMJ Open 2015;5:e007447: temperature or acceleration alone "is prone to
considerable error"; the two combined classified wear at 0.94 sensitivity, 0.91 specificity, on
the wrist and on the ankle). So a span starts only in a motionless epoch whose temperature says
"off the skin", and it ends at the first movement (the strap being handled) or when the temperature
rises toward the skin's again:

- off the skin: under `OFF_BELOW_C` and not warming, or cooling by at least `COOLING_C_PER_MIN`
  for `COOLING_EPOCHS` motionless minutes in a row (a sensor just taken off, still warm);
- the span reaches back over the motionless, cooling minutes before that, to when the strap came
  off;
- hysteresis: once off, a temperature back at `SKIN_FROM_C` or warming at `COOLING_C_PER_MIN` ends
  the span as surely as a movement does, while a sensor still cool but warming (just strapped
  back on, the leg motionless) never starts one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from device.detect.bed import merge, subtract
from device.detect.events import Interval
from device.samples import SampleBlock

EPOCH_S = 60.0
# Zhou et al. 2015 (above) call a GENEActiv against the skin not worn below 26 °C, at the wrist and
# the ankle. A shin under the bedclothes reads 30-35 °C.
OFF_BELOW_C = 26.0
# Hysteresis, our choice: 4 °C above the off threshold and below the 30-35 °C a worn shin reads.
SKIN_FROM_C = 30.0
# Vert et al. (DETACH, BMC Med Res Methodol 2022;22:147): over the first five minutes off the wrist
# a GENEActiv cooled by 0.40 ± 0.17 °C/min, and warmed by 0.36 ± 0.21 °C/min once put back on.
# 0.2 °C/min is about their mean less one SD; five minutes of it is a fall of 1 °C, more than a
# motionless worn leg drifts (our choice).
COOLING_C_PER_MIN = 0.2
COOLING_EPOCHS = 5
# Motionless: every axis of the acceleration varies by under 3 mg (SD) over the minute. van Hees et
# al. (PLoS One 2011;6:e22922) call a wrist accelerometer off the body when its SD stays under
# 3.0 mg; the LSM6DS's own noise is about 0.4 mg at 52 Hz (70 µg/√Hz), a strap being handled
# is tens to hundreds of mg.
STILL_SD_G = 0.003


@dataclass(frozen=True)
class WearEpoch:
    """One minute of one leg: when it starts, the mean temperature read in it (None when none was),
    and the largest per-axis SD of its acceleration."""

    start_s: float
    temp_c: float | None
    accel_sd_g: float


class WearEpochs:
    """Folds blocks into `EPOCH_S` epochs aligned on t = 0 (`feed` returns those completed)."""

    def __init__(self) -> None:
        self._index: int | None = None
        self._n = 0
        self._sum = np.zeros(3)
        self._sumsq = np.zeros(3)
        self._temps: list[float] = []

    def feed(self, block: SampleBlock) -> list[WearEpoch]:
        """Add a block (its `temp_c`, if any, counts in the epoch of its last sample)."""
        out: list[WearEpoch] = []
        if not len(block):
            return out
        index = np.floor(block.t_s / EPOCH_S).astype(np.int64)
        cuts = np.flatnonzero(np.diff(index)) + 1
        for lo, hi in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(index)]])):
            if self._index is not None and index[lo] != self._index:
                out.append(self._close())
            self._index = int(index[lo])
            part = block.accel_g[lo:hi]
            self._n += len(part)
            self._sum += part.sum(axis=0)
            self._sumsq += np.square(part).sum(axis=0)
        if block.temp_c is not None and math.isfinite(block.temp_c):
            self._temps.append(float(block.temp_c))
        return out

    def finish(self) -> list[WearEpoch]:
        """The last, unfinished epoch (if any samples are in it)."""
        return [self._close()] if self._index is not None and self._n else []

    def _close(self) -> WearEpoch:
        mean = self._sum / self._n
        sd = float(np.sqrt(np.max(np.maximum(self._sumsq / self._n - mean * mean, 0.0))))
        temp = sum(self._temps) / len(self._temps) if self._temps else None
        epoch = WearEpoch(self._index * EPOCH_S, temp, sd)
        self._index, self._n = None, 0
        self._sum, self._sumsq, self._temps = np.zeros(3), np.zeros(3), []
        return epoch


def not_worn_spans(epochs: Sequence[WearEpoch], epoch_s: float = EPOCH_S) -> list[Interval]:
    """The spans the sensor was off the leg, from one leg's epochs (sorted by start; see the module
    docstring for the rules). The temperature's rate is taken from the last minute that had one,
    so a reading missed now and then changes nothing. An epoch without a temperature never starts
    a span; a missing epoch (a gap in recording) ends one."""
    spans: list[Interval] = []
    start_s: float | None = None
    prev: WearEpoch | None = None
    last: WearEpoch | None = None  # the last epoch with a temperature, since the last gap
    cooling_from: float | None = None  # start of the motionless, cooling run up to now
    still_from: float | None = None  # start of the motionless run up to now
    for e in epochs:
        if prev is not None and e.start_s - prev.start_s > 1.5 * epoch_s:  # a gap: nothing known
            if start_s is not None:
                spans.append(Interval(start_s, prev.start_s + epoch_s))
            start_s, last, cooling_from, still_from = None, None, None, None
        still = e.accel_sd_g < STILL_SD_G
        still_from = (e.start_s if still_from is None else still_from) if still else None
        rate = None
        if e.temp_c is not None and last is not None and e.start_s > last.start_s:
            rate = (e.temp_c - last.temp_c) * 60.0 / (e.start_s - last.start_s)
        if not still or (rate is not None and rate > -COOLING_C_PER_MIN):
            cooling_from = None
        elif rate is not None and cooling_from is None:
            # It cooled since the last reading: from the minute after it, or after the last
            # movement (the strap being undone), whichever came later.
            cooling_from = max(still_from, last.start_s + epoch_s)
        if start_s is not None:
            warm = e.temp_c is not None and (e.temp_c >= SKIN_FROM_C or (rate or 0.0) >= COOLING_C_PER_MIN)
            if not still or warm:
                spans.append(Interval(start_s, e.start_s))
                start_s = None
        elif still and e.temp_c is not None:
            # A reading from before the last movement says nothing of the rate now: a strap just put
            # back on reads cool, and a long block's mean temperature (analyze) mixes both sides.
            moved_since = last is not None and last.start_s < still_from
            cold = e.temp_c < OFF_BELOW_C and not moved_since and (rate is None or rate < COOLING_C_PER_MIN)
            cooled = cooling_from is not None and e.start_s + epoch_s - cooling_from >= COOLING_EPOCHS * epoch_s
            if cold or cooled:
                start_s = e.start_s if cooling_from is None else cooling_from
        if e.temp_c is not None:
            last = e
        prev = e
    if start_s is not None and prev is not None:
        spans.append(Interval(start_s, prev.start_s + epoch_s))
    return spans


def worn_in_bed(in_bed: Sequence[Interval], not_worn: Sequence[Interval]) -> list[Interval]:
    """Time in bed that the sensor was worn. Off the leg, the sensor on a bedside table reads as a
    shin lying flat, yet whether the patient was in bed is unknown: that time is not in bed, so a
    PLM series ends there as it does at a gap (`scoring.score_night` scores LMs only inside these
    spans and numbers series within each)."""
    return subtract(merge(in_bed), not_worn)


@dataclass(frozen=True)
class Wear:
    """A night's wear: whether any temperature was read, and the spans a sensor was off a leg."""

    assessed: bool
    not_worn: list[Interval]

    def summary(self, duration_s: float) -> dict[str, Any]:
        """The summary's `wear` (docs/summary.md), times to the ms within [0, duration_s]."""
        spans = ((round(max(0.0, s.start_s), 3), round(min(duration_s, s.end_s), 3)) for s in self.not_worn)
        return {"assessed": self.assessed, "not_worn": [{"start_s": a, "end_s": b} for a, b in spans if b > a]}

    def caveats(self) -> list[str]:
        """What a reader of the night's figures must know about the time not worn."""
        if not self.not_worn:
            return []
        minutes = sum(s.duration_s for s in self.not_worn) / 60.0
        return [f"The sensor was not worn for {minutes:.0f} min ({len(self.not_worn)} spans): that time "
                "is not time in bed, and PLM series end there."]


def assess(epochs_by_leg: Iterable[Sequence[WearEpoch]]) -> Wear:
    """The night's wear from each leg's epochs: a sensor off any leg makes that time not worn (a
    bilateral LM cannot be scored with one leg unseen, as with a gap)."""
    legs = [list(epochs) for epochs in epochs_by_leg]
    return Wear(assessed=any(e.temp_c is not None for epochs in legs for e in epochs),
                not_worn=merge(span for epochs in legs for span in not_worn_spans(epochs)))

"""The records that detection produces and scoring consumes. Times are seconds from the start of
the recording or night, on the same timeline as `SampleBlock.t_s`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Posture = Literal["lying", "upright", "unknown"]


@dataclass(frozen=True)
class Interval:
    """A span of time, [start_s, end_s)."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class LegMovement:
    """One leg movement (LM) on one leg, as detected, before any scoring.

    `leg` is 0 for the first (or only) sensor and 1 for the second. `peak_dps` and `tilt_deg` say
    how large it was, for review; scoring uses only the times.
    """

    onset_s: float
    offset_s: float
    leg: int = 0
    peak_dps: float = 0.0
    tilt_deg: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.offset_s - self.onset_s


@dataclass(frozen=True)
class PostureSegment:
    """A span of one posture of the shin: near horizontal is lying, near vertical is upright."""

    start_s: float
    end_s: float
    posture: Posture

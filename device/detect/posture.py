"""Shin posture, streaming: lying (shin near horizontal) or upright (sitting, standing, walking).

Input is one elevation per 0.5-s window: the angle of the shin's long axis (x) above the horizontal,
from the gravity estimate. It does not change when the strap turns about the shin, and neither does
anything decided here: time in bed depends only on the elevation (and the patient's markers,
`bed.py`). Lying puts the shin within ~20° of horizontal (supine, prone, on a side; a sensor pitched
up to 10° on the tibia's sloping front); sitting on the bed puts it 30-60° up (knees up, feet on the
floor or a stool), standing and walking near vertical. A hysteresis band keeps a posture until the
angle clearly leaves it, and a new posture must hold for a while before it is accepted, so shifting
the legs in bed or a stumble never splits the night: `min_posture_s` to stand up or lie down, and
`min_sitting_s` for a spell that is above `upright_above_deg` for less than half of that, since
turning over in bed draws the knee up, the shin 30-45° up (kicks reaching higher for a moment), for
a few seconds of its 10-20 s (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device.detect.events import Interval, PostureSegment


@dataclass(frozen=True)
class PostureParams:
    """Thresholds of the posture classifier, in degrees of shin elevation and seconds."""

    lying_below_deg: float = 25.0  # supine, prone, on a side: ~0-20° with the sensor's pitch
    sitting_above_deg: float = 30.0  # sitting on the bed, knees up or feet down: 30-90°
    upright_above_deg: float = 60.0  # standing, walking (±30° swing), sitting on the edge: 60-90°
    min_posture_s: float = 5.0
    min_sitting_s: float = 30.0


class PostureTracker:
    """Turns window elevations into closed `PostureSegment`s and recent upright spans."""

    def __init__(self, params: PostureParams | None = None) -> None:
        self.params = params or PostureParams()
        self._raw_upright: bool | None = None  # the hysteresis state, before minimum durations
        self._posture: str | None = None  # the accepted posture of the open segment
        self._segment_start_s = 0.0
        self._candidate_start_s: float | None = None  # when the raw state left the accepted one
        self._candidate_high_s = 0.0  # how long the candidate has been above upright_above_deg
        self._end_s = 0.0
        # Closed upright segments, kept while an LM near them may still be judged: no LM is scored
        # in or next to them. Only accepted postures count, so drawing the knee up high for a few
        # seconds while turning over does not make the patient stand.
        self.upright_spans: list[Interval] = []

    def update(
        self, start_s: np.ndarray, end_s: np.ndarray, elevation_deg: np.ndarray
    ) -> list[PostureSegment]:
        """Consume contiguous windows ([start_s, end_s) each); return the segments closed by them."""
        p = self.params
        level = np.where(
            elevation_deg > p.sitting_above_deg, 1, np.where(elevation_deg < p.lying_below_deg, -1, 0)
        )
        high = elevation_deg > p.upright_above_deg
        if self._raw_upright is None:
            self._raw_upright = bool(elevation_deg[0] >= (p.lying_below_deg + p.sitting_above_deg) / 2)
        # Forward-fill the hysteresis band with the last clear state.
        known = np.flatnonzero(level)
        filled_idx = np.maximum.accumulate(np.where(level != 0, np.arange(len(level)), -1))
        raw = np.where(filled_idx >= 0, level[np.maximum(filled_idx, 0)] > 0, self._raw_upright)
        if len(known):
            self._raw_upright = bool(level[known[-1]] > 0)

        closed: list[PostureSegment] = []
        if self._posture is None:
            self._posture = "upright" if raw[0] else "lying"
            self._segment_start_s = float(start_s[0])
        # Runs of the raw state: each change of state is a candidate change of posture.
        change = np.flatnonzero(raw[1:] != raw[:-1]) + 1
        run_starts = np.concatenate([[0], change])
        run_ends = np.append(change, len(raw))
        for a, b in zip(run_starts, run_ends):
            posture = "upright" if raw[a] else "lying"
            if posture == self._posture:
                self._candidate_start_s = None
                continue
            if self._candidate_start_s is None:
                self._candidate_start_s = float(start_s[a])
                self._candidate_high_s = 0.0
            self._candidate_high_s += float(np.sum((end_s[a:b] - start_s[a:b])[high[a:b]]))
            # Standing or walking is up there most of the time; a kick while turning over, a moment.
            quick = posture == "lying" or self._candidate_high_s >= p.min_posture_s / 2
            need_s = p.min_posture_s if quick else p.min_sitting_s
            if float(end_s[b - 1]) - self._candidate_start_s >= need_s:
                closed.append(self._close_at(self._candidate_start_s))
                self._segment_start_s = self._candidate_start_s
                self._posture = posture
                self._candidate_start_s = None
        self._end_s = float(end_s[-1])
        return closed

    def _close_at(self, end_s: float) -> PostureSegment:
        seg = PostureSegment(self._segment_start_s, end_s, self._posture)
        if seg.posture == "upright":
            self.upright_spans.append(Interval(seg.start_s, seg.end_s))
        return seg

    def overlaps_upright(self, start_s: float, end_s: float, margin_s: float) -> bool:
        """Whether [start_s, end_s] comes within `margin_s` of an accepted upright posture.

        A posture is accepted `min_posture_s` after it began, so ask only once that long has passed
        since `end_s + margin_s`.
        """
        if self._posture == "upright" and end_s + margin_s > self._segment_start_s:
            return True
        return any(
            iv.start_s < end_s + margin_s and iv.end_s > start_s - margin_s for iv in self.upright_spans
        )

    def forget_before(self, t_s: float) -> None:
        """Drop upright spans that ended before `t_s`: memory stays bounded over the night."""
        self.upright_spans = [iv for iv in self.upright_spans if iv.end_s >= t_s]

    def open_segment(self) -> PostureSegment | None:
        """The segment not yet closed, up to the data processed so far; None before any data."""
        if self._posture is None or self._end_s <= self._segment_start_s:
            return None
        return PostureSegment(self._segment_start_s, self._end_s, self._posture)

    def close(self, end_s: float | None = None) -> list[PostureSegment]:
        """Close the open segment (at a gap or the end of the recording) and return it."""
        if self._posture is None:
            return []
        end = self._end_s if end_s is None else end_s
        seg = self._close_at(end)
        self._posture = None
        self._raw_upright = None
        self._candidate_start_s = None
        return [seg] if end > seg.start_s else []

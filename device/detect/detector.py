"""`LegDetector`: one leg's streaming detector, from `SampleBlock`s to LMs, postures and gaps.

Samples are cut into fixed frames (`frame_s` of samples, counted from the start of the recording or
from the last gap), whatever the size of the blocks fed in. Every computation then sees the same
frames, so the result does not depend on the block size, live or offline, to the last bit. A frame
costs a few dozen numpy calls, so a night is a few hundred milliseconds and the live path is far
below 1% of a core. The state is a frame buffer and a few floats: memory does not grow with the night.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from device.detect.conditioning import Conditioner, ConditioningParams
from device.detect.events import Interval, LegMovement, PostureSegment
from device.detect.lm import (
    MIN_LM_S,
    Burst,
    HoldMerger,
    HysteresisTracker,
    LMParams,
    NoiseFloor,
    fast_part_stands_in,
    is_rocking,
    is_rolling,
    may_end_an_unseen_flexion,
    turn_after_rocking,
)
from device.detect.posture import PostureParams, PostureTracker
from device.samples import SampleBlock

# A jump in t_s of more than 1.5 sample periods is a gap in recording (SampleBlock, docs/architecture.md).
GAP_PERIODS = 1.5
# Movements this close to a spell upright belong to getting up or lying down.
POSTURE_MARGIN_S = 3.0


@dataclass
class DetectorOutput:
    """What the detector completed since the previous call: new LMs, closed postures, new gaps."""

    movements: list[LegMovement] = field(default_factory=list)
    postures: list[PostureSegment] = field(default_factory=list)
    gaps: list[Interval] = field(default_factory=list)


class LegDetector:
    """Streaming LM detector for one leg.

    `feed(block)` returns what completed since the last call, and `finish()` flushes the rest at the
    end of the recording (once; a new recording takes a new detector). Concatenating every output
    gives the night. An LM comes out up to one frame plus about 45 s after it ended: the time to know
    it has ended (0.5 s), that no release of a held flexion follows (`max_hold_s`), and that the
    patient did not get up or sit up right after it (`POSTURE_MARGIN_S` plus `min_sitting_s`).
    """

    def __init__(
        self,
        odr_hz: float,
        leg: int = 0,
        frame_s: float = 60.0,
        conditioning: ConditioningParams | None = None,
        lm: LMParams | None = None,
        posture: PostureParams | None = None,
    ) -> None:
        if odr_hz <= 0:
            raise ValueError(f"odr_hz must be positive, got {odr_hz}")
        self.odr_hz = float(odr_hz)
        self.leg = leg
        self.dt_s = 1.0 / self.odr_hz
        # The fewest samples an LM spans (WASM 2016: 0.5 s); an ODR estimated a hair off nominal
        # (52.00001 Hz from a recording's time stamps) still needs 26 at 52 Hz.
        self._min_lm_n = math.ceil(MIN_LM_S * self.odr_hz - 0.01)
        self._lm_params = lm or LMParams()
        self._cond = Conditioner(self.odr_hz, conditioning)
        window_n = self._cond.window_n
        windows = min(max(1, round(frame_s / self._cond.params.window_s)), self._cond.max_windows_per_frame())
        self.frame_n = windows * window_n
        self._floor = NoiseFloor(self._cond.params.window_s, self._lm_params)
        self._tracker = HysteresisTracker(self.odr_hz, self._lm_params)
        self._merger = HoldMerger(self._lm_params)
        # The same stages above the rate a rocked mattress reaches: what moved the leg faster than
        # the rocking, in case a burst turns out to be rocking.
        self._fast_tracker = HysteresisTracker(self.odr_hz, self._lm_params)
        self._fast_merger = HoldMerger(self._lm_params)
        self._fast: list[Burst] = []
        self._posture = PostureTracker(posture)
        self._buf_t = np.empty(self.frame_n)
        self._buf_accel = np.empty((self.frame_n, 3))
        self._buf_gyro = np.empty((self.frame_n, 3))
        self._fill = 0
        self._last_t: float | None = None
        self._awaiting: list[Burst] = []  # released bursts waiting for the posture after them
        self._out = DetectorOutput()

    def feed(self, block: SampleBlock) -> DetectorOutput:
        """Consume one block of samples; return the movements, postures and gaps completed so far."""
        if len(block) == 0:
            return self._take()
        if abs(block.odr_hz - self.odr_hz) > 1e-6 * self.odr_hz:
            raise ValueError(f"block odr_hz {block.odr_hz} differs from the detector's {self.odr_hz}")
        t = np.asarray(block.t_s, dtype=float)
        finite = np.isfinite(t) & np.isfinite(block.accel_g).all(axis=1)
        finite &= np.isfinite(block.gyro_dps).all(axis=1)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"sample {i} of the block (t_s {t[i]!r}) is not a finite number")
        prev = np.concatenate([[t[0] if self._last_t is None else self._last_t], t[:-1]])
        step = t - prev
        bad = np.flatnonzero(step <= 0)
        bad = bad if self._last_t is not None else bad[bad > 0]
        if len(bad):
            raise ValueError(f"t_s must increase: {prev[bad[0]]!r} is followed by {t[bad[0]]!r}")
        jumps = np.flatnonzero(step > GAP_PERIODS * self.dt_s)
        start = 0
        for j in jumps:
            self._append(block, start, j)
            self._gap(float(prev[j]) + self.dt_s, float(t[j]))
            start = j
        self._append(block, start, len(t))
        self._last_t = float(t[-1])
        return self._take()

    def finish(self) -> DetectorOutput:
        """Flush the end of the recording: process the partial frame and close everything open."""
        self._flush_frame()
        if self._last_t is not None:
            self._close_segment(self._last_t + self.dt_s)
        self._emit(self._merger.flush(), final=True)
        return self._take()

    def open_posture(self) -> PostureSegment | None:
        """The posture segment still open, up to the data processed so far.

        Postures are emitted only when they end; a caller that persists progress (the daemon, for
        a kill -9) stores this one so that a cut-short session still knows the patient lay in bed.
        """
        return self._posture.open_segment()

    def _append(self, block: SampleBlock, start: int, stop: int) -> None:
        """Copy block rows [start, stop) into the frame buffer, processing each frame it fills."""
        pos = start
        while pos < stop:
            take = min(self.frame_n - self._fill, stop - pos)
            dst = slice(self._fill, self._fill + take)
            self._buf_t[dst] = block.t_s[pos : pos + take]
            self._buf_accel[dst] = block.accel_g[pos : pos + take]
            self._buf_gyro[dst] = block.gyro_dps[pos : pos + take]
            self._fill += take
            pos += take
            if self._fill == self.frame_n:
                self._flush_frame()

    def _flush_frame(self) -> None:
        if self._fill:
            n = self._fill
            self._process(self._buf_t[:n], self._buf_accel[:n], self._buf_gyro[:n])
            self._fill = 0

    def _gap(self, start_s: float, end_s: float) -> None:
        self._flush_frame()
        self._out.gaps.append(Interval(start_s, end_s))
        self._close_segment(start_s)
        self._cond.gap()

    def _close_segment(self, end_s: float) -> None:
        """The data stops at `end_s` (a gap or the end): end what is in progress there."""
        for burst in self._fast_tracker.cut(end_s):
            self._fast.extend(self._fast_merger.add(burst))
        self._fast.extend(self._fast_merger.flush())
        for burst in self._tracker.cut(end_s):
            self._emit(self._merger.add(burst))
        self._emit(self._merger.flush())  # nothing joins across a gap
        self._out.postures.extend(self._posture.close(end_s))

    def _process(self, t: np.ndarray, accel_g: np.ndarray, gyro_dps: np.ndarray) -> None:
        cf = self._cond.process(accel_g, gyro_dps)
        win_end = t[np.append(cf.window_start[1:], len(t)) - 1] + self.dt_s
        th = self._floor.update(cf.gyro_window_dps, cf.accel_window_g)
        self._out.postures.extend(self._posture.update(t[cf.window_start], win_end, cf.elevation_deg))

        # Either sensor may show that a movement began: a small flexion tilts the shin (gyro) and
        # shifts gravity along it (accelerometer). Its extent is timed by the gyro alone, since a
        # high-pass holds a tilt step in the acceleration for its own time constant (see
        # ConditioningParams.highpass_s), which would stretch a 0.4-s twitch past 0.5 s.
        act_off = np.maximum(
            cf.gyro_act_dps / th.off_gyro_dps, cf.roll_dps / self._lm_params.roll_sustain_dps
        )
        act_on = np.maximum(cf.gyro_act_dps / th.on_gyro_dps, cf.accel_act_g / th.on_accel_g)

        ceiling = self._lm_params.rock_ceiling_dps
        fast_on = cf.gyro_act_dps / max(th.on_gyro_dps, 1.2 * ceiling)
        fast_off = cf.gyro_act_dps / max(th.off_gyro_dps, ceiling)
        signals = (cf.gyro_dps_mag, cf.roll_dps, cf.flex_deg, cf.roll_deg, cf.delay_samples)
        now_s = float(win_end[-1])
        for burst in self._fast_tracker.process(t, fast_on, fast_off, *signals):
            if not burst.weak:  # a slow release is the main tracker's to join, never a fast part
                self._fast.extend(self._fast_merger.add(burst))
        self._fast.extend(self._fast_merger.release(now_s, self._fast_tracker.onset_s))
        for burst in self._tracker.process(t, act_on, act_off, *signals):
            self._emit(self._merger.add(burst))
        self._emit(self._merger.release(now_s, self._tracker.onset_s))
        self._emit([], now_s=now_s)

    def _emit(self, bursts: list[Burst], now_s: float | None = None, final: bool = False) -> None:
        """Turn released bursts into LMs once the posture around them is known.

        Walking is never an LM: movements in or next to an upright posture are dropped.
        """
        self._awaiting.extend(bursts)
        keep: list[Burst] = []
        params = self._posture.params
        wait_s = POSTURE_MARGIN_S + max(params.min_posture_s, params.min_sitting_s)
        for b in self._awaiting:
            if not final and (now_s is None or now_s < b.offset_s + wait_s):
                keep.append(b)
                continue
            if final:
                self._fast.extend(self._fast_merger.flush())
            # The fast bursts inside this one stand in for it if it was (partly) rocking.
            inside = [f for f in self._fast if f.onset_s <= b.offset_s]
            self._fast = self._fast[len(inside) :]
            b = turn_after_rocking(b, inside, self._lm_params)
            for m in inside if fast_part_stands_in(b, inside, self._lm_params) else [b]:
                # Counted in whole samples: 26 samples at 52 Hz are 0.5 s whether the time stamps
                # were rounded to 0.1 ms in a CSV or come from the chip's time base.
                if round((m.offset_s - m.onset_s) * self.odr_hz) < self._min_lm_n:
                    continue
                if is_rolling(m, self._lm_params):
                    continue
                # Moving when the data began, or letting down a flexion made before: its onset is
                # not known, so it is not scored (no LM starts at a gap's edge).
                if m.onset_unseen or may_end_an_unseen_flexion(m, self._lm_params):
                    continue
                if is_rocking(m, self._lm_params):
                    continue
                if self._posture.overlaps_upright(m.onset_s, m.offset_s, POSTURE_MARGIN_S):
                    continue
                self._out.movements.append(
                    LegMovement(m.onset_s, m.offset_s, leg=self.leg, peak_dps=m.peak_dps, tilt_deg=m.flex_dev_deg)
                )
        self._awaiting = keep
        if now_s is not None:
            open_onsets = [b.onset_s for b in keep] + [self._tracker.onset_s, self._merger.onset_s, now_s]
            self._posture.forget_before(min(t for t in open_onsets if t is not None) - POSTURE_MARGIN_S)

    def _take(self) -> DetectorOutput:
        out, self._out = self._out, DetectorOutput()
        return out

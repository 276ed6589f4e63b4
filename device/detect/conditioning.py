"""Signal conditioning of one shin IMU: gravity, shin elevation, gyro bias, flexion angle, activity.

Pure and streaming. `Conditioner.process` takes one contiguous frame of samples (no gap inside it)
and returns the conditioned signals for it; filter histories are carried to the next frame and
cleared after a gap. The work is vectorised per frame; the only sequential state is a few floats
per 0.5-s window.

Sensor frame (docs/architecture.md): x along the shin toward the knee, y lateral, z out of the shin's
front. Knee flexion tilts the shin about y; rotation about x is rolling (turning over, a partner
tilting the mattress, a tugged cable twisting a loose strap), not flexion. So the activity is built
from quantities that rolling about x leaves unchanged: the rotation rate in the y-z plane, and the
acceleration along x. They are also unchanged by a strap that has twisted on the shin, which turns
the flexion axis away from y but keeps it in the y-z plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConditioningParams:
    """Tunable constants of the conditioning, in physical units."""

    window_s: float = 0.5  # statistics window: bias tracking, noise floor, elevation
    # PAM-RL band-passes acceleration at 0.3–20 Hz (the device validated by Sforza et al., Sleep Med
    # 2005; its parameters as in docs/architecture.md). On the shin the gyro carries the tilt, and a
    # high-pass holds a tilt step above threshold for about its own time constant, which would push
    # offsets late and stretch a 0.3-s twitch past 0.5 s. So the trailing mean is short (≈3 Hz): the
    # acceleration adds the jolts and kicks, the gyro the timing.
    highpass_s: float = 0.15
    smooth_s: float = 0.05  # a 3-tap moving average at 52 Hz: the 20-Hz low-pass of the band
    # Stillness, for bias tracking: per-axis standard deviation within one window.
    still_gyro_dps: float = 1.0
    still_accel_g: float = 0.01
    # The zero-rate offset drifts with temperature over minutes; a 30-s average of still windows
    # follows it and averages the noise away.
    bias_tau_s: float = 30.0


@dataclass(frozen=True)
class ConditionedFrame:
    """The conditioned signals of one frame.

    Per sample: `gyro_act_dps` (bias-removed rotation rate in the y-z plane, smoothed, then its
    magnitude), `accel_act_g` (high-passed acceleration along the shin, smoothed, then rectified),
    `gyro_dps_mag` (the same rate unsmoothed, for the reported peak), `roll_dps` (the rectified
    bias-removed rate about x), `flex_deg` (n, 2) (the flexion angle: the bias-removed gyro y and z
    integrated, on an arbitrary running origin; the knee's hinge is the lateral axis, which a
    mounting error or a twisted strap turns within the y-z plane) and `roll_deg` (the same about x:
    how far the leg rolled).
    Per window: `window_start` (sample index of each window), `elevation_deg` (angle of the shin
    above the horizontal, from the window's mean acceleration: the gravity estimate),
    `gyro_window_dps` and `accel_window_g` (the window means of the two activities, for the
    noise-floor estimate).
    `delay_samples` is the group delay of the smoothing, to be taken off reported times.
    """

    gyro_act_dps: np.ndarray
    accel_act_g: np.ndarray
    gyro_dps_mag: np.ndarray
    roll_dps: np.ndarray
    flex_deg: np.ndarray
    roll_deg: np.ndarray
    window_start: np.ndarray
    elevation_deg: np.ndarray
    gyro_window_dps: np.ndarray
    accel_window_g: np.ndarray
    delay_samples: int


def trailing_mean(x: np.ndarray, history: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Causal moving average of `x` over `length` samples, continuing from `history`.

    `history` holds up to `length - 1` earlier samples (fewer after a gap: the mean then runs over
    what there is). Returns the means, one per sample of `x`, and the history for the next call.
    """
    ext = np.concatenate([history, x]) if len(history) else x
    csum = np.concatenate([np.zeros((1,) + ext.shape[1:]), np.cumsum(ext, axis=0)])
    m, n = len(history), len(x)
    first = m + 1 - length  # where the window of the first output starts, in ext
    if first >= 0:  # a full history: plain slices
        means = (csum[m + 1 :] - csum[first : first + n]) / length
    else:  # just after the start or a gap: the first windows are short
        end = np.arange(m + 1, m + n + 1)
        start = np.maximum(end - length, 0)
        count = (end - start).astype(float)
        means = (csum[end] - csum[start]) / (count[:, None] if x.ndim == 2 else count)
    return means, ext[max(len(ext) - (length - 1), 0) :].copy() if length > 1 else ext[:0].copy()


def median3(x: np.ndarray, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Causal median of each sample and the two before it, per column, continuing from `history`.

    A single-sample glitch (a corrupted read, a spike beyond any limb's rate) is not movement, and
    would otherwise count as a burst and, integrated, as tens of degrees of rotation. Returns the
    filtered samples and the last two inputs for the next call (after a gap, the first sample is
    repeated in place of the missing history).
    """
    ext = np.concatenate([history if len(history) else np.repeat(x[:1], 2, axis=0), x])
    a, b, c = ext[:-2], ext[1:-1], ext[2:]
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c)), ext[-2:].copy()


def shin_elevation_deg(accel_g: np.ndarray) -> np.ndarray:
    """Angle of the shin axis (x) above the horizontal, from (n, 3) gravity estimates, in degrees.

    0° is a horizontal shin (lying), 90° a vertical one (standing, sitting, walking).
    """
    norm = np.linalg.norm(accel_g, axis=1)
    ratio = np.abs(accel_g[:, 0]) / np.maximum(norm, 1e-9)
    return np.degrees(np.arcsin(np.clip(ratio, 0.0, 1.0)))


class Conditioner:
    """Streaming conditioning state of one leg. Feed contiguous frames to `process`."""

    def __init__(self, odr_hz: float, params: ConditioningParams | None = None) -> None:
        self.params = p = params or ConditioningParams()
        self.dt_s = 1.0 / odr_hz
        self.window_n = max(1, round(p.window_s * odr_hz))
        self.highpass_n = max(2, round(p.highpass_s * odr_hz))
        self.smooth_n = max(1, round(p.smooth_s * odr_hz))
        # EMA weight per still window: bias_tau_s expressed in windows.
        self._alpha = min(1.0, p.window_s / p.bias_tau_s)
        self.bias_dps: np.ndarray | None = None  # unknown until the first still window
        self.flex_deg = np.zeros(2)
        self.roll_deg = 0.0
        self._reset_histories()

    def _reset_histories(self) -> None:
        self._gyro_hist = np.zeros((0, 3))
        self._accel_hist = np.zeros(0)
        self._gyro_smooth_hist = np.zeros((0, 2))
        self._accel_smooth_hist = np.zeros(0)

    def gap(self) -> None:
        """Forget the filter histories: the next frame starts after a gap in recording."""
        self._reset_histories()

    def max_windows_per_frame(self) -> int:
        """How many windows one frame may hold before the closed-form bias EMA loses precision."""
        return int(30.0 / self._alpha)

    def process(self, accel_g: np.ndarray, gyro_dps: np.ndarray) -> ConditionedFrame:
        """Condition one contiguous frame of (n, 3) accel and gyro samples."""
        n = len(accel_g)
        wn = self.window_n
        starts = np.arange(0, n, wn)
        counts = np.diff(np.append(starts, n)).astype(float)[:, None]

        # Window statistics (variance is bias-independent, so stillness needs no bias estimate).
        g_mean = np.add.reduceat(gyro_dps, starts, axis=0) / counts
        g_var = np.add.reduceat(gyro_dps * gyro_dps, starts, axis=0) / counts - g_mean**2
        a_mean = np.add.reduceat(accel_g, starts, axis=0) / counts
        a_var = np.add.reduceat(accel_g * accel_g, starts, axis=0) / counts - a_mean**2
        p = self.params
        still = (
            (g_var.max(axis=1) < p.still_gyro_dps**2)
            & (a_var.max(axis=1) < p.still_accel_g**2)
            & (counts[:, 0] >= wn / 2)
        )
        bias_w = self._track_bias(g_mean, still)
        gyro, self._gyro_hist = median3(gyro_dps, self._gyro_hist)
        gyro = gyro - np.repeat(bias_w, counts[:, 0].astype(int), axis=0)

        flex = self.flex_deg + np.cumsum(gyro[:, 1:3], axis=0) * self.dt_s
        roll = self.roll_deg + np.cumsum(gyro[:, 0]) * self.dt_s
        self.flex_deg, self.roll_deg = flex[-1].copy(), float(roll[-1])

        g_mag = np.hypot(gyro[:, 1], gyro[:, 2])
        low, self._accel_hist = trailing_mean(accel_g[:, 0], self._accel_hist, self.highpass_n)
        # Smooth the signed signals, then rectify: noise averages toward zero, a movement does not.
        n_s = self.smooth_n
        g_yz, self._gyro_smooth_hist = trailing_mean(gyro[:, 1:3], self._gyro_smooth_hist, n_s)
        a_x, self._accel_smooth_hist = trailing_mean(accel_g[:, 0] - low, self._accel_smooth_hist, n_s)
        g_act, a_act = np.hypot(g_yz[:, 0], g_yz[:, 1]), np.abs(a_x)

        return ConditionedFrame(
            gyro_act_dps=g_act,
            accel_act_g=a_act,
            gyro_dps_mag=g_mag,
            roll_dps=np.abs(gyro[:, 0]),
            flex_deg=flex,
            roll_deg=roll,
            window_start=starts,
            elevation_deg=shin_elevation_deg(a_mean),
            gyro_window_dps=np.add.reduceat(g_act, starts) / counts[:, 0],
            accel_window_g=np.add.reduceat(a_act, starts) / counts[:, 0],
            delay_samples=(self.smooth_n - 1) // 2 + 1,  # the moving average's, and the median's
        )

    def _track_bias(self, g_mean: np.ndarray, still: np.ndarray) -> np.ndarray:
        """Per-window gyro bias: an EMA of the means of still windows, held between them.

        The EMA is evaluated in closed form over the frame, b_k = β^k (b_0 + α Σ β^-j x_j), which
        is exact for the few tens of windows a frame holds (see `max_windows_per_frame`).
        """
        nw = len(g_mean)
        idx = np.flatnonzero(still)
        if self.bias_dps is None:
            if len(idx) == 0:
                return np.zeros((nw, 3))
            self.bias_dps = g_mean[idx[0]].copy()
        if len(idx) == 0:
            return np.repeat(self.bias_dps[None, :], nw, axis=0)
        beta = 1.0 - self._alpha
        k = np.arange(1, len(idx) + 1, dtype=float)[:, None]
        inv = beta ** (-k)
        b = beta**k * (self.bias_dps + self._alpha * np.cumsum(inv * g_mean[idx], axis=0))
        # Each window uses the estimate after the last still window at or before it.
        last = np.maximum.accumulate(np.where(still, np.arange(nw), -1))
        pos = np.searchsorted(idx, np.maximum(last, 0))
        out = np.where((last >= 0)[:, None], b[np.minimum(pos, len(idx) - 1)], self.bias_dps)
        self.bias_dps = b[-1].copy()
        return out

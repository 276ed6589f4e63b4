"""Event shapes: each is a smooth function of time that adds to the shin's angles (rad) and to the
world-frame linear acceleration (g). They are evaluated lazily, chunk by chunk, so a night is a
short list of these records rather than arrays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from device.sim.physics import min_jerk

CHANNELS = ("theta", "phi", "alpha", "beta")


class Event(Protocol):
    """What every shape offers: its span, its lever arm, and its channels at given times: any of
    CHANNELS (rad, added to those angles) and "acc" (world-frame linear acceleration, (n, 3) g).
    The renderer evaluates a shape only near its span, so every channel must fall smoothly to zero
    at both ends: a step there would be differentiated into a one-sample gyro spike. A lasting
    change (a tug's residual twist) is carried by the renderer from `end_s` on, not by the shape."""

    start_s: float
    lever_m: float

    @property
    def end_s(self) -> float: ...

    def channels(self, t: np.ndarray) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class Flexion:
    """A leg movement: flex by `amp_rad` over `flex_s`, hold (drifting by `drift` of the amplitude,
    so the gyro sees almost nothing) for `hold_s`, release over `release_s`. A share `twist` of the
    flexion shows as rotation about the shin (the hip rotates a little as it flexes)."""

    start_s: float
    amp_rad: float
    flex_s: float
    hold_s: float
    release_s: float
    drift: float = 0.0
    twist: float = 0.0
    lever_m: float = 0.0
    tremor_rad: float = 0.0
    tremor_hz: float = 10.0
    # How much further the foot turns than the shin (an ankle dorsiflexion: the shin only reacts);
    # 0 when the foot moves with the shin. Only a sensor on the instep feels it.
    foot_gain: float = 0.0

    @property
    def end_s(self) -> float:
        return self.start_s + self.flex_s + self.hold_s + self.release_s

    def channels(self, t: np.ndarray) -> dict[str, np.ndarray]:
        u = t - self.start_s
        held = 1.0 + self.drift * min_jerk((u - self.flex_s) / max(self.hold_s, 1e-6))
        release = 1.0 - min_jerk((u - self.flex_s - self.hold_s) / self.release_s)
        flex = self.amp_rad * min_jerk(u / self.flex_s) * held * release
        if self.tremor_rad:
            # A held contraction shivers: physiological tremor at 8-12 Hz, fading in and out.
            v = np.clip((u - self.flex_s) / max(self.hold_s, 1e-6), 0.0, 1.0)
            flex = flex + self.tremor_rad * np.sin(np.pi * v) ** 2 * np.sin(2 * np.pi * self.tremor_hz * u)
        return {"alpha": -flex, "beta": self.twist * flex}


@dataclass(frozen=True)
class Path:
    """An irregular movement through knots (relative times, angles in rad) joined by minimum-jerk
    segments: restless voluntary movement, or the kicking and shuffling of a turn."""

    start_s: float
    knots_s: tuple[float, ...]
    alpha_rad: tuple[float, ...]
    beta_rad: tuple[float, ...]
    lever_m: float = 0.0

    @property
    def end_s(self) -> float:
        return self.start_s + self.knots_s[-1]

    def channels(self, t: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "alpha": knot_track(t - self.start_s, self.knots_s, self.alpha_rad),
            "beta": knot_track(t - self.start_s, self.knots_s, self.beta_rad),
        }


@dataclass(frozen=True)
class Ring:
    """A loose strap ringing after a jerk: the sensor rocks on the skin about y (and a little about
    x) at the strap's resonance, decaying with time constant `tau_s`."""

    start_s: float
    amp_rad: float
    freq_hz: float
    tau_s: float
    roll_share: float
    lever_m: float = 0.0

    @property
    def end_s(self) -> float:
        # 12 time constants: what is left (6e-6 of the amplitude) is far below the chip's noise, so
        # cutting it off makes no step.
        return self.start_s + 12.0 * self.tau_s

    def channels(self, t: np.ndarray) -> dict[str, np.ndarray]:
        u = np.clip(t - self.start_s, 0.0, None)
        ring = self.amp_rad * np.exp(-u / self.tau_s) * np.sin(2 * np.pi * self.freq_hz * u)
        return {"alpha": ring, "beta": self.roll_share * ring}


@dataclass(frozen=True)
class Twitch:
    """A jerk shorter than 0.5 s: a sin^2 flexion bump, out and back."""

    start_s: float
    dur_s: float
    amp_rad: float
    lever_m: float = 0.0

    @property
    def end_s(self) -> float:
        return self.start_s + self.dur_s

    def channels(self, t: np.ndarray) -> dict[str, np.ndarray]:
        u = np.clip((t - self.start_s) / self.dur_s, 0.0, 1.0)
        return {"alpha": -self.amp_rad * np.sin(np.pi * u) ** 2}


@dataclass(frozen=True)
class Rocking:
    """A bed partner moving: the mattress rocks the whole body (a small low-frequency tilt of
    elevation and roll) and bounces it vertically, under a Hann envelope."""

    start_s: float
    dur_s: float
    freqs_hz: tuple[float, float]
    tilt_rad: tuple[float, float]
    bounce_g: float
    phase: float
    lever_m: float = 0.0

    @property
    def end_s(self) -> float:
        return self.start_s + self.dur_s

    def channels(self, t: np.ndarray) -> dict[str, np.ndarray]:
        u = np.clip((t - self.start_s) / self.dur_s, 0.0, 1.0)
        env = np.sin(np.pi * u) ** 2
        w1, w2 = (2 * np.pi * f * (t - self.start_s) for f in self.freqs_hz)
        acc = np.zeros((len(t), 3))
        acc[:, 2] = self.bounce_g * env * np.sin(w2 + self.phase)
        return {
            "theta": self.tilt_rad[0] * env * np.sin(w1),
            "phi": self.tilt_rad[1] * env * np.sin(w1 + w2 + self.phase),
            "acc": acc,
        }


@dataclass(frozen=True)
class Tug:
    """A tugged cable twists a loose strap about the shin: a fast roll by `twist_rad`, then the
    strap springs back to `residual` of it, which stays until the next tug. The strap also rocks
    the sensor on the skin about the lateral axis by `pitch` of the twist, out and back. The
    channels give the twist relative to the residual that lasts from `end_s` on (`residual_rad`,
    which the renderer adds up over the tugs that have ended), so they vanish outside the span."""

    start_s: float
    twist_rad: float
    twist_s: float
    back_s: float
    residual: float
    pitch: float = 0.0
    lever_m: float = 0.0

    @property
    def end_s(self) -> float:
        return self.start_s + self.twist_s + self.back_s

    def channels(self, t: np.ndarray) -> dict[str, np.ndarray]:
        u = t - self.start_s
        out = min_jerk(u / self.twist_s)
        back = min_jerk((u - self.twist_s) / self.back_s)
        lasting = np.where(t >= self.end_s, self.residual, 0.0)
        return {"beta": self.twist_rad * (out - (1.0 - self.residual) * back - lasting),
                "alpha": self.pitch * abs(self.twist_rad) * (out - back)}

    @property
    def residual_rad(self) -> float:
        return self.twist_rad * self.residual


@dataclass(frozen=True)
class Walk:
    """Gait: the shin swings about the knee at the stride rate (one stride = two steps, ~2 steps/s),
    the body bounces at the step rate and each heel strike jolts the shin along its axis."""

    start_s: float
    dur_s: float
    stride_hz: float
    swing_rad: tuple[float, float]
    bounce_g: float
    strike_g: float
    phase: float
    lever_m: float = 0.0
    ramp_s: float = field(default=1.0)

    @property
    def end_s(self) -> float:
        return self.start_s + self.dur_s

    def channels(self, t: np.ndarray) -> dict[str, np.ndarray]:
        u = t - self.start_s
        env = min_jerk(u / self.ramp_s) * (1.0 - min_jerk((u - self.dur_s + self.ramp_s) / self.ramp_s))
        w = 2 * np.pi * self.stride_hz * u + self.phase
        alpha = env * (self.swing_rad[0] * np.sin(w) + self.swing_rad[1] * np.sin(2 * w + 0.8))
        # Heel strike: a 40-ms Gaussian jolt once per stride, at the end of the swing.
        stride_phase = np.mod(w / (2 * np.pi), 1.0)
        strike = self.strike_g * np.exp(-0.5 * ((stride_phase - 0.25) * (1 / self.stride_hz) / 0.02) ** 2)
        acc = np.zeros((len(t), 3))
        acc[:, 2] = env * (self.bounce_g * np.sin(2 * w) + strike)
        return {"alpha": alpha, "acc": acc}


def knot_track(u: np.ndarray, knots_s: Sequence[float], values: Sequence[float]) -> np.ndarray:
    """Minimum-jerk interpolation through (knots_s, values); held at the ends."""
    knots = np.asarray(knots_s, dtype=float)
    vals = np.asarray(values, dtype=float)
    i = np.clip(np.searchsorted(knots, u, side="right") - 1, 0, len(knots) - 2)
    span = knots[i + 1] - knots[i]
    s = min_jerk((u - knots[i]) / np.where(span > 0, span, 1.0))
    return vals[i] + (vals[i + 1] - vals[i]) * s

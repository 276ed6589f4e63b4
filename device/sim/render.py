"""Render a plan into sensor readings, chunk by chunk.

Samples are computed in fixed internal chunks, each with its own seeded noise, so memory does not
grow with the night and the output does not depend on the block size a caller asks for.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from device.sim import physics, wear
from device.sim.plan import UPRIGHT_ABOVE_DEG, Plan, Rhythms
from device.sim.shapes import CHANNELS, Event, Tug, knot_track

CHUNK_SAMPLES = 8192
DIFF_H_S = 1e-3  # the step of the central differences that turn angles into rates


class Renderer:
    """Turns a plan into sensor readings at any increasing times. Band-limited noise carries its
    state from one call to the next, so calls must come in time order."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.starts = np.array([e.start_s for e in plan.events])
        self.ends = np.array([e.end_s for e in plan.events])
        tugs = [e for e in plan.events if isinstance(e, Tug)]
        self.tug_end = np.array([e.end_s for e in tugs])
        self.tug_sum = np.concatenate([[0.0], np.cumsum([e.residual_rad for e in tugs])])
        self.knots = (np.array(plan.knots_t), np.array(plan.knots_theta), np.array(plan.knots_phi))
        self.mount = physics.mount_matrix(*plan.mount_deg)
        self.bed_width = max(1, int(plan.odr_hz / 3))      # pulse and breathing, < ~3 Hz
        self.strap_width = max(1, int(plan.odr_hz / 15))   # a rattling strap, up to ~15 Hz
        self.tails: dict[str, np.ndarray | None] = {"ba": None, "bg": None, "sa": None, "sg": None}

    def readings(self, t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Accel (g) and gyro (dps), (n, 3) each, at times `t` (s, increasing), gaps ignored."""
        plan, h, n = self.plan, DIFF_H_S, len(t)
        tt = np.concatenate([t - h, t, t + h])
        ang = {
            "theta": knot_track(tt, self.knots[0], self.knots[1]),
            "phi": knot_track(tt, self.knots[0], self.knots[2]),
            "alpha": np.zeros(3 * n),
            "beta": self.tug_sum[np.searchsorted(self.tug_end, tt, side="right")],
        }
        a_world = np.zeros((n, 3))
        a_leg = np.zeros((n, 3))
        if n:
            for j in np.nonzero((self.starts < t[-1] + h) & (self.ends > t[0] - h))[0]:
                self._add_event(plan.events[j], t, ang, a_world, a_leg, plan.placement == "instep")
        mid = {name: v[n:2 * n] for name, v in ang.items()}
        rate = {name: (v[2 * n:] - v[:n]) / (2 * h) for name, v in ang.items()}
        accel, gyro = physics.sensor_readings(
            mid["theta"], mid["phi"], mid["alpha"], mid["beta"],
            rate["theta"], rate["phi"], rate["alpha"], rate["beta"], a_world, a_leg,
        )
        accel, gyro = accel @ self.mount, gyro @ self.mount
        upright = (mid["theta"] > np.radians(UPRIGHT_ABOVE_DEG))[:, None]
        # Micro-motion: pulse and breathing in bed; postural sway when upright.
        noise = {}
        for name, width, rms in (("ba", self.bed_width, 1.0), ("bg", self.bed_width, 1.0),
                                 ("sa", self.strap_width, plan.strap_accel_g),
                                 ("sg", self.strap_width, plan.strap_gyro_dps)):
            noise[name], self.tails[name] = physics.moving_average_noise(rng, n, width, rms, self.tails[name])
        micro_a, micro_g = (np.where(upright, level[1], level[0])
                            for level in (physics.MICRO_ACCEL_G, physics.MICRO_GYRO_DPS))
        accel = (
            plan.accel_offset_g + accel * plan.accel_scale + noise["ba"] * micro_a + noise["sa"]
            + rng.standard_normal((n, 3)) * plan.accel_noise_g
        )
        if plan.rhythms is not None:
            rhythm_g, rhythm_dps = body_rhythms(plan.rhythms, t, ~upright[:, 0])
            accel, gyro = accel + rhythm_g, gyro + rhythm_dps
        bias = np.stack([np.interp(t, plan.bias_t, plan.bias_dps[:, c]) for c in range(3)], axis=1)
        gyro = (
            gyro + bias + noise["bg"] * micro_g + noise["sg"]
            + rng.standard_normal((n, 3)) * plan.gyro_noise_dps
        )
        return wear.off_leg(plan, t, accel, gyro, rng)

    @staticmethod
    def _add_event(ev: Event, t: np.ndarray, ang: dict, a_world: np.ndarray, a_leg: np.ndarray,
                   instep: bool) -> None:
        """Add one event's angles (at t - h, t, t + h), its linear and its lever-arm acceleration."""
        h, n = DIFF_H_S, len(t)
        lo, hi = np.searchsorted(t, [ev.start_s - h, ev.end_s + h])
        if hi <= lo:
            return
        sub, m = t[lo:hi], hi - lo
        ch = ev.channels(np.concatenate([sub - h, sub, sub + h]))
        if foot_gain := getattr(ev, "foot_gain", 0.0) if instep else 0.0:
            ch["alpha"] = ch["alpha"] * (1.0 + foot_gain)  # the foot turns with the ankle too
        rows = np.arange(lo, hi)
        idx = np.concatenate([rows, rows + n, rows + 2 * n])
        for name in CHANNELS:
            if name in ch:
                ang[name][idx] += ch[name]
        if "acc" in ch:
            a_world[lo:hi] += ch["acc"][m:2 * m]
        if ev.lever_m and "alpha" in ch:
            flex = ch["alpha"]
            d1 = (flex[2 * m:] - flex[:m]) / (2 * h)
            d2 = (flex[2 * m:] - 2 * flex[m:2 * m] + flex[:m]) / (h * h)
            a_leg[lo:hi] += physics.lever_accel_g(ev.lever_m, d1, d2)


def body_rhythms(r: Rhythms, t: np.ndarray, lying: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accel (g) and gyro (dps) of breathing, heartbeat and a partner's breathing at times `t`,
    felt only while `lying`. Breathing is a sine; each heartbeat's recoil a biphasic pulse
    (the derivative of a Gaussian of 4% of the beat) once a beat."""
    n = len(t)
    w_b, w_p = 2 * np.pi * r.breath_hz * t + r.phases[0], 2 * np.pi * r.partner_hz * t + r.phases[2]
    x = (np.mod(r.heart_hz * t + r.phases[1] / (2 * np.pi), 1.0) - 0.25) / 0.04
    beat = -x * np.exp(0.5 - 0.5 * x * x)  # peaks at +-1
    on = lying.astype(float)
    accel, gyro = np.zeros((n, 3)), np.zeros((n, 3))
    gyro[:, 1] = on * (r.breath_dps * np.cos(w_b) + r.bcg_dps * beat + r.partner_dps * np.cos(w_p))
    gyro[:, 0] = on * r.partner_dps * np.sin(w_p)
    accel[:, 0] = on * r.bcg_g * beat
    accel[:, 2] = on * (r.breath_g * np.sin(w_b) + r.partner_g * np.sin(w_p))
    return accel, gyro


def render(plan: Plan) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (t_s, accel_g, gyro_dps) for each fixed internal chunk of the sample grid, with the
    rows inside gaps removed. Each chunk draws its noise from its own seeded generator."""
    n_total = int(round(plan.duration_s * plan.odr_hz))
    gap_a = np.array([a for a, _ in plan.gaps])
    gap_b = np.array([b for _, b in plan.gaps])
    renderer = Renderer(plan)
    for k, i0 in enumerate(range(0, n_total, CHUNK_SAMPLES)):
        t = np.arange(i0, min(i0 + CHUNK_SAMPLES, n_total)) / plan.odr_hz
        accel, gyro = renderer.readings(t, np.random.default_rng([plan.seed, plan.key, 1, k]))
        keep = np.ones(len(t), dtype=bool)
        for j in np.nonzero((gap_a < t[-1]) & (gap_b > t[0]))[0]:
            keep &= ~((t >= gap_a[j]) & (t < gap_b[j]))
        yield t[keep], accel[keep], gyro[keep]


class NightMotion:
    """A simulated night as the emulator's motion source (`device.sensor.emulator.MotionSource`):
    readings at whatever times the emulated chip samples, in time order, the sensor's temperature,
    and the night's gaps."""

    def __init__(self, plan: Plan) -> None:
        self._renderer = Renderer(plan)
        self._rng = np.random.default_rng([plan.seed, plan.key, 2])
        self.gaps = list(plan.gaps)
        self.duration_s = plan.duration_s
        self.odr_hz = plan.odr_hz

    def at(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Accel (g) and gyro (dps) at `t_s`, which must increase from call to call."""
        return self._renderer.readings(np.asarray(t_s, dtype=float), self._rng)

    def temperature_c(self, t_s: np.ndarray) -> np.ndarray:
        """The sensor's temperature (°C) at `t_s` (device/sim/wear.py)."""
        return wear.temperature_c(self._renderer.plan, t_s)

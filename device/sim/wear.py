"""The strap taken off and put back, and the sensor's temperature, on and off the leg.

`take_off(plans, truth, scenario, seed)` lays the night's not-worn spans into every leg's plan
(one span for a scenario with `strap_off_min`, inside the lights-off window) and makes the truth
say what a recording can show: `not_worn` spans, no LM or confounder that starts in one (the leg
moved, but the sensor on the table did not see it), and the reference scored as the device scores
(not-worn time is not time in bed).

`temperature_c(plan, t_s)` is the sensor's temperature: a first-order lag toward the skin's while
worn and the room's while off, continuous across each change. `off_leg(plan, t, accel, gyro, rng)`
replaces what a worn sensor would read by what one on the bedside table reads: still, lying on its
back, only the chip's noise and bias, with a few seconds of handling at each end.
"""

from __future__ import annotations

import numpy as np

from device.sim.scenarios import Scenario

# The sensor on the skin of the shin, our choice within the 30-35 °C a worn shin sensor reads: 31.5
# °C in the evening, 1.5 °C warmer an hour after lights off, as distal skin warms when sleep comes
# (Kräuchi et al., Nature 1999;401:36-37).
SKIN_C = 31.5
SKIN_WARMING_C = 1.5
SKIN_WARMING_TAU_S = 1200.0
ROOM_C = 20.5  # a bedroom, our choice
# One time constant for cooling and warming, our choice: 20 min gives a mean rate over the first
# five minutes of 0.44 °C/min off the leg from 32 °C, near what a GENEActiv showed at the wrist
# (−0.40 ± 0.17 °C/min off, +0.36 ± 0.21 on: Vert et al., BMC Med Res Methodol 2022;22:147). A
# smaller pod on a strap may be faster; slower is the harder case for the detector.
TAU_S = 1200.0
HANDLING_S = 6.0  # the strap being undone or done up: the sensor tumbles in the hand
HANDLING_G, HANDLING_DPS = 0.2, 60.0  # rms of the handling's acceleration and rotation (within a shin's range)


def take_off(plans: list, truth: dict, scenario: Scenario, seed: int) -> None:
    """Lay the strap-off span of `scenario` (if any) into `plans` and `truth` (in place)."""
    spans: list[tuple[float, float]] = []
    if scenario.strap_off_min[1] > 0:
        rng = np.random.default_rng([seed, 0x57A9])
        lo_s, hi_s = truth["lights_off_s"], truth["lights_on_s"]
        length_s = min(float(rng.uniform(*scenario.strap_off_min)) * 60.0, 0.5 * (hi_s - lo_s))
        start_s = float(rng.uniform(lo_s + 0.2 * (hi_s - lo_s), hi_s - length_s - 0.1 * (hi_s - lo_s)))
        spans = [(round(start_s, 3), round(start_s + length_s, 3))]
    for plan in plans:
        plan.not_worn = spans
        plan.lights_off_s = truth["lights_off_s"]
    truth["not_worn"] = [{"start_s": a, "end_s": b} for a, b in spans]
    truth["lms"] = [m for m in truth["lms"] if not _inside(m["onset_s"], spans)]
    truth["confounders"] = [c for c in truth["confounders"] if not _inside(c["start_s"], spans)]


def _inside(t_s: float, spans: list[tuple[float, float]]) -> bool:
    return any(a <= t_s < b for a, b in spans)


def _skin_c(plan, t_s: np.ndarray) -> np.ndarray:
    after = np.maximum(0.0, t_s - plan.lights_off_s)
    return SKIN_C + SKIN_WARMING_C * (1.0 - np.exp(-after / SKIN_WARMING_TAU_S))


def temperature_c(plan, t_s: np.ndarray) -> np.ndarray:
    """The sensor's temperature (°C) at `t_s`: worn, it follows the skin; off, it relaxes toward
    the room from wherever it was when the strap came off, and back toward the skin once on."""
    t_s = np.asarray(t_s, dtype=float)
    out = _skin_c(plan, t_s)
    for a, b in plan.not_worn:  # spans are far apart: each starts from the skin's temperature
        at_a = float(_skin_c(plan, np.array([a]))[0])
        off = (t_s >= a) & (t_s < b)
        out[off] = ROOM_C + (at_a - ROOM_C) * np.exp(-(t_s[off] - a) / TAU_S)
        at_b = ROOM_C + (at_a - ROOM_C) * np.exp(-(b - a) / TAU_S)
        back = t_s >= b
        skin = out[back]
        out[back] = skin + (at_b - skin) * np.exp(-(t_s[back] - b) / TAU_S)
    return out


def off_leg(plan, t: np.ndarray, accel: np.ndarray, gyro: np.ndarray,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`accel` and `gyro` with the not-worn spans replaced by a sensor on the table (handled for
    `HANDLING_S` at each end)."""
    for a, b in plan.not_worn:
        off = (t >= a) & (t < b)
        if not off.any():
            continue
        n = int(off.sum())
        bias = np.stack([np.interp(t[off], plan.bias_t, plan.bias_dps[:, c]) for c in range(3)], axis=1)
        accel[off] = (plan.accel_offset_g + np.array([0.0, 0.0, 1.0]) * plan.accel_scale
                      + rng.standard_normal((n, 3)) * plan.accel_noise_g)
        gyro[off] = bias + rng.standard_normal((n, 3)) * plan.gyro_noise_dps
        for lo, hi in ((a, a + HANDLING_S), (b - HANDLING_S, b)):
            hand = (t >= lo) & (t < hi)
            accel[hand] += rng.standard_normal((int(hand.sum()), 3)) * HANDLING_G
            gyro[hand] += rng.standard_normal((int(hand.sum()), 3)) * HANDLING_DPS
    return accel, gyro

"""What a sensor on the shin and one on the instep (the top of the foot) feel of the same nights.

    .venv/bin/python benchmarks/placement.py [--seeds 2] [--hours 4] [--scenario tibialis]

The same simulated nights (same seed: the same movements, confounders, rhythms and chip noise) are
rendered twice, the sensor on the shin and on the instep. For each kind of true LM (an ankle
dorsiflexion alone, `tibialis`; a knee flexion) and each confounder (a partner rocking the mattress,
a twitch, a tugged cable) it prints the peak rotation rate in the flexion plane (y-z, bias removed)
and how far the sensor turned, as percentiles, and the same rate in quiet lying minutes (the chip's
noise, breathing, heartbeat, a partner's breathing). The margin is the 10th percentile of an LM kind's
peak over the 99th percentile of the quiet rate: how far above the floor the faintest LMs stand.

The instep's extra rotation comes from the simulator's assumption that the foot turns
`FOOT_PER_SHIN` times further than the shin reacts (device/sim/plan.py); the instep is modelled in
the shin's orientation, so only rates and angles are compared here, not the detector.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from device.sim import simulate_night
from device.sim.plan import FOOT_PER_SHIN


def samples(night) -> tuple[np.ndarray, np.ndarray]:
    """The first leg's times and the flexion-plane (y, z) gyro of the whole night."""
    t, g = [], []
    for block in night.blocks(600.0):
        t.append(block.t_s)
        g.append(block.gyro_dps[:, 1:3])
    return np.concatenate(t), np.concatenate(g)


def peak_and_turn(t: np.ndarray, g: np.ndarray, start_s: float, end_s: float) -> tuple[float, float]:
    """Peak flexion-plane rate (dps) and the largest angle turned (deg) in [start_s, end_s], less
    the bias (the median rate of the 3 s around)."""
    around = ((t >= start_s - 3.0) & (t < start_s)) | ((t > end_s) & (t <= end_s + 3.0))
    inside = (t >= start_s) & (t <= end_s)
    rate = g[inside] - np.median(g[around], axis=0)
    dt = t[1] - t[0]
    return float(np.hypot(*rate.T).max()), float(np.hypot(*(np.cumsum(rate, axis=0) * dt).T).max())


def quiet_rates(t: np.ndarray, g: np.ndarray, truth: dict) -> np.ndarray:
    """The flexion-plane rate, bias removed per minute, in lying minutes with nothing happening."""
    busy = [(m["onset_s"], m["offset_s"]) for m in truth["lms"]]
    busy += [(c["start_s"], c["end_s"]) for c in truth["confounders"]]
    out = []
    for a in np.arange(truth["lights_off_s"] + 60.0, truth["lights_on_s"] - 60.0, 60.0):
        if all(e < a - 3.0 or s > a + 63.0 for s, e in busy):
            inside = (t >= a) & (t < a + 60.0)
            rate = g[inside] - np.median(g[inside], axis=0)
            out.append(np.hypot(*rate.T))
    return np.concatenate(out) if out else np.zeros(1)


def measure(scenario: str, seed: int, hours: float, placement: str) -> dict[str, list[tuple[float, float]]]:
    """Peak rate and turn of every true LM and confounder of one night, by kind, and the quiet rates."""
    night = simulate_night(scenario, seed, hours, placement=placement)
    t, g = samples(night)
    out: dict[str, list] = defaultdict(list)
    for lm in night.truth["lms"]:
        if lm["leg"] == 0 and lm["kind"] in ("plm", "isolated"):
            kind = "LM: ankle alone" if lm.get("tibialis") else "LM: knee flexion"
            out[kind].append(peak_and_turn(t, g, lm["onset_s"], lm["offset_s"]))
    for c in night.truth["confounders"]:
        if c["kind"] in ("partner", "twitch", "cable") and c.get("leg", 0) == 0:
            out[c["kind"]].append(peak_and_turn(t, g, c["start_s"], c["end_s"]))
    out["quiet lying"] = [(r, 0.0) for r in quiet_rates(t, g, night.truth)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--hours", type=float, default=4.0)
    ap.add_argument("--scenario", default="tibialis")
    a = ap.parse_args()
    print(f"{a.seeds} nights of {a.hours:g} h, scenario {a.scenario}; the foot turns {FOOT_PER_SHIN:g}x "
          "as far as the shin in an ankle-only LM (an assumption)")
    results = {}
    for placement in ("shin", "instep"):
        merged: dict[str, list] = defaultdict(list)
        for seed in range(1, a.seeds + 1):
            for kind, values in measure(a.scenario, seed, a.hours, placement).items():
                merged[kind] += values
        results[placement] = merged
    head = f"{'what':<18}{'n':>6}  {'peak dps p10 / p50 / p90':>28}  {'turned deg p10 / p50':>22}"
    for placement, merged in results.items():
        print(f"\nsensor on the {placement}\n{head}\n{'-' * len(head)}")
        for kind in sorted(merged):
            v = np.array(merged[kind])
            p = np.percentile(v[:, 0], [10, 50, 90])
            turned = np.percentile(v[:, 1], [10, 50])
            turn_text = "-" if kind == "quiet lying" else f"{turned[0]:.2f} / {turned[1]:.2f}"
            print(f"{kind:<18}{len(v):>6}  {p[0]:>8.2f} / {p[1]:>6.2f} / {p[2]:>7.2f}  {turn_text:>22}")
        floor = np.percentile(np.array(merged["quiet lying"])[:, 0], 99)
        for kind in ("LM: ankle alone", "LM: knee flexion"):
            if merged.get(kind):
                margin = np.percentile(np.array(merged[kind])[:, 0], 10) / floor
                print(f"margin of {kind}: its 10th-percentile peak is {margin:.0f}x "
                      f"the quiet 99th percentile ({floor:.2f} dps)")


if __name__ == "__main__":
    main()

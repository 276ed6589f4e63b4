"""The smallest LMs (issue 16): an ankle dorsiflexion that tilts the shin only 0.3-2 deg at 2-20 dps,
with the hold and return of the contraction, found against the small motions of a lying body; and
the held knee flexion whose drift and tremor during the hold must not split it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from device.detect import LegDetector
from device.detect.lm import Burst, LMParams, is_hold_drift, turn_after_rocking
from device.sim import simulate_night
from tests.detect.test_detector import flex, partner_rocking, readings, run, times

ODR_HZ = 52.0


def heartbeat_and_breathing(t: np.ndarray, bcg_dps: float = 0.2, breath_dps: float = 0.1) -> np.ndarray:
    """Pitch (deg) of a lying shin moved by breathing (0.25 Hz) and each heartbeat's recoil (1 Hz, a
    biphasic 40-ms pulse of `bcg_dps` peak rate): the upper end of what docs/noise-budget.md allows."""
    x = (np.mod(t, 1.0) - 0.25) / 0.04
    rate = bcg_dps * -x * np.exp(0.5 - 0.5 * x * x) + breath_dps * np.cos(2 * np.pi * 0.25 * t)
    return np.cumsum(rate) / ODR_HZ


@pytest.mark.parametrize("deg, flex_s, hold_s, release_s", [
    (0.3, 0.25, 2.0, 0.3),   # the smallest: 0.3 deg at about 2.2 dps
    (0.5, 0.4, 0.0, 0.5),    # no hold: out and straight back
    (1.0, 0.3, 4.0, 0.6),
    (2.0, 0.2, 1.5, 0.3),    # 19 dps: the fastest
])
def test_an_ankle_dorsiflexion_the_shin_barely_feels_is_one_lm(deg, flex_s, hold_s, release_s):
    t = times(120)
    pitch = heartbeat_and_breathing(t) + flex(t, 60.0, deg, flex_s, hold_s, release_s)
    (lm,) = run(t, *readings(pitch)).movements
    end_s = 60.0 + flex_s + hold_s + release_s
    assert lm.onset_s == pytest.approx(60.0, abs=0.5)
    assert lm.offset_s == pytest.approx(end_s, abs=0.5)
    assert lm.tilt_deg == pytest.approx(deg, rel=0.5)


def test_breathing_and_heartbeats_alone_are_no_lm():
    t = times(600)
    assert run(t, *readings(heartbeat_and_breathing(t))).movements == []


def test_a_slow_drift_of_a_tenth_of_a_degree_is_no_lm():
    """Settling into the mattress: 0.15 deg over 3 s (0.1 dps), far under the onset."""
    t = times(120)
    pitch = heartbeat_and_breathing(t) + 0.15 * np.clip((t - 60.0) / 3.0, 0.0, 1.0)
    assert run(t, *readings(pitch)).movements == []


def test_a_held_knee_flexion_that_drifts_and_shivers_is_one_lm():
    """Flex 15 deg, hold 4 s while the leg sags 2 deg back at ~2 dps and shivers at 10 Hz (1.5 dps),
    then release: one LM, not the flexion, a drift and a release."""
    t = times(120)
    sag = -2.0 * np.clip((t - 61.5) / 1.5, 0.0, 1.0) * ((t >= 61.5) & (t < 65.0))
    tremor = np.where((t > 61.0) & (t < 65.0), 1.5 / (2 * np.pi * 10) * np.sin(2 * np.pi * 10 * t), 0.0)
    pitch = flex(t, 60.0, 15.0, 0.8, 4.2, 0.8) + sag + tremor
    pitch[t >= 65.0] += -2.0 * (1 - np.clip((t[t >= 65.0] - 65.0) / 0.8, 0.0, 1.0))
    (lm,) = run(t, *readings(pitch)).movements
    assert lm.onset_s == pytest.approx(60.0, abs=0.5)
    assert lm.offset_s == pytest.approx(65.8, abs=0.5)


def burst(onset_s: float, offset_s: float, out_deg: float, dev_deg: float, peak_dps: float) -> Burst:
    """A burst that moves the flexion angle (y) from 0 by `out_deg`, reaching `dev_deg` on the way."""
    return Burst(onset_s=onset_s, offset_s=offset_s, flex_on_deg=(0.0, 0.0), flex_off_deg=(out_deg, 0.0),
                 flex_dev_deg=dev_deg, peak_dps=peak_dps)


def test_a_small_slow_burst_during_a_hold_is_its_drift():
    p = LMParams()
    held = burst(10.0, 10.8, 12.0, 12.0, 40.0)
    assert is_hold_drift(held, burst(12.0, 12.6, 1.0, 1.5, 3.0), p)
    # Too large, too fast, too late, or after a flexion that did not stay: an LM of its own.
    assert not is_hold_drift(held, burst(12.0, 12.6, 5.0, 5.0, 3.0), p)
    assert not is_hold_drift(held, burst(12.0, 12.6, 1.0, 1.5, 20.0), p)
    assert not is_hold_drift(held, burst(10.8 + p.max_hold_s + 0.1, 22.0, 1.0, 1.5, 3.0), p)
    assert not is_hold_drift(burst(10.0, 10.8, 0.5, 12.0, 40.0), burst(12.0, 12.6, 1.0, 1.5, 3.0), p)


def detect_night(night) -> list:
    """Every LM the detector finds in a simulated night's first leg, fed in one-minute blocks."""
    det = LegDetector(odr_hz=night.odr_hz)
    found = []
    for block in night.blocks(60.0):
        found += det.feed(block).movements
    return sorted(found + det.finish().movements, key=lambda m: m.onset_s)


def matched(truth: list[dict], found: list) -> set[int]:
    """Indices of the true LMs that a detection overlaps with its onset within 1 s, one to one."""
    used, hits = set(), set()
    for i, lm in enumerate(truth):
        for j, m in enumerate(found):
            if j not in used and abs(m.onset_s - lm["onset_s"]) <= 1.0 and m.onset_s < lm["offset_s"] \
                    and m.offset_s > lm["onset_s"]:
                used.add(j)
                hits.add(i)
                break
    return hits


def test_simulated_nights_of_ankle_dorsiflexions_are_scored_against_their_truth():
    """Held-out seeds (tuned on 1-4): two 1-h nights whose LMs are mostly 0.3-2 deg of shin tilt,
    with twitches, a partner, cable tugs, turns, breathing and heartbeats. The issue's bar:
    sensitivity >= 0.90 at precision >= 0.95; the 0.3-1 deg ones are found too."""
    true_n = found_n = hit_n = small_n = small_hit = 0
    for seed in (21, 22):
        night = simulate_night("tibialis", seed, 1.0)
        truth = [m for m in night.truth["lms"] if m["leg"] == 0]
        found = detect_night(night)
        hits = matched(truth, found)
        true_n, found_n, hit_n = true_n + len(truth), found_n + len(found), hit_n + len(hits)
        small = [i for i, m in enumerate(truth) if m["tilt_deg"] < 1.0]
        small_n, small_hit = small_n + len(small), small_hit + len(hits.intersection(small))
    assert small_n >= 20 and true_n >= 40
    assert hit_n / true_n >= 0.90 and hit_n / found_n >= 0.95
    assert small_hit / small_n >= 0.85


@pytest.mark.parametrize("f_hz, rate_dps", [(0.3, 2.0), (0.5, 3.0), (1.0, 4.0), (2.0, 2.5)])
def test_a_partner_rocking_the_mattress_at_an_ankle_movement_s_rates_is_not_an_lm(f_hz, rate_dps):
    """The onset is now within a partner's reach (1-10 dps): the rocking's shape, back and forth
    about where the leg lay, keeps it out."""
    t = times(90)
    pitch = heartbeat_and_breathing(t) + partner_rocking(t, 30.0, 15.0, f_hz, rate_dps)
    roll = partner_rocking(t, 30.0, 15.0, 2.5 * f_hz, rate_dps)
    assert run(t, *readings(pitch, roll)).movements == []


def test_a_turn_that_begins_while_the_partner_rocks_starts_where_the_leg_turns_fast():
    p = LMParams()
    rocked_then_turned = replace(burst(100.0, 118.0, 20.0, 25.0, 90.0), roll_span_deg=120.0, path_deg=160.0)
    turn = replace(burst(104.0, 118.0, 20.0, 25.0, 90.0), roll_span_deg=120.0, path_deg=145.0)
    assert turn_after_rocking(rocked_then_turned, [turn], p).onset_s == 104.0
    # A lead-in as fast as a movement is part of the turn; so is one too short to be rocking.
    kicked = replace(rocked_then_turned, path_deg=145.0 + 4.0 * 10.0)
    assert turn_after_rocking(kicked, [turn], p).onset_s == 100.0
    assert turn_after_rocking(rocked_then_turned, [replace(turn, onset_s=100.5)], p).onset_s == 100.0
    # Only a turn: a flexion during rocking is `fast_part_stands_in`'s to judge.
    assert turn_after_rocking(burst(100.0, 104.0, 5.0, 5.0, 20.0), [turn], p).onset_s == 100.0

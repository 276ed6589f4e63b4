"""LegDetector on short snippets built from the physics of a shin: each test lays out the angles of the
shin over time, and `readings` turns them into what the IMU on it would report (gravity projected by
the orientation, body-frame rotation rates, MEMS noise and a gyro zero-rate offset)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.detect import DetectorOutput, LegDetector
from device.samples import SampleBlock

ODR_HZ = 52.0
BIAS_DPS = (0.8, -0.6, 0.4)  # a zero-rate offset within the LSM6DSOX's typical ±1 dps


def min_jerk(u: np.ndarray) -> np.ndarray:
    """Smooth 0→1 position profile over u in [0, 1] (Flash & Hogan 1985)."""
    u = np.clip(u, 0.0, 1.0)
    return u**3 * (10 - 15 * u + 6 * u * u)


def readings(
    pitch_deg: np.ndarray,
    roll_deg: np.ndarray | None = None,
    accel_x_g: np.ndarray | None = None,
    seed: int = 1,
    odr_hz: float = ODR_HZ,
) -> tuple[np.ndarray, np.ndarray]:
    """IMU readings for a shin whose knee end is raised by `pitch_deg` and rolled about its own axis
    by `roll_deg`. Shin axis x = (cos p, 0, sin p) in the world; rolling turns y and z about it.
    Gravity in the sensor frame is (sin p, cos p sin r, cos p cos r) and the body rates are
    (dr, -dp cos r, dp sin r)."""
    rng = np.random.default_rng(seed)
    n = len(pitch_deg)
    roll_deg = np.zeros(n) if roll_deg is None else roll_deg
    p, r = np.radians(pitch_deg), np.radians(roll_deg)
    accel = np.column_stack([np.sin(p), np.cos(p) * np.sin(r), np.cos(p) * np.cos(r)])
    if accel_x_g is not None:
        accel[:, 0] += accel_x_g
    dp, dr = np.gradient(pitch_deg) * odr_hz, np.gradient(roll_deg) * odr_hz
    gyro = np.column_stack([dr, -dp * np.cos(r), dp * np.sin(r)])
    accel += rng.normal(0.0, 0.001, (n, 3))  # ~70-130 µg/√Hz over a 26 Hz band
    gyro += rng.normal(0.0, 0.03, (n, 3)) + np.asarray(BIAS_DPS)
    return accel, gyro


def times(duration_s: float, odr_hz: float = ODR_HZ) -> np.ndarray:
    return np.arange(round(duration_s * odr_hz)) / odr_hz


def flex(
    t: np.ndarray, start_s: float, deg: float, flex_s: float, hold_s: float, release_s: float
) -> np.ndarray:
    """A knee flexion that raises the shin by `deg`, holds it, and releases it."""
    up = min_jerk((t - start_s) / flex_s)
    down = min_jerk((t - start_s - flex_s - hold_s) / release_s)
    return deg * (up - down)


def run(
    t: np.ndarray, accel: np.ndarray, gyro: np.ndarray, block_n: int = 500, odr_hz: float = ODR_HZ
) -> DetectorOutput:
    """Feed the snippet in blocks and gather every output."""
    det = LegDetector(odr_hz=odr_hz)
    total = DetectorOutput()
    outs = [det.feed(SampleBlock(t[i : i + block_n], accel[i : i + block_n], gyro[i : i + block_n], odr_hz))
            for i in range(0, len(t), block_n)]
    outs.append(det.finish())
    for out in outs:
        total.movements += out.movements
        total.postures += out.postures
        total.gaps += out.gaps
    return total


def test_a_single_flexion_is_one_lm_with_its_onset_and_offset():
    t = times(90)
    accel, gyro = readings(flex(t, 40.0, 10.0, 1.0, 0.0, 1.0))
    out = run(t, accel, gyro)
    assert len(out.movements) == 1
    lm = out.movements[0]
    assert lm.onset_s == pytest.approx(40.0, abs=0.4)
    assert lm.offset_s == pytest.approx(42.0, abs=0.4)
    assert lm.tilt_deg == pytest.approx(10.0, abs=1.0)
    assert lm.leg == 0


def test_flex_hold_release_is_one_lm_not_two():
    t = times(90)
    # Flex 8° in 0.8 s, hold 2.5 s with no rotation, release in 0.8 s: the gyro sees two bursts.
    accel, gyro = readings(flex(t, 40.0, 8.0, 0.8, 2.5, 0.8))
    out = run(t, accel, gyro)
    assert [(round(m.onset_s), round(m.offset_s)) for m in out.movements] == [(40, 44)]


@pytest.mark.parametrize("seed", [1, 2])
def test_a_long_held_movement_is_one_lm_to_the_end_of_its_release(seed):
    """9.4 s: flex 5° in 1 s, hold 6 s, let down in 2.4 s. The slow release stays under the onset
    level (4 dps): it is the end of the held flexion, not nothing (issue 11)."""
    t = times(120)
    out = run(t, *readings(flex(t, 40.0, 5.0, 1.0, 6.0, 2.4), seed=seed))
    assert len(out.movements) == 1
    assert out.movements[0].onset_s == pytest.approx(40.0, abs=0.3)
    assert out.movements[0].offset_s == pytest.approx(49.4, abs=0.6)


def test_an_lm_that_slows_down_before_it_ends_is_whole():
    """A quick flexion let down slowly over 4 s: one LM to the end of the release."""
    t = times(120)
    out = run(t, *readings(flex(t, 40.0, 6.0, 0.6, 0.0, 4.0)))
    assert len(out.movements) == 1
    assert out.movements[0].offset_s == pytest.approx(44.6, abs=1.1)


def test_a_bilateral_clm_of_twelve_seconds_comes_out_whole():
    """Left 40-49.4 s (a long hold), right 43-51.6 s (let down slowly): one bilateral CLM of about
    12 s (WASM 2016: up to 15 s from single-leg LMs of at most 10 s)."""
    from device.detect.events import Interval
    from device.detect.scoring import score_night

    t = times(120)
    left = run(t, *readings(flex(t, 40.0, 5.0, 1.0, 6.0, 2.4), seed=3)).movements
    right = run(t, *readings(flex(t, 43.0, 7.0, 0.6, 4.0, 4.0), seed=4)).movements
    assert len(left) == len(right) == 1
    summary = score_night([left, [m.__class__(m.onset_s, m.offset_s, 1, m.peak_dps, m.tilt_deg) for m in right]],
                          [Interval(0.0, 120.0)], [], 120.0)
    assert summary["lm_count"] == 1
    lm = summary["lm_events"][0]
    assert lm["bilateral"] and lm["clm"]
    assert 10.5 < lm["duration_s"] <= 15.0


def twisted(v: np.ndarray, deg: float) -> np.ndarray:
    """Vectors (n, 3) seen by a sensor turned by `deg` about the shin axis x (a strap twisted on the leg)."""
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.column_stack([v[:, 0], c * v[:, 1] + s * v[:, 2], -s * v[:, 1] + c * v[:, 2]])


def test_flex_hold_release_with_the_strap_twisted_80_degrees_is_still_one_lm():
    t = times(90)
    accel, gyro = readings(flex(t, 40.0, 4.0, 0.3, 3.0, 0.4))
    out = run(t, twisted(accel, 80.0), twisted(gyro, 80.0))
    assert [(round(m.onset_s), round(m.offset_s, 1)) for m in out.movements] == [(40, 43.7)]


def test_a_tugged_cable_twisting_the_strap_is_not_an_lm():
    t = times(60)
    # A 25° twist about the shin in 0.25 s that springs back to a third of it over 1.5 s; the strap
    # rocks the sensor about y by a fifth of that, out and back.
    roll = 25.0 * (min_jerk((t - 30.0) / 0.25) - 0.66 * min_jerk((t - 30.25) / 1.5))
    pitch = 5.0 * (min_jerk((t - 30.0) / 0.3) - min_jerk((t - 30.3) / 0.6))
    assert run(t, *readings(pitch, roll)).movements == []


def test_a_flexion_that_stays_is_not_merged_with_a_later_one():
    t = times(90)
    # The leg settles 6° flexed and stays; 5 s later another flexion goes further: two LMs.
    pitch = flex(t, 30.0, 6.0, 1.0, 100.0, 1.0) + flex(t, 36.0, 6.0, 1.0, 100.0, 1.0)
    out = run(t, *readings(pitch))
    assert [round(m.onset_s) for m in out.movements] == [30, 36]


def test_a_twitch_shorter_than_half_a_second_is_not_an_lm():
    t = times(60)
    u = np.clip((t - 30.0) / 0.3, 0.0, 1.0)
    accel, gyro = readings(4.0 * np.sin(np.pi * u) ** 2)
    assert run(t, accel, gyro).movements == []


def test_turning_over_never_becomes_a_clm():
    t = times(120)
    # Over 14 s: the knee draws up, the leg rolls onto its side in two heaves (the second one a pure
    # roll, during a 1.2-s pause of the knee), shuffles, settles.
    roll = 45.0 * min_jerk((t - 40.0) / 3.0) + 45.0 * min_jerk((t - 44.8) / 1.0)
    pitch = (
        flex(t, 40.0, 20.0, 1.5, 1.5, 1.5)
        + flex(t, 45.6, 12.0, 1.0, 1.0, 1.5)
        + 3.0 * np.sin(2 * np.pi * 0.7 * t) * ((t > 50.0) & (t < 54.0))
    )
    out = run(t, *readings(pitch, roll))
    during = [m for m in out.movements if m.offset_s > 39.0 and m.onset_s < 55.0]
    assert all(m.duration_s > 10.0 for m in during), during
    assert [p.posture for p in out.postures] == ["lying"]


def walking(t: np.ndarray, start_s: float, stride_hz: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Standing shin (80°) swinging ±25° per stride, and a heel-strike jolt along it each stride."""
    u = t - start_s
    on = u >= 0
    pitch = 80.0 + on * (25.0 * np.sin(2 * np.pi * stride_hz * u) + 5.0 * np.sin(4 * np.pi * stride_hz * u))
    phase = np.mod(u * stride_hz, 1.0)
    strike = on * 0.8 * np.exp(-0.5 * ((phase - 0.25) / (0.02 * stride_hz)) ** 2)
    return pitch, strike


def test_walking_is_never_an_lm_and_is_upright():
    t = times(120)
    pitch, strike = walking(t, 10.0)
    out = run(t, *readings(pitch, accel_x_g=strike))
    assert out.movements == []
    assert [p.posture for p in out.postures] == ["upright"]


def test_getting_up_to_walk_and_lying_down_again():
    t = times(240)
    walk_pitch, strike = walking(t, 0.0)
    up = (t >= 80.0) & (t < 160.0)
    # Stand up over 2 s, walk, lie down over 2 s; a PLM well before and well after.
    stand = min_jerk((t - 78.0) / 2.0) - min_jerk((t - 160.0) / 2.0)
    pitch = np.where(up, walk_pitch, 80.0 * stand) + flex(t, 40.0, 10.0, 1.0, 0.5, 1.0) + flex(
        t, 200.0, 10.0, 1.0, 0.5, 1.0
    )
    out = run(t, *readings(pitch, accel_x_g=np.where(up, strike, 0.0)))
    assert [round(m.onset_s) for m in out.movements] == [40, 200]
    assert [p.posture for p in out.postures] == ["lying", "upright", "lying"]
    assert out.postures[1].start_s == pytest.approx(79.0, abs=1.5)
    assert out.postures[2].start_s == pytest.approx(161.0, abs=1.5)


def test_drawing_the_knee_up_high_for_a_moment_is_not_getting_up():
    t = times(120)
    # The knee drawn up until the shin stands at 70° for 2 s, then down: a movement in bed.
    out = run(t, *readings(flex(t, 50.0, 70.0, 1.5, 2.0, 1.5)))
    assert [p.posture for p in out.postures] == ["lying"]
    assert [round(m.onset_s) for m in out.movements] == [50]


def sitting_then_lying(t: np.ndarray, sit_deg: float, strap_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Sitting on the bed, the shin `sit_deg` up, fidgeting (a 6° flexion every 25 s) for 200 s, then
    lying down in 4 s; the strap turned `strap_deg` about the shin."""
    pitch = sit_deg - (sit_deg - 5.0) * min_jerk((t - 200.0) / 4.0)
    pitch = pitch + sum(flex(t, 20.0 + 25.0 * k, 6.0, 0.6, 0.5, 0.8) for k in range(7))
    accel, gyro = readings(pitch)
    return twisted(accel, strap_deg), twisted(gyro, strap_deg)


@pytest.mark.parametrize("strap_deg", [0.0, 60.0, 180.0, 300.0])
@pytest.mark.parametrize("sit_deg", [32.0, 45.0, 58.0])
def test_sitting_on_the_bed_is_not_lying_whatever_the_strap(sit_deg, strap_deg):
    """Time in bed depends on the shin's elevation only: sitting 30-60° up is out of bed, however
    the strap sits about the shin, and its fidgets are no LMs (issue 11)."""
    from device.detect.bed import in_bed_intervals

    t = times(400)
    out = run(t, *sitting_then_lying(t, sit_deg, strap_deg))
    in_bed = in_bed_intervals(out.postures, [], 400.0)
    assert len(in_bed) == 1
    assert in_bed[0].start_s == pytest.approx(202.0, abs=3.0)
    assert out.movements == []


def test_turning_over_with_the_knee_drawn_up_stays_in_bed():
    """The knee drawn up, the shin 40° up for 6 s while turning: still lying (min_sitting_s)."""
    t = times(120)
    out = run(t, *readings(flex(t, 50.0, 35.0, 2.0, 6.0, 2.0)))
    assert [p.posture for p in out.postures] == ["lying"]


def test_a_partner_rocking_the_mattress_is_not_an_lm():
    t = times(90)
    # 15 s of rocking under a Hann envelope: ±1.5° at 0.5 Hz in pitch and roll (under 5 dps).
    env = np.sin(np.pi * np.clip((t - 30.0) / 15.0, 0.0, 1.0)) ** 2
    rock = 1.5 * env * np.sin(2 * np.pi * 0.5 * t)
    assert run(t, *readings(rock, rock)).movements == []


def partner_rocking(t: np.ndarray, start_s: float, dur_s: float, f_hz: float, rate_dps: float) -> np.ndarray:
    """A mattress rocked by someone else tilts the whole leg passively: a symmetric swing about where
    it lay, at `f_hz` and `rate_dps` at most (rate = 2 pi f amplitude), under a Hann envelope."""
    env = np.sin(np.pi * np.clip((t - start_s) / dur_s, 0.0, 1.0)) ** 2
    return rate_dps / (2 * np.pi * f_hz) * env * np.sin(2 * np.pi * f_hz * (t - start_s))


@pytest.mark.parametrize("f_hz, rate_dps", [(0.3, 10.0), (0.5, 9.0), (1.0, 8.0)])
def test_a_partner_rocking_the_mattress_fast_enough_to_cross_the_onset_is_not_an_lm(f_hz, rate_dps):
    """At 8-10 dps, far above the onset, for 15 s: a burst going back and forth, slowly, is the leg rocked."""
    t = times(90)
    pitch = partner_rocking(t, 30.0, 15.0, f_hz, rate_dps)
    roll = partner_rocking(t, 30.0, 15.0, 2.5 * f_hz, rate_dps)
    assert run(t, *readings(pitch, roll)).movements == []


@pytest.mark.parametrize("deg, flex_s, hold_s", [(12.0, 0.8, 1.0), (15.0, 1.0, 0.0), (8.0, 0.5, 2.0)])
def test_a_leg_movement_while_the_partner_rocks_the_mattress_is_still_found(deg, flex_s, hold_s):
    t = times(90)
    pitch = partner_rocking(t, 30.0, 15.0, 0.5, 9.0) + flex(t, 37.0, deg, flex_s, hold_s, flex_s)
    roll = partner_rocking(t, 30.0, 15.0, 1.25, 9.0)
    (lm,) = run(t, *readings(pitch, roll)).movements
    assert lm.onset_s == pytest.approx(37.0, abs=0.5)
    assert lm.offset_s > 37.0 + flex_s + hold_s


def test_a_gap_ends_the_lm_in_progress_and_is_reported():
    t = times(90)
    accel, gyro = readings(flex(t, 40.0, 10.0, 1.5, 2.0, 1.5))
    keep = (t < 41.0) | (t >= 45.0)
    out = run(t[keep], accel[keep], gyro[keep])
    assert len(out.gaps) == 1
    assert out.gaps[0].start_s == pytest.approx(41.0, abs=1 / ODR_HZ)
    assert out.gaps[0].end_s == pytest.approx(45.0, abs=1 / ODR_HZ)
    first = out.movements[0]
    assert first.onset_s == pytest.approx(40.0, abs=0.4)
    assert first.offset_s == pytest.approx(41.0, abs=1 / ODR_HZ)


def test_no_lm_starts_at_a_gap_s_end():
    """Data resumes while the leg is being let down: that movement's onset was not seen, so it is
    not scored (issue 11: a spurious LM sat exactly at a gap's end)."""
    t = times(90)
    accel, gyro = readings(flex(t, 40.0, 10.0, 1.5, 1.0, 2.5))
    keep = (t < 40.5) | (t >= 43.0)
    out = run(t[keep], accel[keep], gyro[keep])
    assert len(out.gaps) == 1
    assert all(abs(m.onset_s - out.gaps[0].end_s) > 0.1 for m in out.movements), out.movements


def test_the_release_of_a_flexion_made_in_a_gap_is_not_an_lm():
    """The leg flexed while the sensor was off, data resumed during the hold, then the release: that
    LM began in the gap, so it is not scored (its release alone would date it 4 s late)."""
    t = times(90)
    accel, gyro = readings(flex(t, 40.0, 10.0, 1.0, 4.0, 1.5))
    keep = (t < 39.5) | (t >= 42.0)
    out = run(t[keep], accel[keep], gyro[keep])
    assert out.movements == []


def test_a_lm_longer_than_ten_seconds_is_kept():
    t = times(90)
    pitch = sum(flex(t, 30.0 + 2.0 * k, 6.0 + k % 3, 0.8, 0.2, 0.8) for k in range(7))
    out = run(t, *readings(pitch))
    assert len(out.movements) == 1
    assert out.movements[0].duration_s == pytest.approx(13.8, abs=1.0)


def test_quiet_night_with_a_drifting_gyro_bias_has_no_lms():
    t = times(600)
    accel, gyro = readings(np.zeros(len(t)))
    gyro[:, 1] += np.linspace(0.0, 2.0, len(t))  # 2 dps of drift in 10 min: far faster than real
    assert run(t, accel, gyro).movements == []


def test_time_going_backwards_is_a_clear_error():
    t = times(10)
    accel, gyro = readings(np.zeros(len(t)))
    det = LegDetector(odr_hz=ODR_HZ)
    det.feed(SampleBlock(t[:100], accel[:100], gyro[:100], ODR_HZ))
    with pytest.raises(ValueError, match="t_s must increase"):
        det.feed(SampleBlock(t[50:150], accel[50:150], gyro[50:150], ODR_HZ))


def test_a_sample_that_is_not_a_number_is_a_clear_error():
    t = times(10)
    accel, gyro = readings(np.zeros(len(t)))
    gyro[123, 1] = np.nan
    with pytest.raises(ValueError, match="sample 123 .* not a finite number"):
        LegDetector(odr_hz=ODR_HZ).feed(SampleBlock(t, accel, gyro, ODR_HZ))


def busy_snippet() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three minutes with LMs, a hold, a twitch, a gap and a spell upright: every path at once."""
    t = times(180)
    walk_pitch, strike = walking(t, 0.0)
    up = (t >= 120.0) & (t < 150.0)
    pitch = (
        flex(t, 10.0, 10.0, 1.0, 0.0, 1.0)
        + flex(t, 31.0, 8.0, 0.8, 2.5, 0.8)
        + flex(t, 58.0, 5.0, 1.0, 1.0, 1.0)
        + flex(t, 95.0, 12.0, 1.5, 1.0, 1.5)
        + 4.0 * np.sin(np.pi * np.clip((t - 80.0) / 0.3, 0.0, 1.0)) ** 2
    )
    pitch = np.where(up, walk_pitch, pitch)
    accel, gyro = readings(pitch, accel_x_g=np.where(up, strike, 0.0))
    keep = (t < 59.0) | (t >= 62.5)
    return t[keep], accel[keep], gyro[keep]


BUSY = busy_snippet()
BUSY_WHOLE = run(*BUSY, block_n=len(BUSY[0]))


def test_the_busy_snippet_finds_what_it_should():
    assert [round(m.onset_s) for m in BUSY_WHOLE.movements] == [10, 31, 58, 95]
    assert len(BUSY_WHOLE.gaps) == 1


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(BUSY[0]) - 1), max_size=40, unique=True))
def test_the_output_does_not_depend_on_the_block_size(cuts):
    t, accel, gyro = BUSY
    det = LegDetector(odr_hz=ODR_HZ)
    got = DetectorOutput()
    bounds = [0, *sorted(cuts), len(t)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        out = det.feed(SampleBlock(t[a:b], accel[a:b], gyro[a:b], ODR_HZ))
        got.movements += out.movements
        got.postures += out.postures
        got.gaps += out.gaps
    end = det.finish()
    got.movements += end.movements
    got.postures += end.postures
    got.gaps += end.gaps
    assert got == BUSY_WHOLE

"""The SIT rule set on hand-worked cases: each expected figure is worked out in the comment beside it."""

from __future__ import annotations

from device.detect.events import Interval, LegMovement, PostureSegment
from device.detect.rules import SIT, rule_set
from device.detect.sit import MIN_SCORED_S, THRESHOLD_PER_H, not_taken, score_sit

HOUR_S = 3600.0
LYING = [PostureSegment(0.0, 10_000.0, "lying")]


def lms(onsets, dur=2.0, leg=0):
    return [LegMovement(t, t + dur, leg) for t in onsets]


def test_the_rule_set_is_a_table_entry_with_the_sit_bounds():
    assert rule_set("SIT") is SIT
    assert (SIT.imi_min_s, SIT.imi_max_s, SIT.clm_min_s, SIT.clm_max_s) == (4.0, 90.0, 0.5, 10.0)
    assert THRESHOLD_PER_H == 40.0 and MIN_SCORED_S == 360.0


def test_periodic_movements_every_5_s_are_plms_under_sit_but_not_under_wasm():
    # 8 LMs every 5 s from t = 100 s: IMIs of 5 s lie in SIT's 4–90 s, so one series of 8.
    # A full hour scored: PLMI = 8 / 1 h = 8.0; LMI also 8.0.
    legs = [lms([100.0 + 5 * k for k in range(8)])]
    out = score_sit(legs, LYING, [], 0.0, HOUR_S, HOUR_S, False)
    assert (out["lm_count"], out["plm_count"]) == (8, 8)
    assert out["plm_index"] == 8.0 and out["above_threshold"] is False
    # Under WASM 2016 an IMI of 5 s is below 10 s: no series at all.
    wasm = score_sit(legs, LYING, [], 0.0, HOUR_S, HOUR_S, False, rules=rule_set("WASM2016"))
    assert wasm["plm_count"] == 0


def test_index_above_40_per_hour_is_flagged():
    # 41 LMs every 12 s (the modal SIT IMI, Michaud 2001): one series of 41 in an hour → 41/h > 40.
    out = score_sit([lms([60.0 + 12 * k for k in range(41)])], LYING, [], 0.0, HOUR_S, HOUR_S, False)
    assert out["plm_index"] == 41.0 and out["above_threshold"] is True
    # Exactly 40 is not above 40/h.
    out = score_sit([lms([60.0 + 12 * k for k in range(40)])], LYING, [], 0.0, HOUR_S, HOUR_S, False)
    assert out["plm_index"] == 40.0 and out["above_threshold"] is False


def test_a_short_imi_is_skipped_and_the_series_goes_on():
    # Onsets 0, 10, 12, 20, 30 (+100): 12 is 2 s after 10 (< 4 s): not a PLM, and the next IMI is
    # from 10 to 20 = 10 s, so 100, 110, 120, 130 form one series of 4; 5 LMs, 4 PLMs.
    out = score_sit([lms([100.0, 110.0, 112.0, 120.0, 130.0], dur=1.0)], LYING, [], 0.0, HOUR_S, HOUR_S, False)
    assert (out["lm_count"], out["plm_count"]) == (5, 4)
    assert [e["periodic"] for e in out["lm_events"]] == [True, True, False, True, True]


def test_lms_over_10_s_are_listed_not_candidates():
    out = score_sit([[LegMovement(100.0, 112.0)]], LYING, [], 0.0, HOUR_S, HOUR_S, False)
    assert out["lm_count"] == 1 and out["lm_events"][0]["clm"] is False


def test_time_stood_up_is_reported_and_excluded():
    # Lying 0–1200 s and 1800–3600 s; upright 1200–1800 s (10 min stood up). Scored 50 min.
    postures = [PostureSegment(0.0, 1200.0, "lying"), PostureSegment(1200.0, 1800.0, "upright"),
                PostureSegment(1800.0, 3600.0, "lying")]
    # 4 LMs every 20 s while up (not scored), 5 every 20 s after (one series of 5).
    legs = [lms([1300.0 + 20 * k for k in range(4)] + [2000.0 + 20 * k for k in range(5)])]
    out = score_sit(legs, postures, [], 0.0, HOUR_S, HOUR_S, False)
    assert out["scored_s"] == 3000.0 and out["not_horizontal_s"] == 600.0
    assert out["excluded"] == [{"start_s": 1200.0, "end_s": 1800.0, "reason": "not_horizontal"}]
    assert (out["lm_count"], out["plm_count"]) == (5, 5)
    assert out["plm_index"] == 6.0  # 5 / (50/60 h)
    blocks = out["blocks"]
    assert len(blocks) == 6 and [b["scored_s"] for b in blocks] == [600.0, 600.0, 0.0, 600.0, 600.0, 600.0]
    assert blocks[3]["plm_count"] == 5


def test_a_gap_ends_a_series():
    # 3 LMs, a gap 125–200 s, 3 LMs: no run of 4 on either side.
    legs = [lms([60.0, 80.0, 100.0, 210.0, 230.0, 250.0])]
    out = score_sit(legs, LYING, [Interval(125.0, 200.0)], 0.0, HOUR_S, HOUR_S, False)
    assert (out["lm_count"], out["plm_count"], out["gap_s"]) == (6, 0, 75.0)


def test_an_early_end_scores_what_ran_on_the_tests_own_timeline():
    # The test ran from 1000 s to 1900 s (15 min) and was ended early: 6 LMs every 10 s → 6 PLMs
    # in 0.25 h = 24/h; times count from the test's start; blocks 0–600, 600–900.
    legs = [lms([1100.0 + 10 * k for k in range(6)] + [2000.0])]
    out = score_sit(legs, LYING, [], 1000.0, 1900.0, HOUR_S, True)
    assert out["ended_early"] and out["duration_s"] == 900.0 and out["planned_s"] == HOUR_S
    assert out["plm_index"] == 24.0 and out["lm_events"][0]["onset_s"] == 100.0
    assert [(b["start_s"], b["end_s"]) for b in out["blocks"]] == [(0.0, 600.0), (600.0, 900.0)]


def test_too_little_scored_time_gives_no_verdict():
    # 5 min lying: 4 PLMs would read 48/h, so no index and no verdict.
    postures = [PostureSegment(0.0, 300.0, "lying"), PostureSegment(300.0, 3600.0, "upright")]
    out = score_sit([lms([10.0, 30.0, 50.0, 70.0])], postures, [], 0.0, HOUR_S, HOUR_S, False)
    assert out["plm_index"] is None and out["above_threshold"] is None
    assert any("Insufficient" in c for c in out["caveats"])


def test_not_taken():
    out = not_taken(HOUR_S)
    assert out["taken"] is False and out["plm_index"] is None and out["lm_events"] == []


def test_two_legs_with_onsets_under_5_s_apart_are_one_lm():
    legs = [lms([100.0, 120.0, 140.0, 160.0]), lms([102.0, 122.0, 142.0, 162.0], leg=1)]
    out = score_sit(legs, LYING, [], 0.0, HOUR_S, HOUR_S, False)
    assert out["lm_count"] == 4 and all(e["bilateral"] for e in out["lm_events"])

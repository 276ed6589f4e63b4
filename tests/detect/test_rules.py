"""Hand-worked PLM scoring cases, for both rule sets (WASM 2016 and AASM 2012).

Each case is small enough to score by hand; the expected figures in each test were worked out from
the rules in device/detect/rules.py (with their citations), not from running the code.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from device.detect.bed import in_bed_intervals
from device.detect.events import Interval, LegMovement, PostureSegment
from device.detect.scoring import imi_histogram, score_night, severity

NIGHT_S = 8 * 3600.0


def lm(onset_s: float, duration_s: float = 2.0, leg: int = 0) -> LegMovement:
    return LegMovement(onset_s, onset_s + duration_s, leg)


def score(left, right=None, rules="WASM2016", in_bed=((0.0, NIGHT_S),), gaps=(), duration_s=NIGHT_S, start=None):
    legs = [left] if right is None else [left, right]
    return score_night(
        legs, [Interval(*s) for s in in_bed], [Interval(*g) for g in gaps], duration_s, rules, recording_start=start
    )


def onsets(summary) -> list[float]:
    return [e["onset_s"] for e in summary["lm_events"]]


def series(summary) -> list[int | None]:
    return [e["series"] for e in summary["lm_events"]]


def imis(summary) -> list[float | None]:
    return [e["imi_s"] for e in summary["lm_events"]]


def at(*onsets_s: float, duration_s: float = 2.0, leg: int = 0) -> list[LegMovement]:
    return [lm(100.0 + t, duration_s, leg) for t in onsets_s]


# --- a CLM with an IMI below the minimum, in the middle of a series -------------------------------

def test_wasm_short_imi_ends_the_series_and_starts_the_next():
    # IMIs 20, 20, 20, 4, 20, 20, 20. The CLM at +64 (IMI 4 s < 10 s) ends the series of the first
    # four, is not part of it, and starts the next: +64, +84, +104, +124 (IMIs 20) is a series.
    s = score(at(0, 20, 40, 60, 64, 84, 104, 124))
    assert series(s) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert (s["plm_count"], s["plm_series_count"], s["clm_count"]) == (8, 2, 8)
    assert imis(s) == [None, 20.0, 20.0, 20.0, 4.0, 20.0, 20.0, 20.0]


def test_wasm_short_imi_that_cannot_start_four_more_leaves_them_out():
    # +64 breaks the first series; +64, +84, +104 are only three, so no second series.
    s = score(at(0, 20, 40, 60, 64, 84, 104))
    assert series(s) == [0, 0, 0, 0, None, None, None]
    assert s["plm_count"] == 4


def test_aasm_short_imi_is_passed_over_and_the_series_goes_on():
    # AASM 2012: +64 (period 4 s < 5 s) is not a PLM and does not interrupt; the next period is
    # measured from +60, so +84 has IMI 24 s and the series runs on: 7 PLMs in one series.
    s = score(at(0, 20, 40, 60, 64, 84, 104, 124), rules="AASM2012")
    assert series(s) == [0, 0, 0, 0, None, 0, 0, 0]
    assert (s["plm_count"], s["plm_series_count"], s["clm_count"]) == (7, 1, 8)
    assert imis(s) == [None, 20.0, 20.0, 20.0, 4.0, 24.0, 20.0, 20.0]


def test_an_imi_of_7_s_breaks_under_wasm_but_counts_under_aasm():
    moves = at(0, 20, 40, 60, 67, 87, 107, 127)
    wasm, aasm = score(moves), score(moves, rules="AASM2012")
    assert series(wasm) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert series(aasm) == [0] * 8  # 7 s is within AASM's 5–90 s
    assert wasm["plm_series_count"] == 2 and aasm["plm_series_count"] == 1


# --- a 12-s LM inside a series ---------------------------------------------------------------------

def test_wasm_a_12_s_lm_breaks_the_series():
    # CLMs at +0..+120 every 20 s, a 12-s LM at +45. Before it only three CLMs (no series); after
    # it +60..+120 are four, a series. The 12-s LM is scored but is not a CLM.
    moves = sorted(at(0, 20, 40, 60, 80, 100, 120) + at(45, duration_s=12.0), key=lambda m: m.onset_s)
    s = score(moves)
    assert onsets(s) == [100.0, 120.0, 140.0, 145.0, 160.0, 180.0, 200.0, 220.0]
    assert [e["clm"] for e in s["lm_events"]] == [True, True, True, False, True, True, True, True]
    assert series(s) == [None, None, None, None, 0, 0, 0, 0]
    assert (s["lm_count"], s["clm_count"], s["plm_count"]) == (8, 7, 4)
    # The intervals next to the long LM are missing (PLMScoRe): +60 has no IMI, +80 has 20 s.
    assert imis(s) == [None, 20.0, 20.0, None, None, 20.0, 20.0, 20.0]


def test_aasm_a_12_s_movement_is_not_an_lm_and_does_not_break():
    moves = sorted(at(0, 20, 40, 60, 80, 100, 120) + at(45, duration_s=12.0), key=lambda m: m.onset_s)
    s = score(moves, rules="AASM2012")
    assert series(s) == [0, 0, 0, None, 0, 0, 0, 0]
    assert (s["clm_count"], s["plm_count"], s["plm_series_count"]) == (7, 7, 1)


@pytest.mark.parametrize("rules", ["WASM2016", "AASM2012"])
def test_lm_duration_bounds_are_inclusive(rules):
    s = score(at(0, duration_s=0.5) + at(20, duration_s=10.0) + at(40, duration_s=10.01), rules=rules)
    assert [e["clm"] for e in s["lm_events"]] == [True, True, False]


# --- an IMI of 91 s, and the inclusive bounds -------------------------------------------------------

@pytest.mark.parametrize("rules", ["WASM2016", "AASM2012"])
def test_an_imi_of_91_s_ends_the_series(rules):
    s = score(at(0, 20, 40, 60, 151, 171, 191, 211), rules=rules)
    assert series(s) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert imis(s)[4] == 91.0
    assert s["imi_histogram"]["above_90_s"] == 1


@pytest.mark.parametrize("rules", ["WASM2016", "AASM2012"])
def test_an_imi_of_exactly_90_s_continues_it(rules):
    s = score(at(0, 20, 40, 60, 150, 170, 190, 210), rules=rules)
    assert series(s) == [0] * 8


@pytest.mark.parametrize("rules", ["WASM2016", "AASM2012"])
@pytest.mark.parametrize("imi_s", [10.0, 90.0])
def test_exactly_four_clms_at_the_bounds_are_a_series(rules, imi_s):
    # Onsets like 100.3, 110.3, …: in binary 110.3 - 100.3 is 9.999999999999986, yet the bound is
    # inclusive (WASM 2016: IMI ≥ 10 and ≤ 90 s; AASM 2012: 5 to 90 s).
    moves = [lm(100.3 + k * imi_s) for k in range(4)]
    s = score(moves, rules=rules)
    assert series(s) == [0, 0, 0, 0]
    assert imis(s)[1:] == [imi_s] * 3
    assert s["plm_count"] == 4


@pytest.mark.parametrize("rules", ["WASM2016", "AASM2012"])
def test_three_clms_are_not_a_series(rules):
    assert score(at(0, 20, 40), rules=rules)["plm_series_count"] == 0


def test_just_under_10_s_is_no_series_under_wasm_but_is_under_aasm():
    moves = [lm(100.0 + k * 9.99) for k in range(4)]
    assert score(moves)["plm_count"] == 0
    assert score(moves, rules="AASM2012")["plm_count"] == 4


# --- bilateral LMs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("rules", ["WASM2016", "AASM2012"])
def test_overlapping_lms_on_two_legs_are_one_bilateral_lm(rules):
    s = score([lm(100.0, 2.0)], [lm(101.0, 2.0, leg=1)], rules=rules)
    assert [(e["onset_s"], e["offset_s"], e["bilateral"], e["clm"]) for e in s["lm_events"]] == [
        (100.0, 103.0, True, True)
    ]


@pytest.mark.parametrize("rules", ["WASM2016", "AASM2012"])
def test_lms_0_4_s_apart_are_one_bilateral_lm(rules):
    # WASM: offset 102.0 to onset 102.4 is < 0.5 s. AASM: onsets 2.4 s apart, < 5 s.
    s = score([lm(100.0, 2.0)], [lm(102.4, 1.6, leg=1)], rules=rules)
    assert [(e["onset_s"], e["offset_s"], e["bilateral"]) for e in s["lm_events"]] == [(100.0, 104.0, True)]


def _legs(sides, right=True) -> list:
    legs = [[lm(100.0), lm(300.0), lm(500.0)]] + ([[lm(200.0, leg=1), lm(500.3, leg=1)]] if right else [])
    return [e.get("leg") for e in score_night(legs, [Interval(0.0, NIGHT_S)], [], NIGHT_S, sides=sides)["lm_events"]]


def test_each_lm_says_its_leg_when_the_sides_are_known():
    # Left 100, right 200, left 300, and 500 on both legs (0.3 s apart): one bilateral LM.
    assert _legs(("left", "right")) == ["left", "right", "left", "both"]
    assert _legs(("right", "left")) == ["right", "left", "right", "both"]
    # Unknown sides name no leg, but a bilateral LM is on both legs whatever their sides.
    assert _legs(()) == [None, None, None, "both"]
    assert _legs(["right"], right=False) == ["right"] * 3
    assert _legs([None], right=False) == [None] * 3


@pytest.mark.parametrize("sides", [("left",), ("left", "left"), ("left", "up"), ("left", "right", None)])
def test_sides_must_name_each_leg_once(sides):
    with pytest.raises(ValueError, match="each side once"):
        _legs(sides)


def test_lms_0_6_s_apart_stay_two_under_wasm_and_join_under_aasm():
    left, right = [lm(100.0, 2.0)], [lm(102.6, 1.4, leg=1)]
    wasm = score(left, right)
    assert [(e["onset_s"], e["bilateral"]) for e in wasm["lm_events"]] == [(100.0, False), (102.6, False)]
    assert imis(wasm) == [None, 2.6]
    aasm = score(left, right, rules="AASM2012")  # onsets 2.6 s apart: < 5 s, one LM
    assert [(e["onset_s"], e["offset_s"], e["bilateral"]) for e in aasm["lm_events"]] == [(100.0, 104.0, True)]


def test_overlapping_lms_with_onsets_5_s_apart_join_only_under_wasm():
    left, right = [lm(100.0, 8.0)], [lm(106.0, 4.0, leg=1)]
    assert [(e["offset_s"], e["clm"]) for e in score(left, right)["lm_events"]] == [(110.0, True)]
    assert len(score(left, right, rules="AASM2012")["lm_events"]) == 2


def test_the_imi_of_a_bilateral_lm_runs_from_its_earliest_onset():
    # Four bilateral LMs 20 s apart by earliest onset; which leg starts first alternates.
    left = [lm(100.0), lm(120.4), lm(140.0), lm(160.3)]
    right = [lm(100.3, leg=1), lm(120.0, leg=1), lm(140.2, leg=1), lm(160.0, leg=1)]
    s = score(left, right)
    assert onsets(s) == [100.0, 120.0, 140.0, 160.0]
    assert imis(s) == [None, 20.0, 20.0, 20.0]
    assert series(s) == [0, 0, 0, 0]
    assert all(e["bilateral"] for e in s["lm_events"])


def test_wasm_a_bilateral_lm_over_15_s_is_not_a_clm_and_breaks_the_series():
    # +80: left 8 s and right 9 s overlapping make one 16-s bilateral LM (> 15 s): not a CLM. It
    # breaks the series: +0..+60 is one, +100..+160 another.
    left = at(0, 20, 40, 60, 100, 120, 140, 160) + at(80, duration_s=8.0)
    right = at(87, duration_s=9.0, leg=1)
    s = score(sorted(left, key=lambda m: m.onset_s), right)
    bilateral = [e for e in s["lm_events"] if e["bilateral"]]
    assert [(e["onset_s"], e["offset_s"], e["clm"]) for e in bilateral] == [(180.0, 196.0, False)]
    assert series(s) == [0, 0, 0, 0, None, 1, 1, 1, 1]


def test_wasm_a_bilateral_lm_of_15_s_is_a_clm():
    s = score(at(0, duration_s=8.0), at(7, duration_s=8.0, leg=1))
    assert [(e["duration_s"], e["clm"], e["bilateral"]) for e in s["lm_events"]] == [(15.0, True, True)]


def test_aasm_the_same_two_movements_are_two_clms():
    s = score(at(80, duration_s=8.0), at(87, duration_s=9.0, leg=1), rules="AASM2012")  # onsets 7 s apart
    assert [(e["onset_s"], e["clm"], e["bilateral"]) for e in s["lm_events"]] == [(180.0, True, False), (187.0, True, False)]


def five_parts(first_s: float, parts: int = 5) -> tuple[list[LegMovement], list[LegMovement]]:
    # 1-s parts on alternating legs, 0.2 s apart: one chain from first_s to first_s + 1.2 * parts - 0.2.
    moves = [lm(first_s + 1.2 * k, 1.0, leg=k % 2) for k in range(parts)]
    return [m for m in moves if m.leg == 0], [m for m in moves if m.leg == 1]


def test_wasm_a_bilateral_lm_of_5_parts_is_not_a_clm_and_breaks_the_series():
    left, right = five_parts(180.0)
    left = sorted(at(0, 20, 40, 60, 100, 120, 140, 160) + left, key=lambda m: m.onset_s)
    s = score(left, right)
    chain = [e for e in s["lm_events"] if e["bilateral"]]
    assert [(e["onset_s"], e["offset_s"], e["clm"]) for e in chain] == [(180.0, 185.8, False)]
    assert series(s) == [0, 0, 0, 0, None, 1, 1, 1, 1]


def test_wasm_a_bilateral_lm_of_4_parts_is_a_clm():
    left, right = five_parts(180.0, parts=4)
    s = score(left, right)
    assert [(e["offset_s"], e["clm"], e["bilateral"]) for e in s["lm_events"]] == [(184.6, True, True)]


def test_aasm_a_bilateral_lm_of_5_parts_is_a_clm_in_the_series():
    left, right = five_parts(180.0)
    left = sorted(at(0, 20, 40, 60, 100, 120, 140, 160) + left, key=lambda m: m.onset_s)
    s = score(left, right, rules="AASM2012")
    assert series(s) == [0] * 9
    assert s["plm_count"] == 9


# --- periodicity index, histogram, hours, bed --------------------------------------------------------

def test_periodicity_index_counts_imis_in_runs_of_three_or_more():
    # IMIs: 20, 20, 20 (a run of 3) | 5 | 20, 20 (a run of 2, too short) | 195. In runs: 3 of 7.
    s = score(at(0, 20, 40, 60, 65, 85, 105, 300))
    assert [i for i in imis(s) if i is not None] == [20.0, 20.0, 20.0, 5.0, 20.0, 20.0, 195.0]
    assert s["periodicity_index"] == round(3 / 7, 4)


def test_the_intervals_next_to_a_long_lm_are_missing_hand_worked():
    # The case: CLMs at 3199.19, 3234.39, 3270.75, a 12.5-s LM at 3294.77, a CLM at 3323.69.
    # IMIs between CLMs: 35.20, 36.36; the intervals next to the LM (24.02 before, 28.92 after) are
    # missing (PLMScoRe), so 3323.69 has none, and 52.94 across the LM is no IMI either. Two IMIs,
    # in the 34-36 and 36-38 s bins; a run of 2 (< 3): periodicity index 0 of 2.
    moves = [lm(3199.19), lm(3234.39), lm(3270.75), lm(3294.77, 12.5), lm(3323.69)]
    s = score(moves)
    assert imis(s) == [None, 35.2, 36.36, None, None]
    assert [e["clm"] for e in s["lm_events"]] == [True, True, True, False, True]
    h = s["imi_histogram"]
    assert (h["below_10_s"], h["from_10_to_90_s"], h["above_90_s"]) == (0, 2, 0)
    assert h["counts"][17] == 1 and h["counts"][18] == 1 and sum(h["counts"]) == 2
    assert s["periodicity_index"] == 0.0


def test_an_interval_across_a_long_lm_is_not_in_the_periodicity_index():
    # IMIs 20, 20, 20 (a run of 3), then a 12-s LM at +70 and a CLM at +100. Across the LM would be
    # a fourth IMI (40 s) outside the run: 3/4. It is missing, so the index is 3/3.
    s = score(sorted(at(0, 20, 40, 60, 100) + at(70, duration_s=12.0), key=lambda m: m.onset_s))
    assert imis(s) == [None, 20.0, 20.0, 20.0, None, None]
    assert s["periodicity_index"] == 1.0
    # AASM 2012: a movement > 10 s is no LM and breaks nothing: 40 s is a fourth IMI, in the run.
    aasm = score(sorted(at(0, 20, 40, 60, 100) + at(70, duration_s=12.0), key=lambda m: m.onset_s), rules="AASM2012")
    assert imis(aasm)[-1] == 40.0 and aasm["periodicity_index"] == 1.0


def test_periodicity_index_is_zero_without_imis_and_one_for_a_clean_series():
    assert score([])["periodicity_index"] == 0.0
    assert score(at(0))["periodicity_index"] == 0.0
    assert score(at(*range(0, 200, 25)))["periodicity_index"] == 1.0


def test_imi_histogram_bins_and_bounds():
    h = imi_histogram([1.0, 9.99, 10.0, 11.9, 12.0, 89.9, 90.0, 90.01, 200.0])
    assert h["bin_width_s"] == 2 and len(h["counts"]) == 45
    expected = [0] * 45
    expected[0], expected[4], expected[5], expected[6], expected[44] = 1, 1, 2, 1, 2
    assert h["counts"] == expected
    assert (h["below_10_s"], h["from_10_to_90_s"], h["above_90_s"]) == (2, 5, 2)


def test_the_summary_histogram_counts_the_imis_between_clms():
    s = score(at(0, 20, 40, 60, 64))
    assert s["imi_histogram"]["counts"][10] == 3 and s["imi_histogram"]["counts"][2] == 1
    assert s["imi_histogram"]["below_10_s"] == 1


def test_hourly_follows_the_clock_when_the_start_is_known():
    start = datetime(2026, 3, 2, 22, 40, tzinfo=timezone(timedelta(hours=1)))
    moves = [lm(100.0), lm(1200.0)] + [lm(4800.0 + 20 * k) for k in range(4)]
    s = score(moves, duration_s=9000.0, in_bed=((0.0, 9000.0),), start=start)
    assert [(h["start_s"], h["end_s"], h["clock_hour"]) for h in s["hourly"]] == [
        (0.0, 1200.0, 22), (1200.0, 4800.0, 23), (4800.0, 8400.0, 0), (8400.0, 9000.0, 1)
    ]
    assert [h["lm_count"] for h in s["hourly"]] == [1, 1, 4, 0]
    assert [h["plm_count"] for h in s["hourly"]] == [0, 0, 4, 0]
    assert s["recording_start"] == "2026-03-02T22:40:00+01:00"


def test_hourly_runs_from_zero_without_a_start():
    s = score([lm(3598.0, 1.0), lm(3600.0)], duration_s=9000.0, in_bed=((0.0, 9000.0),))
    assert [(h["start_s"], h["end_s"], h["clock_hour"], h["lm_count"]) for h in s["hourly"]] == [
        (0.0, 3600.0, None, 1), (3600.0, 7200.0, None, 1), (7200.0, 9000.0, None, 0)
    ]


def test_a_naive_start_time_is_refused():
    with pytest.raises(ValueError, match="offset"):
        score([], start=datetime(2026, 3, 2, 22, 40))


def test_an_unknown_rule_set_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="WASM2016, AASM2012"):
        score([], rules="AASM2007")


@pytest.mark.parametrize("rules", ["WASM2016", "AASM2012"])
def test_a_spell_out_of_bed_ends_the_series_and_its_lms_are_not_scored(rules):
    # In bed 0–160 and 190–end. CLMs at 100, 120, 140 in bed, 170 out of bed (not scored), then
    # 195, 215: IMIs would be 20/25 s, but the spell out of bed ends the series: no PLM at all.
    moves = [lm(t) for t in (100, 120, 140, 170, 195, 215)]
    s = score(moves, in_bed=((0.0, 160.0), (190.0, NIGHT_S)), rules=rules)
    assert onsets(s) == [100.0, 120.0, 140.0, 195.0, 215.0]
    assert imis(s) == [None, 20.0, 20.0, None, 20.0]
    assert s["plm_count"] == 0
    assert any("1 leg movements while out of bed" in c for c in s["caveats"])


@pytest.mark.parametrize("rules", ["WASM2016", "AASM2012"])
def test_a_gap_ends_the_series_and_is_not_time_in_bed(rules):
    moves = [lm(t) for t in (100, 120, 140, 175, 195)]
    s = score(moves, gaps=((150.0, 170.0),), duration_s=3600.0, in_bed=((0.0, 3600.0),), rules=rules)
    assert s["plm_count"] == 0
    assert s["time_in_bed_s"] == 3580.0
    assert s["coverage"] == {"recorded_s": 3580.0, "gaps": [{"start_s": 150.0, "end_s": 170.0}]}


def test_indices_are_per_hour_in_bed_minus_gaps():
    # 30 PLMs (a series every 20 s) in 1.5 h in bed, of which 0.5 h is a gap: 30 per hour.
    moves = [lm(200.0 + 20 * k) for k in range(30)]
    s = score(moves, in_bed=((0.0, 5400.0),), gaps=((3600.0, 5400.0),), duration_s=7200.0)
    assert s["time_in_bed_s"] == 3600.0
    assert (s["plm_index"], s["lm_index"]) == (30.0, 30.0)
    assert (s["severity"], s["clinically_significant"]) == ("moderate", True)


@pytest.mark.parametrize(("plms", "significant"), [(15, False), (16, True)])
def test_clinical_significance_is_above_15_per_hour(plms, significant):
    s = score([lm(100.0 + 20 * k) for k in range(plms)], in_bed=((0.0, 3600.0),), duration_s=3600.0)
    assert s["plm_index"] == plms
    assert s["clinically_significant"] is significant


@pytest.mark.parametrize(
    ("plmi", "band"),
    [(0.0, "normal"), (4.99, "normal"), (5.0, "mild"), (24.99, "mild"), (25.0, "moderate"), (49.99, "moderate"), (50.0, "severe")],
)
def test_severity_bands(plmi, band):
    assert severity(plmi) == band


def test_caveats_name_respiration_and_time_in_bed():
    text = " ".join(score([])["caveats"]).lower()
    assert "respiratory" in text and "per hour in bed" in text and "eeg" in text


# --- in bed, from posture and markers ----------------------------------------------------------------

POSTURES = [
    PostureSegment(0.0, 100.0, "lying"),
    PostureSegment(100.0, 200.0, "upright"),
    PostureSegment(200.0, 900.0, "lying"),
    PostureSegment(900.0, 950.0, "unknown"),
    PostureSegment(950.0, 1000.0, "lying"),
]


def spans(intervals) -> list[tuple[float, float]]:
    return [(i.start_s, i.end_s) for i in intervals]


def test_in_bed_without_markers_is_lying():
    assert spans(in_bed_intervals(POSTURES, [], 1000.0)) == [(0.0, 100.0), (200.0, 900.0), (950.0, 1000.0)]


def test_in_bed_with_markers_is_lying_between_lights_off_and_on():
    marks = [(50.0, "lights_off"), (920.0, "lights_on")]
    assert spans(in_bed_intervals(POSTURES, marks, 1000.0)) == [(50.0, 100.0), (200.0, 900.0)]


def test_markers_without_a_partner_run_to_the_edges():
    assert spans(in_bed_intervals(POSTURES, [(300.0, "lights_off")], 1000.0)) == [(300.0, 900.0), (950.0, 1000.0)]
    assert spans(in_bed_intervals(POSTURES, [(300.0, "lights_on")], 1000.0)) == [(0.0, 100.0), (200.0, 300.0)]


def test_repeated_presses_are_ignored():
    marks = [(50.0, "lights_off"), (60.0, "lights_off"), (500.0, "lights_on"), (510.0, "lights_on")]
    assert spans(in_bed_intervals(POSTURES, marks, 1000.0)) == [(50.0, 100.0), (200.0, 500.0)]


def test_an_unknown_marker_is_refused():
    with pytest.raises(ValueError, match="lights_off or lights_on"):
        in_bed_intervals(POSTURES, [(10.0, "lamp")], 1000.0)


def test_too_little_time_in_bed_is_insufficient_data_not_normal():
    s = score(at(0, 20, 40, 60), in_bed=((90.0, 400.0),), duration_s=3600.0)
    assert s["plm_count"] == 4 and s["time_in_bed_s"] == 310.0
    assert (s["plm_index"], s["lm_index"]) == (0.0, 0.0)
    assert (s["severity"], s["clinically_significant"]) == ("insufficient_data", False)
    assert s["min_time_in_bed_s"] == 2880.0
    assert any(c.startswith("Insufficient data: 5 min recorded in bed") for c in s["caveats"])


def test_no_data_at_all_is_insufficient_data():
    s = score([], in_bed=(), duration_s=0.0)
    assert (s["severity"], s["clinically_significant"], s["plm_index"]) == ("insufficient_data", False, 0.0)


def test_a_plm_index_needs_48_min_in_bed():
    # One series of 4 PLMs, the fewest WASM 2016 scores, in 48 min is 5.0/h, the floor of the mild
    # band: from 48 min on the index can tell normal from mild. 47 min 59.999 s is too little.
    moves = at(0, 20, 40, 60)
    s = score(moves, in_bed=((0.0, 2880.0),), duration_s=3600.0)
    assert (s["plm_index"], s["severity"]) == (5.0, "mild")
    s = score(moves, in_bed=((0.0, 2879.999),), duration_s=3600.0)
    assert (s["plm_index"], s["severity"]) == (0.0, "insufficient_data")
    # The time that counts is in bed minus gaps.
    s = score(moves, in_bed=((0.0, 3000.0),), gaps=((1000.0, 1200.0),), duration_s=3600.0)
    assert (s["time_in_bed_s"], s["severity"]) == (2800.0, "insufficient_data")


def test_bilateral_bounds_are_strict_despite_floating_point():
    # 100.1 + 1.9 = 102.0 and 102.5 - 102.0 = 0.5 exactly in decimal, not in binary: still two LMs
    # under WASM ("less than 0.5 s"); onsets exactly 5 s apart stay two under AASM ("less than 5 s").
    wasm = score([lm(100.1, 1.9)], [lm(102.5, 1.0, leg=1)])
    assert len(wasm["lm_events"]) == 2
    aasm = score([lm(100.3, 2.0)], [lm(105.3, 2.0, leg=1)], rules="AASM2012")
    assert len(aasm["lm_events"]) == 2
    assert len(score([lm(100.3, 2.0)], [lm(105.2, 2.0, leg=1)], rules="AASM2012")["lm_events"]) == 1


def test_numpy_inputs_give_plain_json():
    import json

    import numpy as np

    moves = [LegMovement(np.float64(100.0 + 20 * k), np.float64(102.0 + 20 * k)) for k in range(40)]
    s = score_night([moves], [Interval(np.float64(0.0), np.float64(3600.0))], [], np.float64(3600.0))
    json.dumps(s)  # np.bool_ and np.int64 would not serialise
    assert type(s["clinically_significant"]) is bool and type(s["lm_events"][0]["clm"]) is bool

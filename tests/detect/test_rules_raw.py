"""The scorer applies the LM rules itself, so LMs scored anywhere (a PSG's annotations, raw pieces)
get the right answer: hand-worked cases of each rule, on one leg and on two.

The expected figures were worked out by hand from the rules (WASM 2016, AASM 2012; PLMScoRe's order:
join a leg's movements less than 0.5 s apart, then drop what is under 0.5 s, then combine the legs).
"""

from __future__ import annotations

import pytest

from device.detect.events import Interval, LegMovement
from device.detect.scoring import score_night

NIGHT_S = 3600.0


def mv(onset_s: float, offset_s: float, leg: int = 0) -> LegMovement:
    return LegMovement(onset_s, offset_s, leg)


def score(left, right=None, rules="WASM2016"):
    legs = [left] if right is None else [left, right]
    return score_night(legs, [Interval(0.0, NIGHT_S)], [], NIGHT_S, rules)


def events(summary) -> list[tuple]:
    return [(e["onset_s"], e["offset_s"], e["clm"], e["bilateral"]) for e in summary["lm_events"]]


def series_clms(*onsets_s: float, leg: int = 0) -> list[LegMovement]:
    return [mv(t, t + 2.0, leg) for t in onsets_s]


# --- one leg: movements less than 0.5 s apart are one LM ----------------------------------------------

@pytest.mark.parametrize("rules", ["WASM2016", "AASM2012"])
def test_pieces_on_one_leg_less_than_0_5_s_apart_are_one_lm(rules):
    # 100–101 and 101.4–102.4: 0.4 s apart, one LM of 2.4 s. An overlapping third piece joins too.
    s = score([mv(100.0, 101.0), mv(101.4, 102.4), mv(102.0, 103.0)], rules=rules)
    assert events(s) == [(100.0, 103.0, True, False)]


@pytest.mark.parametrize("rules", ["WASM2016", "AASM2012"])
def test_pieces_exactly_0_5_s_apart_stay_two(rules):
    # "Less than 0.5 s": 101.0 to 101.5 is not less (despite binary floating point, 100.1 + 0.9).
    s = score([mv(100.1, 101.0), mv(101.5, 102.5)], rules=rules)
    assert [e["onset_s"] for e in s["lm_events"]] == [100.1, 101.5]


def test_joined_pieces_over_10_s_are_one_lm_that_is_no_clm_and_breaks_the_series():
    # CLMs at 0, 20, 40, 60 (+100), then 5-s and 5.5-s pieces 0.3 s apart at 170: one LM of
    # 10.8 s, no CLM; it ends the series of the first four. Each piece alone would be a CLM.
    moves = series_clms(100, 120, 140, 160) + [mv(170.0, 175.0), mv(175.3, 180.8)] + series_clms(190, 210, 230, 250)
    s = score(moves)
    assert (170.0, 180.8, False, False) in events(s)
    assert [e["series"] for e in s["lm_events"]] == [0, 0, 0, 0, None, 1, 1, 1, 1]
    assert s["lm_count"] == 9


# --- one leg: what is under 0.5 s is no LM --------------------------------------------------------------

@pytest.mark.parametrize("rules", ["WASM2016", "AASM2012"])
def test_a_movement_under_0_5_s_is_no_lm(rules):
    # A 0.4-s blip at 130 between CLMs 20 s apart: not an LM, so no IMI of 10 s and no break; the
    # four CLMs are a series, and a caveat counts the blip.
    s = score(series_clms(100, 120) + [mv(130.0, 130.4)] + series_clms(140, 160), rules=rules)
    assert [e["onset_s"] for e in s["lm_events"]] == [100.0, 120.0, 140.0, 160.0]
    assert s["plm_count"] == 4
    assert any(c.startswith("1 movements shorter than 0.5 s") for c in s["caveats"])


def test_short_pieces_are_joined_before_the_minimum_is_applied():
    # Two 0.3-s pieces 0.2 s apart are one LM of 0.8 s (PLMScoRe joins, then drops): a CLM.
    s = score([mv(100.0, 100.3), mv(100.5, 100.8)])
    assert events(s) == [(100.0, 100.8, True, False)]
    assert not any("shorter than" in c for c in s["caveats"])


# --- two legs: the parts of a bilateral LM are whole single-leg LMs ----------------------------------------

def test_raw_pieces_count_as_the_single_leg_lms_they_make():
    # Left: three 0.8-s pieces 0.2 s apart, one left LM 100–102.8. Right: two pieces, one right LM
    # 100.5–102.3. Five raw pieces, but 2 single-leg LMs: a bilateral CLM of 2.8 s (WASM 2016 allows
    # up to 4 parts). Counting raw pieces as parts made it no CLM.
    left = [mv(100.0, 100.8), mv(101.0, 101.8), mv(102.0, 102.8)]
    right = [mv(100.5, 101.3, 1), mv(101.5, 102.3, 1)]
    assert events(score(left, right)) == [(100.0, 102.8, True, True)]


def test_a_bilateral_lm_with_a_part_over_10_s_is_no_clm():
    # Left pieces 100–105 and 105.3–110.5 are one left LM of 10.5 s; right 109–111 overlaps it:
    # one bilateral LM of 11 s (under 15 s, 2 parts), but a part is over 10 s: no CLM (WASM 2016).
    s = score([mv(100.0, 105.0), mv(105.3, 110.5)], [mv(109.0, 111.0, 1)])
    assert events(s) == [(100.0, 111.0, False, True)]


def test_a_bilateral_lm_of_two_parts_of_10_s_is_a_clm_up_to_15_s():
    # Left 100–110, right 105–115: parts of 10 s each (inclusive), 15 s in all (inclusive): a CLM.
    assert events(score([mv(100.0, 110.0)], [mv(105.0, 115.0, 1)])) == [(100.0, 115.0, True, True)]
    # Right to 115.1: 15.1 s, no CLM.
    assert events(score([mv(100.0, 110.0)], [mv(105.1, 115.1, 1)])) == [(100.0, 115.1, False, True)]


def test_five_single_leg_lms_chained_are_no_clm_but_four_are():
    # Alternating legs, 1-s LMs 0.3 s apart: L 100–101, R 101.3–102.3, L 102.6–103.6, R 103.9–104.9,
    # L 105.2–106.2. Same-leg LMs are 1.6 s apart (never joined on their leg); the chain is one
    # bilateral LM of 5 parts: no CLM. Without the fifth, 4 parts: a CLM.
    onsets = [100.0, 101.3, 102.6, 103.9, 105.2]
    left = [mv(t, t + 1.0) for t in onsets[0::2]]
    right = [mv(t, t + 1.0, 1) for t in onsets[1::2]]
    assert events(score(left, right)) == [(100.0, 106.2, False, True)]
    assert events(score(left[:2], right)) == [(100.0, 104.9, True, True)]


def test_a_leg_with_pieces_joins_the_other_leg_by_the_joined_offset():
    # Left 100–101 and 101.3–102 are one left LM to 102.0; right starts 102.4, 0.4 s after it: one
    # bilateral LM 100–103. (After the first piece alone it would be 1.4 s: two LMs.)
    s = score([mv(100.0, 101.0), mv(101.3, 102.0)], [mv(102.4, 103.0, 1)])
    assert events(s) == [(100.0, 103.0, True, True)]


def test_a_right_blip_under_0_5_s_does_not_make_a_bilateral_lm():
    s = score(series_clms(100), [mv(102.2, 102.6, 1)])
    assert events(s) == [(100.0, 102.0, True, False)]


# --- AASM 2012: legs join when their onsets are less than 5 s apart ------------------------------------------

def test_aasm_joins_the_legs_by_onsets_less_than_5_s_apart_after_joining_each_leg():
    # Left pieces 100–101 and 101.2–102 are one left LM from 100; right at 104.9 (onsets 4.9 s
    # apart) joins it; right at 105.0 does not.
    left = [mv(100.0, 101.0), mv(101.2, 102.0)]
    assert events(score(left, [mv(104.9, 106.0, 1)], rules="AASM2012")) == [(100.0, 106.0, True, True)]
    assert [e["onset_s"] for e in score(left, [mv(105.0, 106.0, 1)], rules="AASM2012")["lm_events"]] == [100.0, 105.0]


def test_aasm_and_wasm_differ_on_the_same_two_legs():
    # Left 100–102, right 104–106: WASM 2016 needs < 0.5 s between offset and onset (2 s here): two
    # LMs; AASM 2012 joins onsets 4 s apart: one.
    left, right = [mv(100.0, 102.0)], [mv(104.0, 106.0, 1)]
    assert len(score(left, right)["lm_events"]) == 2
    assert events(score(left, right, rules="AASM2012")) == [(100.0, 106.0, True, True)]


def test_already_scored_lms_score_as_before():
    # Applying the rules twice changes nothing: LMs at least 0.5 s long and 0.5 s apart are kept as given.
    moves = series_clms(100, 120, 140, 160, 180)
    once = score(moves)
    again = score([mv(e["onset_s"], e["offset_s"]) for e in once["lm_events"]])
    assert once == again

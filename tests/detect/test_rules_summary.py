"""Whatever the LMs, `score_night` returns a summary core that the server's contract accepts."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from device.detect.events import Interval, LegMovement
from device.detect.scoring import score_night
from server.model import NightCore

DURATION_S = 4 * 3600.0


@st.composite
def nights(draw):
    def leg(n):
        onsets = sorted(draw(st.lists(st.floats(0, DURATION_S - 30), max_size=n)))
        return [LegMovement(t, t + draw(st.floats(0.5, 20.0)), 0) for t in onsets]

    legs = [leg(120)] + ([leg(120)] if draw(st.booleans()) else [])
    cuts = sorted(draw(st.lists(st.floats(0, DURATION_S), min_size=0, max_size=6)))
    bounds = [0.0, *cuts, DURATION_S]
    in_bed = [Interval(a, b) for a, b in zip(bounds[::2], bounds[1::2]) if b > a]
    gap_starts = draw(st.lists(st.floats(0, DURATION_S - 100), max_size=3))
    gaps = [Interval(g, g + draw(st.floats(1, 100))) for g in sorted(gap_starts)]
    rules = draw(st.sampled_from(["WASM2016", "AASM2012"]))
    start = draw(st.none() | st.just(datetime(2026, 1, 5, 23, 17, 3, tzinfo=timezone(timedelta(hours=-5)))))
    return legs, in_bed, gaps, rules, start


@settings(max_examples=80, deadline=None)
@given(nights())
def test_any_night_scores_to_a_valid_summary_core(night):
    legs, in_bed, gaps, rules, start = night
    summary = score_night(legs, in_bed, gaps, DURATION_S, rules, recording_start=start)
    NightCore.model_validate_json(json.dumps(summary))  # as the collector receives it
    events = summary["lm_events"]
    assert [e["onset_s"] for e in events] == sorted(e["onset_s"] for e in events)
    assert all(e["clm"] for e in events if e["periodic"])
    series = [e["series"] for e in events if e["series"] is not None]
    assert sorted(set(series)) == list(range(summary["plm_series_count"]))
    assert all(series.count(k) >= 4 for k in set(series))
    assert sum(h["lm_count"] for h in summary["hourly"]) == summary["lm_count"]
    assert sum(h["plm_count"] for h in summary["hourly"]) == summary["plm_count"]
    h = summary["imi_histogram"]
    assert h["below_10_s"] + h["from_10_to_90_s"] + h["above_90_s"] == sum(e["imi_s"] is not None for e in events)
    assert 0.0 <= summary["periodicity_index"] <= 1.0


@settings(max_examples=30, deadline=None)
@given(nights(), st.randoms(use_true_random=False))
def test_the_order_lms_arrive_in_does_not_matter(night, rnd):
    legs, in_bed, gaps, rules, start = night
    shuffled = [rnd.sample(leg, len(leg)) for leg in legs]
    assert score_night(shuffled, in_bed, gaps, DURATION_S, rules) == score_night(legs, in_bed, gaps, DURATION_S, rules)

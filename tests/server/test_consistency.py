"""Headline figures must follow from the events and spans a summary carries, no date may lie in the
future, and a summary_id always names the same content (issue 10, item 4)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from server.collector import ingest
from server.db import open_db
from server.model import NightCore
from tests.server.payloads import encode, make_summary, put

TOPIC = "rlsmon/v1/dev-a/summary"
NOW = datetime(2026, 1, 6, 7, 0, tzinfo=timezone.utc)
RLSMON_DEVICE = str(Path(sys.executable).with_name("rlsmon-device"))


@pytest.fixture
def db(tmp_path):
    return open_db(tmp_path / "server.db")


def night(**changes):
    return {**make_summary(n_lms=40, generated_at=NOW - timedelta(hours=1)), **changes}


def _shorten_last_series(s):
    # Drop the last two LMs of the last series: it keeps 3 CLMs, too few for a series (WASM 2016).
    last = max(e["series"] for e in s["lm_events"] if e["series"] is not None)
    drop = [i for i, e in enumerate(s["lm_events"]) if e["series"] == last][-2:]
    s["lm_events"] = [e for i, e in enumerate(s["lm_events"]) if i not in drop]
    s["lm_count"] -= 2
    s["clm_count"] -= 2
    s["plm_count"] -= 2


def _legs(s: dict, one_leg: str) -> None:
    for e in s["lm_events"]:
        e["leg"] = "both" if e["bilateral"] else one_leg


INCONSISTENT = {
    # The payload: events giving a low PLMI, stated as 99, severe and significant.
    "plm_index inflated": (lambda s: s.update(plm_index=99.0, severity="severe", clinically_significant=True),
                           "plm_index does not follow"),
    "plm_index off by 0.02": (lambda s: s.update(plm_index=s["plm_index"] + 0.02), "plm_index does not follow"),
    "lm_index wrong": (lambda s: s.update(lm_index=s["lm_index"] * 2), "lm_index does not follow"),
    "severity not the band": (lambda s: s.update(severity="mild"), "severity 'mild' is not the band"),
    "significance flipped": (lambda s: s.update(clinically_significant=not s["clinically_significant"]),
                             "clinically_significant"),
    "hourly empty": (put(("hourly",), []), "hourly is empty"),
    "hourly counts": (lambda s: s["hourly"][0].update(lm_count=s["hourly"][0]["lm_count"] + 1),
                      "hourly lm_counts do not add up"),
    "hourly plm > lm": (lambda s: s["hourly"][0].update(plm_count=1, lm_count=0), "plm_count exceeds"),
    "hourly hole": (put(("hourly", 1, "start_s"), 4000.0), "hours must follow each other"),
    "hourly short": (lambda s: s.update(hourly=s["hourly"][:-1]), "hourly does not end at duration_s"),
    "clock_hour missing": (put(("hourly", 0, "clock_hour"), None), "clock_hour"),
    "in_bed empty": (put(("in_bed",), []), "time_in_bed_s is not"),
    "time_in_bed_s wrong": (lambda s: s.update(time_in_bed_s=s["time_in_bed_s"] - 60), "time_in_bed_s is not"),
    "gap inside bed unaccounted": (put(("coverage", "gaps"), [{"start_s": 100.0, "end_s": 130.0},
                                                              {"start_s": 400.0, "end_s": 500.0}]),
                                   "time_in_bed_s is not"),
    "recorded_s wrong": (put(("coverage", "recorded_s"), 1.0), "recorded_s is not"),
    "in_bed past the end": (lambda s: s["in_bed"][0].update(end_s=s["duration_s"] + 10), "ends after duration_s"),
    "LM out of bed": (lambda s: s["lm_events"][0].update(onset_s=100.0, offset_s=102.0), "not in bed"),
    "series of 3": (_shorten_last_series, "fewer than 4"),
    "histogram total": (put(("imi_histogram", "above_90_s"), 5), "imi_histogram counts"),
    "histogram bins": (put(("imi_histogram", "counts", 20), 3), "imi_histogram.counts"),
    "periodicity without IMIs": (lambda s: s.update(periodicity_index=0.5, imi_histogram={
        **s["imi_histogram"], "counts": [0] * 45, "from_10_to_90_s": 0}) or [
        e.update(imi_s=None) for e in s["lm_events"]], "imi_histogram|periodicity_index"),
    "a one-leg LM said to be both": (lambda s: _legs(s, "both"), "leg must be \"both\" exactly when bilateral"),
    "a bilateral LM said to be left": (lambda s: _legs(s, "left") or next(
        e for e in s["lm_events"] if e["bilateral"]).update(leg="left"), "exactly when bilateral"),
    "a leg that is no side": (lambda s: _legs(s, "middle"), "lm_events.0.leg"),
}


@pytest.mark.parametrize("name", INCONSISTENT)
def test_inconsistent_figures_are_rejected_with_the_figure_named(db, name):
    mutate, why = INCONSISTENT[name]
    summary = night()
    mutate(summary)
    outcome = ingest(db, TOPIC, encode(summary), now=NOW)
    assert outcome.kind == "rejected", name
    assert any(w in outcome.reason for w in why.split("|")), outcome.reason
    assert db["nights"].count == 0
    assert db.execute("SELECT reason FROM rejected").fetchone()[0] == outcome.reason


def test_rounded_figures_within_tolerance_pass(db):
    summary = night()
    summary["plm_index"] = round(summary["plm_index"], 2)
    summary["lm_index"] = round(summary["lm_index"], 2) + 0.004
    summary["time_in_bed_s"] += 0.003
    assert ingest(db, TOPIC, encode(summary), now=NOW).kind == "stored"


def test_a_short_night_states_its_indices_as_zero(db):
    summary = make_summary(n_lms=0, generated_at=NOW - timedelta(hours=1))
    summary.update(in_bed=[{"start_s": 300.0, "end_s": 800.0}], time_in_bed_s=500.0, lm_index=0.0, plm_index=0.0)
    assert ingest(db, TOPIC, encode(summary), now=NOW).kind == "stored"


@pytest.mark.parametrize("changes, why", [
    ({"night": "2099-01-05"}, "night is a date in the future"),
    ({"generated_at": "2099-01-06T07:00:00+00:00"}, "generated_at is in the future"),
    ({"generated_at": (NOW + timedelta(minutes=11)).isoformat()}, "generated_at is in the future"),
    ({"recording_start": "2099-01-05T22:00:00+00:00"}, "recording_start is in the future"),
])
def test_future_dates_are_rejected(db, changes, why):
    outcome = ingest(db, TOPIC, encode(night(**changes)), now=NOW)
    assert (outcome.kind, outcome.reason) == ("rejected", f"future: {why}")


def test_clock_skew_within_ten_minutes_is_allowed(db):
    ahead = night(generated_at=(NOW + timedelta(minutes=9)).isoformat())
    assert ingest(db, TOPIC, encode(ahead), now=NOW).kind == "stored"


def test_tonights_date_is_allowed_in_the_zone_furthest_ahead(db):
    # 11:00 UTC is already 01:00 the next day at UTC+14, where that evening has passed.
    now = datetime(2026, 1, 5, 11, 0, tzinfo=timezone.utc)
    summary = night(night="2026-01-06", generated_at=now.isoformat())
    summary["window"]["start"] = summary["recording_start"] = "2026-01-05T10:00:00+00:00"
    assert ingest(db, TOPIC, encode(summary), now=now).kind == "stored"


def test_a_future_generated_at_does_not_block_the_genuine_correction(db):
    first = night()
    assert ingest(db, TOPIC, encode(first), now=NOW).kind == "stored"
    future = night(generated_at="2099-01-06T07:00:00+00:00")
    assert ingest(db, TOPIC, encode(future), now=NOW).kind == "rejected"
    correction = night(generated_at=NOW.isoformat())
    assert ingest(db, TOPIC, encode(correction), now=NOW).kind == "replaced"
    assert db["nights"].get(("dev-a", "2026-01-05"))["summary_id"] == correction["summary_id"]


def test_same_summary_id_with_other_content_is_a_conflict(db):
    first = night()
    assert ingest(db, TOPIC, encode(first), now=NOW).kind == "stored"
    forged = {**first, "caveats": [*first["caveats"], "edited"]}
    outcome = ingest(db, TOPIC, encode(forged), now=NOW)
    assert outcome.kind == "rejected" and outcome.reason.startswith("conflict:")
    assert first["summary_id"] in outcome.reason
    assert json.loads(db["nights"].get(("dev-a", "2026-01-05"))["summary_json"]) == first
    [row] = db.query("SELECT reason FROM rejected")
    assert row["reason"] == outcome.reason


def test_same_summary_id_on_another_night_is_a_conflict(db):
    first = night()
    assert ingest(db, TOPIC, encode(first), now=NOW).kind == "stored"
    other = make_summary(night="2026-01-04", summary_id=first["summary_id"], generated_at=NOW)
    assert ingest(db, TOPIC, encode(other), now=NOW).reason.startswith("conflict:")
    assert db["nights"].count == 1


def test_the_same_night_serialised_differently_is_a_duplicate(db):
    first = night()
    assert ingest(db, TOPIC, encode(first), now=NOW).kind == "stored"
    assert ingest(db, TOPIC, json.dumps(first, indent=2).encode(), now=NOW).kind == "duplicate"


@pytest.mark.parametrize("rules, start", [("WASM2016", "2026-03-02T22:40:00+01:00"), ("AASM2012", None)])
def test_real_two_leg_analyze_output_passes(tmp_path, rules, start):
    """The device's real output, a severe two-leg night, meets every figure check."""
    from device.sim import simulate_night, write_night

    legs = [tmp_path / "left.csv", tmp_path / "right.csv"]
    write_night(simulate_night("severe", 11, 1.0, 52.0, legs=2), legs[0], tmp_path / "truth.json",
                other_leg_csv=legs[1])
    out = subprocess.run([RLSMON_DEVICE, "analyze", *map(str, legs), "--json", "--rules", rules,
                          *(["--start", start] if start else [])],
                         check=True, capture_output=True, text=True, timeout=300)
    core = NightCore.model_validate_json(out.stdout)
    assert core.plm_count > 0 and core.hourly and core.severity != "normal"
    # Two recordings are the left leg, then the right: every LM says its leg.
    legs = [lm["leg"] for lm in core.lm_events]
    assert {"left", "right", "both"} >= set(legs) >= {"left", "right"}
    assert [leg == "both" for leg in legs] == [lm["bilateral"] for lm in core.lm_events]


def test_a_sliver_in_bed_rounded_to_nothing_still_holds_its_lm(db):
    # The device scores an LM whose onset is in a span of a few µs, printed as [0.0, 0.0] (found by
    # tests/detect/test_rules_summary.py).
    summary = make_summary(n_lms=0, generated_at=NOW - timedelta(hours=1))
    lm = {"onset_s": 0.0, "offset_s": 1.0, "duration_s": 1.0, "periodic": False, "clm": True,
          "bilateral": False, "series": None, "imi_s": None}
    summary.update(lm_events=[lm], lm_count=1, clm_count=1, in_bed=[{"start_s": 0.0, "end_s": 0.0}],
                   time_in_bed_s=0.0, lm_index=0.0, plm_index=0.0)
    summary["hourly"][0]["lm_count"] = 1
    assert ingest(db, TOPIC, encode(summary), now=NOW).kind == "stored"


def test_a_recording_started_a_hair_before_the_hour_passes():
    # Its first clock hour lasts 0.2 ms and prints as [0.0, 0.0]: the device's real output.
    from device.detect.events import Interval, LegMovement
    from device.detect.scoring import score_night

    start = datetime(2026, 1, 5, 22, 59, 59, 999800, tzinfo=timezone.utc)
    core = score_night([[LegMovement(100.0, 101.0, 0)]], [Interval(0.0, 7200.0)], [], 7200.0, recording_start=start)
    assert core["hourly"][0]["end_s"] == 0.0
    NightCore.model_validate_json(json.dumps(core))


WORN_OFF = [{"start_s": 0.0, "end_s": 250.0}]  # the sensor on the table before bed (in bed from 300 s)
WEAR = {
    "a span past the end": ([{"start_s": 0.0, "end_s": 250.0}, {"start_s": 9e4, "end_s": 9.1e4}],
                            True, "wear.not_worn[1] ends after duration_s"),
    "spans out of order": ([{"start_s": 100.0, "end_s": 200.0}, {"start_s": 0.0, "end_s": 50.0}],
                           True, "wear.not_worn[1] is out of order"),
    "spans overlapping": ([{"start_s": 0.0, "end_s": 200.0}, {"start_s": 150.0, "end_s": 250.0}],
                          True, "overlaps the span before"),
    "not worn in bed": ([{"start_s": 1000.0, "end_s": 2000.0}], True, "in_bed overlaps wear.not_worn"),
    "spans without a temperature": (WORN_OFF, False, "wear.assessed is false"),
}


@pytest.mark.parametrize("name", WEAR)
def test_wear_spans_must_be_ordered_within_the_night_and_out_of_bed(db, name):
    spans, assessed, why = WEAR[name]
    outcome = ingest(db, TOPIC, encode(night(wear={"assessed": assessed, "not_worn": spans})), now=NOW)
    assert (outcome.kind, why in outcome.reason) == ("rejected", True), outcome.reason


def test_consistent_wear_spans_are_stored_whole(db):
    summary = night(wear={"assessed": True, "not_worn": WORN_OFF})
    assert ingest(db, TOPIC, encode(summary), now=NOW).kind == "stored"
    stored = json.loads(db.execute("SELECT summary_json FROM nights").fetchone()[0])
    assert stored["wear"] == {"assessed": True, "not_worn": WORN_OFF}


@pytest.mark.parametrize("one_leg", ["left", "right", None])
def test_lms_with_their_legs_or_without_are_stored_whole(db, one_leg):
    summary = night()
    if one_leg:
        _legs(summary, one_leg)
    assert any(e["bilateral"] for e in summary["lm_events"])  # "both" is checked too
    assert ingest(db, TOPIC, encode(summary), now=NOW).kind == "stored"
    stored = json.loads(db.execute("SELECT summary_json FROM nights").fetchone()[0])
    assert [e.get("leg") for e in stored["lm_events"]] == [e.get("leg") for e in summary["lm_events"]]

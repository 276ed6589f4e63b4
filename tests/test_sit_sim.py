"""The simulated evening test (`sit` scenario) detected and scored by the SIT rules, against its
truth; and `analyze --sit` on the command line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from device.analyze import analyze_sit
from device.cli import cli
from device.sim import simulate_night, write_night


@pytest.fixture(scope="module")
def sit_hour(tmp_path_factory):
    d = tmp_path_factory.mktemp("sit")
    night = simulate_night("sit", 1, 1.0)
    write_night(night, d / "rec.csv", d / "truth.json")
    return d / "rec.csv", night.truth


def test_the_sit_scenario_is_an_awake_hour_of_periodic_lms_at_short_intervals(sit_hour):
    _, truth = sit_hour
    ref = truth["sit_reference"]
    assert truth["wake"] == [{"start_s": truth["lights_off_s"], "end_s": truth["lights_on_s"]}]
    plms = [m for m in truth["lms"] if m["kind"] == "plm"]
    assert plms and all(m["wake"] for m in plms)
    imis = [b["onset_s"] - a["onset_s"] for a, b in zip(plms, plms[1:]) if a["series"] == b["series"]]
    assert 9.0 < sorted(imis)[len(imis) // 2] < 16.0  # around Michaud's modal 11-12 s
    assert ref["above_threshold"] is True and ref["plm_index"] > 40.0


def test_the_simulated_sit_scored_by_the_device_matches_its_truth(sit_hour):
    path, truth = sit_hour
    ref = truth["sit_reference"]
    got = analyze_sit([path])
    # The recording also holds the walk in and out (not near horizontal: excluded, reported).
    assert got["not_horizontal_s"] > 60.0
    assert got["above_threshold"] == ref["above_threshold"]
    assert abs(got["plm_index"] - ref["plm_index"]) <= 0.1 * ref["plm_index"]
    assert abs(got["lm_count"] - ref["lm_count"]) <= max(2, 0.05 * ref["lm_count"])
    true_onsets = [e["onset_s"] + truth["lights_off_s"] for e in ref["lm_events"]]
    found = sum(any(abs(e["onset_s"] - t) < 1.0 for e in got["lm_events"]) for t in true_onsets)
    assert found >= 0.95 * len(true_onsets)
    assert sum(b["plm_count"] for b in got["blocks"]) == got["plm_count"]
    assert [b["end_s"] - b["start_s"] for b in got["blocks"]][:5] == [600.0] * 5


def test_analyze_sit_on_the_command_line(sit_hour):
    path, _ = sit_hour
    out = CliRunner().invoke(cli, ["analyze", str(path), "--sit", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["schema"] == "rlsmon.sit/1" and result["rules"] == "SIT"
    text = CliRunner().invoke(cli, ["analyze", str(path), "--sit"]).output
    assert "SIT PLM index" in text and "above 40/h" in text
    refused = CliRunner().invoke(cli, ["analyze", str(path), "--sit", "--rules", "AASM2012"])
    assert refused.exit_code == 2 and "--sit" in refused.output

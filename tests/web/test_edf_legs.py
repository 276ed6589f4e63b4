"""The leg of each LM in the EDF+ export: "LM:left", "LM:right", "LM:bilateral" (and "PLM:…") when
the night says it, plain "LM" and "PLM" when it does not; read back by pyedflib and by
`rlsmon-device score` with the same LMs and legs."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime

from click.testing import CliRunner

from device.cli import cli
from device.detect.events import Interval, LegMovement
from device.detect.scoring import LEFT_RIGHT, score_night
from server.db import open_db
from server.web.edf import night_annotations, write_annotations_edf
from tests.web import seed

NIGHT = date(2026, 6, 1)  # before the seeded nights
BED_S = (600.0, 8 * 3600.0 - 900.0)


def _moves(leg: int, onsets_s, duration_s: float = 2.0, shift_s: float = 0.0) -> list[LegMovement]:
    return [LegMovement(t + shift_s, t + shift_s + duration_s, leg) for t in onsets_s]


def two_leg_night() -> dict:
    """A night scored by the device's own scorer from two legs, left first, with the collector's
    metadata: a left series (5 PLMs), a right one (6), a bilateral one (4, each a left and a right
    part 0.3 s apart), a long right LM (no CLM) and two lone LMs, one per leg."""
    left = _moves(0, [1000 + 20 * k for k in range(5)]) + _moves(0, [5000 + 30 * k for k in range(4)])
    left += _moves(0, [9000])
    right = _moves(1, [3000 + 25 * k for k in range(6)]) + _moves(1, [5000 + 30 * k for k in range(4)], shift_s=0.3)
    right += _moves(1, [7000], duration_s=12.0) + _moves(1, [11000])
    base = seed.make_night("dev-a", NIGHT, 5.0, in_bed_s=BED_S, gap=False)
    core = score_night([left, right], [Interval(*BED_S)], [], base["duration_s"],
                       recording_start=datetime.fromisoformat(base["recording_start"]), sides=LEFT_RIGHT)
    return {**base, **core, "sensor": {**base["sensor"], "legs": 2}}


def legs_of(lms: list[dict]) -> list[tuple[float, str]]:
    return [(lm["onset_s"], lm.get("leg", "")) for lm in lms]


def test_the_scorer_names_each_lms_leg():
    lms = two_leg_night()["lm_events"]
    assert Counter(lm["leg"] for lm in lms) == {"left": 6, "right": 8, "both": 4}
    assert all((lm["leg"] == "both") == lm["bilateral"] for lm in lms)


def test_labels_name_the_leg_when_it_is_known():
    def lm(onset_s: float, periodic: bool = False, **extra) -> dict:
        return {"onset_s": onset_s, "offset_s": onset_s + 1, "duration_s": 1.0, "periodic": periodic,
                "bilateral": extra.pop("bilateral", False), "series": 0 if periodic else None, **extra}

    summary = {"lm_events": [lm(10, leg="left"), lm(20, True, leg="right"), lm(30, True, leg="both", bilateral=True),
                             lm(40), lm(50, True), lm(60, bilateral=True)]}
    texts = [(a.onset_s, a.text) for a in night_annotations(summary) if a.text != "PLM series"]
    # The last LM is from a summary made before `leg` existed: bilateral still names both legs.
    assert texts == [(10, "LM:left"), (20, "LM:right"), (20, "PLM:right"), (30, "LM:bilateral"),
                     (30, "PLM:bilateral"), (40, "LM"), (50, "LM"), (50, "PLM"), (60, "LM:bilateral")]


def test_a_two_leg_night_reads_back_with_its_legs(tmp_path, staff, seeded):
    """Exported by the dashboard, read back by pyedflib (EDFlib, EDFbrowser's reader) with the labels
    written, and scored again by `rlsmon-device score` with no --label: the same LMs on the same legs."""
    import pyedflib

    summary = two_leg_night()
    db = open_db(seeded.path)
    seed.store(db, summary)
    db.close()
    response = staff.get(f"/devices/dev-a/nights/{NIGHT}/annotations.edf")
    assert response.status_code == 200
    path = tmp_path / "night.edf"
    path.write_bytes(response.content)

    with pyedflib.EdfReader(str(path)) as f:
        _, _, texts = f.readAnnotations()
    lms = summary["lm_events"]
    label = {"left": "LM:left", "right": "LM:right", "both": "LM:bilateral"}
    assert Counter(t for t in texts if t.startswith("LM")) == Counter(label[lm["leg"]] for lm in lms)
    assert sum(t.startswith("PLM:") for t in texts) == summary["plm_count"] == 15

    result = CliRunner().invoke(cli, ["score", str(path), "--json"])
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert again["lm_count"] == summary["lm_count"] and again["plm_count"] == summary["plm_count"]
    assert legs_of(again["lm_events"]) == legs_of(lms)
    # Only the labels that are no LM are left unread, and said so.
    assert result.stderr.endswith("(add one with --label 'TEXT=left'): 'PLM series' x3, 'In bed' x1\n")


def test_a_night_that_does_not_say_its_legs_reads_back_as_one_leg(tmp_path):
    summary = seed.make_night("dev-a", NIGHT, 19.0, gap=False)  # none of its LMs in a gap
    summary["lm_events"] = [{**lm, "bilateral": False} for lm in summary["lm_events"]]
    data = write_annotations_edf(night_annotations(summary), datetime.fromisoformat(summary["recording_start"]),
                                 summary["duration_s"], "P-1", "rlsmon")
    path = tmp_path / "night.edf"
    path.write_bytes(data)
    result = CliRunner().invoke(cli, ["score", str(path), "--json"])
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    assert [lm["onset_s"] for lm in again["lm_events"]] == [lm["onset_s"] for lm in summary["lm_events"]]
    assert not any("leg" in lm for lm in again["lm_events"])

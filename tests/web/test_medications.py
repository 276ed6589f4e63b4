"""Medications and the treatment response (server/web/medications.py, response.py): the rules on
hand-worked nights, and the forms on the patient page (roles, CSRF and audit are in
test_roles.py, test_auth.py and test_audit.py)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from server.db import MEDICATION_CLASSES, open_db
from server.quality import ELIGIBLE, EXCLUDED, PROVISIONAL, Quality
from server.web import medications, response
from server.web.medications import Medication
from tests.web.conftest import csrf_of
from tests.pgserver import BOTH_DATABASES

pytestmark = BOTH_DATABASES  # the tests that use the database run on SQLite and PostgreSQL

D0 = date(2026, 10, 1)  # the day the drug starts in the hand-worked nights


def _night(day: int, plmi: float, label: str = ELIGIBLE) -> dict:
    """A night ``day`` evenings after D0 (negative: before)."""
    return {"night": (D0 + timedelta(days=day)).isoformat(), "plm_index": plmi,
            "quality": Quality(label, ())}


def _med(cls: str = "dopamine_agonist", started: date = D0, stopped: date | None = None,
         ident: int = 1, drug: str = "ropinirole") -> Medication:
    return Medication(ident, drug, "0.25 mg", cls, started, stopped)


def test_the_page_names_every_stored_class_in_order():
    assert tuple(medications.CLASS_NAMES) == MEDICATION_CLASSES


def test_before_and_after_windows_are_14_nights_of_eligible_nights_only():
    # 20 nights before at 30/h (but the night before the start is provisional at 99/h, and one
    # is excluded), then 20 nights at 10/h.
    nights = ([_night(d, 30.0) for d in range(-20, -1) if d != -5]
              + [_night(-1, 99.0, PROVISIONAL)]
              + [_night(-5, 0.0, EXCLUDED)] + [_night(d, 10.0) for d in range(0, 20)])
    (change,) = response.changes([_med()], nights)
    assert change.kind == "started" and change.on == D0
    # Before: 14 nights, 17 Sep to 30 Sep; 12 eligible (30 Sep provisional, 26 Sep excluded).
    assert (change.before.first, change.before.last) == (D0 - timedelta(days=14),
                                                          D0 - timedelta(days=1))
    assert change.before.plmi == (30.0,) * 12 and change.before.provisional == 1
    # After: 1 Oct to 14 Oct.
    assert (change.after.first, change.after.last) == (D0, D0 + timedelta(days=13))
    assert len(change.after.plmi) == 14 and change.after.median == 10.0
    assert change.line == (
        "ropinirole 0.25 mg (dopamine agonist) started 1 Oct. Before, 17 Sep–30 Sep: 12 eligible "
        "nights, median 30.0/h (IQR 30.0–30.0, range 30.0–30.0). After, 1 Oct–14 Oct: 14 eligible "
        "nights, median 10.0/h (IQR 10.0–10.0, range 10.0–10.0). Median −20.0/h (−67%).")


def test_the_spread_is_stated_and_too_few_nights_said_so():
    # Before: 10, 20, 30, 40 -> median 25, inclusive quartiles 17.5 and 32.5. After: 2 nights.
    nights = [_night(-4, 10), _night(-3, 20), _night(-2, 30), _night(-1, 40),
              _night(0, 5), _night(1, 6), _night(2, 7, PROVISIONAL)]
    (change,) = response.changes([_med("iron", drug="ferrous sulfate")], nights)
    assert change.before.median == 25 and change.before.iqr == (17.5, 32.5)
    assert change.after.median is None and change.after.iqr is None
    assert "median 25.0/h (IQR 17.5–32.5, range 10.0–40.0)" in change.line
    assert "After, 1 Oct–3 Oct: 2 eligible nights, too few to compare (at least 3)." in change.line
    assert "Median" not in change.line.split("After")[1]


def test_windows_are_cut_at_the_neighbouring_change():
    # Iron starts on D0, ropinirole 5 days later and stops 10 days after that.
    iron = _med("iron", D0, ident=1, drug="iron")
    da = _med(started=D0 + timedelta(days=5), stopped=D0 + timedelta(days=15), ident=2)
    nights = [_night(d, 20.0) for d in range(-20, 30)]
    first, second, third = response.changes([iron, da], nights)
    assert (first.after.first, first.after.last) == (D0, D0 + timedelta(days=4))
    assert (second.before.first, second.before.last) == (D0, D0 + timedelta(days=4))
    assert (second.after.first, second.after.last) == (D0 + timedelta(days=5),
                                                        D0 + timedelta(days=14))
    assert third.kind == "stopped" and third.on == D0 + timedelta(days=15)
    assert (third.before.first, third.after.last) == (D0 + timedelta(days=5),
                                                       D0 + timedelta(days=28))


def _course(after: list[float], before: float = 30.0, cls: str = "dopamine_agonist",
            stopped: date | None = None) -> list[response.Prompt]:
    nights = [_night(d, before) for d in range(-14, 0)]
    nights += [_night(d, v) for d, v in enumerate(after)]
    return response.augmentation_prompts([_med(cls, stopped=stopped)], nights)


def test_a_fall_then_a_climb_back_to_baseline_prompts_a_review():
    # Baseline 30/h. Two weeks at 10/h (weekly median 10 <= 15, half the baseline), then 30/h
    # for a week: the weekly median reaches 30 on the 4th night at 30 (4 of the 7 nights).
    after = [10.0] * 14 + [30.0] * 7
    (prompt,) = _course(after)
    assert prompt.baseline == 30.0
    assert prompt.lowest[1] == 10.0
    assert prompt.back == (D0 + timedelta(days=17), 30.0)
    assert prompt.line.startswith("Review for augmentation or tolerance: after ropinirole 0.25 mg "
                                  "started 1 Oct, the weekly median PLM index fell from 30.0/h "
                                  "to 10.0/h")
    assert "Max Planck" in prompt.line and "García-Borreguero" in prompt.line
    assert prompt.line.endswith("this is a prompt, not a finding.")


def test_no_prompt_without_the_fall_or_without_the_climb_back():
    assert _course([20.0] * 21) == []                      # 20 > 15: never halved
    assert _course([10.0] * 14 + [29.0] * 7) == []          # back to 29 < 30: not the baseline
    assert _course([15.0] * 14 + [31.0] * 7) != []          # exactly half is a fall
    # The seeded patient's course (tests/web/conftest.py): 30/h, down to ~10, back to 17-19.
    assert _course([12, 9, 7, 10, 8, 11, 9, 13, 12, 15, 14, 17, 19]) == []


def test_only_a_dopamine_agonist_taken_prompts_and_only_from_a_baseline_worth_it():
    assert _course([10.0] * 14 + [30.0] * 7, cls="alpha2delta") == []
    assert _course([1.0] * 14 + [4.0] * 7, before=4.0) == []   # baseline under 5/h
    # Stopped before the climb: the nights after the stop are not on the drug.
    assert _course([10.0] * 14 + [30.0] * 7, stopped=D0 + timedelta(days=14)) == []
    # Fewer than 3 eligible baseline nights: no baseline, no prompt.
    nights = [_night(-2, 30.0), _night(-1, 30.0)] + [_night(d, v) for d, v in
                                                     enumerate([10.0] * 14 + [30.0] * 7)]
    assert response.augmentation_prompts([_med()], nights) == []


def test_one_restless_night_does_not_make_a_climb_back():
    # A single 40/h night among 10/h nights leaves the weekly median at 10.
    assert _course([10.0] * 10 + [40.0] + [10.0] * 10) == []


# ---- the forms -------------------------------------------------------------------------------

def _add(staff, pid: int, **fields):
    data = {"drug": "pregabalin", "dose": "75 mg", "drug_class": "alpha2delta",
            "started": "2026-11-20", "csrf_token": csrf_of(staff.get(f"/patients/{pid}").text)}
    data.update(fields)
    return staff.post(f"/patients/{pid}/medications", data=data, follow_redirects=False)


def test_a_medication_is_added_shown_and_stopped(staff, seeded):
    pid = seeded.flagged_patient
    response_ = _add(staff, pid, stopped="")
    assert response_.status_code == 303
    assert response_.headers["location"] == f"/patients/{pid}#medications"
    html = staff.get(f"/patients/{pid}").text
    assert "pregabalin" in html and "α2δ ligand" in html
    assert "ropinirole 0.25 mg (dopamine agonist) started 11 Nov." in html
    db = open_db(seeded.path)
    (med,) = [m for m in medications.of_patient(db, pid) if m.drug == "pregabalin"]
    db.conn.close()
    assert med.stopped is None and med.created_by == "nurse.kim"
    url = f"/patients/{pid}/medications/{med.id}/stop"
    token = csrf_of(html)
    assert staff.post(url, data={"on": "2026-11-19", "csrf_token": token}).status_code == 422
    assert staff.post(url, data={"on": "2026-11-22", "csrf_token": token},
                      follow_redirects=False).status_code == 303
    assert staff.post(url, data={"on": "2026-11-23", "csrf_token": token}).status_code == 422
    assert "pregabalin 75 mg (α2δ ligand) stopped 22 Nov." in staff.get(f"/patients/{pid}").text
    # Another patient's entry is not found through this patient.
    other = f"/patients/{seeded.calm_patient}/medications/{med.id}/stop"
    assert staff.post(other, data={"on": "2026-11-22", "csrf_token": token}).status_code == 404


@pytest.mark.parametrize("fields, message", [
    ({"drug": "  "}, "the drug is 1–100 printable characters"),
    ({"dose": " "}, "the dose is 1–50 printable characters"),
    ({"dose": ""}, '"loc":["body","dose"]'),
    ({"drug_class": "antihistamine"}, "the class is one of"),
    ({"stopped": "2026-11-01"}, "the stop date is before the start date"),
    ({"started": "2026-02-30"}, None),
])
def test_a_bad_entry_is_refused_and_names_the_field(staff, seeded, fields, message):
    refused = _add(staff, seeded.flagged_patient, **fields)
    assert refused.status_code == 422
    if message:
        assert message in refused.text
    db = open_db(seeded.path)
    assert [m.drug for m in medications.of_patient(db, seeded.flagged_patient)] == ["ropinirole"]
    db.conn.close()


def test_a_medication_needs_the_csrf_token(staff, seeded):
    refused = staff.post(f"/patients/{seeded.flagged_patient}/medications",
                         data={"drug": "x", "dose": "1 mg", "drug_class": "iron",
                               "started": "2026-11-20"}, follow_redirects=False)
    assert refused.status_code == 403


def test_forgetting_a_patient_erases_their_medications(seeded):
    from server.audit import Actor
    from server.lifecycle import forget
    from tests.web.conftest import NOW

    db = open_db(seeded.path)
    forget(db, "P-0001", NOW, Actor("cli:test"))
    assert db.execute("SELECT count(*) FROM medications").fetchone()[0] == 0
    db.conn.close()


def test_every_medication_write_is_audited_without_the_drug(staff, seeded):
    from server import audit

    pid = seeded.flagged_patient
    assert _add(staff, pid).status_code == 303
    token = csrf_of(staff.get(f"/patients/{pid}").text)
    db = open_db(seeded.path)
    med_id = max(m.id for m in medications.of_patient(db, pid))
    assert staff.post(f"/patients/{pid}/medications/{med_id}/stop",
                      data={"on": "2026-11-23", "csrf_token": token}).status_code == 200
    entries = [e for e in audit.page(db, limit=10) if e["action"].startswith("medication.")]
    db.conn.close()
    assert [(e["action"], e["actor"], e["patient"], e["detail"]) for e in entries] == [
        ("medication.stop", "nurse.kim", "P-0001", f"id={med_id} stopped=2026-11-23"),
        ("medication.add", "nurse.kim", "P-0001", f"id={med_id} started=2026-11-20")]
    assert not any("pregabalin" in str(v) or "75 mg" in str(v) for e in entries for v in e.values())


def test_the_after_window_ends_at_the_latest_night_recorded():
    # Started 1 Oct, nights recorded to 5 Oct: the window is 1-5 Oct, not 1-14 Oct.
    nights = [_night(d, 30.0) for d in range(-5, 0)] + [_night(d, 10.0) for d in range(0, 5)]
    (change,) = response.changes([_med()], nights)
    assert (change.after.first, change.after.last) == (D0, D0 + timedelta(days=4))
    assert "After, 1 Oct–5 Oct: 5 eligible nights" in change.line

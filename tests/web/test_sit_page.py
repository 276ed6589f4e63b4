"""The evening tests on the patient page (chart against 40/h, table) and in the CSV and JSON exports."""

from __future__ import annotations

import csv
import io
import json

from server.collector import ingest
from server.db import open_db
from tests.server.test_sit import encode, make_sit
from tests.pgserver import BOTH_DATABASES

pytestmark = BOTH_DATABASES  # the tests that use the database run on SQLite and PostgreSQL


def seed_sits(path) -> None:
    db = open_db(path)
    ingest(db, "rlsmon/v1/dev-a/sit", encode(make_sit(plms=50, evening="2026-11-20")))
    ingest(db, "rlsmon/v1/dev-a/sit", encode(make_sit(taken=False, evening="2026-11-21")))
    ingest(db, "rlsmon/v1/dev-b/sit", encode(make_sit("dev-b", plms=8, evening="2026-11-20")))
    db.conn.close()


def test_the_patient_page_shows_each_evenings_sit_against_40_per_hour(staff, seeded):
    seed_sits(seeded.path)
    html = staff.get(f"/patients/{seeded.flagged_patient}").text
    section = html.split('id="sit"')[1].split("</section>")[0]
    assert 'class="threshold-label"' in section and ">40/h<" in section
    assert 'data-evening="2026-11-20" data-plmi="50.0"' in section  # dev-a's, not dev-b's 8/h
    assert "not taken" in section and 'data-plmi="8.0"' not in section
    rows = section.split('class="sit-row"')[1:]
    assert [r.split('data-evening="')[1][:10] for r in rows] == ["2026-11-21", "2026-11-20"]
    assert ">yes<" in rows[1] and "complete" in rows[1]
    calm = staff.get(f"/patients/{seeded.calm_patient}").text.split('id="sit"')[1]
    assert 'data-plmi="8.0"' in calm


def test_exports_carry_the_evening_tests(staff, seeded):
    seed_sits(seeded.path)
    pid = seeded.flagged_patient
    rows = list(csv.DictReader(io.StringIO(staff.get(f"/patients/{pid}/sits.csv").text)))
    assert [(r["evening"], r["taken"], r["plm_index"], r["above_threshold"]) for r in rows] == [
        ("2026-11-20", "1", "50.0", "1"), ("2026-11-21", "0", "", "")]
    body = json.loads(staff.get(f"/patients/{pid}/nights.json").text)
    assert [s["evening"] for s in body["sits"]] == ["2026-11-20", "2026-11-21"]
    assert len(body["sits"][0]["blocks"]) == 6 and body["nights"]


def test_no_evening_tests_says_so(staff, seeded):
    assert "No evening tests." in staff.get(f"/patients/{seeded.flagged_patient}").text


def test_the_api_serves_a_devices_evening_tests(staff, seeded):
    seed_sits(seeded.path)
    sits = staff.get("/api/devices/dev-a/sits").json()
    assert [(s["evening"], s["taken"], s["plm_index"]) for s in sits] == [("2026-11-20", True, 50.0),
                                                                          ("2026-11-21", False, None)]
    assert staff.get("/api/devices/nobody/sits").status_code == 404

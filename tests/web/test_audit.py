"""The audit trail (who saw or changed what, never health data), the admins' pages, and health
data kept out of the application's logs."""

from __future__ import annotations

import csv
import io
import logging
from datetime import timedelta

from server import audit
from server.db import is_postgres, open_db
from server.web import auth
from tests.pgserver import BOTH_DATABASES, query_plan
from tests.web.conftest import ADMIN_USER, NOW, USER, TestClient, csrf_of, log_in

pytestmark = BOTH_DATABASES


def _entries(path) -> list[dict]:
    db = open_db(path)
    try:
        return list(reversed(audit.page(db, limit=10_000)))
    finally:
        db.conn.close()


def _clinician_flow(app, seeded) -> str:
    """A clinician's morning: log in, read, export, write a note, assign, make a token and use it.
    Returns the token."""
    with TestClient(app, client=("10.0.0.5", 1)) as c:
        log_in(c, USER, "a wrong password")
        assert log_in(c).status_code == 303
        c.get("/?q=P-0001")
        c.get(f"/patients/{seeded.flagged_patient}")
        c.get(f"/devices/dev-a/nights/{seeded.last_night}")
        c.get(f"/devices/dev-a/nights/{seeded.last_night}/annotations.edf")
        c.get(f"/devices/dev-a/nights/{seeded.last_night}/summary.json")
        c.get(f"/patients/{seeded.flagged_patient}/nights.csv")
        c.get(f"/patients/{seeded.flagged_patient}/lms.csv")
        c.get(f"/patients/{seeded.flagged_patient}/nights.json")
        csrf = csrf_of(c.get("/").text)
        c.post(f"/patients/{seeded.flagged_patient}/notes",
               data={"on": "2026-11-20", "text": "gabapentin 300 mg started", "csrf_token": csrf},
               follow_redirects=False)
        c.post("/devices/dev-new/assign", data={"pseudonym": "P-0042", "csrf_token": csrf},
               follow_redirects=False)
        page = c.post("/tokens", data={"name": "reports", "csrf_token": csrf})
        token = page.text.split('<code class="token">')[1].split("<")[0]
    with TestClient(app, client=("10.0.0.99", 2),
                    headers={"Authorization": f"Bearer {token}"}) as machine:
        machine.get("/api/devices")
        machine.get(f"/api/patients/{seeded.flagged_patient}/nights")
        machine.get(f"/api/devices/dev-a/nights/{seeded.last_night}")
    return token


def test_views_exports_api_reads_and_changes_are_audited(app, seeded):
    _clinician_flow(app, seeded)
    entries = _entries(seeded.path)
    night = f"dev-a/{seeded.last_night}"
    got = [(e["actor"], e["via_token"], e["client"], e["action"], e["target"], e["patient"])
           for e in entries]
    assert got == [
        ("-", None, "10.0.0.5", "login.failure", USER, None),
        (USER, None, "10.0.0.5", "login.success", USER, None),
        (USER, None, "10.0.0.5", "patients.list", None, None),
        (USER, None, "10.0.0.5", "patient.view", "P-0001", "P-0001"),
        (USER, None, "10.0.0.5", "night.view", night, "P-0001"),
        (USER, None, "10.0.0.5", "export.edf", night, "P-0001"),
        (USER, None, "10.0.0.5", "export.summary_json", night, "P-0001"),
        (USER, None, "10.0.0.5", "export.nights_csv", "P-0001", "P-0001"),
        (USER, None, "10.0.0.5", "export.lms_csv", "P-0001", "P-0001"),
        (USER, None, "10.0.0.5", "export.nights_json", "P-0001", "P-0001"),
        (USER, None, "10.0.0.5", "patients.list", None, None),  # the page the CSRF token came from
        (USER, None, "10.0.0.5", "note.add", "P-0001", "P-0001"),
        (USER, None, "10.0.0.5", "device.assign", "dev-new", "P-0042"),
        (USER, None, "10.0.0.5", "token.create", "reports", None),
        (USER, "reports", "10.0.0.99", "api.devices", None, None),
        (USER, "reports", "10.0.0.99", "api.patient_nights", "P-0001", "P-0001"),
        (USER, "reports", "10.0.0.99", "api.night", night, "P-0001"),
    ]
    assert all(e["at"].endswith("+00:00") for e in entries)  # UTC
    assert entries[11]["detail"] == "date=2026-11-20"  # the note's date, never its text


def test_the_trail_holds_no_health_data(app, seeded):
    _clinician_flow(app, seeded)
    text = repr(_entries(seeded.path)).lower()
    for leak in ("gabapentin", "plm", "severity", "19.0", "moderate", "mild"):
        assert leak not in text


def test_health_data_stays_out_of_the_logs(app, seeded, caplog):
    caplog.set_level(logging.DEBUG)
    _clinician_flow(app, seeded)
    # Everything logged but the test's own HTTP client (httpx logs the URLs it requests).
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if not r.name.startswith(("httpx", "httpcore")))
    # The access log saw every request (so the scan below has something to find).
    assert f"GET /patients/{seeded.flagged_patient} 200" in logged
    for leak in ("P-0001", "P-0042", "gabapentin", "plm_index", "PLM", "severity", "rlsmon_"):
        assert leak not in logged, leak


def test_role_changes_removals_and_audit_exports_are_audited(admin, seeded):
    db = open_db(seeded.path)
    auth.set_password(db, "temp.user", "a temporary password", NOW, replace=False)
    db.conn.close()
    csrf = csrf_of(admin.get("/admin/users").text)
    admin.post("/admin/users/role", data={"username": "temp.user", "role": "admin",
                                          "csrf_token": csrf})
    admin.post("/admin/users/delete", data={"username": "temp.user", "csrf_token": csrf})
    own = admin.post("/admin/users/delete", data={"username": ADMIN_USER, "csrf_token": csrf})
    assert own.status_code == 422  # never oneself: the last admin cannot lock the admins out
    exported = admin.get("/admin/audit.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["action"], r["target"], r["detail"]) for r in rows[-3:]] == [
        ("user.role", "temp.user", "role=admin"), ("user.delete", "temp.user", ""),
        ("audit.export", "", "")]
    assert rows[0]["action"] == "login.success" and rows[0]["actor"] == ADMIN_USER


def test_the_audit_page_is_paged_newest_first_at_the_cost_of_a_page(admin, seeded):
    db = open_db(seeded.path)
    actor = audit.Actor("someone", "10.0.0.1")
    for i in range(250):
        audit.record(db, NOW + timedelta(seconds=i), actor, "patient.view", target_kind="patient",
                     target=f"P-{i:04d}", patient=f"P-{i:04d}")
    plan = query_plan(db, "SELECT * FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?", [10, 100])
    if is_postgres(db):
        assert "Index Scan Backward using audit_pkey" in plan and "Sort" not in plan
    else:
        assert "SEARCH audit USING INTEGER PRIMARY KEY" in plan and "TEMP B-TREE" not in plan
    plan = query_plan(db, "SELECT * FROM audit WHERE patient = ? AND id < ? ORDER BY id DESC "
                      "LIMIT ?", ["P-0001", 10, 100])
    db.conn.close()
    if is_postgres(db):
        assert "using idx_audit_patient" in plan and "Sort" not in plan
    else:
        assert "USING INDEX idx_audit_patient" in plan and "TEMP B-TREE" not in plan
    one = admin.get("/admin/audit?patient=P-0042").text.split("<tbody>")[1]
    assert one.count("<tr>") == 1 and "P-0042" in one
    first = admin.get("/admin/audit").text
    assert "P-0249" in first and "P-0150" in first and "P-0149" not in first
    older = first.split('href="/admin/audit?before=')[1].split('"')[0]
    second = admin.get(f"/admin/audit?before={older}").text
    assert "P-0149" in second and "P-0050" in second and "P-0249" not in second


def test_the_rejected_page_shows_who_floods_by_count_over_seven_days(admin, seeded):
    db = open_db(seeded.path)
    today = NOW.date()
    # What the collector keeps (issue 10 item 3): daily counts per device, bounded rows.
    for device, day_offset, count in (("dev-a", 0, 3), ("dev-x", 1, 5000), ("dev-x", 6, 20),
                                      ("dev-b", 2, 40), ("dev-old", 7, 99_999)):
        db["rejected_daily"].insert({"device_id": device, "day": str(today - timedelta(days=day_offset)),
                                     "count": count, "bytes": count * 4096})
    db["rejected"].insert({"received_at": NOW.isoformat(), "topic": "rlsmon/v1/dev-x/night",
                           "payload": b"junk", "reason": "not JSON", "size_bytes": 4194304,
                           "sha256": "ab" * 32})
    db.conn.close()
    page = admin.get("/admin/rejected").text
    table = page.split('class="rejected-by-device"')[1].split("</table>")[0]
    assert table.index("dev-x") < table.index("dev-b") < table.index("dev-a")
    assert "5020" in table and "dev-old" not in table  # 8 days ago: outside the window
    latest = page.split('class="rejected"')[1]
    assert "not JSON" in latest and "4194304" in latest and "junk" not in latest


def test_the_devices_page_shows_no_patients(admin):
    page = admin.get("/admin/devices").text
    assert "dev-a" in page and "dev-new" in page and "P-0001" not in page

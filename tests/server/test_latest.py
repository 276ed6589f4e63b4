"""device_latest and fleet_counts (server/db.py, migration 0005) against the nights themselves:
after every kind of write (a new night, an older one, a replaced one, a stale one, a status, an
assignment, `forget`) they equal what a query over every night says, and the migration fills them
from a database that had nights before it."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlite_utils import Database

from server import audit
from server.collector import check, ingest
from server.db import MIGRATIONS, assign_device, json_number, open_db
from server.lifecycle import forget
from tests.pgserver import BOTH_DATABASES
from tests.web.seed import make_night, set_status, store

pytestmark = BOTH_DATABASES

NOW = datetime(2026, 3, 10, 7, 0, tzinfo=timezone.utc)
LAST = NOW.date() - timedelta(days=1)

# What device_latest must hold, from the base tables with a max(night) per device (the query the
# patients list ran before migration 0005).
_TRUTH = """
SELECT d.device_id, d.patient_id, p.pseudonym, d.status, d.created_at, n.night, n.plm_index,
       n.severity, n.clinically_significant,
       n.recorded_s / nullif({duration_s}, 0)
FROM devices d LEFT JOIN patients p ON p.id = d.patient_id
LEFT JOIN nights n ON n.device_id = d.device_id
    AND n.night = (SELECT max(night) FROM nights WHERE device_id = d.device_id)
ORDER BY d.device_id"""
_KEPT = """
SELECT device_id, patient_id, pseudonym, status, created_at, night, plm_index, severity,
       clinically_significant, coverage
FROM device_latest ORDER BY device_id"""
_TRUE_COUNTS = """
SELECT count(*), count(d.patient_id),
       coalesce(sum(CASE WHEN d.status = 'online' THEN 1 ELSE 0 END), 0),
       coalesce(sum(coalesce(n.clinically_significant, 0)), 0),
       coalesce(sum(CASE WHEN d.patient_id IS NOT NULL THEN coalesce(n.clinically_significant, 0)
                         ELSE 0 END), 0)
FROM devices d LEFT JOIN nights n ON n.device_id = d.device_id
    AND n.night = (SELECT max(night) FROM nights WHERE device_id = d.device_id)"""


def assert_consistent(db: Database) -> list[tuple]:
    """device_latest and fleet_counts agree with the nights; returns device_latest's rows."""
    kept = db.execute(_KEPT).fetchall()
    assert kept == db.execute(_TRUTH.format(duration_s=json_number(db, "n.summary_json", "duration_s"))).fetchall()
    counts = db.execute("SELECT devices, assigned, online, flagged, flagged_assigned "
                        "FROM fleet_counts").fetchall()
    assert counts == db.execute(_TRUE_COUNTS).fetchall()
    return kept


def latest(db: Database, device_id: str) -> tuple[str | None, float | None]:
    return db.execute("SELECT night, plm_index FROM device_latest WHERE device_id = ?",
                      [device_id]).fetchone()


@pytest.fixture
def db(db_target):
    db = open_db(db_target)
    yield db
    db.close()


def test_the_latest_night_wins_and_an_older_one_does_not_move_it_back(db):
    store(db, make_night("dev-a", LAST - timedelta(days=1), 30.0), received_at=NOW)
    assert latest(db, "dev-a")[0] == (LAST - timedelta(days=1)).isoformat()
    store(db, make_night("dev-a", LAST, 4.0), received_at=NOW)
    night, plmi = latest(db, "dev-a")
    assert night == LAST.isoformat() and plmi < 15
    # A night from a week ago arrives late (the device was offline): it is stored, not shown.
    store(db, make_night("dev-a", LAST - timedelta(days=7), 40.0), received_at=NOW)
    assert latest(db, "dev-a") == (night, plmi)
    rows = assert_consistent(db)
    assert rows[0][9] == pytest.approx((8 * 3600 - 420) / (8 * 3600))  # coverage: one 7-min gap


def test_a_replaced_latest_night_updates_it_and_a_stale_one_does_not(db):
    first = make_night("dev-a", LAST, 30.0)
    store(db, first, received_at=NOW)
    assert assert_consistent(db)[0][8] == 1  # flagged
    correction = make_night("dev-a", LAST, 3.0, seed=1)
    correction["generated_at"] = (datetime.fromisoformat(first["generated_at"])
                                  + timedelta(hours=1)).isoformat()
    store(db, correction, received_at=NOW)
    assert latest(db, "dev-a") == (LAST.isoformat(), correction["plm_index"])
    assert assert_consistent(db)[0][8] == 0
    # The first summary again, re-sent by a device that missed the receipt: older, refused.
    stale = make_night("dev-a", LAST, 30.0)
    stale["summary_id"] = "1b6bd9ad-6d85-4a4e-9c2c-4a3c7e0a1f11"
    outcome = ingest(db, "rlsmon/v1/dev-a/summary", json.dumps(stale).encode())
    assert outcome.kind == "stale"
    assert latest(db, "dev-a") == (LAST.isoformat(), correction["plm_index"])
    assert_consistent(db)


def test_status_assignment_and_forget_keep_it_and_the_counts_right(db):
    for device, plmi in (("dev-a", 30.0), ("dev-b", 2.0), ("dev-c", 20.0)):
        for k in range(3):
            store(db, make_night(device, LAST - timedelta(days=k), plmi, seed=k), received_at=NOW)
    set_status(db, "dev-a", "online", NOW)
    set_status(db, "dev-b", "online", NOW)
    set_status(db, "dev-b", "offline", NOW + timedelta(minutes=1))
    assert_consistent(db)
    assign_device(db, "dev-a", "P-0001", NOW.isoformat())
    assign_device(db, "dev-b", "P-0002", NOW.isoformat())
    assign_device(db, "dev-c", "P-0001", NOW.isoformat())
    assert db.execute("SELECT * FROM fleet_counts").fetchone() == (1, 3, 3, 1, 2, 2)
    assign_device(db, "dev-b", "P-0003", NOW.isoformat())  # moved to another patient
    assert assert_consistent(db)[1][2] == "P-0003"
    forgotten = forget(db, "P-0001", NOW, audit.Actor("cli:test"))
    assert forgotten.devices == ("dev-a", "dev-c")
    rows = assert_consistent(db)
    assert [r[:3] + r[5:7] for r in rows if r[0] != "dev-b"] == [
        ("dev-a", None, None, None, None), ("dev-c", None, None, None, None)]
    assert db.execute("SELECT * FROM fleet_counts").fetchone() == (1, 3, 1, 1, 0, 0)
    # The devices go on reporting for their next patient.
    store(db, make_night("dev-a", LAST + timedelta(days=1), 25.0), received_at=NOW)
    assert latest(db, "dev-a")[0] == (LAST + timedelta(days=1)).isoformat()
    assert_consistent(db)


def test_bulk_sql_in_any_order_keeps_it_right(db):
    # Triggers, not the collector's code, keep it: a night inserted before its device (as a bulk
    # import may) is found when the device arrives; a deleted latest night gives way to the one
    # before it; a renamed patient moves in the list.
    night = make_night("dev-z", LAST, 30.0)
    columns = {"device_id": "dev-z", "night": LAST.isoformat(), "summary_id": night["summary_id"],
               "generated_at": night["generated_at"], "received_at": NOW.isoformat(),
               "rules": "WASM2016", "plm_index": 30.0, "lm_index": 40.0, "lm_count": 1,
               "clm_count": 1, "plm_count": 1, "plm_series_count": 1, "time_in_bed_s": 1.0,
               "recorded_s": 1.0, "periodicity_index": 0.5, "severity": "moderate",
               "clinically_significant": 1, "summary_json": json.dumps({"duration_s": 2.0})}
    db["nights"].insert(columns)
    db["nights"].insert({**columns, "night": (LAST - timedelta(days=3)).isoformat(),
                         "summary_id": "s-old", "plm_index": 3.0, "clinically_significant": 0})
    db["devices"].insert({"device_id": "dev-z", "created_at": NOW.isoformat()})
    assert latest(db, "dev-z") == (LAST.isoformat(), 30.0)
    assert assert_consistent(db)[0][9] == 0.5
    db.execute("DELETE FROM nights WHERE device_id = 'dev-z' AND night = ?", [LAST.isoformat()])
    assert latest(db, "dev-z") == ((LAST - timedelta(days=3)).isoformat(), 3.0)
    db.execute("DELETE FROM nights WHERE device_id = 'dev-z'")
    assert latest(db, "dev-z") == (None, None)
    assign_device(db, "dev-z", "P-0001", NOW.isoformat())
    db.execute("UPDATE patients SET pseudonym = 'P-0009' WHERE pseudonym = 'P-0001'")
    assert assert_consistent(db)[0][2] == "P-0009"


def store_as_before_0010(db: Database, summary: dict) -> None:
    """Store `summary` as the collector did before migration 0010: without a duration_s column."""
    payload = json.dumps(summary).encode()
    row = dict(check(f"rlsmon/v1/{summary['device_id']}/summary", payload, now=NOW).night)
    del row["duration_s"]
    db["devices"].insert({"device_id": summary["device_id"], "created_at": NOW.isoformat()}, ignore=True)
    db["nights"].insert({**row, "summary_json": payload.decode(), "received_at": NOW.isoformat()})


def test_the_migration_fills_it_from_the_nights_already_stored(tmp_path):
    old = Database(tmp_path / "server.db")
    MIGRATIONS.apply(old, stop_before="0005_latest_nights")
    store_as_before_0010(old, make_night("dev-a", LAST - timedelta(days=1), 30.0))
    store_as_before_0010(old, make_night("dev-a", LAST, 3.0))
    store_as_before_0010(old, make_night("dev-b", LAST - timedelta(days=4), 20.0))
    old.execute("INSERT INTO devices (device_id, status, created_at) "
                "VALUES ('dev-new', 'online', ?)", [NOW.isoformat()])
    old.execute("INSERT INTO patients (id, pseudonym, created_at) VALUES (7, 'P-0007', 'x')")
    old.execute("UPDATE devices SET patient_id = 7 WHERE device_id = 'dev-b'")
    old.conn.commit()
    old.close()
    db = open_db(tmp_path / "server.db")
    rows = assert_consistent(db)
    assert [(r[0], r[2], r[5]) for r in rows] == [
        ("dev-a", None, LAST.isoformat()), ("dev-b", "P-0007", (LAST - timedelta(days=4)).isoformat()),
        ("dev-new", None, None)]
    assert db.execute("SELECT * FROM fleet_counts").fetchone() == (1, 3, 1, 1, 1, 1)


def test_coverage_comes_from_the_duration_column_or_else_from_the_json(tmp_path):
    # Migration 0010: the collector writes duration_s as a column and the triggers read it, not
    # the JSON; a night stored before it (duration_s NULL) still gives its coverage from the JSON.
    old = Database(tmp_path / "server.db")
    MIGRATIONS.apply(old, stop_before="0010_nights_duration")
    store_as_before_0010(old, make_night("dev-a", LAST - timedelta(days=1), 30.0))
    old.conn.commit()
    old.close()
    db = open_db(tmp_path / "server.db")
    assert db.execute("SELECT duration_s FROM nights").fetchall() == [(None,)]
    assert assert_consistent(db)[0][9] == pytest.approx((8 * 3600 - 420) / (8 * 3600))
    store(db, make_night("dev-a", LAST, 3.0), received_at=NOW)
    assert db.execute("SELECT duration_s FROM nights WHERE night = ?", [LAST.isoformat()]).fetchone() == (8 * 3600,)
    # The column, not the JSON, once it is set.
    db.execute("UPDATE nights SET duration_s = 2 * duration_s WHERE night = ?", [LAST.isoformat()])
    assert db.execute("SELECT coverage FROM device_latest").fetchone()[0] == pytest.approx((8 * 3600 - 420) / (16 * 3600))


def test_quiet_since_is_the_latest_night_or_the_first_day_seen(db):
    store(db, make_night("dev-a", date(2026, 3, 1), 3.0), received_at=NOW)
    db["devices"].insert({"device_id": "dev-b", "created_at": "2026-02-20T09:00:00+00:00"})
    assert db.execute("SELECT device_id, quiet_since FROM device_latest ORDER BY device_id"
                      ).fetchall() == [("dev-a", "2026-03-01"), ("dev-b", "2026-02-20")]

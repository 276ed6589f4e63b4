"""The clinic database: schema, WAL, migrations applied once."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from sqlite_utils import Database

from server.db import MIGRATIONS, checkpoint_wal, open_db, schema_version, utc_now

ALL_MIGRATIONS = ["0001_initial", "0002_lm_events_view", "0003_rejected_bounds",
                  "0004_staff_roles_audit", "0005_latest_nights", "0006_medications",
                  "0008_sit", "0009_nights_summary_id", "0010_nights_duration",
                  "0011_lm_events_leg"]
TABLES = {
    "patients", "devices", "nights", "rejected", "rejected_daily",
    "users", "sessions", "api_tokens", "treatment_notes", "login_throttle", "audit",
    "device_latest", "fleet_counts", "medications",
}


def test_new_database_has_schema_in_wal_mode(tmp_path):
    db = open_db(tmp_path / "s.db")
    assert TABLES <= set(db.table_names())
    assert db.journal_mode == "wal"
    assert schema_version(db) == ALL_MIGRATIONS
    assert db["nights"].pks == ["device_id", "night"]
    assert "lm_events" in db.view_names()


def test_database_at_first_version_is_migrated_and_keeps_its_rows(tmp_path):
    old = Database(tmp_path / "s.db")
    MIGRATIONS.apply(old, stop_before="0002_lm_events_view")
    old["patients"].insert({"pseudonym": "P-1", "created_at": "x"})
    old.close()
    db = open_db(tmp_path / "s.db")
    assert schema_version(db) == ALL_MIGRATIONS
    assert [r["pseudonym"] for r in db["patients"].rows] == ["P-1"]


def test_reopening_applies_nothing_twice(tmp_path):
    open_db(tmp_path / "s.db")["patients"].insert({"pseudonym": "P-1", "created_at": "x"})
    db = open_db(tmp_path / "s.db")
    assert schema_version(db) == ALL_MIGRATIONS
    assert db["patients"].count == 1


def test_two_processes_opening_at_once_both_succeed(tmp_path):
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def opener() -> None:
        start.wait()
        try:
            open_db(tmp_path / "s.db").close()
        except BaseException as e:  # collected, asserted below
            errors.append(e)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert schema_version(open_db(tmp_path / "s.db")) == ALL_MIGRATIONS


def test_foreign_keys_and_constraints_are_enforced(tmp_path):
    db = open_db(tmp_path / "s.db")
    with pytest.raises(sqlite3.IntegrityError):
        db["treatment_notes"].insert(
            {"patient_id": 99, "date": "2026-01-01", "text": "x", "created_by": "u", "created_at": "x"}
        )
    with pytest.raises(sqlite3.IntegrityError):
        db["devices"].insert({"device_id": "d", "status": "asleep", "created_at": "x"})
    db["patients"].insert({"pseudonym": "P-1", "created_at": "x"})
    with pytest.raises(sqlite3.IntegrityError):
        db["patients"].insert({"pseudonym": "P-1", "created_at": "y"})


def test_staff_and_tokens_from_before_roles_migrate_safely(tmp_path):
    old = Database(tmp_path / "s.db")
    MIGRATIONS.apply(old, stop_before="0003_rejected_bounds")
    old["users"].insert({"username": "nurse.kim", "password_hash": "$argon2id$x",
                         "created_at": "2026-01-01T00:00:00+00:00", "failed_logins": 3,
                         "locked_until": None})
    old["api_tokens"].insert({"token_hash": "h", "name": "legacy",
                              "created_at": "2026-01-01T00:00:00+00:00"})
    old["rejected"].insert({"received_at": "2026-01-01T00:00:00+00:00", "topic": "t",
                            "payload": b"x", "reason": "r"})
    old.close()
    db = open_db(tmp_path / "s.db")
    assert schema_version(db) == ALL_MIGRATIONS
    # Every account was made for clinical staff: it keeps its pages as a clinician.
    assert list(db["users"].rows) == [{"username": "nurse.kim", "password_hash": "$argon2id$x",
                                       "created_at": "2026-01-01T00:00:00+00:00",
                                       "role": "clinician"}]
    # A token that read everything and never expired is kept, visible, but expired.
    (token,) = db["api_tokens"].rows
    assert token["role"] == "clinician" and token["owner"] is None
    assert token["expires_at"] <= utc_now()
    (rejected,) = db["rejected"].rows
    assert rejected["size_bytes"] is None and rejected["sha256"] is None
    assert db["rejected_daily"].pks == ["device_id", "day"]


def test_roles_are_constrained(tmp_path):
    db = open_db(tmp_path / "s.db")
    with pytest.raises(sqlite3.IntegrityError):
        db["users"].insert({"username": "x", "password_hash": "h", "created_at": "t",
                            "role": "root"})


def test_a_medication_has_a_known_class_and_stops_after_it_starts(tmp_path):
    db = open_db(tmp_path / "s.db")
    db.execute("INSERT INTO patients (pseudonym, created_at) VALUES ('P-1', 'x')")
    row = "INSERT INTO medications (patient_id, drug, dose, drug_class, started, stopped, " \
          "created_by, created_at) VALUES (1, 'd', '1 mg', ?, ?, ?, 'u', 'x')"
    db.execute(row, ["iron", "2026-11-01", "2026-11-02"])
    for bad in (["antihistamine", "2026-11-01", None], ["iron", "2026-11-02", "2026-11-01"]):
        with pytest.raises(sqlite3.IntegrityError):
            db.execute(row, bad)


def _rows_in_database_file(path, table: str) -> int:
    """Rows of `table` in the database file alone, as if its WAL were lost: what is checkpointed."""
    copy = path.with_name("file-only.db")
    copy.write_bytes(path.read_bytes())
    try:
        with sqlite3.connect(copy) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        copy.unlink()


@pytest.mark.parametrize("wal_limit_bytes, wal_left", [(64 * 1024 * 1024, "kept"), (64 * 1024, "emptied")])
def test_the_checkpointer_copies_a_writers_wal_and_empties_it_past_the_limit(
        tmp_path, monkeypatch, wal_limit_bytes, wal_left):
    import server.db

    monkeypatch.setattr(server.db, "MAX_WAL_BYTES", wal_limit_bytes)
    path = tmp_path / "server.db"
    writer = open_db(path)
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the schema into the file
    writer.execute("PRAGMA wal_autocheckpoint = 0")  # as the collector's writer does
    reader = sqlite3.connect(path)  # keeps the WAL from being checkpointed on close
    reader.execute("SELECT 1").fetchone()
    with writer.conn:
        writer.conn.executemany("INSERT INTO rejected_daily (device_id, day, count, bytes) VALUES (?, ?, ?, ?)",
                                [(f"dev-{i}", "2026-01-01", 1, 10) for i in range(3000)])
    wal = path.with_name("server.db-wal")
    assert _rows_in_database_file(path, "rejected_daily") == 0 and wal.stat().st_size > 64 * 1024

    due, done = threading.Event(), threading.Event()
    checkpointer = threading.Thread(target=checkpoint_wal, args=(path, due, done))
    checkpointer.start()
    due.set()
    done.set()
    checkpointer.join()
    assert _rows_in_database_file(path, "rejected_daily") == 3000
    assert (wal.stat().st_size == 0) == (wal_left == "emptied")
    reader.close()
    writer.close()

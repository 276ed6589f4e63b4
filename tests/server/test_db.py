"""The clinic database: schema, WAL, migrations applied once."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from sqlite_utils import Database

from server.db import MIGRATIONS, open_db, schema_version

ALL_MIGRATIONS = ["0001_initial", "0002_lm_events_view", "rejected_bounds"]
TABLES = {
    "patients", "devices", "nights", "rejected", "rejected_daily",
    "users", "sessions", "api_tokens", "treatment_notes",
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

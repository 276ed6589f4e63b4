"""`rlsmon-server backup` (consistent while nights are being ingested, then restored as the README
says) and `rlsmon-server forget` (a patient's data erased, an audit entry without health data)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
import threading
from datetime import date, timedelta

import pytest
from click.testing import CliRunner

from server.cli import cli
from server.collector import ingest
from server.db import is_url, open_db
from tests.pgserver import BOTH_DATABASES
from tests.web import seed
from tests.web.conftest import seed_db


def _config(tmp_path, db_path) -> str:
    path = tmp_path / "server.toml"
    key = "url" if is_url(db_path) else "path"
    path.write_text(f'[database]\n{key} = "{db_path}"\n')
    return str(path)


def _nights(db_path) -> dict[tuple[str, str], str]:
    db = open_db(db_path)
    try:
        return {(r[0], r[1]): r[2] for r in db.execute(
            "SELECT device_id, night, summary_json FROM nights")}
    finally:
        db.conn.close()


@pytest.mark.timeout(240)
def test_a_backup_taken_while_nights_arrive_is_one_consistent_snapshot(tmp_path):
    source = tmp_path / "server.db"
    open_db(source).conn.close()
    # Made before the writer starts, so the writer only writes (as the collector does).
    summaries = [seed.make_night(f"dev-{i % 7}", date(2026, 1, 1) + timedelta(days=i // 7), 12.0)
                 for i in range(400)]
    written: list[tuple[str, str]] = []
    enough, stop = threading.Event(), threading.Event()

    def collector() -> None:
        db = open_db(source)
        try:
            for summary in summaries:
                if stop.is_set():
                    return
                # As the collector's writer commits: the write lock taken up front.
                db.execute("BEGIN IMMEDIATE")
                outcome = ingest(db, f"rlsmon/v1/{summary['device_id']}/summary",
                                 json.dumps(summary).encode())
                db.conn.commit()
                assert outcome.kind == "stored", outcome
                written.append((summary["device_id"], summary["night"]))
                if len(written) == 40:
                    enough.set()
        finally:
            db.conn.close()
            enough.set()

    writer = threading.Thread(target=collector)
    writer.start()
    try:
        assert enough.wait(120)
        copy = tmp_path / "backups" / "server-copy.db"
        copy.parent.mkdir()
        committed_before = len(written)
        result = CliRunner().invoke(cli, ["backup", str(copy), "--config",
                                          _config(tmp_path, source)])
        committed_after = len(written)
    finally:
        stop.set()
        writer.join(timeout=120)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600  # it holds health data
    assert not list(copy.parent.glob(".*partial"))

    # Restore as the README says: the service stopped, the copy put in place, then started.
    restored = tmp_path / "restored" / "server.db"
    restored.parent.mkdir()
    shutil.copyfile(copy, restored)
    db = open_db(restored)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.conn.close()
    in_copy = _nights(restored)
    everything = _nights(source)
    # One snapshot: exactly the first k nights the collector committed, each byte for byte,
    # with k between what was committed when the backup started and when it ended.
    assert committed_before <= len(in_copy) <= committed_after + 1
    assert set(in_copy) == set(written[:len(in_copy)])
    assert all(everything[key] == value for key, value in in_copy.items())
    # The backup is in the source's audit trail, and not in the copy taken before it.
    audit_actions = [r[0] for r in open_db(source).execute("SELECT action FROM audit")]
    assert audit_actions == ["backup"]


def test_a_backup_never_overwrites_a_file(tmp_path):
    source = tmp_path / "server.db"
    open_db(source).conn.close()
    (tmp_path / "exists.db").write_text("precious")
    result = CliRunner().invoke(cli, ["backup", str(tmp_path / "exists.db"), "--config",
                                      _config(tmp_path, source)])
    assert result.exit_code == 1 and "exists" in result.output
    assert (tmp_path / "exists.db").read_text() == "precious"


@pytest.fixture
def clinic(db_target):
    seeded = seed_db(db_target)
    db = open_db(seeded.path)
    for device in ("dev-a", "dev-b"):
        db["rejected"].insert({"received_at": "2026-11-20T00:00:00+00:00",
                               "topic": f"rlsmon/v1/{device}/summary", "payload": b"{}",
                               "reason": "conflict"})
    db.conn.close()
    return seeded


@BOTH_DATABASES
def test_forget_erases_a_patients_data_and_leaves_an_audit_entry(tmp_path, clinic):
    before = _nights(clinic.path)
    gone_ids = [v.split('"summary_id": "')[1].split('"')[0] for (d, _), v in before.items()
                if d == "dev-a"]
    result = CliRunner().invoke(cli, ["forget", "P-0001", "--yes", "--config",
                                      _config(tmp_path, clinic.path)])
    assert result.exit_code == 0, result.output
    assert "30 nights, 1 notes, 1 refused payloads" in result.output
    db = open_db(clinic.path)
    assert db.execute("SELECT count(*) FROM patients WHERE pseudonym = 'P-0001'").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM nights WHERE device_id = 'dev-a'").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM lm_events WHERE device_id = 'dev-a'").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM treatment_notes").fetchone()[0] == 0
    assert db.execute("SELECT patient_id FROM devices WHERE device_id = 'dev-a'").fetchone() == (None,)
    assert [r[0] for r in db.execute("SELECT topic FROM rejected")] == ["rlsmon/v1/dev-b/summary"]
    # Everyone else is untouched.
    after = _nights(clinic.path)
    assert after == {k: v for k, v in before.items() if k[0] != "dev-a"}
    (entry,) = [dict(zip(("actor", "action", "target", "patient", "detail"), r)) for r in db.execute(
        "SELECT actor, action, target, patient, detail FROM audit")]
    db.conn.close()
    assert entry["action"] == "patient.forget" and entry["patient"] == "P-0001"
    assert entry["actor"].startswith("cli:")
    assert entry["detail"] == "devices=dev-a nights=30 notes=1 rejected=1"
    if is_url(clinic.path):
        return  # PostgreSQL has no secure_delete: the README says what lingers, and where
    # Nothing of the erased nights lingers in the database's files.
    raw = b"".join(p.read_bytes() for p in clinic.path.parent.glob("server.db*"))
    assert not any(summary_id.encode() in raw for summary_id in gone_ids)


@BOTH_DATABASES
def test_forget_asks_first_and_names_an_unknown_patient(tmp_path, clinic):
    config = _config(tmp_path, clinic.path)
    declined = CliRunner().invoke(cli, ["forget", "P-0002", "--config", config], input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    assert len(_nights(clinic.path)) == 37
    unknown = CliRunner().invoke(cli, ["forget", "P-9999", "--yes", "--config", config])
    assert unknown.exit_code == 1 and "no patient 'P-9999'" in unknown.output


def test_a_corrupt_database_fails_the_backup_cleanly(tmp_path):
    bad = tmp_path / "server.db"
    bad.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)
    with pytest.raises(sqlite3.DatabaseError):
        from server.lifecycle import backup

        backup(bad, tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()
    assert not list(tmp_path.glob(".*partial"))


def test_a_postgresql_database_is_backed_up_with_pg_dump(tmp_path):
    config = _config(tmp_path, "postgresql://rlsmon@db.example/rlsmon")
    result = CliRunner().invoke(cli, ["backup", str(tmp_path / "copy.db"), "--config", config])
    assert result.exit_code == 1 and "pg_dump" in result.output and "[database] url" in result.output
    assert not (tmp_path / "copy.db").exists()


@BOTH_DATABASES
def test_migrate_makes_the_schema_and_says_its_version(tmp_path, db_target):
    from server.db import MIGRATIONS

    result = CliRunner().invoke(cli, ["migrate", "--config", _config(tmp_path, db_target)])
    assert result.exit_code == 0, result.output
    last = MIGRATIONS._migrations[-1].name
    assert f"schema at {last} ({len(MIGRATIONS._migrations)} migrations)" in result.output

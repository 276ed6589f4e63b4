"""`rlsmon-server copy-to`: a clinic seeded through the real ingest path and the dashboard, copied
SQLite → PostgreSQL and back, then served by the real dashboard from the copy; a target that holds
data, a copy that fails half-way and a source in use leave the target as it was."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import timedelta

import pytest
from click.testing import CliRunner

from server import copydb
from server.cli import cli
from server.collector import ingest
from server.db import assign_device, is_url, open_db
from server.web import auth, create_app, queries
from tests.pgserver import BOTH_DATABASES
from tests.server.test_sit import encode as encode_sit
from tests.server.test_sit import make_sit
from tests.web import seed
from tests.web.conftest import (ADMIN_PASSWORD, ADMIN_USER, CLINIC_TZ, NOW, PASSWORD, USER, Clock,
                                TestClient, log_in, seed_db)


def _clinic(path) -> None:
    """The dashboard tests' clinic (nights, statuses, patients, notes, medications, users), and
    what the rest of the schema holds: a refused payload, an evening test, a failed login, an API
    token, sessions and audit entries, each made by the code that makes it in production."""
    seeded = seed_db(path, NOW)
    db = open_db(path)
    try:
        assert ingest(db, "rlsmon/v1/dev-a/summary", b"\x00\xffnot json").kind == "rejected"
        assert ingest(db, "rlsmon/v1/dev-a/sit", encode_sit(make_sit())).kind == "stored"
        auth.create_api_token(db, "reports", USER, auth.CLINICIAN, NOW, timedelta(days=30))
    finally:
        db.conn.close()
    with TestClient(create_app(path, now=Clock(NOW), clinic_tz=CLINIC_TZ)) as c:
        assert log_in(c, USER, "a wrong password").status_code != 303
        assert log_in(c).status_code == 303
        assert c.get(f"/patients/{seeded.flagged_patient}").status_code == 200
    _close_idle()


def _close_idle() -> None:
    # The dashboard gives its PostgreSQL connections back to this process's pool: a copy from
    # that database would count them as other sessions (as it should a running dashboard).
    from server import pg

    while pg._IDLE:
        pg._IDLE.popleft()[1].close()


def _config(tmp_path, target) -> str:
    path = tmp_path / "server.toml"
    path.write_text(f'[database]\n{"url" if is_url(target) else "path"} = "{target}"\n')
    return str(path)


def _copy(tmp_path, source, target):
    return CliRunner().invoke(cli, ["copy-to", str(target), "--config", _config(tmp_path, source)])


def _rows(path) -> dict[str, list[tuple]]:
    """Every row of every table, in primary-key order, in one query each (not the copy's batches)."""
    db = open_db(path)
    try:
        return {t: [tuple(r) for r in db.execute(f"SELECT {', '.join(copydb.columns(db, t))} FROM {t} "
                                                 f"ORDER BY {', '.join(db[t].pks)}")]
                for t in copydb.tables(db)}
    finally:
        db.conn.close()


def _same_rows(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y) if isinstance(x, float) else x == y
        for ra, rb in zip(a, b) for x, y in zip(ra, rb))


@pytest.fixture
def other_kind(request, backend, tmp_path):
    """A new database of the other kind than the source's: an empty PostgreSQL database (not yet
    migrated), or a new SQLite file."""
    if backend == "sqlite":
        return request.getfixturevalue("postgres").create_database()
    return tmp_path / "copy.db"


@BOTH_DATABASES
def test_the_copy_serves_the_same_clinic(tmp_path, db_target, other_kind):
    _clinic(db_target)
    before = _rows(db_target)
    assert [t for t, rows in before.items() if not rows] == [], "seed every table, so each is checked"

    result = _copy(tmp_path, db_target, other_kind)
    assert result.exit_code == 0, result.output
    assert "12 tables" in result.output and "not copied: sessions" in result.output
    for figure in ("plm", "P-0001", "dev-a"):  # counts only, never health data or names
        assert figure not in result.output

    after = _rows(other_kind)
    assert _rows(db_target) == before  # the source is only read
    for table, rows in before.items():
        if table == "sessions":
            assert after[table] == []
        elif table == "audit":
            assert after[table][:-1] == rows
            assert after[table][-1][5] == "database.copy"  # action
        else:
            assert _same_rows(after[table], rows), table

    source_app = create_app(db_target, now=Clock(NOW), clinic_tz=CLINIC_TZ)
    target_app = create_app(other_kind, now=Clock(NOW), clinic_tz=CLINIC_TZ)
    last_night = (NOW - timedelta(days=1)).date()
    pages = ["/api/patients", "/api/devices", f"/api/devices/dev-a/nights/{last_night}",
             "/api/devices/dev-a/sits", "/api/patients/1/notes"]
    with TestClient(source_app) as old, TestClient(target_app) as new:
        assert log_in(old).status_code == 303
        assert log_in(new).status_code == 303  # the same password hash, as it was
        for page in pages:
            theirs, ours = old.get(page), new.get(page)
            assert ours.status_code == 200, page
            assert ours.json() == theirs.json(), page
        listing = new.get("/")
        assert all(p in listing.text for p in ("P-0001", "P-0002", "P-0003"))
        assert new.get(f"/devices/dev-a/nights/{last_night}").status_code == 200
    with TestClient(target_app) as admin:
        assert log_in(admin, ADMIN_USER, ADMIN_PASSWORD).status_code == 303
        assert "database.copy" in admin.get("/admin/audit").text
        assert "dev-a" in admin.get("/admin/rejected").text  # the refused payload's count
    _close_idle()


def _owned_database(postgres) -> str:
    """A new database owned by a role that is not a superuser, as the README makes it."""
    postgres.admin("DO $$ BEGIN CREATE ROLE clinic LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    url = postgres.create_database()
    name = url.rsplit("/", 1)[1]
    postgres.admin(f"ALTER DATABASE {name} OWNER TO clinic")
    return url.replace("rlsmon@", "clinic@")


def test_the_copy_takes_new_nights_notes_and_ids(tmp_path, postgres):
    source, target = tmp_path / "server.db", _owned_database(postgres)
    _clinic(source)
    result = _copy(tmp_path, source, target)
    assert result.exit_code == 0, result.output
    db = open_db(target)
    try:
        # New ids after the copied ones (the identity sequences were moved past them).
        seed.store(db, seed.make_night("dev-z", NOW.date() - timedelta(days=1), 40.0))
        patient = assign_device(db, "dev-z", "P-0099", NOW.isoformat())
        queries.add_note(db, patient, NOW.date(), "first visit", USER, NOW.isoformat())
        assert ingest(db, "rlsmon/v1/dev-z/summary", b"junk").kind == "rejected"
        assert patient == 4
    finally:
        db.conn.close()
    with TestClient(create_app(target, now=Clock(NOW), clinic_tz=CLINIC_TZ)) as c:
        assert log_in(c).status_code == 303
        devices = {d["device_id"]: d for d in c.get("/api/devices").json()}
        # The latest-night figures follow the new night and the assignment: the triggers are on.
        assert devices["dev-z"]["last_night"] == str(NOW.date() - timedelta(days=1))
        assert devices["dev-z"]["pseudonym"] == "P-0099"
        assert c.get(f"/patients/{patient}").status_code == 200
    _close_idle()


def _counts(url) -> dict[str, int]:
    db = open_db(url)
    try:
        return {t: db[t].count for t in copydb.tables(db)}
    finally:
        db.conn.close()


def test_a_target_that_holds_data_is_refused_and_left_as_it_was(tmp_path, postgres):
    source, target = tmp_path / "server.db", postgres.create_database()
    _clinic(source)
    db = open_db(target)
    auth.set_password(db, "dr.o", "an existing account", NOW, replace=False)
    db.conn.close()
    before = _counts(target)
    result = _copy(tmp_path, source, target)
    assert result.exit_code == 1
    assert "the target is not empty: table users holds rows" in result.output
    assert _counts(target) == before


def test_a_copy_that_fails_half_way_leaves_the_target_empty(tmp_path, postgres):
    source, target = tmp_path / "server.db", postgres.create_database()
    _clinic(source)
    db = open_db(source)
    # A figure SQLite took as text where PostgreSQL wants a number: that table's COPY fails.
    db.execute("UPDATE nights SET plm_index = 'n/a' WHERE device_id = 'dev-b'")
    db.conn.close()
    result = _copy(tmp_path, source, target)
    assert result.exit_code == 1
    assert "copying table nights failed" in result.output and "n/a" not in result.output
    counts = _counts(target)
    assert counts.pop("fleet_counts") == 1  # the migrated database's row of zeros
    assert set(counts.values()) == {0}


def test_a_sqlite_source_open_in_another_process_is_refused(tmp_path, postgres):
    source, target = tmp_path / "server.db", postgres.create_database()
    _clinic(source)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from server.db import open_db; db = open_db(sys.argv[1]); "
         "print(db['nights'].count, flush=True); sys.stdin.read()", str(source)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "37"  # open, as a running collector has it
        result = _copy(tmp_path, source, target)
        assert result.exit_code == 1
        assert f"in use by process {holder.pid}" in result.output
        assert "stop rlsmon-collector and rlsmon-web" in result.output
    finally:
        holder.communicate("")
    assert _copy(tmp_path, source, target).exit_code == 0


def test_a_postgresql_source_with_other_sessions_is_refused(tmp_path, postgres):
    import psycopg

    source = postgres.create_database()
    open_db(source).conn.close()
    with psycopg.connect(source):
        result = _copy(tmp_path, source, tmp_path / "copy.db")
        assert result.exit_code == 1
        assert "in use by 1 other connection" in result.output
    assert not (tmp_path / "copy.db").exists()  # refused before the target was made
    assert _copy(tmp_path, source, tmp_path / "copy.db").exit_code == 0
    _close_idle()


def test_the_configured_database_is_not_its_own_target(tmp_path):
    source = tmp_path / "server.db"
    open_db(source).conn.close()
    result = _copy(tmp_path, source, source)
    assert result.exit_code == 1 and "is the configured database itself" in result.output


def test_a_missing_source_is_not_made_empty_and_copied(tmp_path):
    result = _copy(tmp_path, tmp_path / "typo.db", tmp_path / "copy.db")
    assert result.exit_code == 1 and "there is no database at" in result.output
    assert not (tmp_path / "typo.db").exists() and not (tmp_path / "copy.db").exists()


@BOTH_DATABASES
def test_batches_page_through_every_row_in_key_order(db_target):
    _clinic(db_target)
    whole = _rows(db_target)
    db = open_db(db_target)
    try:
        for table in ("nights", "audit", "devices"):  # compound, integer and text keys
            paged = list(copydb.batches(db, table, copydb.columns(db, table), size=2))
            assert len(whole[table]) > 2 and [len(b) for b in paged[:-1]] == [2] * (len(paged) - 1)
            assert [r for b in paged for r in b] == whole[table], table
    finally:
        db.conn.close()
    _close_idle()

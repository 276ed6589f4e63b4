"""The clinic database: SQLite through sqlite-utils, in WAL mode, with versioned migrations.

`open_db(path)` opens (or creates) the database and applies any pending migration. The collector
writes it; the dashboard reads it (and writes only its own tables: users, sessions, notes, …). WAL
lets the dashboard read while the collector writes.

Migrations are append-only: never edit one that has shipped; add the next one instead. Each runs in
one transaction with its record in `_sqlite_migrations` (sqlite-utils' `Migrations`).

Times are ISO 8601 strings in UTC (`utc_now()`), so they sort as text.
"""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import datetime, timezone

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

MIGRATIONS = Migrations("rlsmon.server")

# A busy writer (the collector) holds the lock only for one batch of nights; readers in WAL mode
# never wait. This is how long another writer waits for that lock before SQLITE_BUSY.
BUSY_TIMEOUT_S = 10.0


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string, e.g. `2026-01-31T06:02:03.123456+00:00`."""
    return datetime.now(timezone.utc).isoformat()


def _enable_wal(db: Database) -> None:
    # Turning a new database to WAL takes an exclusive lock, and when another process is doing the
    # same SQLite answers SQLITE_BUSY at once instead of waiting on the busy timeout. The switch is
    # idempotent, so retry it until that timeout.
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.enable_wal()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _ddl(db: Database, *statements: str) -> None:
    # One statement at a time: sqlite3's executescript() would commit the migration's transaction.
    for statement in statements:
        db.execute(statement)


@MIGRATIONS(name="0001_initial")
def _initial(db: Database) -> None:
    _ddl(
        db,
        """CREATE TABLE patients (
            id INTEGER PRIMARY KEY,
            pseudonym TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE devices (
            device_id TEXT PRIMARY KEY,
            patient_id INTEGER REFERENCES patients(id) ON DELETE SET NULL,
            status TEXT CHECK (status IN ('online', 'offline')),
            status_at TEXT,
            last_seen TEXT,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX idx_devices_patient ON devices(patient_id)",
        # One row per device and night: the summary's headline figures as columns for the dashboard's
        # lists and trends, and the whole validated summary as JSON for everything else.
        """CREATE TABLE nights (
            device_id TEXT NOT NULL,
            night TEXT NOT NULL,
            summary_id TEXT NOT NULL,
            generated_at TEXT NOT NULL,
            received_at TEXT NOT NULL,
            rules TEXT NOT NULL,
            plm_index REAL NOT NULL,
            lm_index REAL NOT NULL,
            lm_count INTEGER NOT NULL,
            clm_count INTEGER NOT NULL,
            plm_count INTEGER NOT NULL,
            plm_series_count INTEGER NOT NULL,
            time_in_bed_s REAL NOT NULL,
            recorded_s REAL NOT NULL,
            periodicity_index REAL NOT NULL,
            severity TEXT NOT NULL,
            clinically_significant INTEGER NOT NULL,
            summary_json TEXT NOT NULL,
            PRIMARY KEY (device_id, night)
        )""",
        # The primary key serves "nights of a device by date"; this one serves "all nights on a date"
        # (who has not reported) and date ranges across devices.
        "CREATE INDEX idx_nights_night ON nights(night, device_id)",
        """CREATE TABLE lm_events (
            device_id TEXT NOT NULL,
            night TEXT NOT NULL,
            idx INTEGER NOT NULL,
            onset_s REAL NOT NULL,
            offset_s REAL NOT NULL,
            duration_s REAL NOT NULL,
            periodic INTEGER NOT NULL,
            clm INTEGER NOT NULL,
            bilateral INTEGER NOT NULL,
            series INTEGER,
            imi_s REAL,
            PRIMARY KEY (device_id, night, idx),
            FOREIGN KEY (device_id, night) REFERENCES nights(device_id, night) ON DELETE CASCADE
        ) WITHOUT ROWID""",
        """CREATE TABLE rejected (
            id INTEGER PRIMARY KEY,
            received_at TEXT NOT NULL,
            topic TEXT NOT NULL,
            payload BLOB NOT NULL,
            reason TEXT NOT NULL
        )""",
        "CREATE INDEX idx_rejected_received ON rejected(received_at)",
        """CREATE TABLE users (
            username TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            failed_logins INTEGER NOT NULL DEFAULT 0,
            locked_until TEXT
        )""",
        """CREATE TABLE sessions (
            token TEXT PRIMARY KEY,
            username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
            csrf_token TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )""",
        "CREATE INDEX idx_sessions_expires ON sessions(expires_at)",
        """CREATE TABLE api_tokens (
            token_hash TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE treatment_notes (
            id INTEGER PRIMARY KEY,
            patient_id INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
            date TEXT NOT NULL,
            text TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX idx_treatment_notes_patient ON treatment_notes(patient_id, date)",
    )


_LM_COLUMNS = ("onset_s", "offset_s", "duration_s", "periodic", "clm", "bilateral", "series", "imi_s")


@MIGRATIONS(name="0002_lm_events_view")
def _lm_events_view(db: Database) -> None:
    # The events are kept once, in nights.summary_json, and lm_events becomes a view of them with
    # the same columns. Measured (benchmarks/server_load.py): a row per LM capped ingest at ~110
    # nights/s of 500 LMs on the 2-core test machine, far below the 500/s bar, and a replaced
    # night's events now go with its row, in the same single-row upsert.
    columns = ",\n".join(f"json_extract(e.value, '$.{c}') AS {c}" for c in _LM_COLUMNS)
    _ddl(
        db,
        "DROP TABLE lm_events",
        f"""CREATE VIEW lm_events AS SELECT
            n.device_id AS device_id,
            n.night AS night,
            e.key AS idx,
            {columns}
        FROM nights AS n, json_each(n.summary_json, '$.lm_events') AS e""",
    )


@MIGRATIONS(name="rejected_bounds")
def _rejected_bounds(db: Database) -> None:
    # One device must not fill the server (issue 10): `rejected` keeps a bounded prefix of each
    # payload with its full size and SHA-256, and rejected_daily counts every refused message per
    # device and UTC day, including those past the per-day cap of kept rows (server/rejected.py).
    _ddl(
        db,
        "ALTER TABLE rejected ADD COLUMN size_bytes INTEGER",
        "ALTER TABLE rejected ADD COLUMN sha256 TEXT",
        """CREATE TABLE rejected_daily (
            device_id TEXT NOT NULL,
            day TEXT NOT NULL,
            count INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            PRIMARY KEY (device_id, day)
        )""",
    )


def schema_version(db: Database) -> list[str]:
    """The names of the migrations applied to `db`, oldest first."""
    return [m.name for m in MIGRATIONS.applied(db)]


def open_db(path: str | os.PathLike[str], *, check_same_thread: bool = True) -> Database:
    """Open the database at `path` (created if missing), in WAL mode, migrated to the latest schema.

    `path` may be `":memory:"` for a private in-memory database. Foreign keys are enforced.
    `synchronous=FULL` makes each commit durable before it returns, since the collector acknowledges
    a message to the broker (which then forgets it) only after its commit. Pass
    `check_same_thread=False` only when one thread at a time uses the connection (e.g. a writer
    thread that is not the one that opened it).

    Example:
        db = open_db("/var/lib/rlsmon/server.db")
        db["nights"].count
    """
    conn = sqlite3.connect(
        os.fspath(path), timeout=BUSY_TIMEOUT_S, check_same_thread=check_same_thread
    )
    db = Database(conn)
    if os.fspath(path) != ":memory:":
        _enable_wal(db)
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA synchronous = FULL")
    if MIGRATIONS.pending(db):
        # BEGIN IMMEDIATE takes the write lock first, so two processes starting together (the
        # collector and the dashboard) cannot both apply the same migration. Inside it, each
        # migration's own transaction becomes a savepoint.
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS.apply(db)
        except BaseException:
            db.conn.rollback()
            raise
        db.conn.commit()
    return db


def assign_device(db: Database, device_id: str, pseudonym: str, now_iso: str) -> int:
    """Assign ``device_id`` to the patient ``pseudonym`` (created if new); returns the patient id."""
    pseudonym = pseudonym.strip()
    if not pseudonym or len(pseudonym) > 64 or not pseudonym.isprintable():
        raise ValueError("a pseudonym is 1–64 printable characters")
    with db.atomic():
        if db.execute("SELECT 1 FROM devices WHERE device_id = ?", [device_id]).fetchone() is None:
            raise LookupError(f"no device {device_id!r}")
        db.execute("INSERT OR IGNORE INTO patients (pseudonym, created_at) VALUES (?, ?)",
                   [pseudonym, now_iso])
        patient_id = db.execute("SELECT id FROM patients WHERE pseudonym = ?",
                                [pseudonym]).fetchone()[0]
        db.execute("UPDATE devices SET patient_id = ? WHERE device_id = ?", [patient_id, device_id])
    return patient_id

"""The clinic database: SQLite through sqlite-utils, in WAL mode, with versioned migrations; or
PostgreSQL, for a health system (server/pg.py), with the same queries and the same migrations.

`open_db(path)` opens (or creates) the database and applies any pending migration. The collector
writes it; the dashboard reads it (and writes only its own tables: users, sessions, notes, …). WAL
lets the dashboard read while the collector writes. A `postgresql://` URL instead of a path opens
that PostgreSQL database (`[database] url` in server.toml).

Migrations are append-only: never edit one that has shipped; add the next one instead. Each runs in
one transaction with its record in `_sqlite_migrations` (sqlite-utils' `Migrations`), or in
`rlsmon_migrations` on PostgreSQL. Write new ones in the portable subset (TEXT/INTEGER/REAL
columns, ON CONFLICT … DO, no json_*/strftime/PRAGMA): server/pg.py translates the types and the
placeholders, so they run on both; where SQL must differ, branch on `is_postgres(db)` as 0002,
0004 and 0005 do.

Times are ISO 8601 strings in UTC (`utc_now()`), so they sort as text.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
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


def is_url(target: object) -> bool:
    """Whether `target` (a config value) names a PostgreSQL database rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def redacted(target: str | os.PathLike[str]) -> str:
    """A database path, or a URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", os.fspath(target))


def is_postgres(db: Database) -> bool:
    """Whether `db` is a PostgreSQL database (server.pg.PgDatabase) rather than SQLite."""
    return getattr(db, "dialect", "sqlite") == "postgresql"


def json_number(db: Database, column: str, key: str) -> str:
    """SQL reading the number at top-level `key` of the JSON text in `column` (NULL if absent)."""
    if is_postgres(db):
        return f"({column}::json->>'{key}')::float8"
    return f"json_extract({column}, '$.{key}')"


def json_array_of(db: Database, column: str, *keys: str) -> str:
    """SQL making a JSON array (as text) of the values at `keys` (top-level, or dotted paths such
    as `wear.not_worn`) of the JSON text in `column`, parsed once: `[1, null, true]`."""
    if is_postgres(db):
        # The text parsed once into the top-level fields asked for (json_to_record), not once per
        # key: json's operators parse the whole text again each time, 0.35 ms for a night of
        # 500 LMs here, and the patients list asks five keys of 100 nights.
        tops = list(dict.fromkeys(k.split(".")[0] for k in keys))
        values = ", ".join(f'r."{top}"' + (f" #> '{{{rest[0].replace('.', ',')}}}'" if rest else "")
                           for top, *rest in (k.split(".", 1) for k in keys))
        fields = ", ".join(f'"{top}" json' for top in tops)
        return f"(SELECT json_build_array({values})::text FROM json_to_record({column}::json) AS r({fields}))"
    paths = ", ".join(f"'$.{k}'" for k in keys)
    return f"json_extract({column}, {paths})"


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


# A flood may outrun the checkpointer's PASSIVE checkpoints; past this much WAL it waits for the
# writer and empties it, so the WAL (and a reader's replay of it) stays bounded.
MAX_WAL_BYTES = 64 * 1024 * 1024


def checkpoint_wal(path: str | os.PathLike[str], due: threading.Event, done: threading.Event) -> None:
    """Copy the WAL of the SQLite database at `path` into the database file each time `due` is set,
    until `due` is set with `done` set. For a writer that turned its own checkpoints off
    (`PRAGMA wal_autocheckpoint = 0`) and sets `due` after each commit: the copying and its fsync
    then run on this thread, beside the writer, instead of inside one of its commits.

    PASSIVE, so the writer is never blocked, until the WAL passes `MAX_WAL_BYTES`: then TRUNCATE
    waits for the writer's transaction to end, copies everything and empties the WAL.
    """
    conn = sqlite3.connect(os.fspath(path), timeout=BUSY_TIMEOUT_S)
    try:
        page_bytes = conn.execute("PRAGMA page_size").fetchone()[0]
        stopping = False
        while not stopping:
            due.wait()
            due.clear()
            stopping = done.is_set()
            _, wal_pages, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if wal_pages * page_bytes > MAX_WAL_BYTES:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


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
    _ddl(db, "DROP TABLE lm_events", _lm_events_view_sql(db, _LM_COLUMNS))


# On PostgreSQL json_array_elements counts from 1, json_each's key from 0; the booleans come out
# as 0/1 as SQLite's json_extract gives them.
_PG_LM_TYPES = {"onset_s": "float8", "offset_s": "float8", "duration_s": "float8", "periodic": "boolean::int",
                "clm": "boolean::int", "bilateral": "boolean::int", "series": "bigint", "imi_s": "float8",
                "leg": "text"}


def _lm_events_view_sql(db: Database, lm_columns: tuple[str, ...]) -> str:
    """CREATE VIEW lm_events: a row per LM of every stored night, (device_id, night, idx) and the
    LM's `lm_columns` (null where an LM has no such key), in `db`'s dialect."""
    if is_postgres(db):
        return f"""CREATE VIEW lm_events AS SELECT
    n.device_id AS device_id,
    n.night AS night,
    e.ord - 1 AS idx,
    {", ".join(f"(e.value->>'{c}')::{_PG_LM_TYPES[c]} AS {c}" for c in lm_columns)}
FROM nights AS n
CROSS JOIN LATERAL json_array_elements(n.summary_json::json->'lm_events') WITH ORDINALITY AS e(value, ord)"""
    columns = ",\n".join(f"json_extract(e.value, '$.{c}') AS {c}" for c in lm_columns)
    return f"""CREATE VIEW lm_events AS SELECT
            n.device_id AS device_id,
            n.night AS night,
            e.key AS idx,
            {columns}
        FROM nights AS n, json_each(n.summary_json, '$.lm_events') AS e"""


@MIGRATIONS(name="0003_rejected_bounds")
def _rejected_bounds(db: Database) -> None:
    # Agreed with the collector's side (issue 10, item 3): a refused payload keeps only a bounded
    # prefix, so its whole size and its SHA-256 are kept beside it, and what is no longer kept row
    # by row is counted per device and UTC day in rejected_daily (the collector maintains it; the
    # admins' rejected page reads it). The day index serves "the last 7 days across devices".
    _ddl(
        db,
        "ALTER TABLE rejected ADD COLUMN size_bytes INTEGER",
        "ALTER TABLE rejected ADD COLUMN sha256 TEXT",
        """CREATE TABLE rejected_daily (
            device_id TEXT NOT NULL,
            day TEXT NOT NULL,
            count INTEGER NOT NULL DEFAULT 0,
            bytes INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (device_id, day)
        )""",
        "CREATE INDEX idx_rejected_daily_day ON rejected_daily(day)",
    )


# A token made before roles existed could read every patient and never expired: it is kept (so
# the admins see what to replace) but expired, and given the clinician role it was used for.
_EXPIRED_AT_MIGRATION = "strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')"
_PG_EXPIRED_AT_MIGRATION = "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"')"


@MIGRATIONS(name="0004_staff_roles_audit")
def _staff_roles_audit(db: Database) -> None:
    # Roles: every account made before roles was made for clinical staff, so it becomes a
    # clinician and keeps every page it had; the new admin powers (users, audit, rejected
    # payloads, every token) go only to an admin made on purpose with `add-user --role admin`.
    # The lock-out columns give way to login_throttle (growing delays per address and account).
    _ddl(
        db,
        "ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'clinician' "
        "CHECK (role IN ('admin', 'clinician'))",
        "ALTER TABLE users DROP COLUMN failed_logins",
        "ALTER TABLE users DROP COLUMN locked_until",
        # key: 'address:<client address>' or 'account:<sha256 of the name typed>', known or not.
        """CREATE TABLE login_throttle (
            key TEXT PRIMARY KEY,
            failures INTEGER NOT NULL,
            last_failure_at TEXT NOT NULL,
            retry_at TEXT NOT NULL
        )""",
        "CREATE INDEX idx_login_throttle_last ON login_throttle(last_failure_at)",
        "ALTER TABLE api_tokens ADD COLUMN owner TEXT REFERENCES users(username) ON DELETE CASCADE",
        "ALTER TABLE api_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'clinician' "
        "CHECK (role IN ('admin', 'clinician'))",
        "ALTER TABLE api_tokens ADD COLUMN expires_at TEXT",
        f"UPDATE api_tokens SET expires_at = "
        f"{_PG_EXPIRED_AT_MIGRATION if is_postgres(db) else _EXPIRED_AT_MIGRATION}",
        "CREATE INDEX idx_api_tokens_owner ON api_tokens(owner)",
        # Who did what to which record, never with health data (no figures, no note text). Paged
        # newest first by id (the rowid: O(page)); the patient index answers "who saw P-0042".
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            via_token TEXT,
            client TEXT,
            action TEXT NOT NULL,
            target_kind TEXT,
            target TEXT,
            patient TEXT,
            detail TEXT
        )""",
        "CREATE INDEX idx_audit_patient ON audit(patient, id)",
    )


# The figures of a device's latest night, as the patients list shows them. Set by the triggers of
# migration 0005 whenever a night is stored, replaced or erased, so every writer keeps it right.
_LATEST_FIGURES = ("night", "plm_index", "severity", "clinically_significant", "coverage")
# Coverage = recorded time / the recording's duration (duration_s lives only in the JSON).
_LATEST_SELECT = ("night, plm_index, severity, clinically_significant, "
                  "recorded_s / nullif(json_extract(summary_json, '$.duration_s'), 0)")


def _latest_of(device: str) -> str:
    """The row-value subquery of the latest night of `device` (a column expression)."""
    return (f"(SELECT {_LATEST_SELECT} FROM nights WHERE device_id = {device} "
            "ORDER BY night DESC LIMIT 1)")


# What fleet_counts counts, as a term per device_latest row {r}.
_COUNTED = {
    "devices": "1",
    "assigned": "({r}.patient_id IS NOT NULL)",
    "online": "({r}.status IS 'online')",
    "flagged": "coalesce({r}.clinically_significant, 0)",
    "flagged_assigned": "({r}.patient_id IS NOT NULL AND coalesce({r}.clinically_significant, 0))",
}


# Migration 0005's tables, the same on both databases (server/pg.py translates the types).
_DEVICE_LATEST_DDL = (
    """CREATE TABLE device_latest (
            device_id TEXT PRIMARY KEY REFERENCES devices(device_id) ON DELETE CASCADE,
            patient_id INTEGER,
            pseudonym TEXT,
            status TEXT,
            created_at TEXT NOT NULL,
            night TEXT,
            plm_index REAL,
            severity TEXT,
            clinically_significant INTEGER,
            coverage REAL,
            quiet_since TEXT GENERATED ALWAYS AS (coalesce(night, substr(created_at, 1, 10))) VIRTUAL
        )""",
    # The list: assigned devices by pseudonym, all or only the flagged ones; a page is read
    # along the index from its key (keyset paging, server/web/queries.py).
    "CREATE INDEX idx_device_latest_list ON device_latest(pseudonym, device_id) "
    "WHERE patient_id IS NOT NULL",
    "CREATE INDEX idx_device_latest_flagged ON device_latest(pseudonym, device_id) "
    "WHERE patient_id IS NOT NULL AND clinically_significant = 1",
    "CREATE INDEX idx_device_latest_unassigned ON device_latest(device_id) "
    "WHERE patient_id IS NULL",
    "CREATE INDEX idx_device_latest_quiet ON device_latest(quiet_since, device_id)",
)
# A single row: the counts over device_latest, moved by its own triggers.
_FLEET_COUNTS_DDL = """CREATE TABLE fleet_counts (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            devices INTEGER NOT NULL,
            assigned INTEGER NOT NULL,
            online INTEGER NOT NULL,
            flagged INTEGER NOT NULL,
            flagged_assigned INTEGER NOT NULL
        )"""


@MIGRATIONS(name="0005_latest_nights")
def _latest_nights(db: Database) -> None:
    # Issue 14, item 1: the patients list, its counts and "not reporting" cost O(page), not
    # O(fleet). device_latest holds one row per device: its assignment (the pseudonym copied in
    # as the list's sort key), status, and its latest night's headline figures; fleet_counts
    # holds the list's headline counts. Triggers keep both in the same transaction as the write
    # that changes them (the collector's night upsert and status, an assignment, `forget`, bulk
    # SQL alike): a night older than the latest, or a stale one the collector refuses, never
    # moves them back. quiet_since (the latest night, or the day the device was first seen)
    # orders "not reporting", longest silence first.
    if is_postgres(db):
        _latest_nights_pg(db)
        return
    figures = ", ".join(_LATEST_FIGURES)
    news = ", ".join(f"new.{c}" if c != "coverage" else
                     "new.recorded_s / nullif(json_extract(new.summary_json, '$.duration_s'), 0)"
                     for c in _LATEST_FIGURES)
    _ddl(
        db,
        *_DEVICE_LATEST_DDL,
        f"""INSERT INTO device_latest (device_id, patient_id, pseudonym, status, created_at, {figures})
            SELECT d.device_id, d.patient_id, p.pseudonym, d.status, d.created_at,
                   {", ".join(f"n.{c}" for c in _LATEST_FIGURES[:-1])},
                   n.recorded_s / nullif(json_extract(n.summary_json, '$.duration_s'), 0)
            FROM devices d LEFT JOIN patients p ON p.id = d.patient_id
            LEFT JOIN nights n ON n.device_id = d.device_id
                AND n.night = (SELECT max(night) FROM nights WHERE device_id = d.device_id)""",
        _FLEET_COUNTS_DDL,
        f"""INSERT INTO fleet_counts SELECT 1, {", ".join(
            f"coalesce(sum({t.format(r='r')}), 0)" for t in _COUNTED.values())}
            FROM device_latest r""",
        f"""CREATE TRIGGER device_latest_counted_in AFTER INSERT ON device_latest BEGIN
            {_count_change("new", "+")}
        END""",
        f"""CREATE TRIGGER device_latest_counted_out AFTER DELETE ON device_latest BEGIN
            {_count_change("old", "-")}
        END""",
        f"""CREATE TRIGGER device_latest_counted_change AFTER UPDATE OF patient_id, status,
            clinically_significant ON device_latest BEGIN
            {_count_change("old", "-")}
            {_count_change("new", "+")}
        END""",
        # A device seen for the first time (nights are stored after their device, but bulk SQL
        # may do otherwise: take its latest night, if any).
        f"""CREATE TRIGGER devices_latest_in AFTER INSERT ON devices BEGIN
            INSERT INTO device_latest (device_id, patient_id, pseudonym, status, created_at)
            VALUES (new.device_id, new.patient_id,
                    (SELECT pseudonym FROM patients WHERE id = new.patient_id),
                    new.status, new.created_at);
            UPDATE device_latest SET ({figures}) = {_latest_of("new.device_id")}
            WHERE device_id = new.device_id
                AND EXISTS (SELECT 1 FROM nights WHERE device_id = new.device_id);
        END""",
        # Assignment (and `forget`, which unassigns) and status. last_seen, which the collector
        # moves on every message, is read from devices by primary key for the rows on the page.
        """CREATE TRIGGER devices_latest_change AFTER UPDATE OF patient_id, status ON devices
        WHEN old.patient_id IS NOT new.patient_id OR old.status IS NOT new.status BEGIN
            UPDATE device_latest SET patient_id = new.patient_id, status = new.status,
                pseudonym = (SELECT pseudonym FROM patients WHERE id = new.patient_id)
            WHERE device_id = new.device_id;
        END""",
        # No code renames a patient today; if one does, the list's sort key follows.
        """CREATE TRIGGER patients_latest_rename AFTER UPDATE OF pseudonym ON patients BEGIN
            UPDATE device_latest SET pseudonym = new.pseudonym WHERE patient_id = new.id;
        END""",
        # A new night, or a replaced one (the collector's upsert): it becomes the latest unless
        # the device has a later night already.
        *_sqlite_nights_latest(news),
        # An erased night (`forget`): when it was the latest, the one before it (or none) is.
        f"""CREATE TRIGGER nights_latest_delete AFTER DELETE ON nights BEGIN
            UPDATE device_latest SET ({figures}) = {_latest_of("old.device_id")}
            WHERE device_id = old.device_id AND night = old.night
                AND EXISTS (SELECT 1 FROM nights WHERE device_id = old.device_id);
            UPDATE device_latest SET {", ".join(f"{c} = NULL" for c in _LATEST_FIGURES)}
            WHERE device_id = old.device_id AND night = old.night;
        END""",
    )


def _latest_from_new(news: str) -> str:
    """The statement making the night `new` its device's latest (its figures `news`), unless the
    device has a later night already."""
    return (f"UPDATE device_latest SET ({', '.join(_LATEST_FIGURES)}) = ({news}) "
            "WHERE device_id = new.device_id AND (night IS NULL OR night <= new.night);")


def _sqlite_nights_latest(news: str) -> tuple[str, str]:
    """SQLite's triggers setting device_latest from a stored or replaced night (`news`: its figures)."""
    return tuple(f"CREATE TRIGGER nights_latest_{event.lower()} AFTER {event} ON nights BEGIN "
                 f"{_latest_from_new(news)} END" for event in ("INSERT", "UPDATE"))  # type: ignore[return-value]


# The classes a medication entry may have (issue 12, item 4): the drugs used for RLS and PLMD
# (Silber et al., Mayo Clin Proc 2021; Winkelman et al., the AASM guideline, J Clin Sleep
# Med 2025), and "other".
MEDICATION_CLASSES = ("dopamine_agonist", "alpha2delta", "iron", "opioid", "benzodiazepine",
                      "other")


@MIGRATIONS(name="0006_medications")
def _medications(db: Database) -> None:
    # Issue 12, item 4: structured medication entries beside the free-text notes, so that the
    # dashboard can compare the nights before and after each change. A start and an optional
    # stop date (the evening the change took effect). Portable DDL (TEXT/INTEGER, CHECKs, no
    # SQLite-only functions), as the server is being ported to PostgreSQL.
    classes = ", ".join(f"'{c}'" for c in MEDICATION_CLASSES)
    _ddl(
        db,
        f"""CREATE TABLE medications (
            id INTEGER PRIMARY KEY,
            patient_id INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
            drug TEXT NOT NULL,
            dose TEXT NOT NULL,
            drug_class TEXT NOT NULL CHECK (drug_class IN ({classes})),
            started TEXT NOT NULL,
            stopped TEXT,
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL,
            CHECK (stopped IS NULL OR stopped >= started)
        )""",
        "CREATE INDEX idx_medications_patient ON medications(patient_id, started)",
    )


@MIGRATIONS(name="0008_sit")
def _sit(db: Database) -> None:
    # Issue 13: each evening's Suggested Immobilization Test (server/sit.py, docs/sit.md), one row
    # per device and evening, its headline figures as columns and the result as sent.
    _ddl(
        db,
        """CREATE TABLE sits (
            device_id TEXT NOT NULL REFERENCES devices(device_id),
            evening TEXT NOT NULL,
            summary_id TEXT NOT NULL,
            generated_at TEXT NOT NULL,
            received_at TEXT NOT NULL,
            taken INTEGER NOT NULL,
            ended_early INTEGER NOT NULL,
            scored_s REAL NOT NULL,
            lm_count INTEGER NOT NULL,
            plm_count INTEGER NOT NULL,
            lm_index REAL,
            plm_index REAL,
            above_threshold INTEGER,
            result_json TEXT NOT NULL,
            PRIMARY KEY (device_id, evening)
        )""",
        "CREATE UNIQUE INDEX idx_sits_summary ON sits(device_id, summary_id)",
    )


@MIGRATIONS(name="0009_nights_summary_id")
def _nights_summary_id(db: Database) -> None:
    # Issue 14, item 3: the collector's idempotency rule (a summary_id stored on another night of
    # the device is a conflict) looked for it through every night of the device, a scan per message
    # that grew with the device's history; this index makes it one lookup.
    _ddl(db, "CREATE INDEX idx_nights_summary ON nights(device_id, summary_id)")


@MIGRATIONS(name="0010_nights_duration")
def _nights_duration(db: Database) -> None:
    # Issue 14, item 3: device_latest's coverage (recorded_s / duration_s) read duration_s out of
    # the night's JSON (~64 kB for 500 LMs) on every night stored, about a third of the store's
    # CPU (docs/architecture.md). The collector now writes it as a column. Nights stored before,
    # or by bulk SQL that leaves it NULL, still give it from their JSON (coalesce reads that only
    # when the column is NULL): the column is not back-filled, which would rewrite every night.
    news = ", ".join(f"new.{c}" for c in _LATEST_FIGURES[:-1]) + ", new.recorded_s / nullif(coalesce(" \
        f"new.duration_s, {json_number(db, 'new.summary_json', 'duration_s')}), 0)"
    _ddl(db, "ALTER TABLE nights ADD COLUMN duration_s REAL")
    if is_postgres(db):
        _ddl(db, _pg_function("nights_latest", _latest_from_new(news)))
        return
    _ddl(db, "DROP TRIGGER nights_latest_insert", "DROP TRIGGER nights_latest_update", *_sqlite_nights_latest(news))



@MIGRATIONS(name="0011_lm_events_leg")
def _lm_events_leg(db: Database) -> None:
    # An LM's optional `leg` (rlsmon.night/1, added with two sensors: "left", "right", "both"),
    # for the LM export; null for LMs that do not say.
    _ddl(db, "DROP VIEW lm_events", _lm_events_view_sql(db, (*_LM_COLUMNS, "leg")))

def _count_change(row: str, sign: str) -> str:
    """The statement moving fleet_counts by the device_latest row `row` (`new`/`old`)."""
    return "UPDATE fleet_counts SET " + ", ".join(
        f"{c} = {c} {sign} {t.format(r=row)}" for c, t in _COUNTED.items()) + ";"


# The PostgreSQL form of 0005: the same tables, indexes and rules, with the triggers as PL/pgSQL
# functions (a trigger body is a function there) and booleans counted with CASE (PostgreSQL does
# not add booleans to integers). The view is filled and counted the same way.
_PG_COUNTED = {
    "devices": "1",
    "assigned": "(CASE WHEN {r}.patient_id IS NOT NULL THEN 1 ELSE 0 END)",
    "online": "(CASE WHEN {r}.status = 'online' THEN 1 ELSE 0 END)",
    "flagged": "coalesce({r}.clinically_significant, 0)",
    "flagged_assigned": "(CASE WHEN {r}.patient_id IS NOT NULL THEN coalesce({r}.clinically_significant, 0) ELSE 0 END)",
}
_PG_COVERAGE = "{n}.recorded_s / nullif(({n}.summary_json::json->>'duration_s')::float8, 0)"


def _pg_function(name: str, body: str) -> str:
    """The PL/pgSQL trigger function `name`() running `body` (made, or replaced by a later migration)."""
    return f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$"


def _pg_trigger(name: str, when: str, body: str, condition: str = "TRUE") -> tuple[str, str]:
    """A PL/pgSQL function `name`() running `body` and the row trigger `name` calling it."""
    return (_pg_function(name, body),
            f"CREATE TRIGGER {name} {when} FOR EACH ROW WHEN ({condition}) EXECUTE FUNCTION {name}()")


def _pg_count_change(row: str, sign: str) -> str:
    return "UPDATE fleet_counts SET " + ", ".join(
        f"{c} = {c} {sign} {t.format(r=row)}" for c, t in _PG_COUNTED.items()) + ";"


_PG_FILL_LATEST = f"""INSERT INTO device_latest (device_id, patient_id, pseudonym, status, created_at,
        {", ".join(_LATEST_FIGURES)})
    SELECT d.device_id, d.patient_id, p.pseudonym, d.status, d.created_at,
           {", ".join(f"n.{c}" for c in _LATEST_FIGURES[:-1])}, {_PG_COVERAGE.format(n="n")}
    FROM devices d LEFT JOIN patients p ON p.id = d.patient_id
    LEFT JOIN nights n ON n.device_id = d.device_id
        AND n.night = (SELECT max(night) FROM nights WHERE device_id = d.device_id)"""
_PG_FILL_COUNTS = f"""INSERT INTO fleet_counts SELECT 1, {", ".join(
    f"coalesce(sum({t.format(r='r')}), 0)" for t in _PG_COUNTED.values())} FROM device_latest r"""


def refill_latest_pg(db: Database) -> None:
    """Recompute device_latest and fleet_counts from the devices and their nights (PostgreSQL).

    For a bulk load that bypassed the triggers (`SET session_replication_role = replica`, as
    benchmarks/page_latency.py does): in PostgreSQL each row the triggers update gets a new
    version, so a load of many nights in one transaction would walk ever longer version chains
    of the same device_latest rows."""
    with db.atomic():
        db.execute("DELETE FROM device_latest")
        db.execute(_PG_FILL_LATEST)
        db.execute("DELETE FROM fleet_counts")
        db.execute(_PG_FILL_COUNTS)


def _latest_nights_pg(db: Database) -> None:
    figures = ", ".join(_LATEST_FIGURES)
    latest_of = ("(SELECT night, plm_index, severity, clinically_significant, "
                 f"{_PG_COVERAGE.format(n='nights')} FROM nights WHERE device_id = {{}} "
                 "ORDER BY night DESC LIMIT 1)")
    news = ", ".join(f"new.{c}" for c in _LATEST_FIGURES[:-1]) + ", " + _PG_COVERAGE.format(n="new")
    _ddl(
        db,
        *_DEVICE_LATEST_DDL,
        _PG_FILL_LATEST,
        _FLEET_COUNTS_DDL,
        _PG_FILL_COUNTS,
        *_pg_trigger("device_latest_counted_in", "AFTER INSERT ON device_latest",
                     _pg_count_change("new", "+")),
        *_pg_trigger("device_latest_counted_out", "AFTER DELETE ON device_latest",
                     _pg_count_change("old", "-")),
        # Only when a counted column changes value: a PostgreSQL update writes a new version of
        # fleet_counts' one row, and most nights leave the counts as they were.
        *_pg_trigger("device_latest_counted_change",
                     "AFTER UPDATE OF patient_id, status, clinically_significant ON device_latest",
                     _pg_count_change("old", "-") + _pg_count_change("new", "+"),
                     "old.patient_id IS DISTINCT FROM new.patient_id OR old.status IS DISTINCT FROM "
                     "new.status OR old.clinically_significant IS DISTINCT FROM new.clinically_significant"),
        *_pg_trigger("devices_latest_in", "AFTER INSERT ON devices", f"""
            INSERT INTO device_latest (device_id, patient_id, pseudonym, status, created_at)
            VALUES (new.device_id, new.patient_id,
                    (SELECT pseudonym FROM patients WHERE id = new.patient_id),
                    new.status, new.created_at);
            UPDATE device_latest SET ({figures}) = {latest_of.format("new.device_id")}
            WHERE device_id = new.device_id
                AND EXISTS (SELECT 1 FROM nights WHERE device_id = new.device_id);"""),
        *_pg_trigger("devices_latest_change", "AFTER UPDATE OF patient_id, status ON devices", """
            IF old.patient_id IS DISTINCT FROM new.patient_id OR old.status IS DISTINCT FROM new.status THEN
                UPDATE device_latest SET patient_id = new.patient_id, status = new.status,
                    pseudonym = (SELECT pseudonym FROM patients WHERE id = new.patient_id)
                WHERE device_id = new.device_id;
            END IF;"""),
        *_pg_trigger("patients_latest_rename", "AFTER UPDATE OF pseudonym ON patients", """
            UPDATE device_latest SET pseudonym = new.pseudonym WHERE patient_id = new.id;"""),
        *_pg_trigger("nights_latest", "AFTER INSERT OR UPDATE ON nights", _latest_from_new(news)),
        *_pg_trigger("nights_latest_delete", "AFTER DELETE ON nights", f"""
            UPDATE device_latest SET ({figures}) = {latest_of.format("old.device_id")}
            WHERE device_id = old.device_id AND night = old.night
                AND EXISTS (SELECT 1 FROM nights WHERE device_id = old.device_id);
            UPDATE device_latest SET {", ".join(f"{c} = NULL" for c in _LATEST_FIGURES)}
            WHERE device_id = old.device_id AND night = old.night;"""),
    )


def schema_version(db: Database) -> list[str]:
    """The names of the migrations applied to `db`, oldest first."""
    if is_postgres(db):
        from server import pg

        return pg.applied(db, MIGRATIONS)
    return [m.name for m in MIGRATIONS.applied(db)]


def open_db(path: str | os.PathLike[str], *, check_same_thread: bool = True) -> Database:
    """Open the database at `path` (created if missing), in WAL mode, migrated to the latest schema.

    `path` may be `":memory:"` for a private in-memory database. Foreign keys are enforced.
    `synchronous=FULL` makes each commit durable before it returns, since the collector acknowledges
    a message to the broker (which then forgets it) only after its commit. Pass
    `check_same_thread=False` only when one thread at a time uses the connection (e.g. a writer
    thread that is not the one that opened it).

    `path` may instead be a `postgresql://` URL (server/pg.py): the same schema is made there, and
    `check_same_thread` does not apply.

    Example:
        db = open_db("/var/lib/rlsmon/server.db")
        db["nights"].count
    """
    if is_url(path):
        from server import pg

        pgdb = pg.connect(str(path))
        try:
            pg.migrate(pgdb, MIGRATIONS, utc_now())
        except BaseException:
            pgdb.close()
            raise
        return pgdb  # type: ignore[return-value]  # the subset of Database that server/ uses
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
        db.execute("INSERT INTO patients (pseudonym, created_at) VALUES (?, ?) "
                   "ON CONFLICT (pseudonym) DO NOTHING", [pseudonym, now_iso])
        patient_id = db.execute("SELECT id FROM patients WHERE pseudonym = ?",
                                [pseudonym]).fetchone()[0]
        db.execute("UPDATE devices SET patient_id = ? WHERE device_id = ?", [patient_id, device_id])
    return patient_id

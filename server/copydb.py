"""Copy a whole clinic database into a new, empty one: SQLite to PostgreSQL when a clinic outgrows
one file, or PostgreSQL back to SQLite (`rlsmon-server copy-to`). The source is only read.

- The tables are read from the schema (the migrations' own), parents before children along their
  foreign keys, each in primary-key order and in batches (keyset paging, so memory stays bounded
  whatever the size), from one snapshot of the source: a read transaction on SQLite (WAL), a
  REPEATABLE READ one on PostgreSQL.
- The target is written in one transaction: a failure anywhere leaves it empty. It must be at the
  same schema version and hold no data, else nothing is written and the first table that holds
  rows is named.
- Login sessions are not copied (`SKIPPED`): staff log in again on the new database, and live
  bearer credentials are not multiplied.
- `device_latest` and `fleet_counts` (`DERIVED`, migration 0005) are not copied but recomputed on the
  target from the copied devices, patients and nights, then compared row by row with the source's.
  On SQLite the triggers keep them as rows arrive; on PostgreSQL the triggers are off during the
  load and `refill_latest_pg` recomputes them once: each trigger update there writes a new row
  version, and millions of nights in one transaction would walk ever longer version chains.
- On PostgreSQL the identity sequences are moved past the copied ids, so the next insert works.
- The row counts of every table are checked, and an audit entry on the target records the copy.

The collector and the dashboard must be stopped meanwhile: what they write after the snapshot
would not be copied (and the collector's receipts would let the devices drop those nights).
`in_use` finds another process that has the source open.
"""

from __future__ import annotations

import contextlib
import fcntl
import graphlib
import math
import os
import sqlite3
import struct
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from sqlite_utils import Database

from server import audit
from server.db import is_postgres, is_url, open_db, redacted, refill_latest_pg, schema_version

# Not copied, and why (the CLI prints it).
SKIPPED = {"sessions": "login sessions: staff log in again on the new database"}
# Kept by migration 0005's triggers from devices, patients and nights: recomputed on the target.
DERIVED = ("device_latest", "fleet_counts")
# Rows per read and per write: a night's JSON is about 64 kB at 500 LMs, so a batch of nights holds
# tens of MB, whatever the size of the database (a batch of nights at the 4 MiB limit would be 2 GB;
# no real night comes near it).
BATCH_ROWS = 500
_MIGRATION_TABLES = ("_sqlite_migrations", "rlsmon_migrations")


class CopyError(Exception):
    """The copy cannot be made (a target that holds data, another schema, a process using the
    source) or did not check out; the target is left as it was."""


@dataclass(frozen=True)
class Copied:
    """What was copied: rows per table (derived ones as recomputed), in copy order."""

    rows: dict[str, int]
    seconds: float

    @property
    def copied_rows(self) -> int:
        """The rows copied (the recomputed tables not counted)."""
        return sum(n for table, n in self.rows.items() if table not in DERIVED)


def check_source(source: str | os.PathLike[str], target: str) -> None:
    """Refuse (CopyError) a copy of a SQLite `source` that does not exist or onto itself, or of
    a source that another process uses."""
    if not is_url(source) and not os.path.exists(source):
        raise CopyError(f"there is no database at {source}: check [database] in the config")
    if not is_url(source) and not is_url(target) and os.path.exists(target) \
            and os.path.samefile(source, target):
        raise CopyError(f"{target} is the configured database itself: copy into a new one")
    user = in_use(source)
    if user is not None:
        raise CopyError(f"{redacted(source)} is in use by {user}: stop rlsmon-collector and rlsmon-web "
                        "(systemctl stop rlsmon-collector rlsmon-web), then copy again")


def open_target(target: str) -> Database:
    """The database `target` (a SQLite path or a PostgreSQL URL), made or brought to the current
    schema by `open_db`; CopyError naming it when it cannot be opened."""
    try:
        return open_db(target)
    except ImportError:
        raise CopyError(f"{redacted(target)} is a PostgreSQL database, and psycopg is not "
                        "installed: pip install 'rlsmon[server,postgres]'") from None
    except (*_database_errors(), OSError) as e:
        raise CopyError(f"cannot open the target {redacted(target)}: {str(e).strip()}") from None


def in_use(source: str | os.PathLike[str]) -> str | None:
    """Who else has the database `source` (a SQLite path or a PostgreSQL URL) open, e.g. the
    collector, or None. Call it before this process opens a SQLite source: the probe opens and
    closes its shared-memory file, which drops this process's own POSIX locks on it."""
    if is_url(source):
        return _pg_sessions(str(source))
    return _sqlite_holder(Path(source))


# struct flock (l_type, l_whence, l_start, l_len, l_pid) in native alignment, off_t of 64 bits.
_FLOCK = "hhqqi4x"


def _sqlite_holder(path: Path) -> str | None:
    # Every connection to a WAL database holds a shared lock on the "DMS" byte (offset 128) of its
    # -shm file while it is open (SQLite's os_unix.c, UNIX_SHM_DMS): F_GETLK names one holder
    # without taking any lock.
    try:
        fd = os.open(f"{path}-shm", os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        wanted = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 128, 1, 0)
        kind, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, wanted))
    finally:
        os.close(fd)
    if kind == fcntl.F_UNLCK:
        return None
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        command = "?"
    return f"process {pid} ({command.strip()[:80]})"


def _pg_sessions(url: str) -> str | None:
    from server import pg

    try:
        db = pg.connect(url)
    except _database_errors() as e:
        raise CopyError(f"cannot open the database {redacted(url)}: {str(e).strip()}") from None
    try:
        rows = db.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                          "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                          "ORDER BY pid").fetchall()
    finally:
        db.close()
    if not rows:
        return None
    return f"{len(rows)} other connection(s) (server pids {', '.join(str(r[0]) for r in rows[:5])})"


def tables(db: Database) -> list[str]:
    """The tables of `db`'s schema (without the migrations' record), parents before children
    along their foreign keys, in name order otherwise."""
    if is_postgres(db):
        names = [r[0] for r in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_type = 'BASE TABLE'")]
        parents_sql = ("SELECT DISTINCT confrelid::regclass::text FROM pg_constraint "
                       "WHERE contype = 'f' AND conrelid = ?::regclass")
    else:
        names = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        parents_sql = 'SELECT DISTINCT "table" FROM pragma_foreign_key_list(?)'
    order = graphlib.TopologicalSorter()
    for name in sorted(set(names) - set(_MIGRATION_TABLES)):
        order.add(name, *(r[0] for r in db.execute(parents_sql, [name]) if r[0] != name))
    return list(order.static_order())


def columns(db: Database, table: str) -> list[str]:
    """The columns of `table` that take values (generated ones are computed), in order."""
    if is_postgres(db):
        sql = ("SELECT column_name FROM information_schema.columns WHERE table_schema = "
               "current_schema() AND table_name = ? AND is_generated = 'NEVER' ORDER BY ordinal_position")
    else:
        sql = "SELECT name FROM pragma_table_xinfo(?) WHERE hidden = 0 ORDER BY cid"
    return [r[0] for r in db.execute(sql, [table])]


def batches(db: Database, table: str, names: Sequence[str], size: int = BATCH_ROWS) -> Iterator[list[tuple]]:
    """The rows of `table` (its columns `names`), in primary-key order, `size` at a time: each
    batch is one indexed range read after the last key (keyset paging), so memory and the cost
    of a batch stay the same however large the table."""
    key = db[table].pks
    at = [list(names).index(k) for k in key]
    select = f"SELECT {', '.join(names)} FROM {table}"
    order = f"ORDER BY {', '.join(key)} LIMIT ?"
    rows = db.execute(f"{select} {order}", [size]).fetchall()
    while rows:
        yield [tuple(r) for r in rows]
        if len(rows) < size:
            return
        last = [rows[-1][i] for i in at]
        rows = db.execute(f"{select} WHERE ({', '.join(key)}) > ({', '.join('?' for _ in key)}) {order}",
                          [*last, size]).fetchall()


@contextlib.contextmanager
def _snapshot(db: Database) -> Iterator[None]:
    """One consistent view of `db` for every read in the block (read-only)."""
    db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if is_postgres(db) else "BEGIN")
    try:
        yield
    finally:
        db.conn.rollback()


@contextlib.contextmanager
def _writer(db: Database, table: str, names: Sequence[str]) -> Iterator[Callable[[list[tuple]], None]]:
    """A function writing batches of rows into `table`: COPY on PostgreSQL (one per table, several
    times faster than INSERTs), executemany on SQLite."""
    if is_postgres(db):
        with db.conn.cursor().copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy:
            def write(rows: list[tuple]) -> None:
                for row in rows:
                    copy.write_row(row)
            yield write
        return
    sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
    yield lambda rows: db.conn.executemany(sql, rows)


def _database_errors() -> tuple[type[BaseException], ...]:
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


def _copy_table(source: Database, target: Database, table: str) -> int:
    """Copy the rows of `table`; returns how many. A row the target refuses is a CopyError naming
    the table and the kind of error, never the row's values (health data)."""
    names = columns(target, table)
    copied = 0
    try:
        with _writer(target, table, names) as write:
            for batch in batches(source, table, names):
                write(batch)
                copied += len(batch)
    except _database_errors() as e:
        raise CopyError(f"copying table {table} failed ({type(e).__name__}: a value "
                        "the target's column does not take, or a broken source); nothing was copied") from e
    return copied


def _user_triggers(db: Database, enabled: bool) -> None:
    # PostgreSQL: ALTER TABLE … DISABLE TRIGGER USER needs only the tables' owner (the role that
    # ran the migrations), unlike session_replication_role, and is undone by a rollback. Foreign
    # keys stay checked (their triggers are not USER ones).
    for (table,) in db.execute("SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger "
                               "WHERE NOT tgisinternal ORDER BY 1").fetchall():
        db.execute(f"ALTER TABLE {table} {'ENABLE' if enabled else 'DISABLE'} TRIGGER USER")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _check_derived(source: Database, target: Database, table: str) -> int:
    """Compare the target's recomputed `table` with the source's, row by row; returns its rows."""
    names = columns(target, table)
    key = target[table].pks
    theirs = (row for batch in batches(source, table, names) for row in batch)
    count = 0
    for ours in (row for batch in batches(target, table, names) for row in batch):
        count += 1
        expected = next(theirs, None)
        if expected is None or not all(map(_same, ours, expected)):
            at = ", ".join(f"{k}={ours[names.index(k)]}" for k in key)
            raise CopyError(f"{table} recomputed on the target differs from the source's at {at}: "
                            "one of them does not follow from the copied rows (please report it); "
                            "nothing was copied")
    if next(theirs, None) is not None:
        raise CopyError(f"{table} has more rows on the source than recomputed on the target; "
                        "nothing was copied")
    return count


def copy_database(source: Database, target: Database, at: datetime, actor: audit.Actor,
                  source_name: str,
                  progress: Callable[[str, int], None] = lambda table, rows: None) -> Copied:
    """Copy every table of `source` into `target` (both opened by `open_db`, so migrated), as
    this module's docstring says; `source_name` (a path or URL) goes into the audit entry without
    its password, and `progress(table, rows)` is called after each table. Raises CopyError
    (the target unchanged) when the target holds data or is at another schema version, or when
    a check fails."""
    started = time.monotonic()
    if schema_version(source) != schema_version(target):
        raise CopyError(f"the source is at schema {schema_version(source)[-1]} and the target at "
                        f"{schema_version(target)[-1]}: run the same rlsmon version on both")
    order = tables(target)
    if set(order) != set(tables(source)):
        raise CopyError("the source and the target have different tables; nothing was copied")
    copied = [t for t in order if t not in SKIPPED and t not in DERIVED]
    rows: dict[str, int] = {}
    with _snapshot(source):
        target.execute("BEGIN IMMEDIATE")
        try:
            for table in (t for t in order if t not in DERIVED):
                if target.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
                    raise CopyError(f"the target is not empty: table {table} holds rows; copy only "
                                    "into a new, empty database (nothing was written)")
            if is_postgres(target):
                _user_triggers(target, enabled=False)
            for table in copied:
                rows[table] = _copy_table(source, target, table)
                progress(table, rows[table])
            if is_postgres(target):
                refill_latest_pg(target)
                _user_triggers(target, enabled=True)
                _move_sequences(target, copied)
            for table in copied:
                counts = (rows[table], source[table].count, target[table].count)
                if len(set(counts)) > 1:
                    raise CopyError(f"table {table}: {counts[0]} rows copied, {counts[1]} on the source "
                                    f"and {counts[2]} on the target; nothing was copied")
            for table in DERIVED:
                rows[table] = _check_derived(source, target, table)
                progress(table, rows[table])
            audit.record(target, at, actor, "database.copy", target_kind="database",
                         detail=f"from={redacted(source_name)} tables={len(copied)} "
                         f"rows={sum(rows[t] for t in copied)}")
        except _database_errors() as e:
            # Not a row (_copy_table names those): e.g. a role that does not own the tables.
            target.conn.rollback()
            raise CopyError(f"the copy failed and nothing was copied: {str(e).strip()}") from e
        except BaseException:
            target.conn.rollback()
            raise
        target.conn.commit()
    return Copied(rows, time.monotonic() - started)


def _move_sequences(db: Database, names: Sequence[str]) -> None:
    # Rows copied with their ids leave an identity column's sequence where it was: the next
    # insert would draw id 1 and collide. setval makes the next one max(id) + 1.
    for table, column in db.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND is_identity = 'YES'").fetchall():
        if table not in names:
            continue
        top = db.execute(f"SELECT max({column}) FROM {table}").fetchone()[0]
        if top is not None:
            db.execute("SELECT setval(pg_get_serial_sequence(?, ?), ?)", [table, column, top])

"""The clinic database's lifecycle: a consistent backup while the collector writes, and erasing
one patient's data on request (GDPR art. 17), leaving an audit entry without health data."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlite_utils import Database

from server import audit
from server.db import BUSY_TIMEOUT_S, is_postgres
from server.rejected import device_topics


def backup(db_path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Copy the database at ``db_path`` to the new file ``dest`` with SQLite's online backup API.

    The copy is made in one backup step, which reads one snapshot: in WAL mode the collector goes
    on writing meanwhile, and the copy holds exactly the transactions committed before it began.
    The copy is checked (`PRAGMA integrity_check`), made a single self-contained file (journal
    mode DELETE), readable by its owner only (it holds health data), written beside ``dest``
    and renamed into place, so ``dest`` is never a half-written file. Raises FileExistsError when
    ``dest`` exists, and sqlite3.DatabaseError when the copy fails its check.
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} exists; choose a new file name")
    partial = dest.with_name(f".{dest.name}.partial")
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    try:
        source = sqlite3.connect(os.fspath(db_path), timeout=BUSY_TIMEOUT_S)
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)  # pages=-1: the whole database in one step, from one snapshot
            checked = copy.execute("PRAGMA integrity_check").fetchone()[0]
            if checked != "ok":
                raise sqlite3.DatabaseError(f"the backup failed its integrity check: {checked}")
            copy.execute("PRAGMA journal_mode = DELETE")
        finally:
            copy.close()
            source.close()
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, dest)
        directory = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Forgotten:
    """What `forget` erased, as counts (an audit entry may hold counts, never figures)."""

    devices: tuple[str, ...]
    nights: int
    notes: int
    rejected: int


def forget(db: Database, pseudonym: str, at: datetime, actor: audit.Actor) -> Forgotten:
    """Erase the patient ``pseudonym``: their nights (with the LMs in them) and evening tests (counted
    with the nights), treatment notes,
    refused payloads from their devices, their device assignments and the patient row. Their
    devices stay, unassigned, for the next patient. One transaction, with its audit entry.

    Their nights are the nights of the devices assigned to them (as the dashboard shows them).
    Deleted pages are overwritten (`secure_delete`) and the WAL is emptied afterwards, so the
    data does not linger in the database files; backups keep it until they are rotated away.
    On PostgreSQL the rows are deleted the same way, in one transaction, but PostgreSQL has no
    secure_delete: their bytes stay in the table files until VACUUM lets new rows reuse the space,
    and in its WAL archives and dumps (README, "PostgreSQL").
    Raises LookupError when there is no such patient.
    """
    sqlite = not is_postgres(db)
    if sqlite:
        db.execute("PRAGMA secure_delete = ON")
    with db.atomic():
        row = db.execute("SELECT id FROM patients WHERE pseudonym = ?", [pseudonym]).fetchone()
        if row is None:
            raise LookupError(f"no patient {pseudonym!r}")
        (patient_id,) = row
        devices = tuple(r[0] for r in db.execute(
            "SELECT device_id FROM devices WHERE patient_id = ? ORDER BY device_id", [patient_id]))
        nights = rejected = 0
        for device_id in devices:
            nights += db.execute("DELETE FROM nights WHERE device_id = ?", [device_id]).rowcount
            nights += db.execute("DELETE FROM sits WHERE device_id = ?", [device_id]).rowcount  # evening tests
            prefix = device_topics(device_id)
            rejected += db.execute("DELETE FROM rejected WHERE substr(topic, 1, ?) = ?",
                                   [len(prefix), prefix]).rowcount
        notes = db.execute("DELETE FROM treatment_notes WHERE patient_id = ?",
                           [patient_id]).rowcount
        db.execute("UPDATE devices SET patient_id = NULL WHERE patient_id = ?", [patient_id])
        db.execute("DELETE FROM patients WHERE id = ?", [patient_id])
        forgotten = Forgotten(devices, nights, notes, rejected)
        audit.record(db, at, actor, "patient.forget", target_kind="patient", target=pseudonym,
                     patient=pseudonym, detail=f"devices={','.join(devices) or '-'} nights={nights} "
                     f"notes={notes} rejected={rejected}")
    if sqlite:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return forgotten

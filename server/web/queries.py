"""What the dashboard reads from (and the little it writes to) the clinic database.

Every query here is served by an index of `server/db.py`: the patients list, its counts and "not
reporting" read device_latest and fleet_counts (one row per device, and one row, kept by
triggers as nights arrive), so they cost O(page) at any fleet size; the nights' primary key
(device_id, night) answers "this patient's nights".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlite_utils import Database

# A device that has missed this many nights in a row is listed as not reporting (issue 5).
MISSED_NIGHTS_ALERT = 2

_HEADLINE = ("night", "device_id", "summary_id", "plm_index", "lm_index", "lm_count", "plm_count",
             "plm_series_count", "time_in_bed_s", "recorded_s", "periodicity_index", "severity",
             "clinically_significant", "rules", "generated_at", "received_at")


@dataclass
class DeviceRow:
    """One line of the patients list: a device, its patient (if assigned) and its last night."""

    device_id: str
    patient_id: int | None
    pseudonym: str | None
    status: str | None
    last_seen: str | None
    created_at: str
    night: str | None = None
    plm_index: float | None = None
    severity: str | None = None
    clinically_significant: bool = False
    coverage: float | None = None
    missed_nights: int | None = None

    @property
    def not_reporting(self) -> bool:
        """True when the device has missed ``MISSED_NIGHTS_ALERT`` nights or more."""
        return self.missed_nights is not None and self.missed_nights >= MISSED_NIGHTS_ALERT


def _missed(last: str | None, created_at: str, today: date) -> int:
    """Nights missed since the last one received, counting last evening as due."""
    due = today - timedelta(days=1)
    if last is not None:
        return max(0, (due - date.fromisoformat(last)).days)
    return max(0, (due - date.fromisoformat(created_at[:10])).days + 1)


# One row per device from device_latest (server/db.py, migration 0005: the latest night's figures,
# kept by triggers as nights arrive), and last_seen from devices by primary key, for the rows on
# the page only. CROSS JOIN keeps device_latest the outer loop, read along the index that serves
# the WHERE and ORDER BY.
_DEVICE_SELECT = """
SELECT l.device_id, l.patient_id, l.pseudonym, l.status, d.last_seen, l.created_at,
       l.night, l.plm_index, l.severity, l.clinically_significant, l.coverage
FROM device_latest l CROSS JOIN devices d ON d.device_id = l.device_id
"""


def _rows(db: Database, where: str, params: list[Any], today: date, tail: str) -> list[DeviceRow]:
    # `tail` ends in "LIMIT ?", the last parameter; a negative limit means all rows, as SQLite
    # reads it (PostgreSQL refuses a negative LIMIT, so the clause goes).
    if params[-1] < 0:
        tail, params = tail.removesuffix(" LIMIT ?"), params[:-1]
    out = []
    for r in db.execute(_DEVICE_SELECT + where + tail, params).fetchall():
        row = DeviceRow(*r[:6], night=r[6], plm_index=r[7], severity=r[8],
                        clinically_significant=bool(r[9]), coverage=r[10])
        row.missed_nights = _missed(row.night, row.created_at, today)
        out.append(row)
    return out


def _counts(db: Database) -> dict[str, int]:
    cols = ("devices", "assigned", "online", "flagged", "flagged_assigned")
    row = db.execute(f"SELECT {', '.join(cols)} FROM fleet_counts WHERE id = 1").fetchone()
    return dict(zip(cols, row))


@dataclass
class Page:
    """One page of the patients list, how many rows match in all, and whether there are rows
    before and after it (asked for with the first and last rows' device ids)."""

    rows: list[DeviceRow]
    total: int
    has_before: bool
    has_after: bool


def patient_page(db: Database, today: date, *, search: str = "", flagged_only: bool = False,
                 limit: int | None = 100, after: str | None = None,
                 before: str | None = None) -> Page:
    """Assigned devices ordered by pseudonym, filtered: the ``limit`` (None: all) after the
    device ``after`` in that order, or before the device ``before``, or the first ones.

    Keyset paging: a page is read along an index of device_latest from its key, and its count
    comes from fleet_counts, so a page costs O(page) wherever it is in the list. A search (a
    substring of the pseudonym or device) reads that index whole, as any substring search must.
    A key that is no longer in the list (its device unassigned since), or that nothing follows
    (or precedes), gives the first page."""
    where = " WHERE l.patient_id IS NOT NULL"
    params: list[Any] = []
    if flagged_only:
        where += " AND l.clinically_significant = 1"
    if search:
        where += " AND (l.pseudonym LIKE ? ESCAPE '\\' OR l.device_id LIKE ? ESCAPE '\\')"
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        params += [pattern, pattern]
        total = db.execute(f"SELECT count(*) FROM device_latest l{where}", params).fetchone()[0]
    else:
        total = _counts(db)["flagged_assigned" if flagged_only else "assigned"]
    key = None
    if after or before:
        key = db.execute("SELECT pseudonym, device_id FROM device_latest "
                         "WHERE device_id = ? AND patient_id IS NOT NULL",
                         [after or before]).fetchone()
    backwards = key is not None and not after
    if key is not None:
        where += f" AND (l.pseudonym, l.device_id) {'<' if backwards else '>'} (?, ?)"
        params += list(key)
    order = " DESC" if backwards else ""
    rows = _rows(db, where, params + [-1 if limit is None else limit + 1], today,
                 f" ORDER BY l.pseudonym{order}, l.device_id{order} LIMIT ?")
    more = limit is not None and len(rows) > limit
    rows = rows[:limit]
    if key is not None and not rows:  # nothing on that side of the key: the first page
        return patient_page(db, today, search=search, flagged_only=flagged_only, limit=limit)
    if backwards:
        return Page(rows[::-1], total, has_before=more, has_after=True)
    return Page(rows, total, has_before=key is not None, has_after=more)


def unassigned_devices(db: Database, today: date, limit: int = -1) -> list[DeviceRow]:
    """Devices that no patient has been assigned to yet, the first ``limit`` (-1: all)."""
    return _rows(db, " WHERE l.patient_id IS NULL", [limit], today,
                 " ORDER BY l.device_id LIMIT ?")


def _silent_since(today: date) -> str:
    # Silent for MISSED_NIGHTS_ALERT nights: the latest night (or the first day seen) is on or
    # before this day.
    return (today - timedelta(days=1 + MISSED_NIGHTS_ALERT)).isoformat()


def not_reporting(db: Database, today: date, limit: int = -1) -> list[DeviceRow]:
    """Devices that have missed ``MISSED_NIGHTS_ALERT`` nights or more, longest silence first,
    the first ``limit`` of them (-1: all)."""
    return _rows(db, " WHERE l.quiet_since <= ?", [_silent_since(today), limit], today,
                 " ORDER BY l.quiet_since, l.device_id LIMIT ?")


def overview(db: Database, today: date) -> dict[str, int]:
    """Headline counts for the top of the patients list: devices, assigned, online, flagged
    (latest night clinically significant), unassigned and not reporting."""
    counts = _counts(db)
    silent = db.execute("SELECT count(*) FROM device_latest WHERE quiet_since <= ?",
                        [_silent_since(today)]).fetchone()[0]
    return {"devices": counts["devices"], "assigned": counts["assigned"],
            "online": counts["online"], "flagged": counts["flagged"],
            "unassigned": counts["devices"] - counts["assigned"], "not_reporting": silent}


def patient(db: Database, patient_id: int) -> dict[str, Any] | None:
    """The patient's pseudonym and devices, or None."""
    row = db.execute("SELECT id, pseudonym, created_at FROM patients WHERE id = ?",
                     [patient_id]).fetchone()
    if row is None:
        return None
    devices = [r[0] for r in db.execute(
        "SELECT device_id FROM devices WHERE patient_id = ? ORDER BY device_id", [patient_id])]
    return {"id": row[0], "pseudonym": row[1], "created_at": row[2], "devices": devices}


def patient_nights(db: Database, patient_id: int) -> list[dict[str, Any]]:
    """Headline figures of every night of the patient's devices, oldest first."""
    cols = ", ".join(f"n.{c}" for c in _HEADLINE)
    rows = db.execute(f"""
        SELECT {cols} FROM devices d JOIN nights n ON n.device_id = d.device_id
        WHERE d.patient_id = ? ORDER BY n.night, n.device_id""", [patient_id]).fetchall()
    out = [dict(zip(_HEADLINE, r)) for r in rows]
    for night in out:
        night["clinically_significant"] = bool(night["clinically_significant"])
    return out


def device_nights(db: Database, device_id: str) -> list[dict[str, Any]] | None:
    """Headline figures of every night of one device, oldest first; None when there is no device."""
    if db.execute("SELECT 1 FROM devices WHERE device_id = ?", [device_id]).fetchone() is None:
        return None
    cols = ", ".join(_HEADLINE)
    rows = db.execute(f"SELECT {cols} FROM nights WHERE device_id = ? ORDER BY night",
                      [device_id]).fetchall()
    return [dict(zip(_HEADLINE, r), clinically_significant=bool(r[12])) for r in rows]


def device_pseudonym(db: Database, device_id: str) -> str | None:
    """The pseudonym of the patient the device is assigned to, or None."""
    row = db.execute("SELECT p.pseudonym FROM devices d JOIN patients p ON p.id = d.patient_id "
                     "WHERE d.device_id = ?", [device_id]).fetchone()
    return row[0] if row else None


def neighbour_nights(db: Database, device_id: str, night: str) -> tuple[str | None, str | None]:
    """The device's nights just before and just after ``night`` (None at either end)."""
    row = db.execute("""
        SELECT (SELECT max(night) FROM nights WHERE device_id = ? AND night < ?),
               (SELECT min(night) FROM nights WHERE device_id = ? AND night > ?)""",
                     [device_id, night, device_id, night]).fetchone()
    return row[0], row[1]


def night_summary(db: Database, device_id: str, night: str) -> dict[str, Any] | None:
    """The whole stored summary of one night, plus the patient it belongs to, or None."""
    row = db.execute("""
        SELECT n.summary_json, n.summary_id, d.patient_id, p.pseudonym
        FROM nights n JOIN devices d ON d.device_id = n.device_id
        LEFT JOIN patients p ON p.id = d.patient_id
        WHERE n.device_id = ? AND n.night = ?""", [device_id, night]).fetchone()
    if row is None:
        return None
    return {"summary": json.loads(row[0]), "summary_json": row[0], "summary_id": row[1],
            "patient_id": row[2], "pseudonym": row[3]}


def patient_lm_events(db: Database, patient_id: int) -> list[dict[str, Any]]:
    """Every LM of every night of the patient's devices, night by night."""
    cols = ("device_id", "night", "idx", "onset_s", "offset_s", "duration_s", "periodic", "clm",
            "bilateral", "series", "imi_s", "leg")
    rows = db.execute(f"""
        SELECT {", ".join("e." + c for c in cols)} FROM devices d
        JOIN lm_events e ON e.device_id = d.device_id
        WHERE d.patient_id = ? ORDER BY e.night, e.device_id, e.idx""", [patient_id]).fetchall()
    return [dict(zip(cols, r)) for r in rows]


def notes(db: Database, patient_id: int) -> list[dict[str, Any]]:
    """The patient's treatment notes, by date."""
    rows = db.execute("SELECT id, date, text, created_by, created_at FROM treatment_notes "
                      "WHERE patient_id = ? ORDER BY date, id", [patient_id]).fetchall()
    return [dict(zip(("id", "date", "text", "created_by", "created_at"), r)) for r in rows]


def add_note(db: Database, patient_id: int, on: date, text: str, username: str,
             now_iso: str) -> None:
    """Record a treatment note, e.g. "ropinirole 0.25 mg started", dated ``on``."""
    text = " ".join(text.split())
    if not text or len(text) > 200:
        raise ValueError("a note is 1–200 characters")
    with db.atomic():
        db["treatment_notes"].insert({"patient_id": patient_id, "date": on.isoformat(),
                                      "text": text, "created_by": username,
                                      "created_at": now_iso})



def devices(db: Database) -> list[dict[str, Any]]:
    """Every device for the admins: status, when last seen, whether assigned (not to whom)."""
    cols = ("device_id", "status", "status_at", "last_seen", "created_at", "assigned")
    return [dict(zip(cols, r)) for r in db.execute(
        "SELECT device_id, status, status_at, last_seen, created_at, patient_id IS NOT NULL "
        "FROM devices ORDER BY device_id")]


def rejected_by_device(db: Database, since_day: str) -> list[dict[str, Any]]:
    """Refused payloads per device since ``since_day`` (YYYY-MM-DD, UTC), from the collector's
    daily counts: most refused first, with the bytes they carried and the days they came on."""
    cols = ("device_id", "count", "bytes", "days", "last_day")
    return [dict(zip(cols, r)) for r in db.execute(
        "SELECT device_id, sum(count), sum(bytes), count(*), max(day) FROM rejected_daily "
        "WHERE day >= ? GROUP BY device_id ORDER BY sum(count) DESC, device_id", [since_day])]


def latest_rejected(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    """The newest refused payloads, without the payloads: when, the device (from the topic), the
    reason, the size and the SHA-256."""
    out = []
    for r in db.execute("SELECT id, received_at, topic, reason, size_bytes, sha256 FROM rejected "
                        "ORDER BY id DESC LIMIT ?", [limit]):
        parts = r[2].split("/")
        out.append({"id": r[0], "received_at": r[1], "topic": r[2],
                    "device_id": parts[2] if len(parts) > 2 and parts[0] == "rlsmon" else None,
                    "reason": r[3], "size_bytes": r[4], "sha256": r[5]})
    return out

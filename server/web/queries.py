"""What the dashboard reads from (and the little it writes to) the clinic database.

Every query here is served by an index of `server/db.py`: the nights' primary key
(device_id, night) answers "the last night of this device" and "this patient's nights", so the
pages stay fast with thousands of patients and years of nights.
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


_DEVICE_SELECT = """
SELECT d.device_id, d.patient_id, p.pseudonym, d.status, d.last_seen, d.created_at,
       n.night, n.plm_index, n.severity, n.clinically_significant,
       {coverage} AS coverage
FROM devices d
LEFT JOIN patients p ON p.id = d.patient_id
LEFT JOIN nights n ON n.device_id = d.device_id
    AND n.night = (SELECT max(night) FROM nights WHERE device_id = d.device_id)
"""
# Coverage = recorded time / the recording's duration. duration_s lives only in the summary JSON,
# so it is extracted just for the rows on the page, never for the whole table.
_COVERAGE = ("n.recorded_s / nullif(json_extract(n.summary_json, '$.duration_s'), 0)")


def _rows(db: Database, where: str, params: list[Any], today: date, tail: str = "",
          with_coverage: bool = True) -> list[DeviceRow]:
    sql = _DEVICE_SELECT.format(coverage=_COVERAGE if with_coverage else "NULL") + where + tail
    out = []
    for r in db.execute(sql, params).fetchall():
        row = DeviceRow(*r[:6], night=r[6], plm_index=r[7], severity=r[8],
                        clinically_significant=bool(r[9]), coverage=r[10])
        row.missed_nights = _missed(row.night, row.created_at, today)
        out.append(row)
    return out


def patient_page(db: Database, today: date, *, search: str = "", flagged_only: bool = False,
                 limit: int = 100, offset: int = 0) -> tuple[list[DeviceRow], int]:
    """Assigned devices ordered by pseudonym, filtered, one page of them, and how many match."""
    where = " WHERE d.patient_id IS NOT NULL"
    params: list[Any] = []
    if search:
        where += " AND (p.pseudonym LIKE ? ESCAPE '\\' OR d.device_id LIKE ? ESCAPE '\\')"
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        params += [pattern, pattern]
    if flagged_only:
        where += " AND n.clinically_significant = 1"
    total = db.execute(f"SELECT count(*) FROM ({_DEVICE_SELECT.format(coverage='NULL')}{where})",
                       params).fetchone()[0]
    rows = _rows(db, where, params + [limit, offset], today,
                 " ORDER BY p.pseudonym, d.device_id LIMIT ? OFFSET ?")
    return rows, total


def unassigned_devices(db: Database, today: date) -> list[DeviceRow]:
    """Devices that no patient has been assigned to yet."""
    return _rows(db, " WHERE d.patient_id IS NULL", [], today, " ORDER BY d.device_id")


def not_reporting(db: Database, today: date) -> list[DeviceRow]:
    """Devices that have missed ``MISSED_NIGHTS_ALERT`` nights or more, longest silence first."""
    due = (today - timedelta(days=1 + MISSED_NIGHTS_ALERT)).isoformat()
    rows = _rows(db, " WHERE coalesce(n.night, substr(d.created_at, 1, 10)) <= ?", [due], today,
                 " ORDER BY coalesce(n.night, '') , d.device_id", with_coverage=False)
    return [r for r in rows if r.not_reporting]


def overview(db: Database) -> dict[str, int]:
    """Headline counts for the top of the patients list."""
    row = db.execute("""
        SELECT count(*), count(d.patient_id),
               sum(CASE WHEN d.status = 'online' THEN 1 ELSE 0 END),
               sum(coalesce((SELECT clinically_significant FROM nights
                             WHERE device_id = d.device_id ORDER BY night DESC LIMIT 1), 0))
        FROM devices d""").fetchone()
    return {"devices": row[0], "assigned": row[1], "online": row[2] or 0, "flagged": row[3] or 0}


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
            "bilateral", "series", "imi_s")
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

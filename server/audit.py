"""The audit trail: who viewed or exported which patient's data, and who changed what, with the
time (UTC) and the client's address, in the `audit` table of `server/db.py`.

Never health data: an entry names records (a pseudonym, a night's device and date, a user, a
token, a device), never their figures or a note's text. The dashboard, the JSON API and the
command line (`forget`, `backup`) all write here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

from sqlite_utils import Database

COLUMNS = ("id", "at", "actor", "via_token", "client", "action", "target_kind", "target",
           "patient", "detail")


@dataclass(frozen=True)
class Actor:
    """Who acts: a staff member (``name``), through an API token when ``via_token`` is set (its
    owner is the actor), from ``client``; or the command line (``cli:<os user>``)."""

    name: str
    client: str | None = None
    via_token: str | None = None


def record(db: Database, at: datetime, actor: Actor, action: str, *, target_kind: str | None = None,
           target: str | None = None, patient: str | None = None, detail: str | None = None) -> None:
    """Append one entry. ``patient`` is the pseudonym whose data the action touched, if any;
    ``detail`` is a short note without health data (e.g. a token's role and expiry)."""
    with db.atomic():
        db.execute("INSERT INTO audit (at, actor, via_token, client, action, target_kind, target, "
                   "patient, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [at.astimezone(timezone.utc).isoformat(), actor.name, actor.via_token,
                    actor.client, action, target_kind, target, patient, detail])


def page(db: Database, before_id: int | None = None, limit: int = 100,
         patient: str | None = None) -> list[dict[str, Any]]:
    """Up to ``limit`` entries, newest first, older than ``before_id`` when given, and only those
    about ``patient`` (a pseudonym) when given. Keyset paging on the rowid, or on the
    (patient, id) index, so any page costs the same however long the trail."""
    where, params = "id < ?", [before_id if before_id is not None else 2**63 - 1]
    if patient is not None:
        where, params = "patient = ? AND " + where, [patient, *params]
    rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM audit WHERE {where} ORDER BY id DESC "
                      "LIMIT ?", [*params, limit])
    return [dict(zip(COLUMNS, r)) for r in rows]


def every_entry(db: Database, batch: int = 1000) -> Iterator[dict[str, Any]]:
    """Every entry, oldest first, read in batches (for the CSV export)."""
    last = 0
    while True:
        rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM audit WHERE id > ? ORDER BY id "
                          "LIMIT ?", [last, batch]).fetchall()
        if not rows:
            return
        yield from (dict(zip(COLUMNS, r)) for r in rows)
        last = rows[-1][0]

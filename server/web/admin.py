"""The admins' pages: staff accounts, devices, refused payloads and the audit trail.

None of them shows health data: devices without their patients, refused payloads without their
bytes, and the audit trail, which never holds any.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Iterator

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlite_utils import Database

from server import audit as trail
from server.db import open_db
from server.web import auth, queries
from server.web.access import allow
from server.web.auth import ADMIN, ROLES
from server.web.deps import attachment, audit, get_db, render, state

router = APIRouter(include_in_schema=False)
AUDIT_PAGE_SIZE = 100
REJECTED_DAYS = 7


@router.get("/admin/users", response_class=HTMLResponse)
@allow(ADMIN)
def users_page(request: Request, db: Database = Depends(get_db)) -> Response:
    """Staff accounts and their roles. Accounts are created on the server (`add-user`), so no
    password ever crosses the web."""
    return render(request, "admin_users.html", {"users": auth.users(db), "roles": ROLES})


def _someone_else(request: Request, username: str) -> None:
    if username == request.state.principal.username:
        raise HTTPException(422, "Change your own account with `rlsmon-server add-user` on the server.")


@router.post("/admin/users/role")
@allow(ADMIN)
def users_set_role(request: Request, username: str = Form(max_length=64),
                   role: str = Form(max_length=20), db: Database = Depends(get_db)) -> Response:
    """Give a staff member another role (not oneself: an admin cannot lock the admins out)."""
    _someone_else(request, username)
    try:
        changed = auth.set_role(db, username, role)
    except auth.AuthError as e:
        raise HTTPException(422, str(e)) from None
    if not changed:
        raise HTTPException(404, f"No user {username}.")
    audit(request, db, "user.role", target_kind="user", target=username, detail=f"role={role}")
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/admin/users/delete")
@allow(ADMIN)
def users_delete(request: Request, username: str = Form(max_length=64),
                 db: Database = Depends(get_db)) -> Response:
    """Remove a staff account, its sessions and its API tokens."""
    _someone_else(request, username)
    if not auth.delete_user(db, username):
        raise HTTPException(404, f"No user {username}.")
    audit(request, db, "user.delete", target_kind="user", target=username)
    return RedirectResponse("/admin/users", status_code=303)


@router.get("/admin/devices", response_class=HTMLResponse)
@allow(ADMIN)
def devices_page(request: Request, db: Database = Depends(get_db)) -> Response:
    """Every device: online or not, when last seen, whether assigned."""
    return render(request, "admin_devices.html", {"devices": queries.devices(db)})


@router.get("/admin/rejected", response_class=HTMLResponse)
@allow(ADMIN)
def rejected_page(request: Request, db: Database = Depends(get_db)) -> Response:
    """Devices that send junk or flood, by how many payloads were refused in the last 7 days,
    and the newest refused payloads (their reasons, sizes and hashes, never their bytes)."""
    since = (state(request).now().date() - timedelta(days=REJECTED_DAYS - 1)).isoformat()
    return render(request, "admin_rejected.html", {
        "by_device": queries.rejected_by_device(db, since), "since": since,
        "latest": queries.latest_rejected(db), "days": REJECTED_DAYS})


@router.get("/admin/audit", response_class=HTMLResponse)
@allow(ADMIN)
def audit_page(request: Request, before: int | None = Query(None, ge=1),
               patient: str = Query("", max_length=64),
               db: Database = Depends(get_db)) -> Response:
    """The audit trail, newest first, a page at a time (``before``: the oldest id seen), all of
    it or only the entries about one ``patient`` pseudonym (who saw P-0042's data)."""
    patient = patient.strip()
    entries = trail.page(db, before, AUDIT_PAGE_SIZE, patient=patient or None)
    older = entries[-1]["id"] if len(entries) == AUDIT_PAGE_SIZE else None
    return render(request, "admin_audit.html", {"entries": entries, "older": older,
                                                "first_page": before is None,
                                                "patient": patient})


@router.get("/admin/audit.csv")
@allow(ADMIN)
def audit_csv(request: Request, db: Database = Depends(get_db)) -> Response:
    """The whole audit trail as CSV, oldest first, streamed in batches."""
    audit(request, db, "audit.export")
    db_path = state(request).db_path

    def lines() -> Iterator[str]:
        # The request's connection closes when the handler returns, so the stream has its own
        # (used by one thread at a time, as Starlette iterates it).
        own = open_db(db_path, check_same_thread=False)
        try:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, trail.COLUMNS, lineterminator="\n")
            writer.writeheader()
            for i, row in enumerate(trail.every_entry(own), 1):
                writer.writerow(row)
                if i % 1000 == 0:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
            yield buf.getvalue()
        finally:
            own.conn.close()

    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8",
                             headers=attachment("rlsmon_audit.csv"))

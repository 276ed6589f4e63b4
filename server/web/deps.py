"""The web app's shared state and the request dependencies that the app and its routers use. It imports none of them, so imports flow one way: app -> routers -> deps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any, Callable, Iterator

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from starlette.background import BackgroundTask
from sqlite_utils import Database

from server.audit import Actor, record
from server.db import open_db
from server.web import auth

SESSION_COOKIE = "rlsmon_session"
LOGIN_CSRF_COOKIE = "rlsmon_login_csrf"


@dataclass
class WebState:
    """What every request needs: where the database is, the clock, and the login policy."""

    db_path: str
    now: Callable[[], datetime]
    clinic_tz: tzinfo | None
    policy: auth.LoginPolicy
    secure_cookies: bool | None
    templates: Jinja2Templates

    def today(self) -> date:
        """The clinic's date now: the night before it is the last one due."""
        return self.now().astimezone(self.clinic_tz).date()


@dataclass(frozen=True)
class Principal:
    """Who is asking: a staff member with a session (and its CSRF token), or an API token, which
    acts as its owner (``username``) with its own ``role``."""

    username: str
    role: str
    token_name: str | None = None
    csrf_token: str | None = None


def state(request: Request) -> WebState:
    """The app's WebState."""
    return request.app.state.web


def get_db(request: Request) -> Iterator[Database]:
    """One connection per request, closed after it (on PostgreSQL, given back to the process's
    idle connections). A request runs its dependencies and handler on worker threads one after
    another, never at once, so the connection may cross threads."""
    db = open_db(state(request).db_path, check_same_thread=False)
    try:
        yield db
    finally:
        db.close()


def client_address(request: Request) -> str:
    """The client's address (the proxy's client, when uvicorn trusts its forwarded headers)."""
    return request.client.host if request.client else "unknown"


def audit(request: Request, db: Database, action: str, *, target_kind: str | None = None,
          target: str | None = None, patient: str | None = None,
          detail: str | None = None) -> None:
    """Add an entry to the audit trail for this request's principal (see `server.audit`)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    actor = Actor(principal.username if principal else "-", client_address(request),
                  principal.token_name if principal else None)
    record(db, state(request).now(), actor, action, target_kind=target_kind, target=target,
           patient=patient, detail=detail)


def render(request: Request, name: str, context: dict[str, Any], status: int = 200,
           background: BackgroundTask | None = None) -> Response:
    """Render a template with the request's principal (for the navigation)."""
    context.setdefault("principal", getattr(request.state, "principal", None))
    return state(request).templates.TemplateResponse(request, name, context, status_code=status,
                                                     background=background)


def attachment(*parts: str) -> dict[str, str]:
    """A Content-Disposition header whose file name keeps only safe characters."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts))
    return {"Content-Disposition": f'attachment; filename="{name}"'}


def cookie_secure(request: Request) -> bool:
    """Whether cookies get the Secure flag for this request."""
    forced = state(request).secure_cookies
    return request.url.scheme == "https" if forced is None else forced


def safe_next(target: str | None) -> str:
    """Only a local path may follow a login, never another site (an open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"

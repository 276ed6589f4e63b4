"""The dashboard application: `create_app(db_path)` wires auth, pages, exports and the JSON API.

Access is deny-by-default: one dependency on the whole app demands a session cookie or an API token
on every route, and a role that the route declared (`server/web/access.py`), so a route added later
is closed until someone decides who may use it. Only the login page and the static files are
public. Pages redirect to /login; the API and its schema answer 401; a role that may not use a
route gets 403. Every form POST must carry the session's CSRF token.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlite_utils import Database

from server import __version__
from server.db import open_db
from server.web import admin, api, auth, pages
from server.web.access import PUBLIC, allowed_roles
from server.web.deps import (LOGIN_CSRF_COOKIE, SESSION_COOKIE, Principal, WebState,
                             client_address, get_db, state)

HERE = Path(__file__).parent
access_log = logging.getLogger("server.web.access")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginRequired(Exception):
    """Raised on a page without a session; answered with a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def is_api_path(path: str) -> bool:
    """True for the JSON API and its schema, which answer 401 rather than redirect."""
    return path.startswith("/api/") or path == "/api" or path == "/openapi.json"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def guard(request: Request, db: Database = Depends(get_db)) -> Principal | None:
    """Authenticate every request (except the public login page), check CSRF on every unsafe one,
    and let through only the roles that the route declared (`server/web/access.py`)."""
    web = state(request)
    path = request.url.path
    roles = allowed_roles(request.scope.get("endpoint"))
    if PUBLIC in roles:
        if request.method not in SAFE_METHODS:
            form = await request.form()
            expected = request.cookies.get(LOGIN_CSRF_COOKIE)
            if not expected or not auth.csrf_ok(expected, form.get("csrf_token")):
                raise HTTPException(403, "The login form expired; reload the page and try again.")
        return None
    session = auth.session_for(db, request.cookies.get(SESSION_COOKIE), web.now())
    token = _bearer(request)
    principal = None
    if session is not None:
        principal = Principal(session.username, session.role, csrf_token=session.csrf_token)
    elif token is not None and request.method in SAFE_METHODS:
        # API tokens are read-only: they never change anything, so they need no CSRF token.
        found = auth.api_token(db, token, web.now())
        principal = Principal(found.owner, found.role, token_name=found.name) if found else None
    if principal is None:
        if is_api_path(path) or token is not None:
            raise HTTPException(401, "Authentication required: a session or a Bearer API token.",
                                headers={"WWW-Authenticate": "Bearer"})
        raise LoginRequired(path + (f"?{request.url.query}" if request.url.query else ""))
    request.state.principal = principal
    if request.method not in SAFE_METHODS:
        form = await request.form()
        given = form.get("csrf_token") or request.headers.get("x-csrf-token")
        if not auth.csrf_ok(principal.csrf_token or "", given if isinstance(given, str) else None):
            raise HTTPException(403, "Missing or wrong CSRF token; reload the page and try again.")
    if principal.role not in roles:
        raise HTTPException(403, f"This page is not open to the {principal.role} role.")
    return principal


def create_app(
    db_path: str | os.PathLike[str],
    *,
    now: Callable[[], datetime] | None = None,
    clinic_tz: tzinfo | None = None,
    policy: auth.LoginPolicy | None = None,
    secure_cookies: bool | None = None,
) -> FastAPI:
    """The dashboard as an ASGI app reading (and migrating) the database at ``db_path``.

    ``now`` is the clock (UTC-aware); ``clinic_tz`` the zone of the clinic's calendar (default:
    the machine's); ``secure_cookies`` True/False forces the cookies' Secure flag, None sets it
    when the request came over HTTPS (behind a TLS proxy, run uvicorn with proxy headers).
    """
    open_db(db_path).conn.close()  # create and migrate before the first request
    templates = Jinja2Templates(directory=HERE / "templates")
    pages.install_filters(templates, clinic_tz)

    app = FastAPI(
        title="rlsmon clinic API",
        version=__version__,
        description=("Nights of leg-movement monitoring, per device and per patient pseudonym. "
                     "Authenticate with `Authorization: Bearer <token>` (tokens are made on the "
                     "dashboard's API tokens page) or a dashboard session."),
        dependencies=[Depends(guard)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.web = WebState(
        db_path=os.fspath(db_path),
        now=now or (lambda: datetime.now(timezone.utc)),
        clinic_tz=clinic_tz,
        policy=policy or auth.LoginPolicy(),
        secure_cookies=secure_cookies,
        templates=templates,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(admin.router)
    app.openapi = lambda: api.openapi_spec(app)  # type: ignore[method-assign]

    @app.exception_handler(LoginRequired)
    async def _to_login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.next_path, safe='')}", status_code=303)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if is_api_path(request.url.path) or "text/html" not in request.headers.get("accept", ""):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                                headers=exc.headers)
        return templates.TemplateResponse(
            request, "error.html", {"status": exc.status_code, "detail": exc.detail,
                                    "principal": getattr(request.state, "principal", None)},
            status_code=exc.status_code, headers=exc.headers)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable) -> Response:
        response = await call_next(request)
        # Health data: never cached by a shared tablet's browser or a proxy. No framing, no
        # third-party anything (all assets are served from here).
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
        # The access log, in place of uvicorn's: the path without its query string, which may
        # hold a pseudonym searched for. Who saw which patient is in the audit trail instead.
        access_log.info("%s %s %s %d", client_address(request), request.method,
                        request.url.path, response.status_code)
        return response

    return app


"""The dashboard application: `create_app(db_path)` wires auth, pages, exports and the JSON API.

Access is deny-by-default: one dependency on the whole app demands a session cookie or an API token
on every route, so a route added later is protected without anyone remembering to. Only the login
page and the static files are public. Pages redirect to /login; the API and its schema answer 401.
Every form POST must carry the session's CSRF token.
"""

from __future__ import annotations

import os
import pickle
import threading
import zlib
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone, tzinfo
from pathlib import Path
from typing import AsyncIterator, Callable, Iterator
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlite_utils import Database

from server import __version__
from server.db import open_db
from server.web import auth

HERE = Path(__file__).parent
SESSION_COOKIE = "rlsmon_session"
LOGIN_CSRF_COOKIE = "rlsmon_login_csrf"
PUBLIC_PATHS = frozenset({"/login"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class WebState:
    """What every request needs: where the database is, the clock, and the login policy."""

    db_path: str
    now: Callable[[], datetime]
    clinic_tz: tzinfo | None
    policy: auth.LoginPolicy
    secure_cookies: bool | None
    templates: Jinja2Templates
    svg_cache: "SvgCache" = field(default_factory=lambda: SvgCache())

    def today(self) -> date:
        """The clinic's date now: the night before it is the last one due."""
        return self.now().astimezone(self.clinic_tz).date()


def _unpack(packed: bytes) -> object:
    # Only this process's own renders are ever unpickled.
    return pickle.loads(zlib.decompress(packed))


class SvgCache:
    """An LRU of rendered charts. A night's charts are keyed by its summary_id, which changes
    whenever the night is replaced, so a cached chart is never stale. Single-flight: while one
    thread renders a key, others asking for it wait for that render instead of repeating it.
    Values are kept zlib-compressed (SVG shrinks about fivefold): a day of nights for 2,000
    patients fits in a few tens of MB."""

    def __init__(self, size: int = 4096) -> None:
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._pending: dict[tuple, threading.Event] = {}
        self._size = size
        self._lock = threading.Lock()

    def cached(self, key: tuple) -> bool:
        """True when ``key`` is rendered or being rendered."""
        with self._lock:
            return key in self._items or key in self._pending

    def get(self, key: tuple, render: Callable[[], object]) -> object:
        """The cached value for ``key``, rendering (outside the lock) on a miss."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return _unpack(self._items[key])
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = threading.Event()
        if pending is not None:
            pending.wait(timeout=60)
            with self._lock:
                if key in self._items:
                    return _unpack(self._items[key])
            return render()  # the other render failed: do it here, and let the error show
        try:
            value = render()
            packed = zlib.compress(pickle.dumps(value), 1)
            with self._lock:
                self._items[key] = packed
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
            return value
        finally:
            with self._lock:
                self._pending.pop(key).set()


class LoginRequired(Exception):
    """Raised on a page without a session; answered with a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(frozen=True)
class Principal:
    """Who is asking: a staff member (with a session) or an API token (by its name)."""

    username: str | None = None
    token_name: str | None = None
    csrf_token: str | None = None


def state(request: Request) -> WebState:
    """The app's WebState."""
    return request.app.state.web


def get_db(request: Request) -> Iterator[Database]:
    """One connection per request, closed after it. A request runs its dependencies and handler on
    worker threads one after another, never at once, so the connection may cross threads."""
    db = open_db(state(request).db_path, check_same_thread=False)
    try:
        yield db
    finally:
        db.conn.close()


def is_api_path(path: str) -> bool:
    """True for the JSON API and its schema, which answer 401 rather than redirect."""
    return path.startswith("/api/") or path == "/api" or path == "/openapi.json"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def guard(request: Request, db: Database = Depends(get_db)) -> Principal | None:
    """Authenticate every request (except the login page) and check CSRF on every unsafe one."""
    web = state(request)
    path = request.url.path
    if path in PUBLIC_PATHS:
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
        principal = Principal(username=session.username, csrf_token=session.csrf_token)
    elif token is not None and request.method in SAFE_METHODS:
        # API tokens are read-only: they never change anything, so they need no CSRF token.
        name = auth.api_token_name(db, token)
        principal = Principal(token_name=name) if name else None
    if principal is None:
        if is_api_path(path) or token is not None:
            raise HTTPException(401, "Authentication required: a session or a Bearer API token.",
                                headers={"WWW-Authenticate": "Bearer"})
        raise LoginRequired(path + (f"?{request.url.query}" if request.url.query else ""))
    if request.method not in SAFE_METHODS:
        form = await request.form()
        given = form.get("csrf_token") or request.headers.get("x-csrf-token")
        if not auth.csrf_ok(principal.csrf_token or "", given if isinstance(given, str) else None):
            raise HTTPException(403, "Missing or wrong CSRF token; reload the page and try again.")
    request.state.principal = principal
    return principal


def safe_next(target: str | None) -> str:
    """Only a local path may follow a login, never another site (an open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def create_app(
    db_path: str | os.PathLike[str],
    *,
    now: Callable[[], datetime] | None = None,
    clinic_tz: tzinfo | None = None,
    policy: auth.LoginPolicy | None = None,
    secure_cookies: bool | None = None,
    warm_charts: bool = False,
) -> FastAPI:
    """The dashboard as an ASGI app reading (and migrating) the database at ``db_path``.

    ``now`` is the clock (UTC-aware); ``clinic_tz`` the zone of the clinic's calendar (default:
    the machine's); ``secure_cookies`` True/False forces the cookies' Secure flag, None sets it
    when the request came over HTTPS (behind a TLS proxy, run uvicorn with proxy headers).
    ``warm_charts`` draws new nights' charts ahead of time in a worker process (server/web/warmer.py).
    """
    from server.web import api, pages

    open_db(db_path).conn.close()  # create and migrate before the first request
    templates = Jinja2Templates(directory=HERE / "templates")
    pages.install_filters(templates, clinic_tz)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not warm_charts:
            yield
            return
        from server.web.warmer import ChartWarmer

        warmer = ChartWarmer(app.state.web)
        warmer.start()
        try:
            yield
        finally:
            warmer.stop()

    app = FastAPI(
        lifespan=lifespan,
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
        return response

    return app


def cookie_secure(request: Request) -> bool:
    """Whether cookies get the Secure flag for this request."""
    forced = state(request).secure_cookies
    return request.url.scheme == "https" if forced is None else forced

"""Fixtures for the dashboard tests: a real SQLite database filled through the collector's ingest,
a settable clock, and in-process HTTP clients (logged in or not)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import warnings
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.routing import iter_route_contexts

from server.db import assign_device, open_db
from server.web import auth, create_app
from tests.web import seed

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx vs httpx2
    from fastapi.testclient import TestClient

USER, PASSWORD = "nurse.kim", "correct horse battery"  # a clinician
ADMIN_USER, ADMIN_PASSWORD = "it.ops", "staple battery horse"
# The clinic's morning after the last seeded night.
NOW = datetime(2026, 11, 24, 7, 0, tzinfo=timezone.utc)
CLINIC_TZ = timezone.utc


class Clock:
    """A clock the test moves by hand (the app reads it through ``create_app(now=...)``)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward."""
        self.now += delta


@dataclass
class Seeded:
    """What `seed_db` stored, for assertions."""

    path: Path | str  # a SQLite file, or a PostgreSQL database's URL
    flagged_patient: int  # P-0001 on dev-a: 30 nights, PLMI rising to above 15
    calm_patient: int     # P-0002 on dev-b: normal nights
    silent_device: str    # dev-c: assigned, last night 5 days ago
    unassigned_device: str
    last_night: date


# P-0001's PLM index: about 30/h, then ropinirole 12 nights before the last brings it down, and
# it creeps back up above 15/h (what an augmentation looks like on the trend).
_P1_PLMI = [31, 24, 36, 28, 33, 22, 38, 30, 27, 34, 29, 25, 35, 31, 26, 33, 30,
            12, 9, 7, 10, 8, 11, 9, 13, 12, 15, 14, 17, 19]


def seed_db(path: Path | str, now: datetime = NOW) -> Seeded:
    """A clinic database: three assigned devices, one unassigned, nights through `ingest`, as it
    stands on the morning of ``now``."""
    db = open_db(path)
    last = now.date() - timedelta(days=1)
    for i in range(30):
        night = last - timedelta(days=29 - i)
        # To bed an hour later on Friday and Saturday evenings (the regularity card shows it).
        late_s = 3600.0 if night.weekday() in (4, 5) else 0.0
        seed.store(db, seed.make_night("dev-a", night, _P1_PLMI[i],
                                       in_bed_s=(600.0 + late_s, 8 * 3600.0 - 900.0)),
                   received_at=now)
    for i in range(5):
        seed.store(db, seed.make_night("dev-b", last - timedelta(days=4 - i), 2.0), received_at=now)
    seed.store(db, seed.make_night("dev-c", last - timedelta(days=5), 30.0),
               received_at=now - timedelta(days=5))
    seed.store(db, seed.make_night("dev-new", last, 8.0), received_at=now)
    seed.set_status(db, "dev-a", "online", now)
    seed.set_status(db, "dev-c", "offline", now - timedelta(days=5))
    from server.web import queries

    a = assign_device(db, "dev-a", "P-0001", now.isoformat())
    b = assign_device(db, "dev-b", "P-0002", now.isoformat())
    assign_device(db, "dev-c", "P-0003", now.isoformat())
    from server.web import medications

    medications.add(db, a, drug="ropinirole", dose="0.25 mg", drug_class="dopamine_agonist",
                    started=last - timedelta(days=12), stopped=None, username=USER,
                    now_iso=now.isoformat())
    queries.add_note(db, a, last - timedelta(days=20), "restless evenings after travel", USER,
                     now.isoformat())
    auth.set_password(db, USER, PASSWORD, now, replace=False, role=auth.CLINICIAN)
    auth.set_password(db, ADMIN_USER, ADMIN_PASSWORD, now, replace=False, role=auth.ADMIN)
    db.conn.close()
    return Seeded(path, a, b, "dev-c", "dev-new", last)


@pytest.fixture
def clock() -> Clock:
    """The app's clock, starting at NOW."""
    return Clock(NOW)


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory) -> Seeded:
    """Seeded once per session (ingest and argon2 are the slow parts); tests get a copy."""
    return seed_db(tmp_path_factory.mktemp("seed") / "server.db")


SEEDED = "rlsmon_seeded"


@pytest.fixture(scope="session")
def seeded_pg_template(postgres) -> Seeded:
    """The same clinic, seeded once per session into a PostgreSQL database."""
    postgres.admin(f"CREATE DATABASE {SEEDED}")
    return seed_db(postgres.url(SEEDED))


@pytest.fixture
def seeded(request, tmp_path, backend, seeded_template) -> Seeded:
    """A private copy of the seeded database: a copy of the SQLite file (closed cleanly, so the WAL
    is checkpointed), or a PostgreSQL database made from the seeded one (`BOTH_DATABASES`)."""
    if backend == "postgresql":
        template = request.getfixturevalue("seeded_pg_template")
        url = request.getfixturevalue("postgres").create_database(template=SEEDED)
        return dataclasses.replace(template, path=url)
    path = tmp_path / "server.db"
    shutil.copyfile(seeded_template.path, path)
    return dataclasses.replace(seeded_template, path=path)


@pytest.fixture
def app(seeded, clock):
    """The dashboard app on the seeded database."""
    return create_app(seeded.path, now=clock, clinic_tz=CLINIC_TZ)


@pytest.fixture
def client(app):
    """An in-process client with no session."""
    with TestClient(app) as c:
        yield c


SAMPLE_PARAMS = {"device_id": "dev-a", "night": "2026-11-23", "patient_id": "1", "kind": "nights",
                 "medication_id": "1"}


def app_routes(app, methods: set[str]) -> list[tuple[str, str, str]]:
    """Every (method, path template, concrete path) of the app, enumerated from the app itself.
    Flattens included routers (FastAPI keeps them nested in app.routes); static mounts have no
    methods and are public by design."""
    out = []
    for route in iter_route_contexts(app.routes):
        if not route.methods:
            continue
        path = re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PARAMS[m.group(1)], route.path)
        out += [(method, route.path, path) for method in sorted(route.methods & methods)]
    return out


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token in a page's first form."""
    match = CSRF_RE.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def log_in(client, username: str = USER, password: str = PASSWORD, next_path: str = "/"):
    """Fill and post the login form as a browser would; returns the POST's response."""
    page = client.get("/login")
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_of(page.text), "next": next_path},
                       follow_redirects=False)


@pytest.fixture
def staff(client):
    """The client, logged in as a clinician."""
    response = log_in(client)
    assert response.status_code == 303, response.text
    return client


@pytest.fixture
def admin(app):
    """Another client, logged in as an admin."""
    with TestClient(app) as c:
        response = log_in(c, ADMIN_USER, ADMIN_PASSWORD)
        assert response.status_code == 303, response.text
        yield c

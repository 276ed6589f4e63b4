"""Fixtures shared by the whole suite. Fakes exist only at the hardware boundary; the broker and
the databases (SQLite, and PostgreSQL from Debian's packages) are real."""

from __future__ import annotations

import pytest
import trustme

from tests.broker import Broker
from tests.pgserver import PgServer

# The database every migrated test database is copied from (CREATE DATABASE … TEMPLATE).
MIGRATED = "rlsmon_migrated"


@pytest.fixture(scope="session")
def mqtt_ca() -> trustme.CA:
    """One test CA for the session: generating keys is the slow part of a TLS broker."""
    return trustme.CA()


@pytest.fixture
def mqtt_broker(tmp_path, mqtt_ca):
    """A fresh, real mosquitto per test: TLS, passwords and the production ACL, on a free port."""
    broker = Broker(tmp_path / "mosquitto", mqtt_ca)
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server for the session (tests/pgserver.py), with an empty migrated
    database to copy per test."""
    from server.db import open_db

    server = PgServer().start()
    try:
        server.admin(f"CREATE DATABASE {MIGRATED}")
        open_db(server.url(MIGRATED)).conn.close()  # closed, not kept: a template has no connections
        yield server
    finally:
        server.stop()


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_databases"):
        metafunc.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def backend(request) -> str:
    """The server database a test runs on: "sqlite", or each of "sqlite" and "postgresql" in a
    test or module marked with `tests.pgserver.BOTH_DATABASES`."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def db_target(request, backend, tmp_path):
    """Where the test's server database is, for `server.db.open_db`: a new SQLite file, or a new,
    migrated PostgreSQL database."""
    if backend == "sqlite":
        return tmp_path / "server.db"
    return request.getfixturevalue("postgres").create_database(template=MIGRATED)

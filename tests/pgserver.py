"""A real PostgreSQL server from Debian's packages, in a temporary directory, for tests and benchmarks.

PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs to the
`postgres` system user (the Debian package creates it) and its programs run through `runuser`.
It listens on a unix socket in its own directory and on a free loopback TCP port, with trust
authentication for local connections only. A throwaway cluster for tests runs with fsync off, as
nothing in it has to survive a crash of the machine; `durable=True` keeps PostgreSQL's defaults,
for benchmarks that compare it with SQLite's synchronous=FULL.

Each test gets a fresh database made from a template (`CREATE DATABASE … TEMPLATE`, a file copy),
so a test never sees another's rows.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.broker import free_port

# Runs a test (or, as `pytestmark`, a module's tests) that uses a server database once on SQLite
# and once on PostgreSQL: tests/conftest.py parametrizes its `backend` fixture, on which
# `db_target` and the dashboard's `seeded` depend. Tests without a database run once.
BOTH_DATABASES = pytest.mark.both_databases

# Debian's layout (postgresql-15 and later); `pg_config --bindir` elsewhere.
_BINDIRS = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))


def postgres_bindir() -> Path | None:
    """Where initdb and postgres are, or None when PostgreSQL is not installed."""
    for candidate in reversed(_BINDIRS):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _as_owner(argv: list[str]) -> list[str]:
    # postgres will not run as root: run it as the postgres system user then.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PgServer:
    """One PostgreSQL cluster under a new temporary directory. Call `start()`, then `stop()`."""

    port: int = field(default_factory=free_port)
    bindir: Path | None = field(default_factory=postgres_bindir)
    durable: bool = False
    workdir: Path = field(init=False)
    _names: itertools.count = field(default_factory=itertools.count, init=False)

    def start(self) -> PgServer:
        if self.bindir is None:
            raise RuntimeError("PostgreSQL is not installed: `make test` installs it "
                               "(apt-get install postgresql)")
        self.workdir = Path(tempfile.mkdtemp(prefix="rlsmon-pg-"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.workdir, owner.pw_uid, owner.pw_gid)
        data = self.workdir / "data"
        subprocess.run(_as_owner([str(self.bindir / "initdb"), "-D", str(data), "-U", "rlsmon",
                                  "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
                       check=True, capture_output=True)
        options = f"-k {self.workdir} -p {self.port} -h 127.0.0.1 -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        subprocess.run(_as_owner([str(self.bindir / "pg_ctl"), "-D", str(data), "-w", "-t", "60",
                                  "-l", str(self.workdir / "log"), "-o", options, "start"]),
                       check=True, capture_output=True)
        return self

    def url(self, database: str = "postgres") -> str:
        """The URL of `database` over TCP on the loopback."""
        return f"postgresql://rlsmon@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement (CREATE/DROP DATABASE cannot run in a transaction) as the superuser."""
        import psycopg

        for attempt in range(50):
            try:
                with psycopg.connect(self.url(), autocommit=True) as conn:
                    conn.execute(sql)
                return
            except psycopg.errors.ObjectInUse:
                # A template still has a connection closing on the server side.
                if attempt == 49:
                    raise
                time.sleep(0.05)

    def create_database(self, template: str = "template1") -> str:
        """A new empty database (a copy of `template`); returns its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.url(name)

    def stop(self) -> None:
        """Stop the server at once and remove its files."""
        if self.bindir is not None and hasattr(self, "workdir"):
            subprocess.run(_as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.workdir / "data"),
                                      "-m", "immediate", "stop"]), capture_output=True)
            shutil.rmtree(self.workdir, ignore_errors=True)


def query_plan(db, sql: str, params: list) -> str:
    """The plan of one query, as text: SQLite's EXPLAIN QUERY PLAN details, or PostgreSQL's EXPLAIN
    with sequential and bitmap scans priced out, so that a test database of a few rows shows the
    plain index path a full one takes: a plan that still scans or sorts has no index to serve
    the query in order."""
    from server.db import is_postgres

    if not is_postgres(db):
        return "\n".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, params))
    with db.atomic():
        db.execute("SET LOCAL enable_seqscan = off")
        db.execute("SET LOCAL enable_bitmapscan = off")
        return "\n".join(r[0] for r in db.execute("EXPLAIN " + sql, params))

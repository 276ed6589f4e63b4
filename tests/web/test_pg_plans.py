"""On PostgreSQL, every query behind the patients list, a patient's trend and a night's page is read
along an index (EXPLAIN: no sequential scan of nights, devices or device_latest, and no sort of
what an index already orders), on a fleet of 20,000 devices with its statistics gathered, as a
health system's would be. The same fleet answers as the SQLite one does (tests/web/test_list_scale.py).

Nights are kept in one table keyed (device_id, night), not partitioned: every page asks for one
device's nights or one device's latest row, which that key (or device_latest's indexes) finds in
O(log n) at any fleet size; docs/architecture.md, "PostgreSQL", says why."""

from __future__ import annotations

import re
from typing import Any

import pytest

from server.web import queries, trend
from tests.web.test_list_scale import LIST_CALLS, OVERVIEW, PAGE, SEARCH_CALLS, TODAY, fleet_rows

DEVICES = 20_000


class Recording:
    """A database that remembers the statements sent through it, with their parameters."""

    def __init__(self, db) -> None:
        self.db, self.seen = db, []

    def execute(self, sql: str, params: Any = None):
        self.seen.append((sql, params))
        return self.db.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


@pytest.fixture(scope="module")
def fleet(postgres):
    """The fleet of tests/web/test_list_scale.py's build(), in PostgreSQL, loaded with COPY."""
    from server.db import open_db, refill_latest_pg

    postgres.admin("CREATE DATABASE rlsmon_fleet TEMPLATE rlsmon_migrated")
    db = open_db(postgres.url("rlsmon_fleet"))
    columns = {"patients": "id, pseudonym, created_at", "devices": "device_id, patient_id, status, created_at"}
    # Loaded without the triggers, then device_latest and fleet_counts refilled (as a bulk
    # import would be); the answers below check the refill.
    db.execute("SET session_replication_role = replica")
    with db.atomic(), db.conn.cursor() as cursor:
        for table, rows in fleet_rows(DEVICES).items():
            with cursor.copy(f"COPY {table} ({columns[table]}) FROM STDIN" if table in columns
                             else f"COPY {table} FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    db.execute("SET session_replication_role = DEFAULT")
    refill_latest_pg(db)
    db.execute("ANALYZE")
    yield db
    db.close()


def plans(db, call) -> list[str]:
    recording = Recording(db)
    call(recording)
    assert recording.seen
    return ["\n".join(r[0] for r in db.execute("EXPLAIN " + sql, params)) for sql, params in recording.seen]


PAGES = {
    **{name: (lambda c: lambda db: c(db, DEVICES))(call) for name, call in LIST_CALLS.items()},
    "overview": lambda db: OVERVIEW(db, DEVICES),
    "trend": lambda db: trend.load_trend(db, 3),
    "device nights": lambda db: queries.device_nights(db, "dev-00003"),
    "neighbours": lambda db: queries.neighbour_nights(db, "dev-00003", "2026-03-08"),
    "night": lambda db: queries.night_summary(db, "dev-00003", "2026-03-09"),
}


@pytest.mark.parametrize("name", [*PAGES, *SEARCH_CALLS])
def test_every_page_query_reads_an_index(fleet, name):
    call = PAGES.get(name) or (lambda db: SEARCH_CALLS[name](db, DEVICES))
    for plan in plans(fleet, call):
        for table in ("nights", "devices", "patients"):
            assert not re.search(rf"Seq Scan on {table}\b", plan), plan
        if name in SEARCH_CALLS:  # a substring search reads device_latest whole, as on SQLite
            continue
        assert not re.search(r"Seq Scan on device_latest\b", plan), plan
        # A sort of a few rows already found by key (a patient's nights, by night) is fine; a sort
        # under a LIMIT means the index did not give the order.
        assert not re.search(r"Limit.*\n(\s+->\s+)?.*Sort\b", plan), plan


def test_the_fleet_answers_as_on_sqlite(fleet):
    first = queries.patient_page(fleet, TODAY, limit=PAGE)
    assert first.total == DEVICES - 200 and not first.has_before and first.has_after
    assert [r.pseudonym for r in first.rows[:3]] == ["P-00001", "P-00002", "P-00003"]
    assert first.rows[2].clinically_significant and first.rows[2].coverage == pytest.approx(27000 / 28800)
    second = queries.patient_page(fleet, TODAY, limit=PAGE, after=first.rows[-1].device_id)
    back = queries.patient_page(fleet, TODAY, limit=PAGE, before=second.rows[0].device_id)
    assert back.rows == first.rows and [r.pseudonym for r in second.rows[:2]] == ["P-00051", "P-00052"]
    assert queries.overview(fleet, TODAY) == {
        "devices": DEVICES, "assigned": 19_800, "online": DEVICES - DEVICES // 7,
        "flagged": DEVICES // 3, "unassigned": 200, "not_reporting": 400}

"""The patients list costs O(page), not O(fleet) (issue 14, item 1): at 20,000 patients every
query behind it is read along an index (EXPLAIN QUERY PLAN: no scan of nights or devices, no sort),
and it runs as many SQLite VM steps, within 1.5x, as at 200 patients. Steps, not wall time: the
figure does not depend on the load of the machine (benchmarks/page_latency.py measures the time)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlite_utils import Database

from server.db import open_db
from server.web import night_quality, queries

TODAY = date(2026, 3, 10)
NIGHTS = 3
PAGE = 50  # a page that both fleets fill, before and after their middle
SIDE = 2  # as many devices as the small fleet has unassigned and not reporting


def fleet_rows(patients: int) -> dict[str, list[tuple]]:
    """The rows of `patients`, `devices` (patient_id, status, created_at) and `nights` of the
    fleet: one device per patient (and one unassigned device in 100), ``NIGHTS`` nights each; every
    50th device stopped reporting a week ago, every 3rd device's last night is flagged."""
    created = "2025-06-01T00:00:00+00:00"
    summary = json.dumps({"duration_s": 28800.0, "in_bed": []})
    nights = []
    for i in range(1, patients + 1):
        last = TODAY - timedelta(days=8 if i % 50 == 0 else 1)
        for k in range(NIGHTS):
            plmi = 30.0 if i % 3 == 0 else 4.0
            nights.append((f"dev-{i:05d}", (last - timedelta(days=k)).isoformat(), f"{i}-{k}",
                           created, created, "WASM2016", plmi, plmi, 1, 1, 1, 1, 25000.0,
                           27000.0, 0.5, "moderate" if plmi > 15 else "normal",
                           int(plmi > 15), summary, 28800.0))
    return {
        "patients": [(i, f"P-{i:05d}", created) for i in range(1, patients + 1)],
        "devices": [(f"dev-{i:05d}", i if i % 100 else None, "online" if i % 7 else "offline", created)
                    for i in range(1, patients + 1)],
        "nights": nights,
    }


def build(path: Path, patients: int) -> Database:
    """The fleet of `fleet_rows` in a new SQLite database."""
    db = open_db(path)
    db.execute("PRAGMA synchronous = OFF")  # a scratch database
    rows = fleet_rows(patients)
    with db.atomic():
        db.conn.executemany("INSERT INTO patients (id, pseudonym, created_at) VALUES (?, ?, ?)",
                            rows["patients"])
        db.conn.executemany(
            "INSERT INTO devices (device_id, patient_id, status, created_at) VALUES (?, ?, ?, ?)",
            rows["devices"])
        db.conn.executemany(f"INSERT INTO nights VALUES ({', '.join('?' * 19)})", rows["nights"])
    db.execute("ANALYZE")
    return db


Call = Callable[[Database, int], object]


def middle(patients: int) -> str:
    """An assigned device halfway down the list."""
    return f"dev-{patients // 2 + 1:05d}"


def page_nights(patients: int) -> list[tuple[str, str]]:
    """(device, last night) of each row of the page after the middle, whose quality the patients
    page asks for: the fleet of `fleet_rows` in pseudonym order, without its unassigned devices."""
    devices = [i for i in range(patients // 2 + 2, patients + 1) if i % 100][:PAGE]
    return [(f"dev-{i:05d}", (TODAY - timedelta(days=8 if i % 50 == 0 else 1)).isoformat())
            for i in devices]


# Everything the patients page asks (server/web/pages.py), and the searches.
LIST_CALLS: dict[str, Call] = {
    "page 1": lambda db, n: queries.patient_page(db, TODAY, limit=PAGE),
    "the middle page": lambda db, n: queries.patient_page(db, TODAY, limit=PAGE, after=middle(n)),
    "the page before": lambda db, n: queries.patient_page(db, TODAY, limit=PAGE, before=middle(n)),
    "flagged": lambda db, n: queries.patient_page(db, TODAY, flagged_only=True, limit=PAGE),
    "not reporting": lambda db, n: queries.not_reporting(db, TODAY, limit=SIDE),
    "unassigned": lambda db, n: queries.unassigned_devices(db, TODAY, limit=SIDE),
    "night quality of a page": lambda db, n: night_quality.of_nights(db, page_nights(n)),
}
OVERVIEW: Call = lambda db, n: queries.overview(db, TODAY)
SEARCH_CALLS: dict[str, Call] = {
    "search": lambda db, n: queries.patient_page(db, TODAY, search="P-0001", limit=PAGE),
}


@pytest.fixture(scope="module")
def fleets(tmp_path_factory) -> dict[int, Database]:
    root = tmp_path_factory.mktemp("fleets")
    return {n: build(root / f"{n}.db", n) for n in (200, 20_000)}


def statements(db: Database, n: int, call: Call) -> list[str]:
    """The SQL `call` runs, its parameters bound."""
    seen: list[str] = []
    db.conn.set_trace_callback(seen.append)
    try:
        call(db, n)
    finally:
        db.conn.set_trace_callback(None)
    return seen


def plan(db: Database, sql: str) -> str:
    return "\n".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql))


@pytest.mark.parametrize("name", [*LIST_CALLS, "overview", *SEARCH_CALLS])
def test_every_list_query_reads_an_index(fleets, name):
    db = fleets[20_000]
    sqls = statements(db, 20_000, {**LIST_CALLS, "overview": OVERVIEW, **SEARCH_CALLS}[name])
    assert sqls
    for sql in sqls:
        text = plan(db, sql)
        for line in text.splitlines():
            if name == "night quality of a page":
                # The page's keys (a VALUES list) the outer loop, each night found by an index
                # on both its columns.
                assert re.fullmatch(r"CO-ROUTINE k|SCAN (k|\d+ CONSTANT ROWS)|SEARCH n USING INDEX "
                                    r"\w+ \((device_id=\? AND night|night=\? AND device_id)=\?\)",
                                    line), text
                continue
            assert not re.match(r"(SCAN|SEARCH) (n|nights)\b", line), text
            if re.match(r"(SCAN|SEARCH) (d|devices)\b", line):
                assert line.startswith("SEARCH") and "(device_id=?)" in line, text
            if line.startswith("SCAN"):
                # Along an index of device_latest in the list's order, stopping at the page's
                # end; only a substring search reads device_latest whole.
                assert re.match(r"SCAN (l|device_latest)\b", line), text
                assert "USING INDEX idx_device_latest_" in line or name in SEARCH_CALLS, text
        assert "TEMP B-TREE" not in text, text


def vm_steps(db: Database, n: int, call: Call) -> int:
    """SQLite VM instructions `call` runs, in tens."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    db.conn.set_progress_handler(count, 10)
    try:
        call(db, n)
    finally:
        db.conn.set_progress_handler(None, 0)
    return steps


@pytest.mark.parametrize("name", list(LIST_CALLS))
def test_the_list_costs_the_same_at_20000_patients_as_at_200(fleets, name):
    small, large = (vm_steps(fleets[n], n, LIST_CALLS[name]) for n in (200, 20_000))
    assert large <= 1.5 * small, (name, small, large)


def test_the_counts_cost_one_row_and_one_index_entry_per_silent_device(fleets):
    # fleet_counts is one row; "not reporting" depends on today, so it is counted along the
    # quiet_since index: a few instructions per device that has gone quiet (4 at 200, 400 at
    # 20,000 here), nothing per device that reports.
    small, large = (vm_steps(fleets[n], n, OVERVIEW) for n in (200, 20_000))
    assert (large - small) * 10 <= 5 * (400 - 4), (small, large)


def test_the_page_shows_what_it_did_before(fleets):
    db = fleets[20_000]
    first = queries.patient_page(db, TODAY, limit=PAGE)
    rows, total = first.rows, first.total
    assert total == 20_000 - 200 and not first.has_before and first.has_after
    assert [r.pseudonym for r in rows[:3]] == ["P-00001", "P-00002", "P-00003"]
    assert rows[2].clinically_significant and rows[2].coverage == pytest.approx(27000 / 28800)
    second = queries.patient_page(db, TODAY, limit=PAGE, after=rows[-1].device_id)
    assert [r.pseudonym for r in second.rows[:2]] == ["P-00051", "P-00052"]
    assert second.has_before and second.has_after
    back = queries.patient_page(db, TODAY, limit=PAGE, before=second.rows[0].device_id)
    assert back.rows == rows and not back.has_before and back.has_after
    flagged = queries.patient_page(db, TODAY, flagged_only=True, limit=PAGE)
    assert flagged.total == sum(1 for i in range(1, 20_001) if i % 3 == 0 and i % 100)
    assert all(r.clinically_significant for r in flagged.rows)
    silent = queries.not_reporting(db, TODAY, limit=50)
    assert len(silent) == 50 and all(r.missed_nights == 7 for r in silent)
    assert queries.overview(db, TODAY) == {
        "devices": 20_000, "assigned": 19_800, "online": 20_000 - 20_000 // 7,
        "flagged": 20_000 // 3, "unassigned": 200, "not_reporting": 400}

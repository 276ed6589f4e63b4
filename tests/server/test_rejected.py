"""Refused messages within bounds (issue 10, items 3 and 7): a prefix, size and hash per row, a cap
of rows per device and day with every message counted, an expiry, and rate-limited warnings."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from server.collector import ingest
from server.db import open_db
from server.rejected import LOG_WINDOW_S, RefusalLog, RejectLimits, expire_rejected, topic_device
from tests.pgserver import BOTH_DATABASES
from tests.server.payloads import kept

pytestmark = BOTH_DATABASES

DAY = "2026-01-06"
JUNK = b"\x00junk" * 200_000  # 1 MB


@pytest.fixture
def db(db_target):
    db = open_db(db_target)
    yield db
    db.close()


def daily(db):
    return {(r["device_id"], r["day"]): (r["count"], r["bytes"]) for r in db["rejected_daily"].rows}


def test_a_refused_payload_is_kept_as_a_prefix_with_its_size_and_hash(db):
    ingest(db, "rlsmon/v1/dev-a/summary", JUNK, received_at=f"{DAY}T01:00:00+00:00")
    [row] = db.query("SELECT payload, size_bytes, sha256 FROM rejected")
    assert row == kept(JUNK) and len(row["payload"]) == 4096
    assert daily(db) == {("dev-a", DAY): (1, len(JUNK))}


def test_rows_are_capped_per_device_and_day_and_every_message_is_counted(db):
    limits = RejectLimits(prefix_bytes=16, rows_per_device_day=5)
    for i in range(12):
        ingest(db, "rlsmon/v1/dev-a/summary", b"junk %d" % i, received_at=f"{DAY}T01:00:{i:02}+00:00", limits=limits)
    for i in range(3):
        ingest(db, "rlsmon/v1/dev-b/status", b"sleeping", received_at=f"{DAY}T02:00:00+00:00", limits=limits)
    ingest(db, "rlsmon/v1/dev-a/summary", b"junk", received_at="2026-01-07T00:00:01+00:00", limits=limits)
    rows = list(db.query("SELECT topic, payload FROM rejected ORDER BY id"))
    assert [r["payload"] for r in rows if "dev-a" in r["topic"]] == [b"junk %d" % i for i in range(5)] + [b"junk"]
    assert sum("dev-b" in r["topic"] for r in rows) == 3
    assert daily(db) == {("dev-a", DAY): (12, sum(len(b"junk %d" % i) for i in range(12))),
                         ("dev-b", DAY): (3, 24), ("dev-a", "2026-01-07"): (1, 4)}


def test_rows_and_counts_expire_after_the_retention(db):
    now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    for age_days in (31, 29):
        ingest(db, "rlsmon/v1/dev-a/summary", b"old" if age_days > 30 else b"recent",
               received_at=(now - timedelta(days=age_days)).isoformat())
    assert expire_rejected(db, now, retention_days=30) == 1
    assert [r["payload"] for r in db["rejected"].rows] == [b"recent"]
    assert list(daily(db)) == [("dev-a", (now - timedelta(days=29)).date().isoformat())]


def test_topic_device_names_the_publisher_or_nothing():
    assert topic_device("rlsmon/v1/dev-a/summary") == "dev-a"
    assert topic_device("rlsmon/v1/Dev_A/summary") == "Dev_A"
    assert topic_device("elsewhere/x") == ""


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_refusals_are_logged_once_a_minute_per_device_then_summarised(caplog):
    clock = FakeClock()
    log = logging.getLogger("test.refusals")
    refusals = RefusalLog(log, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.refusals"):
        for _ in range(9_950):
            refusals.refused("dev-a", "invalid summary")
        refusals.refused("dev-a", "conflict")  # another cause is not hidden in the count
        refusals.refused("dev-b", "invalid summary")
        refusals.flush()
        assert caplog.messages == [
            "device dev-a: payload refused (invalid summary); see the rejected table",
            "device dev-a: payload refused (conflict); see the rejected table",
            "device dev-b: payload refused (invalid summary); see the rejected table",
        ]
        clock.now_s += LOG_WINDOW_S - 1
        refusals.flush()
        assert len(caplog.messages) == 3
        clock.now_s += 1
        refusals.flush()
        assert caplog.messages[3:] == ["device dev-a: 9,949 more payloads refused (invalid summary) in the last minute"]
        refusals.refused("dev-a", "invalid summary")
        refusals.refused("dev-a", "invalid summary")
        assert caplog.messages[4:] == ["device dev-a: payload refused (invalid summary); see the rejected table"]
        refusals.flush(all_windows=True)  # the collector stopping: nothing goes unsaid
        assert caplog.messages[5:] == ["device dev-a: 1 more payloads refused (invalid summary) in the last minute"]

"""Collectors that scale out, on the real broker: two collectors in one share group on one database
process each message once, and statuses delivered out of order leave the newer one."""

from __future__ import annotations

import json
import queue
import time
from datetime import datetime, timedelta, timezone

import pytest

from server.db import open_db
from tests.pgserver import BOTH_DATABASES
from tests.server.payloads import encode, make_summary

GROUP = "rlsmon"
T1 = datetime(2026, 1, 6, 7, 0, tzinfo=timezone.utc)


@pytest.fixture
def two_collectors(mqtt_broker, start_collector):
    """Two collectors, each with its own broker user, sharing the load through `$share/rlsmon/…`."""
    mqtt_broker.add_collector("collector-2")
    return [start_collector(share_group=GROUP), start_collector(username="collector-2", share_group=GROUP)]


def _outcomes(collectors, n: int, timeout_s: float = 30) -> list[tuple[int, str, object]]:
    """The next `n` outcomes committed by any of `collectors`, as (which, topic, Outcome)."""
    got: list[tuple[int, str, object]] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n:
        assert time.monotonic() < deadline, f"{len(got)} of {n} outcomes"
        for which, c in enumerate(collectors):
            try:
                got.append((which, *c.outcomes.get(timeout=0.05)))
            except queue.Empty:
                pass
    return got


@BOTH_DATABASES
def test_two_collectors_in_a_share_group_store_and_receipt_each_summary_once(
    two_collectors, device, mqtt_broker, db_target
):
    receipts = mqtt_broker.subscribe("rlsmon/v1/+/receipt")  # before anything can be receipted
    dev = device("dev-a")
    nights = [make_summary("dev-a", (T1.date() - timedelta(days=d)).isoformat(), n_lms=12) for d in range(1, 21)]
    for night in nights:
        assert not dev.summary(encode(night)).is_failure
    receipted = [json.loads(receipts.get()[1]) for _ in nights]
    receipts.close()
    for c in two_collectors:
        c.stop()  # each drains what it received: any second copy would be committed by now
    outcomes = [(which, o.kind) for which, c in enumerate(two_collectors) for _, o in list(c.outcomes.queue)]
    assert sorted(kind for _, kind in outcomes) == ["stored"] * len(nights)
    assert {which for which, _ in outcomes} == {0, 1}  # the broker split the load
    assert sorted(r["summary_id"] for r in receipted) == sorted(n["summary_id"] for n in nights)
    assert {r["status"] for r in receipted} == {"stored"}
    db = open_db(db_target)
    assert db["nights"].count == len(nights) and db["rejected"].count == 0
    assert db["device_latest"].get("dev-a")["night"] == nights[0]["night"]


@BOTH_DATABASES
def test_statuses_delivered_out_of_order_leave_the_newer_one(two_collectors, device, db_target):
    dev = device("dev-a")
    newer, older = T1 + timedelta(minutes=5), T1
    for status, at in (("offline", newer), ("online", older)):
        payload = json.dumps({"status": status, "at": at.isoformat()}).encode()
        assert not dev.publish("rlsmon/v1/dev-a/status", payload, retain=True).is_failure
    assert [o.kind for _, _, o in _outcomes(two_collectors, 2)] == ["status", "status"]
    db = open_db(db_target)
    device_row = db["devices"].get("dev-a")
    assert (device_row["status"], device_row["status_at"]) == ("offline", newer.isoformat(timespec="microseconds"))
    assert db["device_latest"].get("dev-a")["status"] == "offline"


def test_a_collector_of_the_group_that_stops_and_returns_loses_and_doubles_nothing(
    two_collectors, start_collector, device, db_target
):
    # mosquitto 2.0 keeps dealing a stopped member's share of the nights into its persistent
    # session: they wait there (and on the devices, until receipted) for its return.
    two_collectors[0].stop()
    dev = device("dev-a")
    nights = [make_summary("dev-a", (T1.date() - timedelta(days=d)).isoformat(), n_lms=12) for d in range(1, 11)]
    for night in nights:
        assert not dev.summary(encode(night)).is_failure
    returned = start_collector(share_group=GROUP)
    outcomes = _outcomes([returned, two_collectors[1]], len(nights))
    assert sorted(o.kind for _, _, o in outcomes) == ["stored"] * len(nights)
    assert open_db(db_target)["nights"].count == len(nights)

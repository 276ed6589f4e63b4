"""The collector against a real mosquitto with TLS, passwords and the production ACL."""

from __future__ import annotations

import logging
import queue
import time
from datetime import datetime, timedelta, timezone

import pytest

from server.db import open_db
from tests.pgserver import BOTH_DATABASES
from tests.server.payloads import encode, kept, make_summary

T0 = datetime(2026, 1, 6, 7, 0, tzinfo=timezone.utc)


@BOTH_DATABASES
def test_valid_nights_are_stored_and_a_duplicate_delivery_is_a_no_op(start_collector, device, db_target):
    collector = start_collector()
    dev = device("dev-a")
    payloads = [encode(make_summary("dev-a", f"2026-01-0{d}", n_lms=50, generated_at=T0)) for d in (1, 2, 3)]
    for payload in [*payloads, payloads[1]]:
        assert not dev.summary(payload).is_failure
    kinds = [collector.next()[1].kind for _ in range(4)]
    assert kinds == ["stored", "stored", "stored", "duplicate"]
    db = open_db(db_target)
    assert [r["night"] for r in db.query("SELECT night FROM nights ORDER BY night")] == [
        "2026-01-01", "2026-01-02", "2026-01-03"]
    assert db.execute("SELECT count(*) FROM lm_events").fetchone()[0] == 150
    assert db["rejected"].count == 0
    assert db["devices"].get("dev-a")["last_seen"] is not None


def test_offline_collector_receives_queued_nights_on_return_even_across_a_broker_restart(
    start_collector, device, mqtt_broker, tmp_path
):
    start_collector().stop()  # the broker now holds the collector's persistent session
    dev = device("dev-a")
    nights = [make_summary("dev-a", f"2026-02-0{d}", n_lms=20) for d in (1, 2, 3)]
    for night in nights:
        assert not dev.summary(encode(night)).is_failure
    dev.close()
    mqtt_broker.stop()  # clean stop: mosquitto saves the session and its queue (persistence true)
    mqtt_broker.start()
    collector = start_collector()
    received = sorted(collector.next()[1].kind for _ in nights)
    assert received == ["stored"] * 3
    stored = {r["summary_id"] for r in open_db(tmp_path / "server.db")["nights"].rows}
    assert stored == {n["summary_id"] for n in nights}


def test_a_device_cannot_publish_as_another_device(start_collector, device, mqtt_broker, tmp_path):
    collector = start_collector()
    device("dev-b")
    mallory = device("dev-a")
    forged = encode(make_summary("dev-b", "2026-03-01"))
    reason = mallory.publish("rlsmon/v1/dev-b/summary", forged)
    assert reason.is_failure and reason.getName() == "Not authorized"
    # The same client's next message arrives in order; once it is in, the forged one never came.
    assert not mallory.publish("rlsmon/v1/dev-a/status", b"online").is_failure
    topic, outcome = collector.next()
    assert (topic, outcome.kind) == ("rlsmon/v1/dev-a/status", "status")
    db = open_db(tmp_path / "server.db")
    assert db["nights"].count == 0 and db["rejected"].count == 0
    with pytest.raises(queue.Empty):
        collector.outcomes.get_nowait()


@BOTH_DATABASES
def test_garbage_through_the_broker_is_kept_and_the_collector_keeps_going(start_collector, device, db_target):
    collector = start_collector()
    dev = device("dev-a")
    garbage = [
        b"\x00\x01\x02\xff",
        b"{}",
        encode({**make_summary("dev-a"), "schema": "rlsmon.night/2"}),
        encode(make_summary("dev-b")),  # payload names another device
        encode({**make_summary("dev-a"), "lm_events": [{"onset_s": 1}] * 5000}),
    ]
    for payload in garbage:
        assert not dev.summary(payload).is_failure
    assert [collector.next()[1].kind for _ in garbage] == ["rejected"] * len(garbage)
    good = make_summary("dev-a", "2026-01-09", generated_at=T0 + timedelta(days=3))
    dev.summary(encode(good))
    assert collector.next()[1].kind == "stored"
    db = open_db(db_target)
    assert list(db.query("SELECT payload, size_bytes, sha256 FROM rejected ORDER BY id")) == [kept(g) for g in garbage]
    assert db["nights"].count == 1


@BOTH_DATABASES
def test_retained_status_sets_status_but_not_last_seen(start_collector, device, db_target):
    dev = device("dev-a")
    assert not dev.publish("rlsmon/v1/dev-a/status", b"online", retain=True).is_failure
    collector = start_collector()  # a new subscription: the broker replays the retained status
    assert collector.next()[1].kind == "status"
    row = open_db(db_target)["devices"].get("dev-a")
    assert (row["status"], row["last_seen"]) == ("online", None)
    assert not dev.publish("rlsmon/v1/dev-a/status", b"offline", retain=True).is_failure
    assert collector.next()[1].kind == "status"
    row = open_db(db_target)["devices"].get("dev-a")
    assert row["status"] == "offline" and row["last_seen"] is not None


def test_a_night_is_acknowledged_only_once_committed(start_collector, device, tmp_path, monkeypatch):
    """The database refuses the write (another process holds the lock): the collector stops without
    a PUBACK, so the broker still holds the night and delivers it again to the next collector."""
    import sqlite3

    import server.db

    monkeypatch.setattr(server.db, "BUSY_TIMEOUT_S", 0.2)
    first = start_collector()
    blocker = sqlite3.connect(tmp_path / "server.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    dev = device("dev-a")
    night = make_summary("dev-a", "2026-05-01")
    assert not dev.summary(encode(night)).is_failure
    assert first.collector.failed.wait(30)
    first.stop()
    blocker.execute("ROLLBACK")
    blocker.close()
    second = start_collector()
    topic, outcome = second.next()
    assert outcome.kind == "stored"
    assert open_db(tmp_path / "server.db")["nights"].get(("dev-a", "2026-05-01"))["summary_id"] == night["summary_id"]


def test_committed_nights_reach_the_database_file_while_the_collector_runs(start_collector, device, tmp_path):
    """The writer leaves checkpoints to its checkpointer thread: the nights move from the WAL into
    the database file without waiting for the collector to stop."""
    import shutil
    import sqlite3

    collector = start_collector()
    reader = sqlite3.connect(tmp_path / "server.db")  # keeps the WAL from being checkpointed on close
    reader.execute("SELECT 1").fetchone()
    dev = device("dev-a")
    for day in (1, 2, 3):
        assert not dev.summary(encode(make_summary("dev-a", f"2026-05-0{day}", n_lms=200))).is_failure
    assert [collector.next()[1].kind for _ in range(3)] == ["stored"] * 3

    def nights_in_file() -> int:
        copy = tmp_path / "file-only.db"
        shutil.copyfile(tmp_path / "server.db", copy)  # without its WAL
        try:
            with sqlite3.connect(copy) as conn:
                return conn.execute("SELECT count(*) FROM nights").fetchone()[0]
        except sqlite3.DatabaseError:  # copied halfway through a checkpoint
            return -1

    deadline = time.monotonic() + 60
    while nights_in_file() != 3:
        assert time.monotonic() < deadline, "the nights never left the WAL"
        time.sleep(0.01)
    reader.close()


def test_validator_processes_keep_arrival_order_and_the_same_rules(start_collector, device, tmp_path):
    collector = start_collector(validators=2)
    dev = device("dev-a")
    first = make_summary("dev-a", "2026-06-01", generated_at=T0)
    newer = make_summary("dev-a", "2026-06-01", generated_at=T0 + timedelta(hours=1))
    sent = [encode(first), b"not json", encode(first), encode(newer), encode(first)]
    for payload in sent:
        assert not dev.summary(payload).is_failure
    kinds = [collector.next(60)[1].kind for _ in sent]
    assert kinds == ["stored", "rejected", "duplicate", "replaced", "stale"]
    db = open_db(tmp_path / "server.db")
    assert db["nights"].get(("dev-a", "2026-06-01"))["summary_id"] == newer["summary_id"]


@BOTH_DATABASES
def test_a_conflict_through_the_broker_is_kept_and_logged_without_health_data(start_collector, device, db_target, caplog):
    caplog.set_level(logging.WARNING, logger="server.collector")
    collector = start_collector()
    dev = device("dev-a")
    first = make_summary("dev-a", "2026-07-01", generated_at=T0)
    forged = {**first, "plm_index": 99.0, "severity": "severe", "clinically_significant": True}
    forged_ok = {**first, "caveats": ["edited"]}  # consistent, but not what summary_id named
    for payload in (first, forged, forged_ok):
        assert not dev.summary(encode(payload)).is_failure
    outcomes = [collector.next()[1] for _ in range(3)]
    assert [o.kind for o in outcomes] == ["stored", "rejected", "rejected"]
    assert "plm_index" in outcomes[1].reason and outcomes[2].reason.startswith("conflict:")
    db = open_db(db_target)
    assert [r["reason"] for r in db.query("SELECT reason FROM rejected ORDER BY id")] == [o.reason for o in outcomes[1:]]
    logged = [r.getMessage() for r in caplog.records if r.name == "server.collector"]
    assert "device dev-a: payload refused (conflict); see the rejected table" in logged
    assert not any("99" in line or "severe" in line or "2026-07-01" in line for line in logged)

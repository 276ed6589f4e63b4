"""The ingest rules on a real SQLite database, without MQTT: upsert, idempotency, replacement,
rejection with a prefix, size and hash of the payload kept, device status."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from server.collector import ingest
from server.db import open_db
from tests.pgserver import BOTH_DATABASES
from tests.server.payloads import encode, kept, make_summary

pytestmark = BOTH_DATABASES

TOPIC = "rlsmon/v1/dev-a/summary"
T0 = datetime(2026, 1, 6, 7, 0, tzinfo=timezone.utc)


@pytest.fixture
def db(db_target):
    db = open_db(db_target)
    yield db
    db.close()


def rejected(db):
    return list(db.query("SELECT topic, payload, size_bytes, sha256, reason FROM rejected ORDER BY id"))


def test_valid_night_is_stored_with_its_events(db):
    summary = make_summary(n_lms=25, generated_at=T0)
    assert ingest(db, TOPIC, encode(summary)).kind == "stored"
    night = db["nights"].get(("dev-a", "2026-01-05"))
    assert night["summary_id"] == summary["summary_id"]
    assert night["plm_count"] == summary["plm_count"] and night["lm_count"] == 25
    assert json.loads(night["summary_json"]) == summary
    events = list(db.query("SELECT * FROM lm_events WHERE device_id = 'dev-a' ORDER BY idx"))
    assert [e["onset_s"] for e in events] == [e["onset_s"] for e in summary["lm_events"]]
    assert [bool(e["periodic"]) for e in events] == [e["periodic"] for e in summary["lm_events"]]
    assert db["devices"].get("dev-a")["last_seen"] is not None
    assert rejected(db) == []


def test_same_summary_again_is_a_no_op(db):
    payload = encode(make_summary(generated_at=T0))
    ingest(db, TOPIC, payload, received_at="first")
    assert ingest(db, TOPIC, payload, received_at="second").kind == "duplicate"
    assert db["nights"].count == 1
    assert db["nights"].get(("dev-a", "2026-01-05"))["received_at"] == "first"
    assert rejected(db) == []


def test_newer_generated_at_replaces_night_and_events(db):
    ingest(db, TOPIC, encode(make_summary(n_lms=30, generated_at=T0)))
    newer = make_summary(n_lms=12, generated_at=T0 + timedelta(hours=1))
    assert ingest(db, TOPIC, encode(newer)).kind == "replaced"
    assert db["nights"].get(("dev-a", "2026-01-05"))["summary_id"] == newer["summary_id"]
    assert db.execute("SELECT count(*) FROM lm_events").fetchone()[0] == 12


def test_older_generated_at_is_kept_aside_with_the_reason(db):
    current = make_summary(n_lms=30, generated_at=T0)
    ingest(db, TOPIC, encode(current))
    older = encode(make_summary(n_lms=12, generated_at=T0 - timedelta(minutes=1)))
    outcome = ingest(db, TOPIC, older)
    assert outcome.kind == "stale"
    assert db["nights"].get(("dev-a", "2026-01-05"))["summary_id"] == current["summary_id"]
    [row] = rejected(db)
    assert row == {"topic": TOPIC, **kept(older), "reason": outcome.reason} and current["summary_id"] in row["reason"]


def test_topic_payload_mismatch_is_rejected(db):
    payload = encode(make_summary(device_id="dev-b"))
    outcome = ingest(db, TOPIC, payload)
    assert outcome.kind == "rejected" and "differs" in outcome.reason
    assert db["nights"].count == 0
    assert rejected(db) == [{"topic": TOPIC, **kept(payload), "reason": outcome.reason}]


@pytest.mark.parametrize(
    "topic, payload, why",
    [
        (TOPIC, b"\x00\xff not json", "Invalid JSON"),
        (TOPIC, b"[]", "should be an object"),
        (TOPIC, encode({**make_summary(), "schema": "rlsmon.night/2"}), "schema"),
        (TOPIC, encode({**make_summary(), "lm_count": 3}), "lm_count"),
        ("rlsmon/v1/dev-a/other", b"{}", "unexpected topic"),
        ("rlsmon/v1/Dev_A/summary", encode(make_summary()), "unexpected topic"),
        ("rlsmon/v1/dev-a/status", b"sleeping", "online"),
        ("rlsmon/v1/dev-a/status", b'{"status": "sleeping", "at": "2026-01-06T07:00:00+00:00"}', "online"),
        ("rlsmon/v1/dev-a/status", b'{"status": "online", "at": "2026-01-06T07:00:00"}', "online"),
        ("rlsmon/v1/dev-a/status", b'{"status": "online"}', "online"),
        ("rlsmon/v1/dev-a/status", b'{"status": "online", "at": "2999-01-01T00:00:00+00:00"}', "future"),
    ],
)
def test_bad_messages_are_kept_with_reason(db, topic, payload, why):
    assert ingest(db, topic, payload).kind == "rejected"
    [row] = rejected(db)
    assert row == {"topic": topic, **kept(payload), "reason": row["reason"]} and why in row["reason"]
    assert db["nights"].count == 0


def test_oversized_payload_is_rejected_before_parsing(db):
    payload = b" " * (4 * 1024 * 1024 + 1)
    outcome = ingest(db, TOPIC, payload)
    assert outcome.kind == "rejected" and "exceeds" in outcome.reason


def test_status_sets_online_and_offline_but_retained_is_not_last_seen(db):
    ingest(db, "rlsmon/v1/dev-a/status", b"offline", retained=True, received_at="t1")
    device = db["devices"].get("dev-a")
    assert (device["status"], device["status_at"], device["last_seen"]) == ("offline", "t1", None)
    ingest(db, "rlsmon/v1/dev-a/status", b"offline", retained=True, received_at="t2")
    assert db["devices"].get("dev-a")["status_at"] == "t1"  # a replay of the same status
    ingest(db, "rlsmon/v1/dev-a/status", b"online", received_at="t3")
    device = db["devices"].get("dev-a")
    assert (device["status"], device["status_at"], device["last_seen"]) == ("online", "t3", "t3")


def test_reason_never_quotes_payload_values(db):
    summary = make_summary()
    summary["software_version"] = "SECRET-" + uuid.uuid4().hex * 3  # longer than allowed
    outcome = ingest(db, TOPIC, encode(summary))
    assert outcome.kind == "rejected" and "software_version" in outcome.reason
    assert "SECRET" not in outcome.reason


def _status(status: str, at: datetime) -> bytes:
    return json.dumps({"status": status, "at": at.isoformat()}).encode()


def _device_status(db) -> tuple[str, str]:
    device = db["devices"].get("dev-a")
    latest = db["device_latest"].get("dev-a")  # kept by the triggers of migration 0005
    assert latest["status"] == device["status"]
    return device["status"], device["status_at"]


STATUS_TOPIC = "rlsmon/v1/dev-a/status"
T1 = datetime(2026, 1, 6, 7, 0, tzinfo=timezone.utc)


def test_a_status_older_than_the_stored_one_changes_nothing(db):
    t2 = T1 + timedelta(minutes=5)
    assert ingest(db, STATUS_TOPIC, _status("offline", t2)).kind == "status"
    assert ingest(db, STATUS_TOPIC, _status("online", T1)).kind == "status"  # delivered late
    assert _device_status(db) == ("offline", t2.isoformat(timespec="microseconds"))
    later = T1 + timedelta(minutes=9)
    ingest(db, STATUS_TOPIC, _status("online", later.astimezone(timezone(timedelta(hours=2)))))
    assert _device_status(db) == ("online", later.isoformat(timespec="microseconds"))


@pytest.mark.parametrize("order", [("online", "offline"), ("offline", "online")])
def test_offline_wins_a_tie_it_ends_the_connection_of_that_time(db, order):
    for status in order:
        ingest(db, STATUS_TOPIC, _status(status, T1))
    assert _device_status(db)[0] == "offline"


def test_a_retained_replay_of_the_stored_status_changes_nothing(db):
    ingest(db, STATUS_TOPIC, _status("online", T1), received_at="t1")
    ingest(db, STATUS_TOPIC, _status("online", T1), retained=True, received_at="t2")
    device = db["devices"].get("dev-a")
    assert (device["status"], device["last_seen"]) == ("online", "t1")

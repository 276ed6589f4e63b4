"""The evening test contract `rlsmon.sit/1` on both sides, its ingest by the night's rules, and its
receipt and ACL through the real broker."""

from __future__ import annotations

import datetime as dt
import json

import jsonschema_rs
import pytest

from device.clock import VirtualClock
from device.config import parse_config
from device.detect.events import LegMovement, PostureSegment
from device.sit import SitRunner
from device.store import SitRow
from server.collector import ingest
from server.db import open_db
from server.sit import SCHEMA_FILE, render_json_schema, sit_results
from tests.pgserver import BOTH_DATABASES

pytestmark = BOTH_DATABASES  # the tests that use the database run on SQLite and PostgreSQL

T0 = dt.datetime(2026, 3, 1, 23, 0, tzinfo=dt.timezone.utc)
OFFER = dt.datetime(2026, 3, 1, 21, 0, tzinfo=dt.timezone.utc).timestamp()
TOPIC = "rlsmon/v1/dev-a/sit"


def make_sit(device_id: str = "dev-a", taken: bool = True, plms: int = 50, generated: dt.datetime = T0,
             evening: str = "2026-03-01") -> dict:
    """A result as the device builds it (device/sit.py), from a hand-made stored night."""
    from device.store import NightInfo, Segment, StoredNight

    cfg = parse_config(f'device_id = "{device_id}"\n[night]\nstart = "20:00"\nend = "08:00"\n'
                       '[sit]\nfirst_evening = "2026-03-01"\n')
    runner = SitRunner(cfg, VirtualClock(), store=None)
    night_start = OFFER - 3600.0
    if not taken:
        return runner.result(SitRow(evening, "not_taken", OFFER), None, night_start, generated)
    start_s = 3700.0
    moves = [LegMovement(start_s + 60 + 12.0 * k, start_s + 62 + 12.0 * k) for k in range(plms)]
    stored = StoredNight(NightInfo("2026-03-01", "", "", "UTC", 43200.0, True, "WASM2016", {"legs": 1}),
                         [Segment(0.0, 43200.0, 100)], [], moves, [PostureSegment(0.0, 43200.0, "lying")], [])
    row = SitRow(evening, "ended", OFFER, night_start + start_s, night_start + start_s + 3600.0)
    return runner.result(row, stored, night_start, generated)


def encode(result: dict) -> bytes:
    return json.dumps(result).encode()


@pytest.fixture
def db(db_target):
    return open_db(db_target)


def test_checked_in_schema_is_current():
    assert SCHEMA_FILE.read_text() == render_json_schema(), (
        "server/sit-result.schema.json is stale: run "
        "`python -c 'from server.sit import write_json_schema; write_json_schema()'`")


@pytest.mark.parametrize("taken", [True, False])
def test_the_devices_result_meets_the_contract(taken):
    result = make_sit(taken=taken)
    jsonschema_rs.validator_for(json.loads(SCHEMA_FILE.read_text())).validate(result)
    assert result["schema"] == "rlsmon.sit/1"
    if taken:
        assert result["plm_index"] == 50.0 and result["above_threshold"] is True


def test_a_result_is_stored_once_and_a_newer_one_replaces_it(db):
    first = make_sit()
    assert ingest(db, TOPIC, encode(first)).kind == "stored"
    assert ingest(db, TOPIC, encode(first)).kind == "duplicate"
    [row] = sit_results(db, ["dev-a"])
    assert (row.evening, row.taken, row.plm_index, row.above_threshold) == ("2026-03-01", True, 50.0, True)
    assert row.result == first
    newer = make_sit(plms=10, generated=T0 + dt.timedelta(hours=1))
    assert ingest(db, TOPIC, encode(newer)).kind == "replaced"
    assert sit_results(db, ["dev-a"])[0].plm_index == 10.0
    assert ingest(db, TOPIC, encode(first)).kind == "stale"
    assert sit_results(db, ["dev-a"], first="2026-03-02") == []


def test_bad_results_go_to_rejected_and_never_raise(db):
    good = make_sit()
    lying = {**good, "plm_count": good["plm_count"] + 1}
    flipped = {**good, "above_threshold": False}
    cases = [b"not json", encode({**good, "lm_events": "x"}), encode(lying), encode(flipped),
             encode(make_sit(device_id="dev-b"))]
    for payload in cases:
        outcome = ingest(db, TOPIC, payload)
        assert outcome.kind == "rejected", payload[:80]
    reasons = [r["reason"] for r in db.query("SELECT reason FROM rejected ORDER BY id")]
    assert len(reasons) == len(cases) and reasons[-1].startswith("device mismatch")
    assert all(r.startswith(("invalid sit", "device mismatch")) for r in reasons)
    conflict = {**good, "plm_count": 0, "lm_events": [], "lm_count": 0, "blocks": [], "plm_index": 0.0,
                "lm_index": 0.0, "above_threshold": False}
    ingest(db, TOPIC, encode(good))
    assert ingest(db, TOPIC, encode(conflict)).reason.startswith("conflict")
    assert db["sits"].count == 1


def test_a_not_taken_test_is_stored_as_such(db):
    assert ingest(db, TOPIC, encode(make_sit(taken=False))).kind == "stored"
    [row] = sit_results(db, ["dev-a"])
    assert row.taken is False and row.plm_index is None and row.above_threshold is None


def test_forget_erases_the_patients_evening_tests(db):
    from server import audit
    from server.db import assign_device, utc_now
    from server.lifecycle import forget

    ingest(db, TOPIC, encode(make_sit()))
    assign_device(db, "dev-a", "P-1", utc_now())
    forget(db, "P-1", T0, audit.Actor("admin", "admin", "127.0.0.1"))
    assert db["sits"].count == 0


def test_receipted_through_the_broker_and_only_on_the_devices_own_topic(start_collector, device, mqtt_broker):
    collector = start_collector()
    receipts = mqtt_broker.subscribe("rlsmon/v1/+/receipt")
    dev_a, dev_b = device("dev-a"), device("dev-b")
    result = make_sit()
    assert not dev_a.publish(TOPIC, encode(result)).is_failure
    assert collector.next()[1].kind == "stored"
    topic, payload, _ = receipts.get(10)
    assert topic == "rlsmon/v1/dev-a/receipt"
    assert json.loads(payload) == {"schema": "rlsmon.receipt/1", "summary_id": result["summary_id"],
                                   "night": "2026-03-01", "status": "stored"}
    # dev-b may not write dev-a's SIT topic: the broker refuses it (MQTT v5 PUBACK reason code).
    assert dev_b.publish(TOPIC, encode(make_sit(plms=5))).is_failure
    assert not dev_b.publish("rlsmon/v1/dev-b/sit", encode(make_sit("dev-b"))).is_failure
    assert collector.next()[1].kind == "stored"
    receipts.close()

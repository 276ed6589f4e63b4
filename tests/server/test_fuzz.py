"""Hypothesis fuzzing of the ingest function: whatever arrives, it never raises, and every message
that is not stored is kept in `rejected` with its size, hash and first bytes."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.collector import ingest
from server.db import open_db
from tests.server.payloads import encode, kept, make_summary

BASE = make_summary("dev-a", "2026-01-05", n_lms=12)
STORED_KINDS = {"stored", "replaced", "duplicate", "status"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            yield from _paths(v, (*prefix, i))


PATHS = [p for p in _paths(BASE) if p]


@st.composite
def mutated_summaries(draw) -> bytes:
    """A valid summary with one value replaced: wrong types, out of range, huge arrays, or removed."""
    summary = copy.deepcopy(BASE)
    path = draw(st.sampled_from(PATHS))
    parent = summary
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["replace", "delete", "huge"]))
    if action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "huge":
        parent[path[-1]] = [draw(json_values)] * draw(st.integers(20_001, 30_000))
    else:
        parent[path[-1]] = draw(json_values)
    return encode(summary)


topics = st.sampled_from(["rlsmon/v1/dev-a/summary", "rlsmon/v1/dev-b/summary", "rlsmon/v1/dev-a/status"]) | st.text(
    max_size=40
)
payloads = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | mutated_summaries()
    | st.sampled_from(["rlsmon.night/0", "rlsmon.night/2", "", None]).map(lambda v: encode({**BASE, "schema": v}))
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(topic=topics, payload=payloads)
def test_ingest_never_raises_and_keeps_what_it_does_not_store(topic, payload):
    db = open_db(":memory:")
    outcome = ingest(db, topic, payload)
    rows = list(db.query("SELECT topic, payload, size_bytes, sha256, reason FROM rejected"))
    if outcome.kind in STORED_KINDS:
        assert rows == []
    else:
        assert rows == [{"topic": topic, **kept(payload), "reason": outcome.reason}]
        assert outcome.reason
        assert db["nights"].count == 0


def test_fuzzed_garbage_never_reaches_nights():
    db = open_db(":memory:")
    assert ingest(db, "rlsmon/v1/dev-a/summary", encode(BASE)).kind == "stored"
    for schema in ("rlsmon.night/2", 1, None):
        assert ingest(db, "rlsmon/v1/dev-a/summary", encode({**BASE, "schema": schema})).kind == "rejected"
    assert db["rejected"].count == 3 and db["nights"].count == 1


@pytest.fixture(scope="module")
def rig(tmp_path_factory, mqtt_ca):
    """One real broker, collector and device for all the examples (a broker per example is too slow)."""
    from tests.broker import Broker
    from tests.server.conftest import Device, RunningCollector

    workdir = tmp_path_factory.mktemp("fuzz-broker")
    broker = Broker(workdir / "mosquitto", mqtt_ca)
    broker.start()
    collector = RunningCollector(broker, workdir / "server.db").start()
    device = Device(broker, "dev-a")
    yield collector, device, workdir / "server.db"
    device.close()
    collector.stop()
    broker.kill()


# Under the test broker's message_size_limit: a bigger message is the broker's to refuse.
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=payloads.filter(lambda p: len(p) < 200_000))
def test_fuzzed_payloads_through_the_broker_are_kept_and_the_collector_lives(rig, payload):
    collector, device, db_path = rig
    assert not device.summary(payload).is_failure
    topic, outcome = collector.next(30)
    assert collector.collector.failed.is_set() is False
    if outcome.kind not in STORED_KINDS:
        db = open_db(db_path)
        [last] = db.query("SELECT payload, size_bytes, sha256, reason FROM rejected ORDER BY id DESC LIMIT 1")
        assert last == {**kept(payload), "reason": outcome.reason}

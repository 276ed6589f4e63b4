"""The uplink against a real mosquitto and a real collector: a summary leaves the outbox only on the
collector's receipt (a PUBACK is not one), is re-sent with backoff until then, and a receipt sent
while the device was offline still reaches it (persistent session)."""

from __future__ import annotations

import json
import logging
import queue
import random
import socket
from datetime import datetime, timedelta

import pytest

from device.config import BrokerConfig
from device.store import NightInfo, Store
from device.uplink import RECEIPT_SCHEMA, Uplink, parse_receipt, receipt_topic, resend_delay_s, summary_topic
from server.collector import receipt
from tests.daemon.conftest import wait_for
from tests.server.conftest import RunningCollector
from tests.server.payloads import make_summary

pytestmark = pytest.mark.timeout(60)


def put_summary(store: Store, device_id: str, night: str) -> str:
    """Close `night` with a valid summary (docs/summary.md) in the outbox; returns its summary_id."""
    info = NightInfo(night, "2026-03-01T22:00:00+00:00", "2026-03-01T23:00:00+00:00", "UTC", 3600.0,
                     True, "WASM2016")
    store.open_night(info, "t0")
    return store.close_night(night, lambda stored: (summary_topic(device_id), make_summary(device_id, night)), "t1")


def broker_config(mqtt_broker, tmp_path, user: str, password: str, **kw) -> BrokerConfig:
    pw = tmp_path / "pw"
    pw.write_text(password + "\n")
    return BrokerConfig(host="localhost", port=mqtt_broker.port, ca_file=str(mqtt_broker.ca_file),
                        username=kw.pop("username", user), password_file=str(pw), **kw)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def summary_outcomes(collector: RunningCollector, n: int) -> list[str]:
    """The kinds of the next `n` summaries the collector commits (statuses skipped)."""
    kinds: list[str] = []
    while len(kinds) < n:
        topic, outcome = collector.next(20)
        if topic.endswith("/summary"):
            kinds.append(outcome.kind)
    return kinds


def handed(caplog) -> int:
    return caplog.text.count("handed to the broker")


def test_resend_delay_is_exponential_capped_and_jittered():
    rng = random.Random(1)
    delays = [resend_delay_s(n, 60.0, 3600.0, rng) for n in range(1, 12)]
    for n, d in enumerate(delays, start=1):
        full = min(3600.0, 60.0 * 2 ** (n - 1))
        assert full / 2 <= d <= full
    assert max(delays) <= 3600.0 and len({round(d, 6) for d in delays}) == len(delays)


def test_a_summary_stays_after_its_puback_and_goes_on_the_collector_receipt(mqtt_broker, store, tmp_path, caplog):
    password = mqtt_broker.add_device("dev-a")
    RunningCollector(mqtt_broker, tmp_path / "server.db").start().stop()  # its session now queues nights
    nights = ["2026-03-01", "2026-03-02", "2026-03-03"]
    ids = [put_summary(store, "dev-a", n) for n in nights]
    receipted: queue.Queue = queue.Queue()
    up = Uplink(broker_config(mqtt_broker, tmp_path, "dev-a", password), "dev-a", store,
                on_receipt=receipted.put)
    with caplog.at_level(logging.INFO, logger="device.uplink"):
        up.start()
        try:
            wait_for(lambda: handed(caplog) == 3, 20, "three PUBACKs")
            assert store.outbox_count() == 3  # the broker holds them: not a receipt
            collector = RunningCollector(mqtt_broker, tmp_path / "server.db").start()
            try:
                assert summary_outcomes(collector, 3) == ["stored"] * 3
                assert sorted(receipted.get(10) for _ in nights) == nights
                wait_for(lambda: store.outbox_count() == 0, 10, "the outbox to empty")
            finally:
                collector.stop()
        finally:
            up.stop()
    rows = store.call(lambda db: list(db.query("select summary_id, receipted_at from nights order by night")))
    assert [r["summary_id"] for r in rows] == ids and all(r["receipted_at"] for r in rows)


def test_without_a_receipt_it_is_sent_again_with_backoff_until_one_comes(mqtt_broker, store, tmp_path, caplog):
    password = mqtt_broker.add_device("dev-a")
    put_summary(store, "dev-a", "2026-03-01")
    sub = mqtt_broker.subscribe("rlsmon/v1/dev-a/summary")
    clock = Clock()
    up = Uplink(broker_config(mqtt_broker, tmp_path, "dev-a", password), "dev-a", store, monotonic=clock,
                rng=random.Random(3))
    with caplog.at_level(logging.INFO, logger="device.uplink"):
        up.start()
        try:
            sub.get(20)  # no collector session: the broker drops it, so only a re-send can save it
            wait_for(lambda: handed(caplog) == 1, 20, "the first PUBACK")
            clock.now = 29.0  # the first re-send is due 30-60 s later: nothing yet
            up.kick()
            with pytest.raises(queue.Empty):
                sub.get(0.5)
            clock.now = 61.0
            up.kick()
            sub.get(10)
            wait_for(lambda: "sent again (attempt 2)" in caplog.text, 10, "the second attempt's log line")
            collector = RunningCollector(mqtt_broker, tmp_path / "server.db").start()
            try:
                clock.now = 61.0 + 121.0  # attempt 2 waits 60-120 s
                up.kick()
                assert summary_outcomes(collector, 1) == ["stored"]
                wait_for(lambda: store.outbox_count() == 0, 10, "the receipt to empty the outbox")
            finally:
                collector.stop()
        finally:
            up.stop()
            sub.close()


@pytest.mark.parametrize("doctor_meanwhile", [False, True], ids=["offline", "doctor-meanwhile"])
def test_a_receipt_sent_while_the_device_is_offline_reaches_it(mqtt_broker, store, tmp_path, caplog,
                                                               doctor_meanwhile):
    """The receipt waits in the device's persistent session. `doctor` logs in as the device (the
    client id is the username) without wiping that session or acknowledging what is queued in it."""
    from device.config import DeviceConfig
    from device.doctor import check_broker

    password = mqtt_broker.add_device("dev-a")
    RunningCollector(mqtt_broker, tmp_path / "server.db").start().stop()
    put_summary(store, "dev-a", "2026-03-01")
    cfg = broker_config(mqtt_broker, tmp_path, "dev-a", password)
    with caplog.at_level(logging.INFO, logger="device.uplink"):
        up = Uplink(cfg, "dev-a", store)
        up.start()
        wait_for(lambda: handed(caplog) == 1 and up.subscribed.is_set(), 20, "the PUBACK")
        up.stop()  # offline; the broker keeps its session and receipt subscription
    collector = RunningCollector(mqtt_broker, tmp_path / "server.db").start()
    assert summary_outcomes(collector, 1) == ["stored"]  # the receipt is published right after this commit
    collector.stop()  # so a re-send now could not be receipted: only the queued receipt can
    assert store.outbox_count() == 1
    if doctor_meanwhile:
        assert check_broker(DeviceConfig(device_id="dev-a", broker=cfg)).status == "pass"
    up = Uplink(cfg, "dev-a", store)
    up.start()
    try:
        wait_for(lambda: store.outbox_count() == 0, 20, "the queued receipt")
    finally:
        up.stop()


def test_after_a_broker_restart_it_reconnects_and_sends_again(mqtt_broker, store, tmp_path, caplog):
    """Our network loop (not paho's loop_start) reconnects, and a reconnect re-sends what waits for a
    receipt: the clock never moves, so no backoff re-send can be the second copy."""
    password = mqtt_broker.add_device("dev-a")
    RunningCollector(mqtt_broker, tmp_path / "server.db").start().stop()  # its session queues nights
    put_summary(store, "dev-a", "2026-03-01")
    up = Uplink(broker_config(mqtt_broker, tmp_path, "dev-a", password), "dev-a", store, max_retry_s=1,
                monotonic=Clock())
    with caplog.at_level(logging.INFO, logger="device.uplink"):
        up.start()
        try:
            wait_for(lambda: handed(caplog) == 1, 20, "the first PUBACK")
            mqtt_broker.stop()  # graceful: the copy queued for the collector's session is saved
            wait_for(lambda: not up.connected.is_set(), 20, "the uplink to see the broker go")
            mqtt_broker.start()
            wait_for(lambda: handed(caplog) == 2, 30, "the copy sent after reconnecting")
            collector = RunningCollector(mqtt_broker, tmp_path / "server.db").start()
            try:
                assert summary_outcomes(collector, 2) == ["stored", "duplicate"]
                wait_for(lambda: store.outbox_count() == 0, 20, "the receipt to empty the outbox")
            finally:
                collector.stop()
        finally:
            up.stop()


def test_the_doctor_warns_of_summaries_long_without_a_receipt(store, tmp_path):
    import datetime as dt

    from device.config import DeviceConfig
    from device.doctor import check_outbox

    cfg = DeviceConfig(device_id="dev-a", data_dir=str(tmp_path))
    assert check_outbox(cfg, 0.0).status == "pass"
    put_summary(store, "dev-a", "2026-03-01")
    store.flush()
    day = dt.datetime(2026, 3, 2, 12, tzinfo=dt.timezone.utc).timestamp()
    assert check_outbox(cfg, day).status == "pass"
    late = check_outbox(cfg, day + 3 * 86400)
    assert late.status == "warn" and "2026-03-01" in late.message and "collector" in late.fix


def test_receipts_for_unknown_summaries_and_malformed_ones_are_ignored(mqtt_broker, store, tmp_path, caplog):
    password = mqtt_broker.add_device("dev-a")
    summary_id = put_summary(store, "dev-a", "2026-03-01")
    up = Uplink(broker_config(mqtt_broker, tmp_path, "dev-a", password), "dev-a", store)
    as_collector = mqtt_broker.client(mqtt_broker.collector_user, mqtt_broker.collector_password)
    as_collector.connect(mqtt_broker.host, mqtt_broker.port)
    as_collector.loop_start()
    topic = receipt_topic("dev-a")
    with caplog.at_level(logging.INFO, logger="device.uplink"):
        up.start()
        try:
            wait_for(lambda: up.subscribed.is_set(), 20, "the receipt subscription")
            unknown = receipt({"device_id": "dev-a", "night": "2026-03-01", "summary_id": "not-ours"},
                              _stored())
            as_collector.publish(*unknown, qos=1).wait_for_publish(10)
            as_collector.publish(topic, b"not json", qos=1).wait_for_publish(10)
            wait_for(lambda: "not-ours, which is not waiting" in caplog.text and "not a rlsmon.receipt/1" in caplog.text,
                     10, "both to be ignored")
            assert store.outbox_count() == 1
            good = receipt({"device_id": "dev-a", "night": "2026-03-01", "summary_id": summary_id}, _stored())
            as_collector.publish(*good, qos=1).wait_for_publish(10)
            wait_for(lambda: store.outbox_count() == 0, 10, "the real receipt to empty the outbox")
        finally:
            up.stop()
            as_collector.disconnect()
            as_collector.loop_stop()


def _stored():
    from server.collector import Outcome

    return Outcome("stored", "dev-a")


def test_the_receipt_contract_is_the_same_on_both_sides():
    """docs/receipts.md: what the collector writes is what the device reads, and nothing else is."""
    from server.collector import Outcome

    night = {"device_id": "dev-a", "night": "2026-03-01", "summary_id": "abc"}
    for kind, status in (("stored", "stored"), ("replaced", "stored"), ("duplicate", "duplicate")):
        topic, payload = receipt(night, Outcome(kind, "dev-a"))
        assert topic == receipt_topic("dev-a")
        assert json.loads(payload) == {"schema": RECEIPT_SCHEMA, "summary_id": "abc", "night": "2026-03-01",
                                       "status": status}
        assert parse_receipt(payload) == "abc"
    for kind in ("stale", "rejected", "status"):
        assert receipt(night, Outcome(kind, "dev-a")) is None
    assert parse_receipt(json.dumps({"schema": "rlsmon.receipt/2", "summary_id": "abc", "status": "stored"}).encode()) is None
    assert parse_receipt(json.dumps({"schema": RECEIPT_SCHEMA, "summary_id": 5, "status": "stored"}).encode()) is None


def test_status_is_retained_and_goes_offline_on_stop(mqtt_broker, store, tmp_path):
    password = mqtt_broker.add_device("dev-a")
    live = mqtt_broker.subscribe("rlsmon/v1/dev-a/status")
    up = Uplink(broker_config(mqtt_broker, tmp_path, "dev-a", password), "dev-a", store)
    up.start()
    assert up.connected.wait(20)
    up.stop()
    online, offline = (json.loads(live.get()[1]) for _ in range(2))
    live.close()
    # docs/summary.md, "Device status": both carry the start of the connection they speak of.
    assert (online["status"], offline["status"]) == ("online", "offline")
    assert online["at"] == offline["at"] and datetime.fromisoformat(online["at"]).utcoffset() == timedelta(0)
    sub = mqtt_broker.subscribe("rlsmon/v1/dev-a/status")
    topic, payload, retain = sub.get(10)
    assert json.loads(payload) == offline and retain
    sub.close()


def _at(status: bytes) -> datetime:
    return datetime.fromisoformat(json.loads(status)["at"])


def test_the_will_says_offline_as_of_the_connection_it_ends(mqtt_broker, store, tmp_path):
    from server.collector import check

    password = mqtt_broker.add_device("dev-a")
    live = mqtt_broker.subscribe("rlsmon/v1/dev-a/status")
    up = Uplink(broker_config(mqtt_broker, tmp_path, "dev-a", password), "dev-a", store)
    up.start()
    try:
        assert up.connected.wait(20)
        online = live.get()[1]
        up._client.socket().shutdown(socket.SHUT_RDWR)  # the connection dies without a DISCONNECT
        will = live.get()[1]
        again = live.get()[1]  # paho reconnects: a new connection, a later `at`
    finally:
        up.stop()
        live.close()
    assert json.loads(will) == {**json.loads(online), "status": "offline"}
    assert json.loads(again)["status"] == "online" and _at(again) > _at(will)
    # The collector's side of the contract accepts all three.
    for payload in (online, will, again):
        assert check("rlsmon/v1/dev-a/status", payload).status_at is not None


def test_broker_down_at_boot_is_normal(mqtt_broker, store, tmp_path):
    password = mqtt_broker.add_device("dev-a")
    collector = RunningCollector(mqtt_broker, tmp_path / "server.db").start()
    mqtt_broker.stop()
    put_summary(store, "dev-a", "2026-03-01")
    up = Uplink(broker_config(mqtt_broker, tmp_path, "dev-a", password), "dev-a", store, max_retry_s=1)
    up.start()
    try:
        assert not up.connected.wait(1.5)
        assert store.outbox_count() == 1
        mqtt_broker.start()
        wait_for(lambda: store.outbox_count() == 0, what="the receipt after the broker came back")
    finally:
        up.stop()
        collector.stop()


def test_wrong_password_is_logged_clearly_and_retried(mqtt_broker, store, tmp_path, caplog):
    mqtt_broker.add_device("dev-a")
    put_summary(store, "dev-a", "2026-03-01")
    up = Uplink(broker_config(mqtt_broker, tmp_path, "dev-a", "not-the-password"), "dev-a", store,
                max_retry_s=1)
    with caplog.at_level(logging.INFO, logger="device.uplink"):
        up.start()
        wait_for(lambda: "refused the connection" in caplog.text, what="the refusal log line")
        attempts = mqtt_broker.log_file.read_text().count("not authorised")
        wait_for(lambda: mqtt_broker.log_file.read_text().count("not authorised") > attempts,
                 what="a retry at the broker")
    assert "broker.password_file" in caplog.text
    assert "not-the-password" not in caplog.text
    assert up._thread.is_alive()
    assert store.outbox_count() == 1
    up.stop()


def test_bad_ca_is_logged_clearly_and_retried(mqtt_broker, store, tmp_path, caplog):
    import trustme

    password = mqtt_broker.add_device("dev-a")
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    cfg = broker_config(mqtt_broker, tmp_path, "dev-a", password)
    cfg = BrokerConfig(**{**cfg.__dict__, "ca_file": str(other_ca)})
    up = Uplink(cfg, "dev-a", store, max_retry_s=1)
    with caplog.at_level(logging.INFO, logger="device.uplink"):
        up.start()
        wait_for(lambda: "certificate" in caplog.text and "ca_file" in caplog.text, what="the TLS log line")
    assert up._thread.is_alive() and not up.connected.is_set()
    up.stop()


def test_topic_outside_the_acl_keeps_the_summary_and_retries(mqtt_broker, store, tmp_path, caplog):
    password = mqtt_broker.add_device("dev-a")
    put_summary(store, "dev-b", "2026-03-01")  # device_id dev-b, but logged in as dev-a
    cfg = broker_config(mqtt_broker, tmp_path, "dev-a", password)
    up = Uplink(cfg, "dev-b", store, resend_s=0.2)
    with caplog.at_level(logging.INFO, logger="device.uplink"):
        up.start()
        wait_for(lambda: "refused the summary" in caplog.text, what="the ACL refusal log line")
        wait_for(lambda: "sent again" in caplog.text, what="a retry")
    assert store.outbox_count() == 1
    assert up._thread.is_alive()
    up.stop()

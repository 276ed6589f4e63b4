"""The uplink against a real mosquitto: PUBACK-driven outbox, retained status, clear refusals."""

from __future__ import annotations

import json
import logging
import queue
import threading

import pytest

from device.config import BrokerConfig
from device.store import NightInfo, Store
from device.uplink import Uplink, summary_topic
from tests.daemon.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


def put_summary(store: Store, device_id: str, night: str) -> str:
    info = NightInfo(night, "2026-03-01T22:00:00+00:00", "2026-03-01T23:00:00+00:00", "UTC", 3600.0,
                     True, "WASM2016")
    store.open_night(info, "t0")
    return store.close_night(night, lambda stored: (summary_topic(device_id), {
        "summary_id": f"id-{night}", "device_id": device_id, "night": night}), "t1")


def broker_config(mqtt_broker, tmp_path, user: str, password: str, **kw) -> BrokerConfig:
    pw = tmp_path / "pw"
    pw.write_text(password + "\n")
    return BrokerConfig(host="localhost", port=mqtt_broker.port, ca_file=str(mqtt_broker.ca_file),
                        username=kw.pop("username", user), password_file=str(pw), **kw)


def test_outbox_drains_in_order_and_rows_go_only_on_puback(mqtt_broker, store, tmp_path):
    password = mqtt_broker.add_device("dev-a")
    for night in ("2026-03-01", "2026-03-02", "2026-03-03"):
        put_summary(store, "dev-a", night)
    sub = mqtt_broker.subscribe("rlsmon/v1/dev-a/#")
    sent = queue.Queue()
    up = Uplink(broker_config(mqtt_broker, tmp_path, "dev-a", password), "dev-a", store,
                on_sent=lambda row: sent.put(row.night))
    up.start()
    try:
        got = []
        while len(got) < 4:
            topic, payload, retain = sub.get(20)
            got.append((topic, payload.decode()))
        assert got[0] == ("rlsmon/v1/dev-a/status", "online")
        assert [json.loads(p)["night"] for _, p in got[1:]] == ["2026-03-01", "2026-03-02", "2026-03-03"]
        assert [sent.get(10) for _ in range(3)] == ["2026-03-01", "2026-03-02", "2026-03-03"]
        assert store.outbox_count() == 0
        with pytest.raises(queue.Empty):
            sub.get(0.3)  # nothing duplicated
    finally:
        up.stop()
        sub.close()


def test_status_is_retained_and_goes_offline_on_stop(mqtt_broker, store, tmp_path):
    password = mqtt_broker.add_device("dev-a")
    up = Uplink(broker_config(mqtt_broker, tmp_path, "dev-a", password), "dev-a", store)
    up.start()
    assert up.connected.wait(20)
    up.stop()
    sub = mqtt_broker.subscribe("rlsmon/v1/dev-a/status")
    topic, payload, retain = sub.get(10)
    assert payload == b"offline" and retain
    sub.close()


def test_broker_down_at_boot_is_normal(mqtt_broker, store, tmp_path):
    password = mqtt_broker.add_device("dev-a")
    mqtt_broker.stop()
    put_summary(store, "dev-a", "2026-03-01")
    up = Uplink(broker_config(mqtt_broker, tmp_path, "dev-a", password), "dev-a", store, max_retry_s=1)
    up.start()
    try:
        assert not up.connected.wait(1.5)
        assert store.outbox_count() == 1
        mqtt_broker.start()
        wait_for(lambda: store.outbox_count() == 0, what="the outbox to drain after the broker came back")
    finally:
        up.stop()


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
    up = Uplink(cfg, "dev-b", store, max_retry_s=0.5)
    with caplog.at_level(logging.INFO, logger="device.uplink"):
        up.start()
        wait_for(lambda: "refused the summary" in caplog.text, what="the ACL refusal log line")
    assert store.outbox_count() == 1
    published = threading.Event()
    up.on_sent = lambda row: published.set()
    assert not published.wait(1.0)
    assert up._thread.is_alive()
    up.stop()

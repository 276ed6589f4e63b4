"""One identity per client, against the real broker (firmware_config/mosquitto.conf binds each client
id to its username): no device credential can take over, wipe or kick off another client's session,
and the ACL lets a device read only its own receipts."""

from __future__ import annotations

import queue
import threading

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from server.db import open_db
from tests.server.payloads import encode, make_summary


def connect(broker, username: str, password: str, client_id: str):
    """A clean-start connection asking for `client_id`; returns the connected client."""
    c = broker.client(username, password, client_id=client_id)
    result: queue.Queue = queue.Queue()
    c.on_connect = lambda client, userdata, flags, reason_code, props: result.put(reason_code)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    c.connect(broker.host, broker.port, clean_start=True, properties=props)
    c.loop_start()
    assert not result.get(timeout=10).is_failure
    return c


def close(c) -> None:
    c.disconnect()
    c.loop_stop()


def takeovers(broker, client_id: str) -> int:
    """How often mosquitto closed `client_id`'s connection for a newcomer with the same id."""
    return broker.log_file.read_text().count(f"Client {client_id} already connected")


def summaries(collector, n: int) -> list[str]:
    kinds = []
    while len(kinds) < n:
        topic, outcome = collector.next(20)
        if topic.endswith("/summary"):
            kinds.append(outcome.kind)
    return kinds


def test_a_device_credential_cannot_wipe_the_collectors_session_or_its_queued_nights(
    start_collector, device, mqtt_broker, tmp_path
):
    start_collector().stop()  # the broker now holds the collector's persistent session
    dev = device("dev-a")
    nights = [make_summary("dev-a", f"2026-02-0{d}") for d in (1, 2)]
    for night in nights:
        assert not dev.summary(encode(night)).is_failure
    mallory = mqtt_broker.add_device("dev-m")
    for client_id in (mqtt_broker.collector_user, "rlsmon-collector", "dev-a"):
        close(connect(mqtt_broker, "dev-m", mallory, client_id))  # clean start, session expiry 0
    collector = start_collector()
    assert summaries(collector, 2) == ["stored", "stored"]
    stored = {r["summary_id"] for r in open_db(tmp_path / "server.db")["nights"].rows}
    assert stored == {n["summary_id"] for n in nights}


def test_a_device_credential_cannot_kick_off_the_connected_collector_or_another_device(
    start_collector, device, mqtt_broker
):
    collector = start_collector()
    dev = device("dev-a")
    mallory = mqtt_broker.add_device("dev-m")
    disconnected = threading.Event()
    collector.collector._client.on_disconnect = lambda *args: disconnected.set()
    dev.client.on_disconnect = lambda *args: disconnected.set()
    intruders = [connect(mqtt_broker, "dev-m", mallory, client_id)
                 for client_id in (mqtt_broker.collector_user, "dev-a")]
    # Both are still connected: the next night goes from dev-a through the collector's session.
    assert not dev.summary(encode(make_summary("dev-a", "2026-03-01"))).is_failure
    assert summaries(collector, 1) == ["stored"]
    assert not disconnected.is_set()
    assert takeovers(mqtt_broker, mqtt_broker.collector_user) == takeovers(mqtt_broker, "dev-a") == 0
    for c in intruders:
        close(c)


def test_a_device_reads_only_its_own_receipts_and_cannot_write_anothers(device, mqtt_broker):
    mallory = device("dev-m")
    got: queue.Queue = queue.Queue()
    subscribed: queue.Queue = queue.Queue()
    mallory.client.on_message = lambda c, u, m: got.put(m.topic)
    mallory.client.on_subscribe = lambda c, u, mid, codes, p: subscribed.put(codes)
    mallory.client.subscribe([("rlsmon/v1/dev-a/receipt", 1), ("rlsmon/v1/dev-m/receipt", 1)])
    subscribed.get(timeout=10)  # mosquitto 2 grants it, and then delivers only what the ACL lets it read
    as_collector = mqtt_broker.client(mqtt_broker.collector_user, mqtt_broker.collector_password)
    as_collector.connect(mqtt_broker.host, mqtt_broker.port)
    as_collector.loop_start()
    try:
        for topic in ("rlsmon/v1/dev-a/receipt", "rlsmon/v1/dev-m/receipt"):
            as_collector.publish(topic, b"{}", qos=1).wait_for_publish(10)
        # One publisher's messages arrive in order: once its own is here, dev-a's would have been.
        assert got.get(timeout=10) == "rlsmon/v1/dev-m/receipt"
        assert got.empty()
    finally:
        as_collector.disconnect()
        as_collector.loop_stop()
    assert mallory.publish("rlsmon/v1/dev-a/receipt", b"{}").is_failure

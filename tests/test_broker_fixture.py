"""The broker fixture enforces what production enforces: TLS, passwords, and the per-device ACL."""

from __future__ import annotations

import queue

import pytest


def test_device_reaches_collector_on_its_own_topic(mqtt_broker):
    sub = mqtt_broker.subscribe("rlsmon/v1/#")
    password = mqtt_broker.add_device("dev-a")
    c = mqtt_broker.client("dev-a", password)
    c.connect(mqtt_broker.host, mqtt_broker.port)
    c.loop_start()
    c.publish("rlsmon/v1/dev-a/summary", b"{}", qos=1).wait_for_publish(10)
    assert sub.get() == ("rlsmon/v1/dev-a/summary", b"{}", False)
    c.disconnect()
    c.loop_stop()
    sub.close()


def test_acl_stops_a_device_writing_as_another(mqtt_broker):
    sub = mqtt_broker.subscribe("rlsmon/v1/#")
    password = mqtt_broker.add_device("dev-a")
    c = mqtt_broker.client("dev-a", password)
    c.connect(mqtt_broker.host, mqtt_broker.port)
    c.loop_start()
    c.publish("rlsmon/v1/dev-b/summary", b"forged", qos=1).wait_for_publish(10)
    c.publish("rlsmon/v1/dev-a/summary", b"mine", qos=1).wait_for_publish(10)
    # Messages from one client arrive in order, so once "mine" is here "forged" would have been too.
    assert sub.get() == ("rlsmon/v1/dev-a/summary", b"mine", False)
    with pytest.raises(queue.Empty):
        sub.messages.get_nowait()
    c.disconnect()
    c.loop_stop()
    sub.close()


def test_wrong_password_is_refused(mqtt_broker):
    mqtt_broker.add_device("dev-a")
    codes: queue.Queue = queue.Queue()
    c = mqtt_broker.client("dev-a", "not-the-password")
    c.on_connect = lambda client, userdata, flags, reason_code, props: codes.put(reason_code)
    c.connect(mqtt_broker.host, mqtt_broker.port)
    c.loop_start()
    assert codes.get(timeout=10).is_failure
    c.loop_stop()


def test_persistent_session_survives_a_broker_restart(mqtt_broker):
    received: queue.Queue = queue.Queue()
    subscribed = queue.Queue()

    def collector():
        c = mqtt_broker.client(
            mqtt_broker.collector_user, mqtt_broker.collector_password, client_id="collector-test"
        )
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("rlsmon/v1/+/summary", qos=1)
        c.on_subscribe = lambda cl, u, mid, rcs, p: subscribed.put(True)
        c.on_message = lambda cl, u, m: received.put(m.payload)
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 7 * 24 * 3600
        c.connect(mqtt_broker.host, mqtt_broker.port, clean_start=False, properties=props)
        c.loop_start()
        subscribed.get(timeout=10)
        return c

    c = collector()
    c.disconnect()
    c.loop_stop()
    password = mqtt_broker.add_device("dev-a")
    d = mqtt_broker.client("dev-a", password)
    d.connect(mqtt_broker.host, mqtt_broker.port)
    d.loop_start()
    d.publish("rlsmon/v1/dev-a/summary", b"night", qos=1).wait_for_publish(10)
    d.disconnect()
    d.loop_stop()
    mqtt_broker.stop()
    mqtt_broker.start()
    c = collector()
    assert received.get(timeout=10) == b"night"
    c.disconnect()
    c.loop_stop()

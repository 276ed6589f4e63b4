"""Server test helpers around the real broker (tests/conftest.py's `mqtt_broker`)."""

from __future__ import annotations

import queue
import threading

import pytest

from server.collector import Collector, Outcome
from server.config import MqttConfig


class RunningCollector:
    """A real Collector on a real broker; `outcomes` receives (topic, Outcome) after each commit."""

    def __init__(self, broker, db_path, validators: int = 0, *, username: str | None = None,
                 share_group: str = "", **options) -> None:
        self.outcomes: queue.Queue = queue.Queue()
        username = username or broker.collector_user
        config = MqttConfig(
            host=broker.host, port=broker.port, ca_file=str(broker.ca_file),
            username=username, keepalive_s=10, share_group=share_group,
        )
        self.collector = Collector(
            db_path, config, broker.passwords[username],
            validators=validators, on_outcome=lambda topic, outcome: self.outcomes.put((topic, outcome)),
            **options,
        )

    def start(self) -> RunningCollector:
        self.collector.start()
        assert self.collector.connected.wait(10), "collector did not connect"
        assert self.collector.subscribed.wait(10), "collector did not subscribe"
        return self

    def stop(self) -> None:
        self.collector.stop()

    def next(self, timeout_s: float = 10) -> tuple[str, Outcome]:
        return self.outcomes.get(timeout=timeout_s)


class Device:
    """A device's MQTT client: publishes at QoS 1 and waits for the broker's PUBACK."""

    def __init__(self, broker, device_id: str, password: str | None = None) -> None:
        self.device_id = device_id
        password = password or broker.add_device(device_id)
        self._acks: dict[int, threading.Event] = {}
        self.reason_codes: dict[int, object] = {}
        self._lock = threading.Lock()
        self.client = broker.client(device_id, password, client_id=f"device-{device_id}")
        self.client.on_publish = self._on_publish
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: connected.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert connected.wait(10), f"{device_id} did not connect"

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self.reason_codes[mid] = reason_code
            self._acks.setdefault(mid, threading.Event()).set()

    def publish(self, topic: str, payload: bytes, retain: bool = False):
        """Publish at QoS 1 and return the PUBACK's reason code."""
        with self._lock:
            info = self.client.publish(topic, payload, qos=1, retain=retain)
            done = self._acks.setdefault(info.mid, threading.Event())
        assert done.wait(10), f"no PUBACK for {topic}"
        return self.reason_codes[info.mid]

    def summary(self, payload: bytes):
        return self.publish(f"rlsmon/v1/{self.device_id}/summary", payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def start_collector(mqtt_broker, db_target):
    running: list[RunningCollector] = []

    def start(validators: int = 0, **options) -> RunningCollector:
        """Start a collector; `options` go to `RunningCollector` (username, share_group) and on to
        `Collector` (inbox_bytes, limits)."""
        c = RunningCollector(mqtt_broker, db_target, validators, **options).start()
        running.append(c)
        return c

    yield start
    for c in running:
        c.stop()


@pytest.fixture
def device(mqtt_broker):
    made: list[Device] = []

    def make(device_id: str, password: str | None = None) -> Device:
        d = Device(mqtt_broker, device_id, password)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()

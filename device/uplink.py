"""Store-and-forward uplink: drain the SQLite outbox to the clinic's MQTT broker, exactly once.

paho keeps unsent messages only in memory (paho issue #223), so the outbox in the night store is
the queue: a summary row is deleted only when its PUBACK arrives with a success reason code. With
MQTT v5, mosquitto acknowledges a publish the ACL denied, so the reason code is checked and a
refused summary stays in the outbox to be retried later. Rows go out one at a time, in id order.

paho runs its own network thread (`connect_async` + `loop_start`), reconnecting with backoff for
as long as the broker is away; a broker down at boot is normal. Our drain thread does the store
work and the logging, so no paho callback ever waits on SQLite, and recording never waits on us.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from device.config import BrokerConfig
from device.store import OutboxRow, Store

log = logging.getLogger(__name__)

# MQTT v5 CONNACK reason codes worth a specific hint (MQTT 5.0 spec, section 3.2.2.2).
_CONNACK_HINTS = {
    134: "the broker rejected the username or password: check broker.username and broker.password_file",
    # mosquitto answers a wrong password with 135 rather than 134
    135: "the broker did not accept these credentials: check broker.username and broker.password_file",
    136: "the broker is unavailable: it will be retried",
}
REMINDER_S = 3600.0  # a failure that persists is logged again at most once an hour


def status_topic(device_id: str) -> str:
    """The retained online/offline topic."""
    return f"rlsmon/v1/{device_id}/status"


def summary_topic(device_id: str) -> str:
    """The topic summaries are published on (QoS 1, not retained)."""
    return f"rlsmon/v1/{device_id}/summary"


def probe_tls(host: str, port: int, ca_file: str, timeout_s: float = 5.0) -> str | None:
    """Open a TLS connection as the MQTT client would; None when it works, else what went wrong."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        return f"cannot load the CA file {ca_file} ({exc}): check broker.ca_file"
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw:
            with context.wrap_socket(raw, server_hostname=host):
                return None
    except ssl.SSLCertVerificationError as exc:
        return (f"TLS to {host}:{port} failed: {exc.verify_message}: the broker's certificate is not "
                f"signed by broker.ca_file ({ca_file}) or does not name {host}")
    except ssl.SSLError as exc:
        return f"TLS to {host}:{port} failed ({exc.reason}): check that port {port} is the broker's TLS listener"
    except OSError as exc:
        return f"cannot reach the broker at {host}:{port} ({exc.strerror or exc}): it will be retried"


@dataclass
class _InFlight:
    mid: int
    row: OutboxRow


class Uplink:
    """Drains `store`'s outbox to the broker. `start()` returns at once; nothing here blocks."""

    def __init__(self, broker: BrokerConfig, device_id: str, store: Store, *, min_retry_s: float = 1.0,
                 max_retry_s: float = 300.0, on_sent: Callable[[OutboxRow], None] | None = None) -> None:
        self.broker, self.device_id, self.store = broker, device_id, store
        self.username = broker.username or device_id
        self.min_retry_s, self.max_retry_s = min_retry_s, max_retry_s
        self.on_sent = on_sent
        self.connected = threading.Event()
        self._client: Any = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._acks: dict[int, Any] = {}
        self._acks_lock = threading.Lock()
        self._connack: Any = None
        self._connect_failed = False
        self._inflight: _InFlight | None = None
        self._refused_until = 0.0
        self._refusals = 0
        self._said: dict[str, tuple[str, float]] = {}
        self._was_connected = False
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the drain thread; it connects (and reconnects) in the background."""
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        """Something new is in the outbox."""
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Say `offline` (retained) if connected, disconnect and stop the threads."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        client = self._client
        if client is None:
            return
        if self.connected.is_set():
            info = client.publish(status_topic(self.device_id), "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError):
                pass  # lost the connection meanwhile: the will says offline instead
        client.disconnect()
        client.loop_stop()

    # --- paho callbacks (paho's thread: record and wake, never block) --------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._connack = reason_code
            self._wake.set()
            return
        self._connack = None
        self._connect_failed = False
        self.connected.set()
        client.publish(status_topic(self.device_id), "online", qos=1, retain=True)
        self._wake.set()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._connect_failed = True
        self._wake.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.connected.clear()
        self._wake.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._acks_lock:
            self._acks[mid] = reason_code
        self._wake.set()

    # --- the drain thread -----------------------------------------------------------------------
    def _say(self, topic: str, level: int, message: str) -> None:
        """Log `message` unless it was just said about `topic` (a broker away for days is one line
        an hour, not one per retry)."""
        last = self._said.get(topic)
        now = time.monotonic()
        if last is None or last[0] != message or now - last[1] >= REMINDER_S:
            log.log(level, "%s", message)
            self._said[topic] = (message, now)

    def _make_client(self) -> Any:
        import paho.mqtt.client as mqtt

        try:
            with open(self.broker.password_file, encoding="utf-8") as f:
                password = f.read().strip()
        except OSError as exc:
            self._say("setup", logging.ERROR, f"uplink: cannot read broker.password_file "
                      f"{self.broker.password_file} ({exc.strerror or exc}); retrying")
            return None
        try:
            context = ssl.create_default_context(cafile=self.broker.ca_file)
        except (OSError, ssl.SSLError) as exc:
            self._say("setup", logging.ERROR, f"uplink: cannot load broker.ca_file {self.broker.ca_file} "
                      f"({exc}); retrying")
            return None
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.device_id, protocol=mqtt.MQTTv5)
        client.tls_set_context(context)
        client.username_pw_set(self.username, password)
        client.will_set(status_topic(self.device_id), "offline", qos=1, retain=True)
        client.reconnect_delay_set(self.min_retry_s, self.max_retry_s)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.connect_async(self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s)
        client.loop_start()
        self._said.pop("setup", None)
        log.info("uplink: connecting to %s:%d as %s", self.broker.host, self.broker.port, self.username)
        return client

    def _run(self) -> None:
        retry_s = self.min_retry_s
        while not self._stop.is_set():
            try:
                if self._client is None:
                    self._client = self._make_client()
                    if self._client is None:
                        self._wake.wait(retry_s)
                        self._wake.clear()
                        retry_s = min(retry_s * 2, self.max_retry_s)
                        continue
                self._report_connection()
                self._drain()
            except Exception:  # never let the uplink die: recording does not depend on it
                log.exception("uplink: unexpected error; retrying")
            self._wake.wait(self._next_wait_s())
            self._wake.clear()

    def _next_wait_s(self) -> float:
        if self._refused_until:
            return max(0.05, min(self.max_retry_s, self._refused_until - time.monotonic()))
        return self.max_retry_s

    def _report_connection(self) -> None:
        if self.connected.is_set() != self._was_connected:
            self._was_connected = self.connected.is_set()
            if self._was_connected:
                log.info("uplink: connected to %s:%d", self.broker.host, self.broker.port)
                self._said.pop("connection", None)
            else:
                log.warning("uplink: lost the connection to the broker; retrying")
        if self._was_connected:
            return
        if self._connack is not None:
            code = self._connack
            hint = _CONNACK_HINTS.get(code.value, "it will be retried")
            self._say("connection", logging.ERROR,
                      f"uplink: broker {self.broker.host}:{self.broker.port} refused the connection "
                      f"for user {self.username}: {code.getName()}; {hint}")
        elif self._connect_failed:
            problem = probe_tls(self.broker.host, self.broker.port, self.broker.ca_file)
            if problem is not None:
                self._say("connection", logging.WARNING, "uplink: " + problem)

    def _drain(self) -> None:
        if self._inflight is not None:
            with self._acks_lock:
                code = self._acks.pop(self._inflight.mid, None)
            if code is None:
                return  # still waiting; paho resends it after a reconnect
            row, self._inflight = self._inflight.row, None
            if code.is_failure:
                self._refusals += 1
                delay_s = min(self.max_retry_s, self.min_retry_s * 2 ** min(self._refusals, 20))
                self._refused_until = time.monotonic() + delay_s
                self._say("refused", logging.ERROR,
                          f"uplink: broker refused the summary for night {row.night} on {row.topic}: "
                          f"{code.getName()}; user {self.username} may publish only under "
                          f"rlsmon/v1/{self.username}/ (check device_id and broker.username); kept, retrying")
                return
            self._refusals, self._refused_until = 0, 0.0
            self._said.pop("refused", None)
            self.store.outbox_delete(row.id)
            log.info("uplink: summary for night %s acknowledged", row.night)
            if self.on_sent is not None:
                self.on_sent(row)
        with self._acks_lock:  # nothing is in flight, so these are the status messages' PUBACKs
            codes, self._acks = list(self._acks.values()), {}
        for code in codes:
            if code.is_failure:
                self._say("status", logging.ERROR, f"uplink: broker refused the status message: "
                          f"{code.getName()}")
        if not self.connected.is_set() or time.monotonic() < self._refused_until:
            return
        row = self.store.outbox_next()
        if row is None:
            return
        info = self._client.publish(row.topic, row.payload, qos=1)
        self._inflight = _InFlight(info.mid, row)
        self._wake.set()  # its PUBACK may have arrived before the mid was recorded

    def waiting(self) -> int:
        """Summaries not yet acknowledged."""
        return self.store.outbox_count()

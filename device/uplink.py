"""Store-and-forward uplink: drain the SQLite outbox to the clinic, until the collector's receipt.

paho keeps unsent messages only in memory (paho issue #223), so the outbox in the night store is
the queue. A broker's PUBACK is not a receipt: mosquitto saves what it holds only every autosave
interval, so a kill -9 of the broker can lose a night it has acknowledged. A summary row is deleted
only when the collector, having committed the night, sends a receipt naming its `summary_id` on
`rlsmon/v1/<device_id>/receipt` (docs/receipts.md). Until then it is sent again with a capped,
jittered exponential backoff, and at once after every reconnect; ingest is idempotent, so a copy
costs nothing but a second receipt. The receipt subscription lives in a persistent session, so a
receipt sent while the device was offline reaches it. With MQTT v5, mosquitto acknowledges a
publish its ACL denied, so the PUBACK's reason code is checked and logged.

The retained status (`status_payload()`, docs/summary.md "Device status") carries `at`, the time
the connection it speaks of began: `online` on connecting, and `offline` as the will and the
goodbye of the same connection, so the collector can order statuses that arrive out of order.

Two threads: the network thread runs paho's network loop (`_network`), reconnecting with backoff
for as long as the broker is away (a broker down at boot is normal); the drain thread does the store
work and the logging, so no paho callback ever waits on SQLite, and recording never waits on us.
The network loop is ours rather than paho's `loop_start()`, whose select and reconnect waits wake
every second (issue 14, item 5): ours wakes only for traffic, for a publish (paho's socketpair), at
the keepalive deadline and for a reconnect.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from device.config import BrokerConfig
from device.store import Store

log = logging.getLogger(__name__)

# MQTT v5 CONNACK reason codes worth a specific hint (MQTT 5.0 spec, section 3.2.2.2).
_CONNACK_HINTS = {
    134: "the broker rejected the username or password: check broker.username and broker.password_file",
    # mosquitto answers a wrong password with 135 rather than 134
    135: "the broker did not accept these credentials: check broker.username and broker.password_file",
    136: "the broker is unavailable: it will be retried",
}
REMINDER_S = 3600.0  # a failure that persists is logged again at most once an hour
RECEIPT_SCHEMA = "rlsmon.receipt/1"
RECEIPT_STATUSES = ("stored", "duplicate")  # both mean: committed to the clinic's database


def status_topic(device_id: str) -> str:
    """The retained online/offline topic."""
    return f"rlsmon/v1/{device_id}/status"


def summary_topic(device_id: str) -> str:
    """The topic summaries are published on (QoS 1, not retained)."""
    return f"rlsmon/v1/{device_id}/summary"


def sit_topic(device_id: str) -> str:
    """The topic evening-test results (`rlsmon.sit/1`, docs/sit.md) are published on: QoS 1, not
    retained, through the same outbox and receipt as summaries."""
    return f"rlsmon/v1/{device_id}/sit"


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


RESEND_S = 60.0  # the first re-send, when no receipt came within a minute of sending
MAX_RESEND_S = 3600.0  # re-sends back off exponentially up to once an hour
SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps our receipt subscription and receipts this long


def _keepalive_wait_s(client: Any) -> float:
    """How long paho's loop may sleep before its keepalive work is due: paho sends PINGREQ (or gives
    up on a PINGRESP) once `keepalive` seconds have passed since the last packet out or the last bytes
    in (paho 2.x `_check_keepalive`, which reads these attributes; pinned `paho-mqtt<3`)."""
    import paho.mqtt.client as mqtt

    deadline = min(client._last_msg_out, client._last_bytes_received) + client.keepalive
    if client._ping_t:
        deadline = min(deadline, client._ping_t + client.keepalive)
    return max(0.0, deadline - mqtt.time_func())


def status_payload(status: str, at: dt.datetime) -> bytes:
    """The retained status message: `{"status": "online"|"offline", "at": <ISO 8601 UTC>}`."""
    return json.dumps({"status": status, "at": at.astimezone(dt.timezone.utc).isoformat()}).encode()


def receipt_topic(device_id: str) -> str:
    """The topic the collector's receipts arrive on (QoS 1; docs/receipts.md)."""
    return f"rlsmon/v1/{device_id}/receipt"


def parse_receipt(payload: bytes) -> str | None:
    """The `summary_id` of a receipt (`schema: "rlsmon.receipt/1"`), or None if it is not one."""
    try:
        receipt = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(receipt, dict) or receipt.get("schema") != RECEIPT_SCHEMA:
        return None
    summary_id = receipt.get("summary_id")
    return summary_id if isinstance(summary_id, str) and receipt.get("status") in RECEIPT_STATUSES else None


def resend_delay_s(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """How long to wait for a receipt after send number `attempt` (1, 2, …) before sending again:
    exponential from `base_s`, capped at `cap_s`, jittered down by up to half so that a fleet that
    lost the collector together does not re-send in step."""
    return min(cap_s, base_s * 2 ** min(attempt - 1, 30)) * (1.0 - 0.5 * rng.random())


@dataclass
class _Sending:
    """A waiting summary's re-send state (in memory: after a restart, everything is due at once)."""

    summary_id: str
    night: str
    attempts: int = 0
    due: float = 0.0  # when it goes (again), on the uplink's clock
    mid: int | None = None  # the publish still waiting for its PUBACK, if any


class Uplink:
    """Drains `store`'s outbox to the broker. `start()` returns at once; nothing here blocks.

    `resend_s` and `max_resend_s` set the re-send backoff (`resend_delay_s`); `monotonic` is the
    clock it runs on and `rng` its jitter, both injectable for tests.
    """

    def __init__(self, broker: BrokerConfig, device_id: str, store: Store, *, min_retry_s: float = 1.0,
                 max_retry_s: float = 300.0, resend_s: float = RESEND_S, max_resend_s: float = MAX_RESEND_S,
                 on_receipt: Callable[[str], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self.broker, self.device_id, self.store = broker, device_id, store
        self.username = broker.username or device_id
        self.min_retry_s, self.max_retry_s = min_retry_s, max_retry_s
        self.resend_s, self.max_resend_s = resend_s, max_resend_s
        self.on_receipt = on_receipt
        self.monotonic = monotonic
        self.rng = rng or random.Random()
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # the receipt subscription is granted on this connection
        self._client: Any = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards _acks, _receipts and _reconnected (paho's thread writes them)
        self._acks: dict[int, Any] = {}
        self._receipts: list[bytes] = []
        self._reconnected = False
        self._connack: Any = None
        self._connect_failed = False
        self._sending: dict[int, _Sending] = {}  # by outbox row id
        self._said: dict[str, tuple[str, float]] = {}
        self._was_connected = False
        # The start of the current (or next) connection: the `at` of its statuses and its will.
        self._connection_at = dt.datetime.now(dt.timezone.utc)
        self._thread: threading.Thread | None = None
        self._network_thread: threading.Thread | None = None
        self._closing = threading.Event()  # stop(): the network thread ends once the socket is closed
        self._retry_s = min_retry_s  # the network thread's reconnect backoff

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the drain thread; it connects (and reconnects) in the background."""
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        """Something new is in the outbox (or the clock moved): look again now."""
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Say `offline` (retained) if connected, disconnect and stop the threads. The broker keeps
        the session, so a receipt sent meanwhile waits for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        client = self._client
        if client is None:
            return
        if self.connected.is_set():
            info = client.publish(status_topic(self.device_id), status_payload("offline", self._connection_at),
                                  qos=1, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError):
                pass  # lost the connection meanwhile: the will says offline instead
        self._closing.set()
        client.disconnect()
        if self._network_thread is not None:
            self._network_thread.join(timeout_s)

    # --- paho callbacks (paho's thread: record and wake, never block) --------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._connack = reason_code
            self._wake.set()
            return
        self._connack = None
        self._connect_failed = False
        self._retry_s = self.min_retry_s
        # Again on every connect: harmless when the session was kept, needed when the broker lost it.
        client.subscribe(receipt_topic(self.device_id), qos=1)
        client.publish(status_topic(self.device_id), status_payload("online", self._connection_at), qos=1, retain=True)
        with self._lock:
            self._reconnected = True
        self.connected.set()
        self._wake.set()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._connect_failed = True
        self._wake.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        # The next connection is later than this one: so are its statuses and its will.
        self._arm_will(client, dt.datetime.now(dt.timezone.utc))
        self.connected.clear()
        self.subscribed.clear()
        self._wake.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: list[Any], properties: Any) -> None:
        if any(rc.is_failure for rc in reason_codes):
            self._say("subscribe", logging.ERROR,
                      f"uplink: the broker refused the receipt subscription {receipt_topic(self.device_id)} "
                      f"({', '.join(rc.getName() for rc in reason_codes)}): its ACL needs "
                      "`pattern read rlsmon/v1/%u/receipt` (rlsmon-server add-device adds it); summaries are "
                      "kept and re-sent until receipts arrive")
        else:
            self.subscribed.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._lock:
            self._acks[mid] = reason_code
        self._wake.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        # paho acknowledges it when this returns; if we die before the store drops the summary, the
        # summary is sent again and the collector receipts it again.
        with self._lock:
            self._receipts.append(bytes(message.payload))
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
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

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
        # The broker makes the username the client id (use_username_as_clientid); ask for the same.
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.username, protocol=mqtt.MQTTv5)
        client.tls_set_context(context)
        client.username_pw_set(self.username, password)
        self._arm_will(client, dt.datetime.now(dt.timezone.utc))
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        # A persistent session: a receipt the collector sends while we are away waits at the broker.
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        client.connect_async(self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s,
                             clean_start=False, properties=properties)
        # With a write callback set, publish() from the drain thread only queues its packet and wakes
        # the network thread through paho's socketpair; without one, paho (no loop_start() thread)
        # would write to the socket from the drain thread, racing the network thread.
        client.on_socket_register_write = lambda *_: None
        self._network_thread = threading.Thread(target=self._network, args=(client,), name="uplink-mqtt",
                                                daemon=True)
        self._network_thread.start()
        self._said.pop("setup", None)
        log.info("uplink: connecting to %s:%d as %s", self.broker.host, self.broker.port, self.username)
        return client

    def _network(self, client: Any) -> None:
        """paho's network loop, until `stop()`: `loop()` (select on the socket and paho's socketpair,
        then read, write and keepalive), with the select's timeout set by the keepalive deadline,
        and reconnects with a doubling backoff from `min_retry_s` to `max_retry_s`."""
        while True:
            if client.socket() is None:
                if self._closing.is_set():
                    return
                try:
                    client.reconnect()  # TCP and TLS (paho's connect timeout), then CONNECT
                except OSError:
                    self._on_connect_fail(client, None)
                    self._backoff()
                    continue
            try:
                ended = client.loop(_keepalive_wait_s(client)) != 0
            except Exception:  # never let the uplink die: recording does not depend on it
                log.exception("uplink: unexpected error in the network loop; retrying")
                ended = True
            if ended:
                self._backoff()  # the connection ended (on_disconnect has run), or was refused

    def _backoff(self) -> None:
        # The first wait after a working connection is min_retry_s (on_connect resets it), as paho's.
        if self._closing.wait(self._retry_s):
            return
        self._retry_s = min(self._retry_s * 2, self.max_retry_s)

    def _arm_will(self, client: Any, at: dt.datetime) -> None:
        # paho sends the will set now with its next CONNECT.
        self._connection_at = at
        client.will_set(status_topic(self.device_id), status_payload("offline", at), qos=1, retain=True)

    def _run(self) -> None:
        retry_s = self.min_retry_s
        while not self._stop.is_set():
            wait_s = self.max_retry_s
            try:
                if self._client is None:
                    self._client = self._make_client()
                    if self._client is None:
                        self._wake.wait(retry_s)
                        self._wake.clear()
                        retry_s = min(retry_s * 2, self.max_retry_s)
                        continue
                self._report_connection()
                self._take_receipts()
                self._take_acks()
                wait_s = self._send_due()
            except Exception:  # never let the uplink die: recording does not depend on it
                log.exception("uplink: unexpected error; retrying")
            self._wake.wait(wait_s)
            self._wake.clear()

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

    def _take_receipts(self) -> None:
        with self._lock:
            receipts, self._receipts = self._receipts, []
        for payload in receipts:
            summary_id = parse_receipt(payload)
            if summary_id is None:
                log.warning("uplink: ignored a message on %s that is not a %s receipt",
                            receipt_topic(self.device_id), RECEIPT_SCHEMA)
                continue
            night = self.store.receipt(summary_id, dt.datetime.now(dt.timezone.utc).isoformat())
            if night is None:  # a second receipt for a re-sent summary, or not ours: nothing to drop
                log.info("uplink: receipt for summary %s, which is not waiting; ignored", summary_id)
                continue
            self._sending = {k: v for k, v in self._sending.items() if v.summary_id != summary_id}
            log.info("uplink: summary for night %s receipted by the collector", night)
            if self.on_receipt is not None:
                self.on_receipt(night)

    def _take_acks(self) -> None:
        with self._lock:
            acks, self._acks = self._acks, {}
            reconnected, self._reconnected = self._reconnected, False
        by_mid = {s.mid: s for s in self._sending.values() if s.mid is not None}
        for mid, code in acks.items():
            sending = by_mid.get(mid)
            if sending is None:  # a status message's PUBACK
                if code.is_failure:
                    self._say("status", logging.ERROR, f"uplink: broker refused the status message: {code.getName()}")
                continue
            sending.mid = None
            # With MQTT v5, mosquitto acknowledges a publish its ACL denied: the reason code says so.
            if code.is_failure:
                self._say("refused", logging.ERROR,
                          f"uplink: broker refused the summary for night {sending.night}: {code.getName()}; "
                          f"user {self.username} may publish only under rlsmon/v1/{self.username}/ (check "
                          "device_id and broker.username); kept, retrying")
            else:
                self._said.pop("refused", None)
                log.info("uplink: summary for night %s handed to the broker; kept until the collector's receipt",
                         sending.night)
        if reconnected:  # the broker may have lost what it held: send what is waiting now
            now = self.monotonic()
            for sending in self._sending.values():
                sending.due = min(sending.due, now)

    def _send_due(self) -> float:
        """Publish each waiting summary whose time has come; returns how long to sleep."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        wait_s = self.max_retry_s
        if not self.connected.is_set():
            return wait_s
        now = self.monotonic()
        published = False
        for waiting in self.store.outbox_waiting():
            sending = self._sending.setdefault(waiting.id, _Sending(waiting.summary_id, waiting.night, due=now))
            if sending.mid is not None:
                continue  # paho re-sends it after a reconnect; its PUBACK is still to come
            if sending.due > now:
                wait_s = min(wait_s, sending.due - now)
                continue
            row = self.store.outbox_row(waiting.id)  # only a summary that goes is read whole
            if row is None:
                continue
            sending.attempts += 1
            delay_s = resend_delay_s(sending.attempts, self.resend_s, self.max_resend_s, self.rng)
            sending.due = now + delay_s
            wait_s = min(wait_s, delay_s)
            # The copy expires at the broker once the next one is surely queued, so a collector away
            # for a week finds about two copies of each night waiting, not one per re-send.
            properties = Properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = int(2 * delay_s) + 1
            sending.mid = self._client.publish(row.topic, row.payload, qos=1, properties=properties).mid
            published = True
            if sending.attempts > 1:
                log.info("uplink: no receipt yet for night %s; sent again (attempt %d)", row.night, sending.attempts)
        if published:
            self._wake.set()  # a PUBACK may have arrived before its mid was recorded
        return wait_s

    def waiting(self) -> int:
        """Summaries not yet receipted by the collector."""
        return self.store.outbox_count()

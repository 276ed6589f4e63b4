"""The collector: every night from MQTT into SQLite exactly once, and nothing lost.

`ingest()` is the whole of the ingest rules, for one message, with no MQTT in it. It is `check()`
(pure validation) followed by `store()` (one transaction):
- A summary on `rlsmon/v1/<id>/summary` is validated against `server.model.NightSummary`, and its
  `device_id` must equal `<id>` (the broker's ACL guarantees who published on `<id>`).
- It is upserted on (device_id, night), its events included (in its JSON), in one transaction. The
  same `summary_id` again is a no-op; a later `generated_at` replaces the stored night; an earlier (or equal, with a
  different id) one is kept in `rejected` with the reason, and the stored night is left alone.
- A status on `rlsmon/v1/<id>/status` (`online`/`offline`, retained) updates the device's status.
- Anything invalid goes to `rejected` with its topic, raw bytes and reason. Bad input never raises.

`Collector` is the MQTT side: a persistent MQTT v5 session (its client id is its username, which
the broker enforces with `use_username_as_clientid`; `clean_start=False`, session expiry ≥ 7 days),
QoS 1 subscriptions renewed in `on_connect`, TLS and a password. paho's network thread only queues
messages (and hands them to validator processes, if any); one writer thread owns the database
connection, commits a batch and only then acknowledges it (`manual_ack`), so the broker forgets a
night only once it is on disk. After the commit, each stored or duplicate summary gets a receipt
(`receipt()`, QoS 1) on its device's `rlsmon/v1/<id>/receipt`: the device keeps a summary until then
(docs/receipts.md). A crash between commit and PUBACK or receipt means a redelivery or a re-send,
which the `summary_id` rule makes a no-op that is receipted again.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import queue
import re
import ssl
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError
from sqlite_utils import Database

from server.config import MqttConfig
from server.db import open_db, utc_now
from server.model import NightSummary

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

SUMMARY_FILTER = "rlsmon/v1/+/summary"
RECEIPT_SCHEMA = "rlsmon.receipt/1"
STATUS_FILTER = "rlsmon/v1/+/status"
_TOPIC = re.compile(r"rlsmon/v1/([a-z0-9][a-z0-9-]{0,62})/(summary|status)")
# Same as mosquitto's limit in firmware_config/mosquitto.conf: far above the largest plausible night
# (20,000 LMs at ~150 bytes), so anything bigger is garbage.
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
MAX_BATCH = 256  # messages committed together; each night is still its own savepoint
# MQTT v5 Receive Maximum: the broker sends at most this many nights before our PUBACKs. Without
# it a week's backlog would arrive at once into memory; with it, a full batch is in flight while
# the previous one commits.
RECEIVE_MAXIMUM = 2 * MAX_BATCH
_MAX_REASON_ERRORS = 5

Kind = Literal["stored", "replaced", "duplicate", "stale", "status", "rejected"]


@dataclass(frozen=True)
class Outcome:
    """What `ingest()` did with a message. `reason` says why for "stale" and "rejected"."""

    kind: Kind
    device_id: str | None = None
    reason: str = ""


class _Refused(Exception):
    """A message that does not meet the contract; its text is the reason stored in `rejected`."""


def _validation_reason(error: ValidationError) -> str:
    # Locations and messages only, never the input values: this text may reach a log.
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
        for e in error.errors(include_url=False, include_input=False)[:_MAX_REASON_ERRORS]
    ]
    more = error.error_count() - len(parts)
    return "invalid summary: " + "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def _touch_device(db: Database, device_id: str, now: str, *, seen: bool) -> None:
    db.execute(
        "INSERT INTO devices (device_id, created_at, last_seen) VALUES (?, ?, ?) "
        "ON CONFLICT (device_id) DO UPDATE SET last_seen = coalesce(excluded.last_seen, last_seen)",
        [device_id, now, now if seen else None],
    )


# Written out rather than Table.upsert(), which introspects the table on every call: this runs
# hundreds of times a second.
_NIGHT_COLUMNS = (
    "device_id", "night", "summary_id", "generated_at", "received_at", "rules", "plm_index", "lm_index",
    "lm_count", "clm_count", "plm_count", "plm_series_count", "time_in_bed_s", "recorded_s",
    "periodicity_index", "severity", "clinically_significant", "summary_json",
)
_UPSERT_NIGHT = (
    f"INSERT INTO nights ({', '.join(_NIGHT_COLUMNS)}) VALUES ({', '.join(':' + c for c in _NIGHT_COLUMNS)}) "
    "ON CONFLICT (device_id, night) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _NIGHT_COLUMNS[2:])
)


@dataclass(frozen=True)
class Checked:
    """The verdict of `check()` on a message: what to store, or why it is refused. Small and
    picklable: a validator process sends back this, not the payload."""

    device_id: str | None = None
    refused: str = ""  # the reason, when the message is refused
    night: dict[str, Any] | None = None  # a valid summary: its `nights` row but for the JSON and received_at
    status: str | None = None  # a valid status
    retained: bool = False


def _check_summary(device_id: str, payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise _Refused(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        night = NightSummary.model_validate_json(payload)
    except ValidationError as e:
        raise _Refused(_validation_reason(e)) from None
    if night.device_id != device_id:
        raise _Refused(f"device_id {night.device_id!r} in the payload differs from {device_id!r} in the topic")
    return {
        "device_id": device_id,
        "night": night.night.isoformat(),
        "summary_id": str(night.summary_id),
        "generated_at": _utc(night.generated_at),
        "rules": night.rules,
        "plm_index": night.plm_index,
        "lm_index": night.lm_index,
        "lm_count": night.lm_count,
        "clm_count": night.clm_count,
        "plm_count": night.plm_count,
        "plm_series_count": night.plm_series_count,
        "time_in_bed_s": night.time_in_bed_s,
        "recorded_s": night.coverage.recorded_s,
        "periodicity_index": night.periodicity_index,
        "severity": night.severity,
        "clinically_significant": night.clinically_significant,
    }


def check(topic: str, payload: bytes, retained: bool = False) -> Checked:
    """Validate one MQTT message against the topic layout and the contract. Pure: no database, no
    I/O; never raises for bad input."""
    match = _TOPIC.fullmatch(topic)
    if match is None:
        return Checked(refused="unexpected topic")
    device_id, kind = match.groups()
    try:
        if kind == "summary":
            return Checked(device_id, night=_check_summary(device_id, payload))
        status = payload.decode("utf-8", "replace").strip()
        if status not in ("online", "offline"):
            raise _Refused("status must be 'online' or 'offline'")
        return Checked(device_id, status=status, retained=retained)
    except _Refused as e:
        return Checked(device_id, refused=str(e))
    except Exception as e:  # a bug met by some payload: keep it aside rather than crash on it forever
        # Only the type: an exception's message may quote the payload. The payload is kept in
        # `rejected`, to reproduce the failure from.
        log.error("checking a message on %s failed with %s", topic, type(e).__name__)
        return Checked(device_id, refused=f"could not be checked ({type(e).__name__})")


def receipt(night: dict[str, Any], outcome: Outcome) -> tuple[str, bytes] | None:
    """The receipt (topic, payload) for a committed summary, or None when `outcome` committed
    nothing. `night` is the summary's checked row (`Checked.night`). Contract: docs/receipts.md."""
    if outcome.kind not in ("stored", "replaced", "duplicate"):
        return None
    body = {"schema": RECEIPT_SCHEMA, "summary_id": night["summary_id"], "night": night["night"],
            "status": "duplicate" if outcome.kind == "duplicate" else "stored"}
    return f"rlsmon/v1/{night['device_id']}/receipt", json.dumps(body).encode()


def _store_night(db: Database, row: dict[str, Any], payload: bytes, received_at: str) -> Outcome:
    device_id, night_key, summary_id = row["device_id"], row["night"], row["summary_id"]
    stored = db.execute(
        "SELECT summary_id, generated_at FROM nights WHERE device_id = ? AND night = ?",
        [device_id, night_key],
    ).fetchone()
    _touch_device(db, device_id, received_at, seen=True)
    if stored is not None:
        if stored[0] == summary_id:
            return Outcome("duplicate", device_id)
        if datetime.fromisoformat(stored[1]) >= datetime.fromisoformat(row["generated_at"]):
            return Outcome(
                "stale", device_id,
                f"night {night_key} already stored from summary {stored[0]} generated at {stored[1]}, "
                f"not older than this one ({summary_id}, {row['generated_at']})",
            )
    # The bytes as received (valid UTF-8 JSON by now), so added keys are kept verbatim. The lm_events
    # view reads the events from here (see server/db.py, migration 0002).
    db.execute(_UPSERT_NIGHT, {**row, "summary_json": payload.decode(), "received_at": received_at})
    return Outcome("replaced" if stored is not None else "stored", device_id)


def _store_status(db: Database, device_id: str, status: str, received_at: str, retained: bool) -> Outcome:
    _touch_device(db, device_id, received_at, seen=not retained)
    # A retained status replayed on subscribe is old news: it sets the status, but status_at moves
    # only when the status changes. A live one is the device speaking now.
    db.execute(
        "UPDATE devices SET status = ?, status_at = ? WHERE device_id = ? AND (? OR status IS NOT ?)",
        [status, received_at, device_id, not retained, status],
    )
    return Outcome("status", device_id)


def store(db: Database, topic: str, payload: bytes, checked: Checked, received_at: str | None = None) -> Outcome:
    """Apply a checked message in its own transaction (a savepoint inside a batch): upsert the night
    or the status, or keep a refused or stale message in `rejected`. Only a database failure raises."""
    received_at = received_at or utc_now()
    with db.atomic():
        if checked.refused:
            outcome = Outcome("rejected", checked.device_id, checked.refused)
        elif checked.night is not None:
            outcome = _store_night(db, checked.night, payload, received_at)
        else:
            assert checked.device_id is not None and checked.status is not None
            outcome = _store_status(db, checked.device_id, checked.status, received_at, checked.retained)
        if outcome.kind in ("rejected", "stale"):
            db["rejected"].insert(
                {"received_at": received_at, "topic": topic, "payload": bytes(payload), "reason": outcome.reason}
            )
    return outcome


def ingest(db: Database, topic: str, payload: bytes, *, retained: bool = False, received_at: str | None = None) -> Outcome:
    """Validate and store one MQTT message: `store(db, topic, payload, check(topic, payload, retained))`.

    `retained` marks a retained status replayed by the broker on subscribe: it sets the status but
    is no evidence that the device is alive now, so `last_seen` is left alone. Invalid input is kept
    in `rejected` and returned as an Outcome; only a database failure raises.
    """
    return store(db, topic, payload, check(topic, payload, retained), received_at)


@dataclass(frozen=True)
class _Received:
    topic: str
    payload: bytes
    retained: bool
    mid: int
    qos: int
    connection: int  # which connection delivered it: a PUBACK is only valid on that one
    checking: Future | None  # check() running in a validator process, or None to check inline

    def checked(self) -> Checked:
        return self.checking.result() if self.checking is not None else check(self.topic, self.payload, self.retained)


_STOP = object()


class Collector:
    """The MQTT collector. `start()` connects (retrying in the background while the broker is down);
    `stop()` disconnects, keeping the broker-side session, and drains what was received.

    `validators` > 0 runs `check()` (JSON parsing and validation, most of the work) in that many
    worker processes, so a busy collector uses more than one core; messages are still stored and
    acknowledged in the order they arrived. `on_outcome`, if given, is called on the writer thread
    after each message is committed, for tests and benchmarks to wait on.
    """

    def __init__(
        self,
        db_path: str | Path,
        mqtt_config: MqttConfig,
        password: str,
        *,
        tls_context: ssl.SSLContext | None = None,
        validators: int = 0,
        on_outcome: Any = None,
    ) -> None:
        self.db_path = db_path
        self.config = mqtt_config
        self.on_outcome = on_outcome
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # both subscriptions granted on the current connection
        self.failed = threading.Event()  # the writer hit a database error and stopped
        self._password = password
        self._tls_context = tls_context
        self._inbox: queue.Queue = queue.Queue()
        self._connection = 0
        self._client: mqtt.Client | None = None
        self._writer: threading.Thread | None = None
        self._validators = validators
        self._pool: ProcessPoolExecutor | None = None
        self._receipt_refused = False

    def start(self) -> None:
        """Open the database, start the writer thread and connect in the background."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        db = open_db(self.db_path, check_same_thread=False)  # opened here, used only by the writer
        if self._validators > 0:
            # spawn, not fork: this process already runs threads.
            self._pool = ProcessPoolExecutor(self._validators, mp_context=multiprocessing.get_context("spawn"))
            # Start the workers now: a validator that cannot start fails here, not on the first night.
            self._pool.submit(check, "", b"").result()
        self._writer = threading.Thread(target=self._write_loop, args=(db,), name="rlsmon-writer", daemon=True)
        self._writer.start()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.config.username,  # the broker binds the client id to the username anyway
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.tls_set_context(self._tls_context or ssl.create_default_context(cafile=self.config.ca_file))
        client.username_pw_set(self.config.username, self._password)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish  # we publish only receipts
        connect_properties = Properties(PacketTypes.CONNECT)
        connect_properties.SessionExpiryInterval = self.config.session_expiry_s
        connect_properties.ReceiveMaximum = RECEIVE_MAXIMUM
        client.connect_async(
            self.config.host,
            self.config.port,
            keepalive=self.config.keepalive_s,
            clean_start=False,
            properties=connect_properties,
        )
        self._client = client
        client.loop_start()

    def stop(self) -> None:
        """Disconnect (the broker keeps the session and queues nights meanwhile), then finish writing."""
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self.connected.clear()
        self.subscribed.clear()
        if self._writer is not None:
            self._inbox.put(_STOP)
            self._writer.join()
            self._writer = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self._connection += 1
        # Subscribing again on every connect is harmless with a resumed session and required without.
        # retainHandling=1: retained statuses only for a new subscription, not on every reconnect.
        client.subscribe([
            (SUMMARY_FILTER, SubscribeOptions(qos=1)),
            (STATUS_FILTER, SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)),
        ])
        log.info("connected to %s:%s (session present: %s)", self.config.host, self.config.port, flags.session_present)
        self.connected.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[Any], properties: Any) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("the broker refused the subscriptions (%s): check the collector's ACL", ", ".join(refused))
        else:
            log.info("subscribed to %s and %s", SUMMARY_FILTER, STATUS_FILTER)
            self.subscribed.set()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure and not self._receipt_refused:
            self._receipt_refused = True  # once: it is the ACL, and it says the same for every receipt
            log.error("the broker refused a receipt (%s): the collector's ACL needs `topic write "
                      "rlsmon/v1/+/receipt`; devices keep their nights and re-send them until then", reason_code)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if reason_code.is_failure:
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic, payload, retained = message.topic, bytes(message.payload), bool(message.retain)
        checking = self._pool.submit(check, topic, payload, retained) if self._pool is not None else None
        self._inbox.put(_Received(topic, payload, retained, message.mid, message.qos, self._connection, checking))

    def _write_loop(self, db: Database) -> None:
        try:
            while True:
                item = self._inbox.get()
                if item is _STOP:
                    return
                batch = [item]
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._inbox.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        self._inbox.put(_STOP)  # finish this batch first, then stop
                        break
                    batch.append(item)
                self._commit_and_ack(db, batch)
        except Exception:
            # A database error (disk full, corruption) or a bug. Nothing of the failed batch was
            # acknowledged, so the broker delivers it again once the collector is restarted.
            log.exception("the writer failed; the collector stops without acknowledging the batch")
            self.failed.set()
        finally:
            db.close()

    def _commit_and_ack(self, db: Database, batch: list[_Received]) -> None:
        checked = [m.checked() for m in batch]  # before the transaction: it holds the write lock
        received_at = utc_now()
        # IMMEDIATE takes the write lock up front, so a second collector (MQTT shared subscription)
        # or the dashboard waits its turn instead of failing on a lock upgrade.
        db.execute("BEGIN IMMEDIATE")
        try:
            outcomes = [store(db, m.topic, m.payload, c, received_at) for m, c in zip(batch, checked)]
        except BaseException:
            db.conn.rollback()
            raise
        db.conn.commit()
        client = self._client
        for message, verdict, outcome in zip(batch, checked, outcomes):
            # The receipt first: should we die before it, the broker redelivers the summary (not yet
            # acknowledged) and it is receipted then; paho queues it while we are disconnected.
            answer = receipt(verdict.night, outcome) if verdict.night is not None else None
            if client is not None and answer is not None:
                client.publish(*answer, qos=1)
            if client is not None and message.qos > 0 and message.connection == self._connection:
                client.ack(message.mid, message.qos)
            if outcome.kind in ("rejected", "stale"):
                # The reason is in the rejected table; the log says only where to look.
                log.warning("%s message on %s kept in the rejected table", outcome.kind, message.topic)
            if self.on_outcome is not None:
                self.on_outcome(message.topic, outcome)


def run_collector(config_path: str | Path) -> int:
    """Run the collector from the config file until SIGTERM or SIGINT; return the exit code."""
    import signal

    from server.config import load_config

    config = load_config(config_path)
    password = config.mqtt.password(config_path)
    collector = Collector(config.database.path, config.mqtt, password, validators=config.collector.validators)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    collector.start()
    while not done.is_set() and not collector.failed.is_set():
        done.wait(1.0)
    collector.stop()
    return 1 if collector.failed.is_set() else 0

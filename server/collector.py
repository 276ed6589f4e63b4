"""The collector: every night from MQTT into SQLite exactly once, and nothing lost.

`ingest()` is the whole of the ingest rules, for one message, with no MQTT in it. It is `check()`
(pure validation) followed by `store()` (one transaction):
- A summary on `rlsmon/v1/<id>/summary` is validated against `server.model.NightSummary`, and its
  `device_id` must equal `<id>` (the broker's ACL guarantees who published on `<id>`).
- It is upserted on (device_id, night), its events included (in its JSON), in one transaction. The
  same `summary_id` again with the same content is a no-op, and with other content a "conflict" kept in
  `rejected`; a later `generated_at` replaces the stored night; an earlier (or equal, with a
  different id) one is kept in `rejected` with the reason, and the stored night is left alone.
- Every headline figure must follow from the events and spans of the summary, and no date in it may
  lie in the future (server/consistency.py).
- A status on `rlsmon/v1/<id>/status` (retained) is `{"status": "online"|"offline", "at": <ISO UTC>}`
  (docs/summary.md, "Device status"), or the plain `online`/`offline` of older firmware. It updates
  the device's status only when its `at` is later than the stored one (an `offline` wins a tie:
  the will and the graceful goodbye carry the `at` of the connection they end), so statuses
  delivered out of order, or to two collectors, cannot flip it back.
- An evening test (SIT) on `rlsmon/v1/<id>/sit` is `rlsmon.sit/1` (server/sit.py, docs/sit.md),
  validated, stored, receipted and refused by the same rules as a night, keyed by (device_id, evening).
- Anything invalid goes to `rejected` with its topic, reason, size, SHA-256 and the first bytes of
  its payload, within the bounds of server/rejected.py. Bad input never raises.

`Collector` is the MQTT side: with `[mqtt] share_group` set, it subscribes through the MQTT v5
shared subscription `$share/<group>/…` (`subscription_filters()`), so N collectors on one database
split the messages and each is processed once. A persistent MQTT v5 session (its client id is its username, which
the broker enforces with `use_username_as_clientid`; `clean_start=False`, session expiry ≥ 7 days),
QoS 1 subscriptions renewed in `on_connect`, TLS and a password. paho's network thread only queues
messages (and hands them to validator processes, if any); one writer thread owns the database
connection, commits a batch and only then acknowledges it (`manual_ack`), so the broker forgets a
night only once it is on disk. The commit runs on a committer thread while the writer checks the
next batch (a commit's write and fsync hold no GIL). On SQLite the writer never checkpoints the WAL
itself: a checkpointer thread does (server/db.py, `checkpoint_wal`), beside the next batch instead
of inside a commit. After the commit, each stored or duplicate summary gets a receipt
(`receipt()`, QoS 1) on its device's `rlsmon/v1/<id>/receipt`: the device keeps a summary until then
(docs/receipts.md). A crash between commit and PUBACK or receipt means a redelivery or a re-send,
which the `summary_id` rule makes a no-op that is receipted again.
The queue between them is bounded in bytes (`_Inbox`), so a flood costs neither memory nor disk.
"""

from __future__ import annotations

import collections
import json
import logging
import multiprocessing
import re
import ssl
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError
from sqlite_utils import Database

from server.config import MqttConfig
from server.consistency import CLOCK_SKEW, check_not_future
from server.db import checkpoint_wal, is_postgres, open_db, utc_now
from server.model import NightSummary
from server.rejected import RefusalLog, RejectLimits, count_refused, expire_rejected, keep_rejected, topic_device
from server.sit import check_sit, store_sit

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

SUMMARY_FILTER = "rlsmon/v1/+/summary"
RECEIPT_SCHEMA = "rlsmon.receipt/1"
STATUS_FILTER = "rlsmon/v1/+/status"
SIT_FILTER = "rlsmon/v1/+/sit"  # evening tests, rlsmon.sit/1 (server/sit.py, docs/sit.md)


def subscription_filters(share_group: str = "") -> tuple[str, str]:
    """The (summary, status) topic filters: plain, or shared by the collectors of `share_group`."""
    prefix = f"$share/{share_group}/" if share_group else ""
    return prefix + SUMMARY_FILTER, prefix + STATUS_FILTER


def sit_filter(share_group: str = "") -> str:
    """The evening tests' topic filter, plain or shared as `subscription_filters()` makes them."""
    return subscription_filters(share_group)[0].removesuffix(SUMMARY_FILTER) + SIT_FILTER


_TOPIC = re.compile(r"rlsmon/v1/([a-z0-9][a-z0-9-]{0,62})/(summary|status|sit)")
# Same as mosquitto's message_size_limit in firmware_config/mosquitto.conf: 19% above the largest
# legitimate night (3.36 MiB: 20,000 LMs and 10,000 gaps at their widest), so anything bigger is garbage.
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
MAX_BATCH = 256  # messages committed together; each night is still its own savepoint
# MQTT v5 Receive Maximum: the broker sends at most this many nights before our PUBACKs. Without
# it a week's backlog would arrive at once into memory; with it, a full batch is in flight while
# the previous one commits.
RECEIVE_MAXIMUM = 2 * MAX_BATCH
_MAX_REASON_ERRORS = 5
# At most this much of received messages waits in memory to be stored (server.toml [collector]
# inbox_mib): 4 summaries at the broker's size limit.
DEFAULT_INBOX_BYTES = 16 * 1024 * 1024
EXPIRY_INTERVAL_S = 3600.0  # how often old rejected rows are deleted

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


def _cause(outcome: Outcome) -> str:
    # The category of a refusal, for the log: a reason's head ("invalid summary", "future",
    # "conflict", ...) and never its details, which may name a night.
    if outcome.kind == "stale":
        return "stale: an older version of a stored night"
    return outcome.reason.split(":", 1)[0]


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def _touch_device(db: Database, device_id: str, now: str, *, seen: bool) -> None:
    db.execute(
        "INSERT INTO devices (device_id, created_at, last_seen) VALUES (?, ?, ?) "
        "ON CONFLICT (device_id) DO UPDATE SET last_seen = coalesce(excluded.last_seen, devices.last_seen)",
        [device_id, now, now if seen else None],
    )


# Written out rather than Table.upsert(), which introspects the table on every call: this runs
# hundreds of times a second.
_NIGHT_COLUMNS = (
    "device_id", "night", "summary_id", "generated_at", "received_at", "rules", "plm_index", "lm_index",
    "lm_count", "clm_count", "plm_count", "plm_series_count", "time_in_bed_s", "recorded_s",
    "periodicity_index", "severity", "clinically_significant", "duration_s", "summary_json",
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
    status_at: str | None = None  # its `at` in UTC, or None from older firmware that sends none
    retained: bool = False
    sit: dict[str, Any] | None = None  # a valid evening test: its `sits` row but for the JSON and received_at


def _check_summary(device_id: str, payload: bytes, now: datetime) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise _Refused(f"too large: payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        night = NightSummary.model_validate_json(payload)
    except ValidationError as e:
        raise _Refused(_validation_reason(e)) from None
    if night.device_id != device_id:
        raise _Refused(f"device mismatch: device_id {night.device_id!r} in the payload differs from {device_id!r} in the topic")
    try:
        check_not_future(night, now)
    except ValueError as e:
        raise _Refused(f"future: {e}") from None
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
        "duration_s": night.duration_s,
        "periodicity_index": night.periodicity_index,
        "severity": night.severity,
        "clinically_significant": night.clinically_significant,
    }


_STATUS_SHAPE = "status must be {\"status\": \"online\"|\"offline\", \"at\": <ISO 8601 UTC>} (or plain online/offline)"


def _check_status(payload: bytes, now: datetime) -> tuple[str, str | None]:
    text = payload.decode("utf-8", "replace").strip()
    if text in ("online", "offline"):  # firmware from before the status carried its time
        return text, None
    try:
        body = json.loads(text)
        status, at = body["status"], datetime.fromisoformat(body["at"])
    except (ValueError, TypeError, KeyError):
        raise _Refused(_STATUS_SHAPE) from None
    if status not in ("online", "offline") or at.tzinfo is None:
        raise _Refused(_STATUS_SHAPE)
    # A status from the future would win over every later one until that time came.
    if at > now + CLOCK_SKEW:
        raise _Refused(f"future: status at {_utc(at)} is after the collector's clock")
    # One fixed width, so that stored times compare as strings.
    return status, at.astimezone(timezone.utc).isoformat(timespec="microseconds")


def check(topic: str, payload: bytes, retained: bool = False, now: datetime | None = None) -> Checked:
    """Validate one MQTT message against the topic layout and the contract, with `now` (aware; the
    clock's time when None) to refuse nights dated in the future. No database, no I/O; never raises
    for bad input."""
    now = now or datetime.now(timezone.utc)
    match = _TOPIC.fullmatch(topic)
    if match is None:
        return Checked(refused="unexpected topic")
    device_id, kind = match.groups()
    try:
        if kind == "summary":
            return Checked(device_id, night=_check_summary(device_id, payload, now))
        if kind == "sit":
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise _Refused(f"too large: payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
            try:
                return Checked(device_id, sit=check_sit(device_id, payload, now))
            except ValueError as e:
                raise _Refused(str(e)) from None
        status, status_at = _check_status(payload, now)
        return Checked(device_id, status=status, status_at=status_at, retained=retained)
    except _Refused as e:
        return Checked(device_id, refused=str(e))
    except Exception as e:  # a bug met by some payload: keep it aside rather than crash on it forever
        # Only the type: an exception's message may quote the payload. The payload is kept in
        # `rejected`, to reproduce the failure from.
        log.error("checking a message on %s failed with %s", topic, type(e).__name__)
        return Checked(device_id, refused=f"could not be checked ({type(e).__name__})")


def _same_content(stored_json: str, payload: bytes) -> bool:
    # A re-send carries the same bytes; compare the parsed JSON only when they differ.
    return stored_json.encode() == payload or json.loads(stored_json) == json.loads(payload)


def receipt(night: dict[str, Any], outcome: Outcome) -> tuple[str, bytes] | None:
    """The receipt (topic, payload) for a committed summary or evening test, or None when `outcome`
    committed nothing. `night` is the checked row (`Checked.night`, or `Checked.sit`, whose
    evening the receipt names as its night). Contract: docs/receipts.md."""
    if outcome.kind not in ("stored", "replaced", "duplicate"):
        return None
    body = {"schema": RECEIPT_SCHEMA, "summary_id": night["summary_id"], "night": night.get("night", night.get("evening")),
            "status": "duplicate" if outcome.kind == "duplicate" else "stored"}
    return f"rlsmon/v1/{night['device_id']}/receipt", json.dumps(body).encode()


def _store_night(db: Database, row: dict[str, Any], payload: bytes, received_at: str) -> Outcome:
    device_id, night_key, summary_id = row["device_id"], row["night"], row["summary_id"]
    stored = db.execute(
        "SELECT summary_id, generated_at, summary_json FROM nights WHERE device_id = ? AND night = ?",
        [device_id, night_key],
    ).fetchone()
    _touch_device(db, device_id, received_at, seen=True)
    # summary_id is the idempotency key: the same id must always carry the same night.
    elsewhere = db.execute(
        "SELECT 1 FROM nights WHERE device_id = ? AND summary_id = ? AND night != ?", [device_id, summary_id, night_key]
    ).fetchone()
    if elsewhere is not None or (stored is not None and stored[0] == summary_id and not _same_content(stored[2], payload)):
        return Outcome("rejected", device_id, f"conflict: summary {summary_id} is already stored with different content")
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


def _store_status(db: Database, checked: Checked, received_at: str) -> Outcome:
    device_id, status = checked.device_id, checked.status
    _touch_device(db, device_id, received_at, seen=not checked.retained)
    if checked.status_at is not None:
        # Only a later status counts; at the same `at`, offline (the end of that connection) wins.
        # The devices_latest_change trigger (server/db.py, 0005) carries a change to device_latest.
        db.execute(
            "UPDATE devices SET status = ?, status_at = ? WHERE device_id = ? AND "
            "(status_at IS NULL OR status_at < ? OR (status_at = ? AND ? = 'offline'))",
            [status, checked.status_at, device_id, checked.status_at, checked.status_at, status],
        )
        return Outcome("status", device_id)
    # A retained status replayed on subscribe is old news: it sets the status, but status_at moves
    # only when the status changes. A live one is the device speaking now.
    db.execute(
        "UPDATE devices SET status = ?, status_at = ? WHERE device_id = ? AND (? = 1 OR status IS DISTINCT FROM ?)",
        [status, received_at, device_id, not checked.retained, status],
    )
    return Outcome("status", device_id)


def store(
    db: Database, topic: str, payload: bytes, checked: Checked, received_at: str | None = None,
    limits: RejectLimits = RejectLimits(),
) -> Outcome:
    """Apply a checked message in its own transaction (a savepoint inside a batch): upsert the night
    or the status, or keep a refused or stale message in `rejected` within `limits`
    (server/rejected.py). Only a database failure raises."""
    received_at = received_at or utc_now()
    with db.atomic():
        if checked.refused:
            outcome = Outcome("rejected", checked.device_id, checked.refused)
        elif checked.night is not None:
            outcome = _store_night(db, checked.night, payload, received_at)
        elif checked.sit is not None:
            _touch_device(db, checked.device_id, received_at, seen=True)
            kind, reason = store_sit(db, checked.sit, payload, received_at)
            outcome = Outcome(kind, checked.device_id, reason)  # type: ignore[arg-type]
        else:
            assert checked.device_id is not None and checked.status is not None
            outcome = _store_status(db, checked, received_at)
        if outcome.kind in ("rejected", "stale"):
            keep_rejected(db, topic, payload, outcome.reason, received_at, limits)
    return outcome


def ingest(
    db: Database, topic: str, payload: bytes, *, retained: bool = False, received_at: str | None = None,
    now: datetime | None = None, limits: RejectLimits = RejectLimits(),
) -> Outcome:
    """Validate and store one MQTT message: `store(db, topic, payload, check(topic, payload, retained, now))`.

    `retained` marks a retained status replayed by the broker on subscribe: it sets the status but
    is no evidence that the device is alive now, so `last_seen` is left alone. Invalid input is kept
    in `rejected` and returned as an Outcome; only a database failure raises.
    """
    return store(db, topic, payload, check(topic, payload, retained, now), received_at, limits)


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


@dataclass(frozen=True)
class _Batch:
    """Messages stored in one transaction, whose commit is `commit`."""

    messages: list[_Received]
    checked: list[Checked]
    outcomes: list[Outcome]
    commit: Future


_STOP = object()


class _Inbox:
    """The messages between paho's network thread and the writer, bounded in bytes.

    A message counts against `max_bytes` from `reserve()` until the writer has stored it and calls
    `release()`, so the payloads in memory never exceed `max_bytes` plus one message. When it is
    full, `reserve()` waits for the writer: paho's thread then stops reading, and the broker holds
    the rest (QoS 1 is bounded there by Receive Maximum and unacknowledged until stored). A QoS 0
    message bypasses Receive Maximum, so it is dropped instead, and counted for `take_dropped()`.
    After `close()` (the writer is gone) nothing is taken: unacknowledged, QoS 1 comes again.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: collections.deque[Any] = collections.deque()
        self._bytes = 0
        self.peak_bytes = 0  # the most ever held, for tests and benchmarks/flood.py
        self.dropped_total = 0
        self._closed = False
        self._dropped: dict[str, list[int]] = {}
        self._cond = threading.Condition()

    def reserve(self, topic: str, size: int, *, may_drop: bool) -> bool:
        """Make room for a message of `size` bytes, waiting unless `may_drop`; False if it is dropped."""
        with self._cond:
            while not self._closed and self._bytes and self._bytes + size > self.max_bytes:
                if may_drop:
                    dropped = self._dropped.setdefault(topic_device(topic), [0, 0])
                    dropped[0] += 1
                    dropped[1] += size
                    self.dropped_total += 1
                    return False
                self._cond.wait()
            if self._closed:
                return False
            self._bytes += size
            self.peak_bytes = max(self.peak_bytes, self._bytes)
            return True

    def put(self, item: Any) -> None:
        """Queue a message whose room was reserved (or `_STOP`, which needs none)."""
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def get(self, timeout_s: float | None = None) -> Any:
        """The next item, waiting up to `timeout_s` (None: forever, 0: not at all); None if none came."""
        with self._cond:
            if not self._items and timeout_s != 0:
                self._cond.wait_for(lambda: self._items, timeout_s)
            return self._items.popleft() if self._items else None

    def release(self, size: int) -> None:
        """The writer is done with messages of `size` bytes in all."""
        with self._cond:
            self._bytes -= size
            self._cond.notify_all()

    def close(self) -> None:
        """Refuse everything from now on and wake anyone waiting for room."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take_dropped(self) -> dict[str, tuple[int, int]]:
        """The QoS 0 messages dropped since the last call: {device: (count, bytes)}."""
        with self._cond:
            dropped, self._dropped = self._dropped, {}
        return {device: (n, size) for device, (n, size) in dropped.items()}


class Collector:
    """The MQTT collector. `start()` connects (retrying in the background while the broker is down);
    `stop()` disconnects, keeping the broker-side session, and drains what was received.

    `validators` > 0 runs `check()` (JSON parsing and validation, most of the work) in that many
    worker processes, so a busy collector uses more than one core; messages are still stored and
    acknowledged in the order they arrived. `on_outcome`, if given, is called on the writer thread
    after each message is committed, for tests and benchmarks to wait on.

    Memory is bounded: at most `inbox_bytes` of messages wait to be stored (see `_Inbox`); refused
    messages are kept within `limits` and their warnings rate-limited (server/rejected.py).
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
        inbox_bytes: int = DEFAULT_INBOX_BYTES,
        limits: RejectLimits = RejectLimits(),
    ) -> None:
        self.db_path = db_path
        self.config = mqtt_config
        self.on_outcome = on_outcome
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # all subscriptions granted on the current connection
        self.failed = threading.Event()  # the writer hit a database error and stopped
        self._password = password
        self._tls_context = tls_context
        self._inbox = _Inbox(inbox_bytes)
        self._limits = limits
        self._connection = 0
        self._client: mqtt.Client | None = None
        self._writer: threading.Thread | None = None
        self._committer: ThreadPoolExecutor | None = None  # the writer's commits, see _write_loop()
        self._checkpointer: threading.Thread | None = None  # SQLite only: see checkpoint_wal()
        self._checkpoint_due = threading.Event()
        self._checkpoint_done = threading.Event()
        self._validators = validators
        self._pool: ProcessPoolExecutor | None = None
        self._receipt_refused = False

    @property
    def inbox_peak_bytes(self) -> int:
        """The most bytes of messages ever waiting to be stored: at most `inbox_bytes` plus one message."""
        return self._inbox.peak_bytes

    @property
    def inbox_dropped(self) -> int:
        """QoS 0 messages dropped so far because the inbox was full."""
        return self._inbox.dropped_total

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
        if not is_postgres(db) and str(self.db_path) != ":memory:":
            db.execute("PRAGMA wal_autocheckpoint = 0")
            self._checkpoint_done.clear()
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="rlsmon-checkpoint", daemon=True)
            self._checkpointer.start()
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="rlsmon-commit")
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
        if self._committer is not None:
            self._committer.shutdown()
            self._committer = None
        if self._checkpointer is not None:
            self._checkpoint_done.set()
            self._checkpoint_due.set()
            self._checkpointer.join()
            self._checkpointer = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _checkpoint_loop(self) -> None:
        try:
            checkpoint_wal(self.db_path, self._checkpoint_due, self._checkpoint_done)
        except Exception:
            # Without checkpoints the WAL would grow for ever: stop, and let systemd start afresh.
            log.exception("the WAL checkpointer failed; the collector stops")
            self.failed.set()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self._connection += 1
        # Subscribing again on every connect is harmless with a resumed session and required without.
        # retainHandling=1: retained statuses only for a new subscription, not on every reconnect.
        summary_filter, status_filter = subscription_filters(self.config.share_group)
        client.subscribe([
            (summary_filter, SubscribeOptions(qos=1)),
            (sit_filter(self.config.share_group), SubscribeOptions(qos=1)),
            (status_filter, SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)),
        ])
        log.info("connected to %s:%s (session present: %s)", self.config.host, self.config.port, flags.session_present)
        self.connected.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[Any], properties: Any) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("the broker refused the subscriptions (%s): check the collector's ACL", ", ".join(refused))
        else:
            log.info("subscribed to %s, %s and %s", *subscription_filters(self.config.share_group),
                     sit_filter(self.config.share_group))
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
        if not self._inbox.reserve(topic, len(payload), may_drop=message.qos == 0):
            return  # a QoS 0 message, counted; or the writer is gone and QoS 1 stays unacknowledged
        checking = self._pool.submit(check, topic, payload, retained) if self._pool is not None else None
        self._inbox.put(_Received(topic, payload, retained, message.mid, message.qos, self._connection, checking))

    def _write_loop(self, db: Database) -> None:
        refusals = RefusalLog(log)
        committing: _Batch | None = None  # stored, its commit running on the committer thread
        try:
            expire_rejected(db, datetime.now(timezone.utc), self._limits.retention_days)
            next_expiry_s = time.monotonic() + EXPIRY_INTERVAL_S
            while True:
                # While a batch commits, take what is queued without waiting, and check it: the
                # commit's write and fsync hold no GIL. Otherwise wait, with a timeout now and
                # then to count dropped messages and summarise warnings when idle.
                messages, stopping = self._take(wait_s=0.0 if committing is not None else 1.0)
                checked = [m.checked() for m in messages]  # before the transaction: it holds the write lock
                if committing is not None:
                    self._acknowledge(committing, refusals)
                    committing = None
                refusals.flush()
                if time.monotonic() >= next_expiry_s:
                    expire_rejected(db, datetime.now(timezone.utc), self._limits.retention_days)
                    next_expiry_s = time.monotonic() + EXPIRY_INTERVAL_S
                # QoS 0 drops before this batch was queued are on record before its outcomes are.
                self._count_dropped(db, refusals)
                if messages:
                    committing = self._store_batch(db, messages, checked)
                if stopping:
                    if committing is not None:
                        self._acknowledge(committing, refusals)
                    return
        except Exception:
            # A database error (disk full, corruption) or a bug. Nothing of the failed batch was
            # acknowledged, so the broker delivers it again once the collector is restarted.
            log.exception("the writer failed; the collector stops without acknowledging the batch")
            self.failed.set()
        finally:
            if committing is not None:
                wait([committing.commit])  # a failed writer still lets a running commit end before closing
            self._inbox.close()
            refusals.flush(all_windows=True)
            db.close()

    def _take(self, wait_s: float) -> tuple[list[_Received], bool]:
        """Up to MAX_BATCH queued messages, waiting up to `wait_s` for the first; and whether the
        collector is stopping (after these)."""
        messages: list[_Received] = []
        item = self._inbox.get(timeout_s=wait_s)
        while item is not None and item is not _STOP:
            messages.append(item)
            if len(messages) == MAX_BATCH:
                break
            item = self._inbox.get(timeout_s=0)
        return messages, item is _STOP

    def _count_dropped(self, db: Database, refusals: RefusalLog) -> None:
        dropped = self._inbox.take_dropped()
        if not dropped:
            return
        day = utc_now()[:10]
        with db.atomic():
            for device_id, (count, size_bytes) in dropped.items():
                count_refused(db, device_id, day, count, size_bytes)
        for device_id, (count, _) in dropped.items():
            refusals.refused(device_id, "QoS 0, dropped as the inbox was full", count)

    def _store_batch(self, db: Database, messages: list[_Received], checked: list[Checked]) -> _Batch:
        """Store the messages in one transaction and start its commit on the committer thread."""
        received_at = utc_now()
        # IMMEDIATE takes the write lock up front, so a second collector (MQTT shared subscription)
        # or the dashboard waits its turn instead of failing on a lock upgrade.
        db.execute("BEGIN IMMEDIATE")
        try:
            outcomes = [store(db, m.topic, m.payload, c, received_at, self._limits) for m, c in zip(messages, checked)]
        except BaseException:
            db.conn.rollback()
            raise
        assert self._committer is not None
        return _Batch(messages, checked, outcomes, self._committer.submit(db.conn.commit))

    def _acknowledge(self, batch: _Batch, refusals: RefusalLog) -> None:
        """Once the batch is committed (a failed commit raises here), receipt and acknowledge it."""
        batch.commit.result()
        self._checkpoint_due.set()
        self._inbox.release(sum(len(m.payload) for m in batch.messages))
        client = self._client
        for message, verdict, outcome in zip(batch.messages, batch.checked, batch.outcomes):
            # The receipt first: should we die before it, the broker redelivers the summary (not yet
            # acknowledged) and it is receipted then; paho queues it while we are disconnected.
            committed = verdict.night or verdict.sit
            answer = receipt(committed, outcome) if committed is not None else None
            if client is not None and answer is not None:
                client.publish(*answer, qos=1)
            if client is not None and message.qos > 0 and message.connection == self._connection:
                client.ack(message.mid, message.qos)
            if outcome.kind in ("rejected", "stale"):
                # The reason is in the rejected table; the log says only its cause and where to look.
                refusals.refused(outcome.device_id or topic_device(message.topic), _cause(outcome))
            if self.on_outcome is not None:
                self.on_outcome(message.topic, outcome)


def run_collector(config_path: str | Path) -> int:
    """Run the collector from the config file until SIGTERM or SIGINT; return the exit code."""
    import signal

    from server.config import load_config

    config = load_config(config_path)
    password = config.mqtt.password(config_path)
    collector = Collector(
        config.database.target, config.mqtt, password, validators=config.collector.validators,
        inbox_bytes=config.collector.inbox_mib * 1024 * 1024, limits=config.collector.reject_limits(),
    )
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    collector.start()
    while not done.is_set() and not collector.failed.is_set():
        done.wait(1.0)
    collector.stop()
    return 1 if collector.failed.is_set() else 0

"""Refused messages, within bounds: one device can fill neither the database nor the log.

A refused message is kept for an admin to see why (issue 10, item 3), but never whole: a row in
`rejected` holds the first `prefix_bytes` of the payload with its full size and SHA-256, at most
`rows_per_device_day` rows per device and UTC day are kept, and rows expire after
`retention_days`. `rejected_daily` counts every refused message (and its bytes) per device and day,
those past the cap and those dropped before the database included, so a flood still shows, with
its size, on the dashboard.

`RefusalLog` rate-limits the warnings: the first refusal of a device (for one cause) in a minute
is logged, the rest are counted and summarised once the minute is over.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlite_utils import Database

# Enough of a payload to see what it is (the start of the JSON, or of the junk).
DEFAULT_PREFIX_BYTES = 4096
# A device that sends junk all day keeps at most this many rows a day: 100 x 4 KiB = 400 kB.
DEFAULT_ROWS_PER_DEVICE_DAY = 100
DEFAULT_RETENTION_DAYS = 30
LOG_WINDOW_S = 60.0


@dataclass(frozen=True)
class RejectLimits:
    """How much of the refused messages is kept (the `[collector] rejected_*` settings)."""

    prefix_bytes: int = DEFAULT_PREFIX_BYTES
    rows_per_device_day: int = DEFAULT_ROWS_PER_DEVICE_DAY
    retention_days: int = DEFAULT_RETENTION_DAYS


def topic_device(topic: str) -> str:
    """The device a topic `rlsmon/v1/<id>/…` names (whoever published there, by the ACL), or ""."""
    parts = topic.split("/", 3)
    return parts[2][:64] if len(parts) > 3 and parts[:2] == ["rlsmon", "v1"] else ""


def device_topics(device_id: str) -> str:
    """The prefix of every topic `device_id` may publish on (`topic_device`'s inverse), for matching
    stored topics with `substr(topic, 1, length(prefix)) = prefix`."""
    return f"rlsmon/v1/{device_id}/"


def count_refused(db: Database, device_id: str, day: str, count: int, size_bytes: int) -> int:
    """Add `count` refused messages of `size_bytes` in all to the device's day; return the day's count."""
    return db.execute(
        "INSERT INTO rejected_daily (device_id, day, count, bytes) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (device_id, day) DO UPDATE SET count = rejected_daily.count + excluded.count, "
        "bytes = rejected_daily.bytes + excluded.bytes RETURNING count",
        [device_id, day, count, size_bytes],
    ).fetchone()[0]


def keep_rejected(
    db: Database, topic: str, payload: bytes, reason: str, received_at: str, limits: RejectLimits
) -> bool:
    """Count a refused message and keep its prefix, size and hash unless its device has had
    `limits.rows_per_device_day` rows kept that day. Returns whether a row was kept. `received_at`
    is an ISO UTC time; its date is the day."""
    day_count = count_refused(db, topic_device(topic), received_at[:10], 1, len(payload))
    if day_count > limits.rows_per_device_day:
        return False
    db.execute(
        "INSERT INTO rejected (received_at, topic, payload, reason, size_bytes, sha256) VALUES (?, ?, ?, ?, ?, ?)",
        [received_at, topic, bytes(payload[: limits.prefix_bytes]), reason, len(payload),
         hashlib.sha256(payload).hexdigest()],
    )
    return True


def expire_rejected(db: Database, now: datetime, retention_days: int) -> int:
    """Delete rejected rows and daily counts older than `retention_days` before `now` (aware);
    return the number of rows deleted."""
    cutoff = now - timedelta(days=retention_days)
    with db.atomic():
        deleted = db.execute("DELETE FROM rejected WHERE received_at < ?", [cutoff.isoformat()]).rowcount
        db.execute("DELETE FROM rejected_daily WHERE day < ?", [cutoff.date().isoformat()])
    return deleted


@dataclass
class _Window:
    start_s: float
    suppressed: int = 0


class RefusalLog:
    """Warnings about refused messages: per device and cause, the first of a minute, then a summary.

    `refused()` logs the first refusal of a device for a cause in a window of `LOG_WINDOW_S` and
    counts the others; `flush()`, called now and then, logs "device X: N more payloads refused
    (cause) in the last minute" for each window that has ended. 10,000 junk messages make two
    lines, not 10,000. `clock` (monotonic seconds) is injectable for tests. Causes never carry
    health data: they are categories such as "invalid summary" or "conflict".
    """

    def __init__(self, logger: logging.Logger, clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}

    def refused(self, device_id: str, cause: str, count: int = 1) -> None:
        """Note `count` refused messages of `device_id` for `cause`."""
        self.flush()
        window = self._windows.get((device_id, cause))
        if window is None:
            self._log.warning("device %s: payload refused (%s); see the rejected table", device_id or "?", cause)
            self._windows[(device_id, cause)] = _Window(self._clock(), count - 1)
        else:
            window.suppressed += count

    def flush(self, *, all_windows: bool = False) -> None:
        """Summarise and close the windows that have ended (all of them, on the way out)."""
        now_s = self._clock()
        for (device_id, cause), window in list(self._windows.items()):
            if all_windows or now_s - window.start_s >= LOG_WINDOW_S:
                del self._windows[(device_id, cause)]
                if window.suppressed:
                    self._log.warning("device %s: %s more payloads refused (%s) in the last minute",
                                      device_id or "?", f"{window.suppressed:,}", cause)

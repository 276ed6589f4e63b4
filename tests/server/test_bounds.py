"""One device cannot fill the server (issue 10, item 3): the broker's size limit fits the largest
legitimate night, and a flood of junk at that size, QoS 1 and QoS 0, through the real broker leaves
the collector's inbox and the database bounded, with every refused message counted."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from pathlib import Path

from server.collector import MAX_PAYLOAD_BYTES
from server.db import open_db
from server.model import NightSummary
from server.rejected import RejectLimits
from tests.server.payloads import encode, largest_summary, make_summary

CONF = Path(__file__).parents[2] / "firmware_config" / "mosquitto.conf"
MIB = 1024 * 1024


def conf_value(key: str) -> int:
    [value] = re.findall(rf"^{key}\s+(\d+)\s*$", CONF.read_text(), re.MULTILINE)
    return int(value)


def test_largest_legitimate_summary_fits_the_broker_limit_with_headroom():
    payload = json.dumps(largest_summary()).encode()  # the device's wire format (device/store.py)
    NightSummary.model_validate_json(payload)  # legitimate: it meets the whole contract
    limit = conf_value("message_size_limit")
    assert limit == MAX_PAYLOAD_BYTES
    assert len(payload) * 1.15 <= limit, "less than 15% headroom over the largest legitimate night"
    assert limit <= 2 * len(payload), "the limit is far above any legitimate night: lower it"
    assert conf_value("max_packet_size") - limit >= 96  # header, the longest topic, packet id


def test_largest_summary_goes_through_the_broker_and_one_byte_over_does_not(start_collector, device, tmp_path):
    collector = start_collector()
    dev = device("dev-a")
    largest = largest_summary("dev-a")
    assert not dev.summary(json.dumps(largest).encode()).is_failure
    assert collector.next(60)[1].kind == "stored"
    dev.client.publish("rlsmon/v1/dev-a/summary", b"x" * (MAX_PAYLOAD_BYTES + 1), qos=0)
    assert not dev.publish("rlsmon/v1/dev-a/status", b"online").is_failure
    assert collector.next(30)[1].kind == "status"  # in order: the broker dropped the oversized one
    db = open_db(tmp_path / "server.db")
    assert db["nights"].get(("dev-a", "2026-01-05"))["lm_count"] == len(largest["lm_events"])
    assert db["rejected"].count == 0


def _db_bytes(db_path: Path) -> int:
    return sum(p.stat().st_size for p in db_path.parent.glob(db_path.name + "*"))


def _wait_until(predicate, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_flood_of_junk_is_bounded_and_counted(start_collector, device, tmp_path, monkeypatch, caplog):
    import server.db

    caplog.set_level(logging.WARNING, logger="server.collector")
    monkeypatch.setattr(server.db, "BUSY_TIMEOUT_S", 300.0)  # the writer waits out the blocker below
    inbox_bytes = 8 * MIB
    limits = RejectLimits(prefix_bytes=4096, rows_per_device_day=5, retention_days=30)
    collector = start_collector(inbox_bytes=inbox_bytes, limits=limits)
    db_path = tmp_path / "server.db"
    before = _db_bytes(db_path)
    junk = [bytes([i]) * (MAX_PAYLOAD_BYTES - 1024) for i in range(16)]  # 4 MiB each, just under the limit
    held = inbox_bytes // len(junk[0])  # messages the inbox holds while the writer is stuck

    # QoS 0 while the database is locked (a slow disk, a long query): the inbox fills, the rest is dropped.
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    qos0 = device("dev-b")
    for p in junk:
        qos0.client.publish("rlsmon/v1/dev-b/summary", p, qos=0)
    _wait_until(lambda: collector.collector.inbox_dropped == len(junk) - held, "QoS 0 drops")
    blocker.execute("ROLLBACK")
    blocker.close()
    night = make_summary("dev-b", "2026-01-05")
    assert not qos0.summary(encode(night)).is_failure  # after the flood, in order
    assert [collector.next(60)[1].kind for _ in range(held + 1)] == ["rejected"] * held + ["stored"]

    # QoS 1: paho's thread waits for room and the broker holds the rest; none is lost or dropped.
    qos1 = device("dev-a")
    infos = [qos1.client.publish("rlsmon/v1/dev-a/summary", p, qos=1) for p in junk]
    for info in infos:
        info.wait_for_publish(60)
    assert [collector.next(60)[1].kind for _ in junk] == ["rejected"] * len(junk)

    db = open_db(db_path)
    daily = {r["device_id"]: (r["count"], r["bytes"]) for r in db["rejected_daily"].rows}
    assert daily == {"dev-a": (len(junk), sum(map(len, junk))), "dev-b": (len(junk), sum(map(len, junk)))}
    rows = list(db.query("SELECT topic, length(payload) AS kept, size_bytes FROM rejected"))
    assert sum(r["topic"] == "rlsmon/v1/dev-a/summary" for r in rows) == limits.rows_per_device_day
    # The first refused messages of the day keep a row; drops count toward the day's cap too.
    assert 1 <= sum(r["topic"] == "rlsmon/v1/dev-b/summary" for r in rows) <= held
    assert all(r["kept"] == limits.prefix_bytes and r["size_bytes"] == len(junk[0]) for r in rows)
    assert db["nights"].get(("dev-b", "2026-01-05"))["summary_id"] == night["summary_id"]
    assert collector.collector.inbox_peak_bytes <= inbox_bytes
    assert collector.collector.inbox_dropped == len(junk) - held
    assert _db_bytes(db_path) - before < 2 * MIB  # after 128 MiB of junk
    # Rate-limited: a line per device and cause, not one per message (the summaries come later).
    assert sorted(r.getMessage() for r in caplog.records if r.name == "server.collector") == [
        "device dev-a: payload refused (invalid summary); see the rejected table",
        "device dev-b: payload refused (QoS 0, dropped as the inbox was full); see the rejected table",
        "device dev-b: payload refused (invalid summary); see the rejected table",
    ]


def test_the_admins_see_who_floods_with_the_counts_the_collector_kept(start_collector, device, tmp_path):
    """The flood reaches the admins' page through the real collector, not rows a test inserted."""
    from datetime import datetime, timezone

    from fastapi.testclient import TestClient

    from server.web import auth
    from server.web.app import create_app
    from tests.web.conftest import log_in

    limits = RejectLimits(prefix_bytes=4096, rows_per_device_day=2, retention_days=30)
    collector = start_collector(limits=limits)
    flooder = device("dev-junk")
    for i in range(7):
        assert not flooder.summary(bytes([i]) * 1000).is_failure
    assert [collector.next(60)[1].kind for _ in range(7)] == ["rejected"] * 7
    db = open_db(tmp_path / "server.db")
    auth.set_password(db, "it.ops", "staple battery horse", datetime.now(timezone.utc), replace=False,
                      role=auth.ADMIN)
    db.conn.close()
    with TestClient(create_app(tmp_path / "server.db")) as admin:
        assert log_in(admin, "it.ops", "staple battery horse").status_code == 303
        page = admin.get("/admin/rejected").text
    by_device = page.split('class="rejected-by-device"')[1].split("</table>")[0]
    row = next(r for r in re.findall(r"<tr[^>]*>.*?</tr>", by_device, re.S) if "dev-junk" in r)
    # All 7 refusals and their 7,000 bytes are counted, though only 2 rows were kept.
    assert '<td class="num">7</td><td class="num">7000</td>' in row, row


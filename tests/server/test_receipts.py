"""The collector's receipts through the real broker (docs/receipts.md): one after each commit of a
summary, a duplicate included; none for a refused one."""

from __future__ import annotations

import json
import logging
import signal

from tests.daemon.conftest import wait_for
from tests.pgserver import BOTH_DATABASES
from tests.server.payloads import encode, make_summary

pytestmark = BOTH_DATABASES


def test_stored_and_duplicate_summaries_are_receipted_and_refused_ones_are_not(
    start_collector, device, mqtt_broker
):
    collector = start_collector()
    receipts = mqtt_broker.subscribe("rlsmon/v1/+/receipt")  # the test's read-only observer
    dev = device("dev-a")
    night = make_summary("dev-a", "2026-01-01")
    for payload in (encode(night), b"not a summary", encode(night)):
        assert not dev.summary(payload).is_failure
    assert [collector.next()[1].kind for _ in range(3)] == ["stored", "rejected", "duplicate"]
    got = [receipts.get(10) for _ in range(2)]
    assert [topic for topic, _, _ in got] == ["rlsmon/v1/dev-a/receipt"] * 2
    bodies = [json.loads(payload) for _, payload, _ in got]
    assert bodies == [{"schema": "rlsmon.receipt/1", "summary_id": night["summary_id"], "night": "2026-01-01",
                       "status": status} for status in ("stored", "duplicate")]
    assert receipts.messages.empty()  # the refused one, between them, got none
    receipts.close()


def test_a_broker_acl_without_receipts_is_named_in_the_collectors_log(start_collector, device, mqtt_broker, caplog):
    """An ACL from before receipts: the collector says what line it lacks; the night is stored."""
    acl = mqtt_broker.acl_file.read_text().replace("topic write rlsmon/v1/+/receipt\n", "")
    mqtt_broker.acl_file.write_text(acl)
    mqtt_broker.process.send_signal(signal.SIGHUP)
    dev = device("dev-a")  # add_device reloads the broker too, and waits until it has
    collector = start_collector()
    with caplog.at_level(logging.ERROR, logger="server.collector"):
        assert not dev.summary(encode(make_summary("dev-a", "2026-01-01"))).is_failure
        assert collector.next()[1].kind == "stored"
        wait_for(lambda: "refused a receipt" in caplog.text, 10, "the collector's log line")
    assert "topic write rlsmon/v1/+/receipt" in caplog.text

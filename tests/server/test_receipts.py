"""The collector's receipts through the real broker (docs/receipts.md): one after each commit of a
summary, a duplicate included; none for a refused one."""

from __future__ import annotations

import json

from tests.server.payloads import encode, make_summary


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

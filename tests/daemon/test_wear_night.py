"""A strap taken off and put back, end to end through the daemon: a simulated night (its sensor's
temperature in the recording) played through the emulated chip and the real FIFO reader, the
detector, the night store and the summary. The summary carries the not-worn span, and that time
is not time in bed."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time

import jsonschema_rs
import pytest

from device.clock import FastForwardClock
from device.daemon import Daemon
from device.sensor.emulated import EmulatedNights
from tests.daemon.test_daemon_parts import _offline_config, ts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
WINDOW_MIN = 40
SPEED = 50.0  # 40 min in under a minute, slow enough that a loaded machine does not overrun the FIFO


@pytest.fixture(scope="module")
def strap_off_night(tmp_path_factory):
    """A 40-min PLMD night whose strap is off for 12-14 min of it (the scenario's span, shortened)."""
    from device.sim import SCENARIOS, simulate_night, write_night

    short = dataclasses.replace(SCENARIOS["strap_off"], strap_off_min=(12.0, 14.0))
    d = tmp_path_factory.mktemp("strap")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SCENARIOS, "strap_off_short", short)
        night = simulate_night("strap_off_short", 5, WINDOW_MIN / 60.0, 52.0)
    write_night(night, d / "rec.csv", d / "truth.json")
    return d / "rec.csv", night.truth


def test_a_strap_off_night_reports_its_not_worn_span_and_less_time_in_bed(tmp_path, strap_off_night):
    from server import quality
    from server.model import SCHEMA_FILE, NightSummary

    rec, truth = strap_off_night
    (off,) = truth["not_worn"]
    off_s = off["end_s"] - off["start_s"]
    cfg = _offline_config(tmp_path, "22:00", f"22:{WINDOW_MIN}")
    clock = FastForwardClock(SPEED, ts("2026-03-01T21:00:00+01:00"))
    daemon = Daemon(cfg, clock, EmulatedNights(cfg, clock, (str(rec),)), clock_synced=lambda: True,
                    nights=1, panel=False)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        deadline = time.monotonic() + 240
        while not daemon.nights_closed:  # the night is closed into the outbox
            assert time.monotonic() < deadline and thread.is_alive(), "the night never closed"
            time.sleep(0.05)
    finally:
        daemon.request_stop()
        thread.join(60)
    assert not thread.is_alive()
    conn = sqlite3.connect(tmp_path / "data" / "night.db")
    (payload,) = conn.execute("select payload from outbox").fetchone()
    epochs = conn.execute("select count(*), count(temp_c) from wear_epochs").fetchone()
    conn.close()
    summary = json.loads(payload)
    NightSummary.model_validate_json(payload)  # the contract, the collector's checks included
    jsonschema_rs.validator_for(json.loads(SCHEMA_FILE.read_text())).validate(summary)  # and its schema

    assert epochs[0] >= WINDOW_MIN - 2 and epochs[1] == epochs[0]  # a temperature every minute
    assert summary["wear"]["assessed"] is True
    (span,) = summary["wear"]["not_worn"]
    # Found within two minutes of the truth at each end (minute epochs, and the recording's own
    # temperature is held for up to a minute).
    assert abs(span["start_s"] - off["start_s"]) <= 120.0 and abs(span["end_s"] - off["end_s"]) <= 120.0
    # Not worn is not in bed: no in-bed span reaches into it, no LM is scored in it, and the time
    # in bed is what lying time is left once it is taken off (the sensor on the table lies flat).
    assert not any(b["start_s"] < span["end_s"] - 0.001 and span["start_s"] + 0.001 < b["end_s"]
                   for b in summary["in_bed"])
    assert not any(span["start_s"] <= lm["onset_s"] < span["end_s"] for lm in summary["lm_events"])
    lying_s = sum(p["end_s"] - p["start_s"] for p in truth["postures"] if p["posture"] == "lying")
    assert summary["time_in_bed_s"] < lying_s - 0.8 * off_s
    assert summary["time_in_bed_s"] == pytest.approx(truth["reference"]["time_in_bed_s"], abs=240.0)
    assert any("not worn" in c for c in summary["caveats"])
    # The clinic side labels it: over a tenth of the night in bed without the sensor.
    q = quality.of_summary(summary)
    assert any(r.startswith("sensor not worn for") for r in q.reasons) and q.label != quality.ELIGIBLE

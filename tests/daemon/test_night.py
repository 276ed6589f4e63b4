"""The real daemon plays emulated nights against a real mosquitto and the real collector, whose
receipts it waits for; what counts is what the collector stored (a re-send may repeat a summary
on the wire, never in the database)."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from tests.daemon.conftest import NIGHT, SPEED, collected, start_daemon, wait_for, write_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def validate(summary: dict) -> None:
    """Check against the contract (server/model.py, which exports the checked-in JSON Schema)."""
    from server.model import NightSummary

    NightSummary.model_validate_json(json.dumps(summary))


def test_a_full_night_yields_exactly_one_summary(mqtt_broker, collector, tmp_path, night_recording, daemons):
    rec, truth = night_recording
    password = mqtt_broker.add_device("dev-a")
    run = start_daemon(write_config(tmp_path, mqtt_broker, password=password), [rec])
    daemons.append(run)
    assert run.proc.wait(180) == 0, run.log()  # --nights 1: exits once the summary is receipted
    got = collected(tmp_path / "server.db")
    assert len(got) == 1
    s = got[0]
    validate(s)
    assert run.query("select summary_id from nights where receipted_at is not null") == [(s["summary_id"],)]
    assert s["device_id"] == "dev-a" and s["night"] == NIGHT
    assert s["window"]["timezone"] == "Europe/Berlin"
    assert s["sensor"]["chip"] == "LSM6DSOX" and s["clock_synced"] is True
    assert s["lm_count"] > 0
    assert s["coverage"]["recorded_s"] > 0.8 * s["duration_s"]  # a loaded machine may overrun the FIFO at 100x
    assert run.query("select count(*) from outbox") == [(0,)]
    # health data never reaches the log
    log = run.log()
    assert "lm_count" not in log and "plm" not in log.lower() and password not in log


def test_broker_down_through_two_nights_then_back(mqtt_broker, tmp_path, night_recording, daemons):
    from tests.server.conftest import RunningCollector

    rec, _ = night_recording
    password = mqtt_broker.add_device("dev-a")
    mqtt_broker.stop()
    run = start_daemon(write_config(tmp_path, mqtt_broker, password=password), [rec, rec], nights=2)
    daemons.append(run)
    # Both nights, and the day between them, pass with no broker: the summaries wait in the outbox.
    wait_for(lambda: run.query("select count(*) from outbox") == [(2,)], 180, "two queued summaries", run.proc)
    assert run.proc.poll() is None
    mqtt_broker.start()
    collector = RunningCollector(mqtt_broker, tmp_path / "server.db").start()
    try:
        assert run.proc.wait(120) == 0, run.log()
    finally:
        collector.stop()
    got = collected(tmp_path / "server.db")
    assert [s["night"] for s in got] == ["2026-03-01", "2026-03-02"]
    assert len({s["summary_id"] for s in got}) == 2


def _reference_lm_onsets(rec: Path) -> list[float]:
    """Onsets of the LMs the same detection and scoring find in the recording read from the CSV."""
    from device.detect import LegDetector
    from device.detect.bed import in_bed_intervals
    from device.detect.scoring import score_night
    from device.recording import read_recording

    det, movements, postures, end_s = None, [], [], 0.0
    for block in read_recording(rec):
        det = det or LegDetector(odr_hz=block.odr_hz)
        out = det.feed(block)
        movements, postures, end_s = movements + out.movements, postures + out.postures, block.t_s[-1]
    out = det.finish()
    movements, postures = movements + out.movements, postures + out.postures
    in_bed = in_bed_intervals(postures, [], float(end_s))
    return [lm["onset_s"] for lm in score_night([movements], in_bed, [], float(end_s))["lm_events"]]


def test_kill_9_at_random_moments_then_restart(mqtt_broker, collector, tmp_path, night_recording, daemons):
    rec, _ = night_recording
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    password = mqtt_broker.add_device("dev-a")
    config = write_config(tmp_path, mqtt_broker, password=password)
    origin = time.time()  # every restart continues the same clock timeline
    kills = []  # (stored end of the recording when killed, clock time of the kill, downtime)
    kill_at_s = 0.0
    for i in range(2):
        kill_at_s = rng.uniform(200, 450) if i == 0 else rng.uniform(kill_at_s + 350, kill_at_s + 500)
        run = start_daemon(config, [rec], origin=origin, log_name=f"daemon{i}.log")
        daemons.append(run)
        before = (run.query("select max(id) from segments") or [(None,)])[0][0] or 0

        def reached(run=run, before=before, target=kill_at_s) -> bool:
            rows = run.query(f"select end_s from segments where id > {before} order by id desc limit 1")
            return bool(rows) and rows[0][0] >= target

        # kill once this process's stored recording reaches the random moment
        wait_for(reached, 120, f"recording to reach {kill_at_s:.0f} s (seed {seed})", run.proc)
        run.kill()
        killed_real = time.time()
        run_segments = run.query("select max(end_s) from segments")[0][0]
        down_s = rng.uniform(30, 120)
        kills.append((run_segments, (killed_real - origin) * SPEED - 2.0, down_s))
        wait_for(lambda: time.time() >= killed_real + down_s / SPEED, 10, "the downtime to pass")
    last = start_daemon(config, [rec], origin=origin, log_name="daemon-last.log")
    daemons.append(last)
    assert last.proc.wait(180) == 0, last.log()
    got = collected(tmp_path / "server.db")
    assert len(got) == 1, f"seed {seed}"
    s = got[0]
    gaps = s["coverage"]["gaps"]
    for stored_end_s, kill_s, down_s in kills:
        # what was stored before the kill is kept; the gap runs from there past the downtime
        assert any(abs(g["start_s"] - stored_end_s) < 1 and g["end_s"] >= kill_s + down_s for g in gaps), \
            f"no gap from {stored_end_s:.0f} s past {kill_s + down_s:.0f} s (seed {seed}): {gaps}"
    reference = _reference_lm_onsets(rec)
    # A kill also loses what the detector had not yet emitted (it works in 60-s frames and waits up
    # to 10 s to see whether a movement is held), and after a restart it takes a moment to settle.
    lost_before_s, settle_s = 100.0, 30.0
    in_gaps = [t for t in reference if any(g["start_s"] - lost_before_s <= t <= g["end_s"] + settle_s
                                           for g in gaps)]
    got_onsets = [lm["onset_s"] for lm in s["lm_events"]]
    assert len(reference) - len(in_gaps) <= s["lm_count"] <= len(reference) + 2, \
        f"seed {seed}: reference {reference}, in gaps {in_gaps}, got {got_onsets}"


def test_faults_during_the_night_are_survived_and_reported(mqtt_broker, collector, tmp_path, night_recording,
                                                           daemons):
    rec, _ = night_recording
    password = mqtt_broker.add_device("dev-a")
    # a glitchy wire throughout, the cable out for 10 minutes, and a brown-out reset
    run = start_daemon(write_config(tmp_path, mqtt_broker, password=password), [rec],
                       faults="eio=0.02,disconnect=200+600,reset=1000,seed=5")
    daemons.append(run)
    assert run.proc.wait(180) == 0, run.log()
    got = collected(tmp_path / "server.db")
    assert len(got) == 1
    s = got[0]
    gaps = s["coverage"]["gaps"]
    # Fault times are chip time; the chip starts just before the first recorded sample.
    chip_t0 = gaps[0]["end_s"] if gaps[0]["start_s"] == 0 else 0.0
    slack_s = 15.0  # reader wake-up latency on a loaded machine, times the clock's speed
    # the 10-minute disconnect (chip time 200–800 s) is one gap
    assert any(abs(g["start_s"] - chip_t0 - 200) < slack_s and abs(g["end_s"] - chip_t0 - 800) < slack_s
               for g in gaps), gaps
    # the reset loses the FIFO's contents: a short gap near 1000 s
    assert any(abs(g["start_s"] - chip_t0 - 1000) < slack_s and g["end_s"] - g["start_s"] < 60 for g in gaps), gaps
    assert s["coverage"]["recorded_s"] > 0.4 * s["duration_s"]
    assert "I2C error" in run.log() or "retrying" in run.log()

"""The contract against the real device side: `rlsmon-device analyze --json` on a simulated night
validates as the core, and a real daemon's published night goes through mosquitto into the
collector's database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema_rs
import pytest

from server.collector import check
from server.db import open_db
from server.model import SCHEMA_FILE, NightCore, NightSummary

RLSMON_DEVICE = str(Path(sys.executable).with_name("rlsmon-device"))


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory) -> dict:
    """`rlsmon-device analyze --json` of a simulated half-hour PLMD night, as printed."""
    from device.sim import simulate_night, write_night

    d = tmp_path_factory.mktemp("analyze")
    write_night(simulate_night("severe", 1, 0.5, 52.0), d / "rec.csv", d / "truth.json")
    out = subprocess.run([RLSMON_DEVICE, "analyze", str(d / "rec.csv"), "--json"],
                         check=True, capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout)


def test_analyze_json_is_a_valid_core(analyzed):
    core = NightCore.model_validate_json(json.dumps(analyzed))
    assert core.lm_count > 0 and core.plm_count > 0  # a severe night: the check is not vacuous
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema_rs.validator_for({**schema["$defs"]["NightCore"], "$defs": schema["$defs"]}).validate(analyzed)


def test_analyze_json_is_not_a_published_night(analyzed):
    assert check("rlsmon/v1/dev-a/summary", json.dumps(analyzed).encode()).refused


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_real_daemon_night_is_collected(mqtt_broker, start_collector, tmp_path, tmp_path_factory):
    from tests.daemon.conftest import NIGHT, WINDOW_MIN, start_daemon, write_config
    from device.sim import simulate_night, write_night

    d = tmp_path_factory.mktemp("rec")
    write_night(simulate_night("severe", 3, WINDOW_MIN / 60.0, 52.0), d / "rec.csv", d / "truth.json")
    collector = start_collector()
    password = mqtt_broker.add_device("dev-a")
    run = start_daemon(write_config(tmp_path, mqtt_broker, password=password), [d / "rec.csv"])
    try:
        assert run.proc.wait(180) == 0, run.log()  # --nights 1: exits once its night is acknowledged
    finally:
        if run.proc.poll() is None:
            run.kill()
    outcomes = []
    while not any(o.kind == "stored" for _, o in outcomes):
        outcomes.append(collector.next(30))
    assert [o.kind for _, o in outcomes if o.kind in ("rejected", "stale")] == []
    db = open_db(tmp_path / "server.db")
    [night] = db["nights"].rows
    summary = NightSummary.model_validate_json(night["summary_json"])
    assert (night["device_id"], night["night"]) == ("dev-a", NIGHT)
    jsonschema_rs.validator_for(json.loads(SCHEMA_FILE.read_text())).validate(json.loads(night["summary_json"]))
    assert night["lm_count"] == summary.lm_count == db.execute("SELECT count(*) FROM lm_events").fetchone()[0]
    # The device read its sensor's temperature all night (the simulated skin): worn throughout.
    assert summary.wear is not None and summary.wear.assessed and summary.wear.not_worn == []
    assert db["devices"].get("dev-a")["status"] in ("online", "offline")

"""End to end, the evening test: an emulated patient takes a short SIT on the real daemon (the
register-level emulator, detection, the SIT state machine driven by the panel's mock button, the
outbox), it travels over TLS through the real mosquitto to the collector, and the dashboard's API
serves it; its figures are those the SIT rules give from the simulator's true LMs in the same span."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime

import pytest

from device.detect.events import LegMovement, PostureSegment
from device.detect.sit import score_sit
from tests.deploy.test_e2e import BIN, add_device_seen_by_collector, api_getter, server, wait_for  # noqa: F401

pytestmark = pytest.mark.slow

DEVICE_ID = "sit-bed-1"
NIGHT = "2026-01-05"
SPEED = 50.0


def test_an_evening_test_travels_from_the_button_to_the_dashboard_api(tmp_path, mqtt_broker, server):  # noqa: F811
    api, procs = server
    recording, truth_path = tmp_path / "sit.csv", tmp_path / "truth.json"
    subprocess.run([BIN / "rlsmon-device", "simulate", "--scenario", "sit", "--seed", "2", "--hours", "0.5",
                    "--out", recording, "--truth", truth_path], check=True, capture_output=True)
    truth = json.loads(truth_path.read_text())

    api_ok = api_getter(api)
    wait_for(lambda: api_ok("/api/devices") is not None, 60, "the dashboard", procs)
    password = add_device_seen_by_collector(mqtt_broker, api_ok, DEVICE_ID, procs)

    (tmp_path / "mqtt-password").write_text(password)
    device_toml = tmp_path / "device.toml"
    device_toml.write_text(
        f'device_id = "{DEVICE_ID}"\ndata_dir = "{tmp_path}/data"\n\n'
        '[night]\nstart = "22:00"\nend = "22:30"\ntimezone = "UTC"\n\n'
        f'[sit]\nfirst_evening = "{NIGHT}"\nevenings = 1\nstart = "22:02"\noffer_min = 5\nlength_min = 10\n\n'
        f'[broker]\nhost = "{mqtt_broker.host}"\nport = {mqtt_broker.port}\nca_file = "{mqtt_broker.ca_file}"\n'
        f'password_file = "{tmp_path}/mqtt-password"\n'
    )
    device = subprocess.run(
        [BIN / "rlsmon-device", "run", "--config", device_toml, "--emulate", recording, "--speed", str(SPEED),
         "--nights", "1", "--start-at", f"{NIGHT}T21:59:00+00:00", "--press", f"{NIGHT}T22:03:00+00:00"],
        capture_output=True, text=True, timeout=600,
    )
    assert device.returncode == 0, device.stderr[-3000:]
    assert "sit: started" in device.stderr and "sit: the test is over" in device.stderr

    [sit] = wait_for(lambda: api_ok(f"/api/devices/{DEVICE_ID}/sits"), 60, "the SIT on the API", procs)
    assert sit["schema"] == "rlsmon.sit/1" and sit["evening"] == NIGHT
    assert sit["taken"] and not sit["ended_early"] and sit["duration_s"] == 600.0
    assert [h["night"] for h in api_ok(f"/api/devices/{DEVICE_ID}/nights")] == [NIGHT]  # and the night

    # The same span scored from the true LMs: the test began when the button was pressed.
    start_s = datetime.fromisoformat(sit["started_at"]).timestamp() - datetime.fromisoformat(
        f"{NIGHT}T22:00:00+00:00").timestamp()
    legs = [[LegMovement(m["onset_s"], m["offset_s"]) for m in truth["lms"]]]
    postures = [PostureSegment(p["start_s"], p["end_s"], p["posture"]) for p in truth["postures"]]
    expected = score_sit(legs, postures, [], start_s, start_s + 600.0, 600.0, False)
    assert expected["above_threshold"] is True
    assert sit["above_threshold"] is True
    assert abs(sit["lm_count"] - expected["lm_count"]) <= 2
    assert sit["scored_s"] >= 600.0 - sit["gap_s"] - 1.0

"""End to end, the demo shortened: one emulated device replays a one-hour night through the real
daemon (register-level emulator, FIFO reader, detection, outbox, MQTT over TLS) to a real mosquitto,
the collector stores it, and the dashboard's JSON API serves it.

The expected LM count is what `rlsmon-device analyze --json` finds in the same recording. Both run
the same detection and scoring code, so any difference comes from the path this test is about: the
emulated chip's quantisation, the FIFO, the night window's time base, the store, the uplink, the
collector and the API. Not the simulator's ground truth: how well detection matches the truth is
benchmarks/accuracy.py's question, not this test's.

One honest exception: the emulated clock runs 50x real time, so a busy machine can overrun the
chip's FIFO, and the daemon must then record a gap (never invent samples). An LM that touches a gap
may be cut or lost, and one whose start fell in the gap is not scored live (a flexion's release
within a hold's reach after it, 10 s), so those are set aside on both sides; every other LM must
match one for one, onset to onset, within the time base's error (see MAX_TIMEBASE_ERROR_S), and the
intervals between them within 0.1 s. No live LM may start at a gap's edge. The gaps may not hide
more than a fifth of the night.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from device.detect.lm import LMParams

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
DEVICE_ID = "e2e-bed-1"
NIGHT = "2026-01-05"
SPEED = 50.0
# The night's times come from the device's own time base: the sample count, placed by a robust fit
# of count against clock (device/sensor/timebase.py), never by when a read ran. The analysis of the
# CSV counts samples at the nominal 52 Hz. On a scaled clock real scheduling latency is multiplied
# by SPEED (a 5-ms wait is 0.25 s at 50x), but it only moves stamps when samples were lost: those
# counted back from the clock wait for the next read to bound them, so they are off by at most how
# late that read ran. benchmarks/live_accuracy.py at 50x and 200x, on this 2-core machine under the
# other test suites' load, kept every LM clear of a gap within 0.035 s; 0.25 s leaves room for one
# read held up 5 ms right after an overrun. Each interval between consecutive LMs, which is what
# PLM scoring reads, must match within 0.1 s (about 5 samples).
MAX_TIMEBASE_ERROR_S = 0.25
IMI_TOLERANCE_S = 0.1


def wait_for(predicate, timeout_s: float, what: str, procs=()):
    """Poll until `predicate()` is truthy (and return it); fail early if a process died."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args[1:3]} exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def api_getter(api: httpx.Client):
    """`get(path)`: the dashboard API's JSON at `path`, or None while it is not there (yet)."""

    def get(path: str):
        try:
            response = api.get(path)
        except httpx.TransportError:
            return None
        return response.json() if response.status_code == 200 else None

    return get


def add_device_seen_by_collector(mqtt_broker, api_ok, device_id: str, procs) -> str:
    """Provision `device_id` and wait until the collector has stored a status from it: its
    subscription then exists before the device publishes (a first session has nothing to queue
    into). Returns the device's password."""
    password = mqtt_broker.add_device(device_id)
    probe = mqtt_broker.client(device_id, password)
    probe.connect(mqtt_broker.host, mqtt_broker.port)
    probe.loop_start()
    probe.publish(f"rlsmon/v1/{device_id}/status", "online", qos=1, retain=True).wait_for_publish(10)
    probe.disconnect()
    probe.loop_stop()
    wait_for(lambda: any(d["device_id"] == device_id for d in api_ok("/api/devices") or []), 60,
             "the collector to record the device's status", procs)
    return password


def overlaps_gap(lm: dict, gaps: list[dict], after_s: float = 0.0) -> bool:
    return any(lm["onset_s"] < g["end_s"] + after_s and g["start_s"] < lm["offset_s"] for g in gaps)


@pytest.fixture
def server(tmp_path, mqtt_broker):
    """The collector and the dashboard as the units run them, with an API token for the test."""
    from server.db import open_db
    from server.web.auth import create_api_token, set_password

    (tmp_path / "collector-password").write_text(mqtt_broker.collector_password)
    config = tmp_path / "server.toml"
    config.write_text(
        f'[database]\npath = "{tmp_path}/server.db"\n\n'
        f'[mqtt]\nhost = "{mqtt_broker.host}"\nport = {mqtt_broker.port}\nca_file = "{mqtt_broker.ca_file}"\n'
        f'username = "{mqtt_broker.collector_user}"\npassword_file = "{tmp_path}/collector-password"\n\n'
        f'[provision]\npassword_file = "{tmp_path}/unused.passwd"\nacl_file = "{tmp_path}/unused.acl"\n'
    )
    db = open_db(str(tmp_path / "server.db"))
    set_password(db, "e2e.reader", "an e2e password", datetime.now(timezone.utc), replace=False)
    token = create_api_token(db, "e2e", "e2e.reader", "clinician", datetime.now(timezone.utc),
                             timedelta(days=1))
    db.conn.close()

    from tests.broker import free_port

    port = free_port()
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("collector", "web")}
    procs = [
        subprocess.Popen([BIN / "rlsmon-server", "collect", "--config", config],
                         stdout=logs["collector"], stderr=subprocess.STDOUT),
        subprocess.Popen([BIN / "rlsmon-server", "web", "--config", config, "--port", str(port)],
                         stdout=logs["web"], stderr=subprocess.STDOUT),
    ]
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"})
    try:
        yield api, procs
    finally:
        api.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)
        for log in logs.values():
            log.close()


def test_a_night_travels_from_the_emulated_ankle_to_the_dashboard_api(tmp_path, mqtt_broker, server):
    api, procs = server
    recording = tmp_path / "night.csv"
    subprocess.run([BIN / "rlsmon-device", "simulate", "--scenario", "severe", "--seed", "3", "--hours", "1",
                    "--out", recording, "--truth", tmp_path / "truth.json"], check=True, capture_output=True)
    offline = json.loads(subprocess.run([BIN / "rlsmon-device", "analyze", "--json", recording],
                                        check=True, capture_output=True, text=True).stdout)
    assert offline["lm_count"] >= 30  # a night worth checking

    api_ok = api_getter(api)
    wait_for(lambda: api_ok("/api/devices") is not None, 60, "the dashboard", procs)
    password = add_device_seen_by_collector(mqtt_broker, api_ok, DEVICE_ID, procs)

    (tmp_path / "mqtt-password").write_text(password)
    (tmp_path / "data").mkdir()
    device_toml = tmp_path / "device.toml"
    device_toml.write_text(
        f'device_id = "{DEVICE_ID}"\ndata_dir = "{tmp_path}/data"\n\n'
        '[night]\nstart = "22:00"\nend = "23:00"\ntimezone = "UTC"\n\n'
        f'[broker]\nhost = "{mqtt_broker.host}"\nport = {mqtt_broker.port}\nca_file = "{mqtt_broker.ca_file}"\n'
        f'password_file = "{tmp_path}/mqtt-password"\n'
    )
    device = subprocess.run(
        [BIN / "rlsmon-device", "run", "--config", device_toml, "--emulate", recording, "--speed", str(SPEED),
         "--nights", "1", "--start-at", f"{NIGHT}T21:59:00+00:00"],
        capture_output=True, text=True, timeout=600,
    )
    assert device.returncode == 0, device.stderr[-3000:]

    headlines = wait_for(lambda: api_ok(f"/api/devices/{DEVICE_ID}/nights"), 60, "the night on the API", procs)
    assert [h["night"] for h in headlines] == [NIGHT]
    night = api_ok(f"/api/devices/{DEVICE_ID}/nights/{NIGHT}")
    assert night["device_id"] == DEVICE_ID and night["night"] == NIGHT
    assert night["lm_count"] == len(night["lm_events"]) == headlines[0]["lm_count"]

    gaps = night["coverage"]["gaps"]
    assert sum(g["end_s"] - g["start_s"] for g in gaps) < night["duration_s"] / 5, gaps
    reach_s = LMParams().max_hold_s
    assert not [lm for lm in night["lm_events"] if any(abs(lm["onset_s"] - g["end_s"]) < 0.1 for g in gaps)]
    expected = [lm["onset_s"] for lm in offline["lm_events"] if not overlaps_gap(lm, gaps, reach_s)]
    received = [lm["onset_s"] for lm in night["lm_events"] if not overlaps_gap(lm, gaps, reach_s)]
    assert len(received) == len(expected), (received, expected)
    pairs = list(zip(received, expected))
    assert all(abs(a - b) <= MAX_TIMEBASE_ERROR_S for a, b in pairs), pairs
    # The intervals between LMs are what PLM scoring reads: they must survive the trip unchanged.
    imi_errors = [abs((a2 - a1) - (b2 - b1)) for (a1, b1), (a2, b2) in zip(pairs, pairs[1:])]
    assert max(imi_errors, default=0.0) <= IMI_TOLERANCE_S, pairs
    if not gaps:
        assert night["lm_count"] == offline["lm_count"]

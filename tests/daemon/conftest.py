"""Helpers for running the real daemon (`rlsmon-device run --emulate`) against a real mosquitto."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

RLSMON_DEVICE = str(Path(sys.executable).with_name("rlsmon-device"))
ZONE = "Europe/Berlin"
NIGHT = "2026-03-01"
WINDOW_START = "22:00"
WINDOW_MIN = 20  # a short night keeps the suite fast; the code is the same as for 10 hours
# An hour before the window: the daemon starts up, gets the recording ready, then skips to the window.
START_AT = "2026-03-01T21:00:00+01:00"
# A restarted daemon continues one timeline (--origin), so it must not skip: start just before.
START_AT_NO_SKIP = "2026-03-01T21:59:58+01:00"
SPEED = 100.0


def wait_for(predicate, timeout_s: float = 60.0, what: str = "condition", proc=None) -> None:
    """Poll `predicate` until true; fail after `timeout_s` or when `proc` exits first."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc is not None and proc.poll() is not None and not predicate():
            raise AssertionError(f"the daemon exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def store(tmp_path):
    """A night store on disk, running its writer thread."""
    from device.store import Store

    s = Store(tmp_path / "night.db")
    s.start()
    yield s
    s.close()


@pytest.fixture(scope="session")
def night_recording(tmp_path_factory):
    """A simulated PLMD night as long as the window, with its truth."""
    from device.sim import simulate_night, write_night

    d = tmp_path_factory.mktemp("rec")
    write_night(simulate_night("severe", 3, WINDOW_MIN / 60.0, 52.0), d / "rec.csv", d / "truth.json")
    return d / "rec.csv", json.loads((d / "truth.json").read_text())


def write_config(tmp_path: Path, broker, device_id: str = "dev-a", password: str = "x",
                 ca_file: str | None = None, username: str = "") -> Path:
    """A device.toml for the emulated device, pointing at `broker` (or at nothing when None)."""
    pw = tmp_path / "mqtt-password"
    pw.write_text(password + "\n")
    end = (dt.datetime.strptime(WINDOW_START, "%H:%M") + dt.timedelta(minutes=WINDOW_MIN)).strftime("%H:%M")
    port = broker.port if broker is not None else 1
    ca = ca_file or (str(broker.ca_file) if broker is not None else str(tmp_path / "none.pem"))
    path = tmp_path / "device.toml"
    path.write_text(f"""\
device_id = "{device_id}"
data_dir = "{tmp_path / 'data'}"
[night]
start = "{WINDOW_START}"
end = "{end}"
timezone = "{ZONE}"
[broker]
host = "localhost"
port = {port}
ca_file = "{ca}"
username = "{username}"
password_file = "{pw}"
""")
    return path


@dataclass
class DaemonRun:
    """A daemon subprocess; stderr goes to a file so a test can read the log."""

    proc: subprocess.Popen
    log_path: Path
    db_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def query(self, sql: str) -> list:
        if not self.db_path.exists():
            return []
        conn = sqlite3.connect(self.db_path, timeout=5)
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []  # tables not created yet
        finally:
            conn.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def start_daemon(config: Path, recordings: list[Path], *, nights: int | None = 1, origin: float | None = None,
                 faults: str = "", env: dict | None = None, log_name: str = "daemon.log",
                 speed: float = SPEED) -> DaemonRun:
    start_at = START_AT if origin is None else START_AT_NO_SKIP
    args = [RLSMON_DEVICE, "run", "--config", str(config), "--speed", str(speed), "--start-at", start_at]
    for r in recordings:
        args += ["--emulate", str(r)]
    if nights is not None:
        args += ["--nights", str(nights)]
    if origin is not None:
        args += ["--origin", repr(origin)]
    if faults:
        args += ["--faults", faults]
    log_path = config.parent / log_name
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log_path, "w"),
                            env={**os.environ, **(env or {})}, start_new_session=True)
    return DaemonRun(proc, log_path, config.parent / "data" / "night.db")


@pytest.fixture
def collector(mqtt_broker, tmp_path):
    """The real collector on `mqtt_broker`, storing into tmp_path/server.db: it sends the receipts
    the daemon waits for."""
    from tests.server.conftest import RunningCollector

    running = RunningCollector(mqtt_broker, tmp_path / "server.db").start()
    yield running
    running.stop()


def collected(db_path: Path) -> list[dict]:
    """The summaries the collector stored, by night."""
    if not db_path.exists():
        return []
    conn = sqlite3.connect(db_path, timeout=5)
    try:
        return [json.loads(r[0]) for r in conn.execute("select summary_json from nights order by night")]
    finally:
        conn.close()


@pytest.fixture
def daemons():
    """Daemons started in a test; any still running at the end are killed."""
    runs: list[DaemonRun] = []
    yield runs
    for run in runs:
        if run.proc.poll() is None:
            run.kill()

"""`rlsmon-server collect` as systemd runs it: a config file, SIGTERM to stop, nothing lost."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from server.db import open_db
from tests.server.payloads import encode, make_summary

RLSMON_SERVER = str(Path(sys.executable).with_name("rlsmon-server"))


def write_config(tmp_path: Path, broker) -> Path:
    (tmp_path / "collector-password").write_text(broker.collector_password + "\n")
    path = tmp_path / "server.toml"
    path.write_text(
        f'[database]\npath = "{tmp_path}/server.db"\n'
        f'[mqtt]\nhost = "localhost"\nport = {broker.port}\nca_file = "{broker.ca_file}"\n'
        f'username = "{broker.collector_user}"\npassword_file = "{tmp_path}/collector-password"\n'
    )
    return path


def wait_for(predicate, proc, log: Path, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def nights(db_path: Path) -> int:
    return open_db(db_path)["nights"].count if db_path.exists() else 0


def test_collect_stores_nights_and_stops_cleanly_on_sigterm(mqtt_broker, device, tmp_path):
    config = write_config(tmp_path, mqtt_broker)
    log = tmp_path / "collect.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen([RLSMON_SERVER, "collect", "--config", str(config)],
                                stderr=stderr, start_new_session=True)
    try:
        wait_for(lambda: "subscribed to" in log.read_text(), proc, log)
        dev = device("dev-a")
        summary = make_summary("dev-a", "2026-04-01")
        assert not dev.summary(encode(summary)).is_failure
        wait_for(lambda: nights(tmp_path / "server.db") == 1, proc, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "connected to" in text
    assert summary["summary_id"] not in text and "plm" not in text.lower()  # no health data in logs


def test_collect_names_the_bad_config(tmp_path):
    bad = tmp_path / "server.toml"
    bad.write_text("[mqtt]\nport = \"x\"\n")
    result = subprocess.run([RLSMON_SERVER, "collect", "--config", str(bad)], capture_output=True, text=True)
    assert result.returncode == 78 and f"{bad}: [mqtt] port" in result.stderr

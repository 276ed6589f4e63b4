"""`make demo`, shortened: one night of half an hour per patient. It must put every night on the
dashboard, and Ctrl-C (SIGINT) must stop every process it started: broker, collector, dashboard and
devices, with no orphan left behind."""

from __future__ import annotations

import queue
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc (children of children included)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_demo_shows_every_night_and_ctrl_c_leaves_no_process_behind(tmp_path):
    demo = subprocess.Popen(
        [sys.executable, "-m", "device.demo", "--dir", str(tmp_path / "demo"), "--nights", "1",
         "--hours", "0.5", "--speed", "100"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in demo.stdout:
            lines.put(line)
        lines.put(None)  # the demo ended

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    try:
        while not any(line.startswith("all 1 nights") for line in seen):
            line = lines.get(timeout=300)  # the demo's own timeouts fire well before this
            assert line is not None, "the demo ended early:\n" + "".join(seen)
            seen.append(line)
        children = descendants(demo.pid)
        assert len(children) >= 5, children  # mosquitto, collector, web and the two devices at least
        # The devices stay up after their nights, as bedside devices do: the dashboard says online.
        db = sqlite3.connect(tmp_path / "demo" / "server" / "server.db")
        statuses = dict(db.execute("select device_id, status from devices").fetchall())
        # The PLMD patient's medication change, entered through the patient page's form.
        medications = db.execute("select drug, drug_class from medications").fetchall()
        db.close()
        assert medications == [("ropinirole", "dopamine_agonist")]
        assert statuses and set(statuses.values()) == {"online"}, statuses

        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0, "".join(seen)
    finally:
        if demo.poll() is None:
            demo.kill()

    assert sum("night " in line and "PLMI" in line for line in seen) == 2, "".join(seen)
    # The PLMD patient took the evening test on the first evening, and it is on the dashboard.
    assert sum("P-0001 (PLMD): evening test" in line and "min" in line for line in seen) == 1, "".join(seen)
    assert any("Login:" in line for line in seen)
    assert [pid for pid in children if alive(pid)] == []
    assert (tmp_path / "demo" / "server" / "server.db").exists()


def test_the_demo_broker_runs_the_production_config_with_only_its_paths_changed(tmp_path):
    from device.demo import broker_config

    production = (REPO / "firmware_config/mosquitto.conf").read_text()
    demo = broker_config(production, port=12345, tls_dir=tmp_path / "tls", mosquitto_dir=tmp_path / "mq",
                         user="someone")

    def settings(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]

    moved = ("password_file", "acl_file", "cafile", "certfile", "keyfile", "listener")
    kept = [line for line in settings(production) if line.split()[0] not in moved]
    assert [line for line in settings(demo) if line in kept] == kept  # same order, nothing lost
    assert "listener 12345 127.0.0.1" in settings(demo)
    assert f"password_file {tmp_path}/mq/passwd" in settings(demo)
    assert f"cafile {tmp_path}/tls/ca.crt" in settings(demo)
    # every per-listener setting still follows the listener line
    listener_at = settings(demo).index("listener 12345 127.0.0.1")
    assert all(settings(demo).index(line) > listener_at for line in settings(demo)
               if line.split()[0] in ("cafile", "certfile", "keyfile", "tls_version"))


def test_the_demo_night_window_is_as_long_as_a_simulated_night():
    from device.demo import night_window, window_start_at

    assert night_window(2.0) == ("22:00", "00:00")
    assert night_window(0.5) == ("22:00", "22:30")
    assert night_window(8.0, "21:30") == ("21:30", "05:30")
    assert window_start_at(3, "22:00").endswith("T22:00:00+00:00")


def test_the_demo_sit_fits_the_window():
    from device.demo import sit_length_min

    assert (sit_length_min(2.0), sit_length_min(0.5), sit_length_min(0.3)) == (60, 10, None)

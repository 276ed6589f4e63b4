"""Kill trials: the real broker (persistence on, as in production), the real collector
(`rlsmon-server collect`) and the real daemon (`rlsmon-device run --emulate`), each killed with
SIGKILL at random moments and restarted. At the end everything runs until the device's outbox is
empty, and every night the device closed must be in the collector's database exactly once, with the
device's summary_id. Shared by tests/test_chaos.py and benchmarks/kill_trials.py.

Nights are one minute long (22:00-22:01 UTC) on an emulated clock 60 times faster than real time,
so a night takes a second. A restarted daemon starts at the next evening, as one restarted after a
long outage would: the night it was killed in is closed at start-up, with the time it was down as a
gap. The broker's autosave interval (10 s) is longer than a trial, so a broker kill loses all it
held since it started: only the device's outbox and the receipts can save those nights.
"""

from __future__ import annotations

import datetime as dt
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.broker import Broker

BIN = Path(sys.executable).parent
SPEED = 60.0
DEVICE_ID = "dev-a"
FIRST_START = "2026-03-01T21:59:58+00:00"
VICTIMS = ("broker", "collector", "daemon")


def make_recording(directory: Path) -> Path:
    """A two-minute simulated PLMD recording (longer than a night's window)."""
    from device.sim import simulate_night, write_night

    csv = directory / "rec.csv"
    if not csv.exists():
        write_night(simulate_night("severe", 7, 2 / 60, 52.0), csv, directory / "truth.json")
    return csv


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.02)


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(10)


def _rows(db_path: Path, sql: str) -> list[tuple]:
    if not db_path.exists():
        return []
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # not created yet
    finally:
        conn.close()


@dataclass
class TrialResult:
    """What one trial did and found."""

    seed: int
    kills: list[str]
    closed: int  # nights the device closed
    stored: int  # of those, stored by the collector with the device's summary_id
    lost: list[str]  # closed nights the collector does not have
    not_receipted: int  # summaries still in the device's outbox at the end
    extra: int  # nights the collector has that the device never closed (must be 0)
    seconds: float


@dataclass
class Rig:
    """One broker, collector and device under `workdir`."""

    workdir: Path
    broker: Broker
    recording: Path
    collector: subprocess.Popen | None = None
    daemon: subprocess.Popen | None = None
    logs: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.device_dir = self.workdir / "device"
        self.device_dir.mkdir(parents=True, exist_ok=True)
        self.device_db = self.device_dir / "data" / "night.db"
        self.server_db = self.workdir / "server.db"
        password = self.broker.add_device(DEVICE_ID)
        (self.device_dir / "mqtt-password").write_text(password + "\n")
        (self.device_dir / "device.toml").write_text(
            f'device_id = "{DEVICE_ID}"\ndata_dir = "{self.device_dir / "data"}"\n'
            '[night]\nstart = "22:00"\nend = "22:01"\ntimezone = "UTC"\n'
            f'[broker]\nhost = "localhost"\nport = {self.broker.port}\nca_file = "{self.broker.ca_file}"\n'
            f'password_file = "{self.device_dir / "mqtt-password"}"\nkeepalive_s = 5\n')
        (self.workdir / "collector-password").write_text(self.broker.collector_password + "\n")
        (self.workdir / "server.toml").write_text(
            f'[database]\npath = "{self.server_db}"\n'
            f'[mqtt]\nhost = "localhost"\nport = {self.broker.port}\nca_file = "{self.broker.ca_file}"\n'
            f'username = "{self.broker.collector_user}"\npassword_file = "{self.workdir / "collector-password"}"\n'
            'keepalive_s = 5\n')

    def _log(self, name: str):
        path = self.workdir / f"{name}-{len(self.logs)}.log"
        self.logs.append(path)
        return path.open("w")

    def start_collector(self) -> None:
        with self._log("collector") as log:
            self.collector = subprocess.Popen(
                [str(BIN / "rlsmon-server"), "collect", "--config", str(self.workdir / "server.toml")],
                stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)

    def collector_subscribed(self) -> bool:
        """Whether the running collector's last log says it is subscribed."""
        return self.collector is not None and "subscribed to" in self.logs[-1].read_text()

    def start_daemon(self, drain: bool = False) -> None:
        """Start the daemon at the evening after the last night it knows (the first time: the first
        evening). `drain`: only forward what is waiting (--nights 0), then exit."""
        last = _rows(self.device_db, "select max(night) from nights")
        start = FIRST_START if not last or last[0][0] is None else (
            dt.datetime.fromisoformat(f"{last[0][0]}T21:59:58+00:00") + dt.timedelta(days=1)).isoformat()
        args = [str(BIN / "rlsmon-device"), "run", "--config", str(self.device_dir / "device.toml"),
                "--emulate", str(self.recording), "--speed", f"{SPEED:g}", "--start-at", start]
        with self._log("daemon") as log:
            self.daemon = subprocess.Popen(args + (["--nights", "0"] if drain else []),
                                           stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)

    def kill(self, victim: str) -> None:
        if victim == "broker":
            self.broker.kill()
        else:
            _kill(getattr(self, victim))
            setattr(self, victim, None)

    def restart(self, victim: str) -> None:
        {"broker": self.broker.start, "collector": self.start_collector, "daemon": self.start_daemon}[victim]()

    def closed_nights(self) -> dict[str, str]:
        return dict(_rows(self.device_db, "select night, summary_id from nights where closed_at is not null"))

    def collected(self) -> dict[str, str]:
        return dict(_rows(self.server_db, f"select night, summary_id from nights where device_id = '{DEVICE_ID}'"))

    def outbox(self) -> int:
        rows = _rows(self.device_db, "select count(*) from outbox")
        return rows[0][0] if rows else 0

    def close(self) -> None:
        for proc in (self.daemon, self.collector):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    _kill(proc)
        self.broker.kill()


def run_trial(workdir: Path, ca, recording: Path, seed: int, *, victims: tuple[str, ...] = VICTIMS,
              collector_down: bool = False, kills: int = 3, drain_timeout_s: float = 120.0) -> TrialResult:
    """One trial. `collector_down`: the collector makes its session, then stays down until the end.
    Each of `kills` rounds waits a random 0.3-2 s (after the first closed night), kills a random
    victim with SIGKILL and restarts it after a random 0-1 s."""
    rng = random.Random(seed)
    began = time.monotonic()
    rig = Rig(workdir, Broker(workdir / "mosquitto", ca), recording)
    rig.broker.start()
    done: list[str] = []
    try:
        rig.start_collector()
        _wait(rig.collector_subscribed, 60, "the collector's subscription")
        if collector_down:
            rig.kill("collector")
        rig.start_daemon()
        _wait(lambda: rig.closed_nights(), 60, "the first night")
        for _ in range(kills):
            time.sleep(rng.uniform(0.3, 2.0))  # a random moment: that is the point
            victim = rng.choice(victims)
            rig.kill(victim)
            done.append(victim)
            time.sleep(rng.uniform(0.0, 1.0))
            rig.restart(victim)
        # The end: the daemon stops where it is, everything else comes (back) up and it drains.
        rig.kill("daemon")
        if rig.broker.process is None:
            rig.broker.start()
        if rig.collector is None:
            rig.start_collector()
        rig.start_daemon(drain=True)
        try:
            rig.daemon.wait(drain_timeout_s)
        except subprocess.TimeoutExpired:
            pass  # reported as not receipted below
        closed, collected = rig.closed_nights(), rig.collected()
        stored = [n for n, sid in closed.items() if collected.get(n) == sid]
        return TrialResult(seed, done, len(closed), len(stored), sorted(set(closed) - set(stored)),
                           rig.outbox(), len(set(collected) - set(closed)), time.monotonic() - began)
    finally:
        rig.close()


def temp_ca():
    """A throwaway test CA (trustme)."""
    import trustme

    return trustme.CA()


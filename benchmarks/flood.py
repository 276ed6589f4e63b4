"""One device floods the server: the collector's peak RSS and the database's growth (issue 10, item 3).

A real mosquitto (the production config: TLS, passwords, ACL, its 4 MiB message_size_limit) and the
real collector, run as systemd runs it (`rlsmon-server collect`, default settings: validation on the
writer thread, a 16 MiB inbox, 4 KiB of at most 100 refused payloads per device and day). One device
sends `--messages` payloads of junk just under 4 MiB at QoS 1, another as many at QoS 0, then a valid
night each, which marks the end of its flood. Printed: the peak RSS (VmHWM) of the collector and of
its validator processes, if any, the database's growth (with its WAL), the rows kept and the messages
counted.

Before the bounds (issue 10): 240 such messages grew the database by 1.6 GB and the collector to
1.2 GB RSS.

    .venv/bin/python benchmarks/flood.py [--messages 240]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trustme  # noqa: E402

from server.collector import MAX_PAYLOAD_BYTES  # noqa: E402
from server.db import open_db  # noqa: E402
from tests.broker import Broker  # noqa: E402
from tests.server.payloads import encode, make_summary  # noqa: E402
from tests.server.test_collect_command import write_config  # noqa: E402

RLSMON_SERVER = str(Path(sys.executable).with_name("rlsmon-server"))
IN_FLIGHT = 8  # publisher-side window, so the benchmark's own memory stays small
MIB = 1024 * 1024


def peak_rss_mib(pid: int) -> float:
    """VmHWM, the process's peak resident set, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def flood(broker: Broker, device_id: str, qos: int, messages: int) -> float:
    """Publish `messages` junk payloads then a valid night (QoS 1); return the seconds it took."""
    import paho.mqtt.client as mqtt

    client = broker.client(device_id, broker.passwords[device_id], client_id=device_id)
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert connected.wait(10)
    junk = b"\x00" * (MAX_PAYLOAD_BYTES - 1024)
    started = time.monotonic()
    window: list[mqtt.MQTTMessageInfo] = []
    for _ in range(messages):
        window.append(client.publish(f"rlsmon/v1/{device_id}/summary", junk, qos=qos))
        if len(window) >= IN_FLIGHT:
            window.pop(0).wait_for_publish(120)
    for info in window:
        info.wait_for_publish(120)
    client.publish(f"rlsmon/v1/{device_id}/summary", encode(make_summary(device_id, "2026-01-05")),
                   qos=1).wait_for_publish(120)
    client.disconnect()
    client.loop_stop()
    return time.monotonic() - started


def wait_for_night(db_path: Path, device_id: str, proc: subprocess.Popen, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        db = open_db(db_path)
        try:
            if db.execute("SELECT 1 FROM nights WHERE device_id = ?", [device_id]).fetchone():
                return
        finally:
            db.close()
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the collector did not store {device_id}'s night (exit code {proc.poll()})")
        time.sleep(0.2)


def wait_for_log(log: Path, text: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the collector did not log {text!r}: {log.read_text()}")
        time.sleep(0.05)


def db_bytes(db_path: Path) -> int:
    return sum(p.stat().st_size for p in db_path.parent.glob(db_path.name + "*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=240, help="junk messages per QoS (default 240)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir / "mosquitto", trustme.CA())
        broker.start()
        proc = None
        try:
            for device_id in ("flood-qos1", "flood-qos0"):
                broker.add_device(device_id)
            config = write_config(workdir, broker)  # the defaults, as installed
            db_path = workdir / "server.db"
            open_db(db_path).close()
            before = db_bytes(db_path)
            proc = subprocess.Popen([RLSMON_SERVER, "collect", "--config", str(config)],
                                    stdout=subprocess.DEVNULL, stderr=open(workdir / "collector.log", "w"))
            wait_for_log(workdir / "collector.log", "subscribed to", proc)
            total_mib = 2 * args.messages * (MAX_PAYLOAD_BYTES - 1024) / MIB
            seconds = {}
            for device_id, qos in (("flood-qos1", 1), ("flood-qos0", 0)):
                seconds[device_id] = flood(broker, device_id, qos, args.messages)
                wait_for_night(db_path, device_id, proc)
            validator_pids = children(proc.pid)
            collector_mib = peak_rss_mib(proc.pid)
            validator_mib = max((peak_rss_mib(p) for p in validator_pids), default=0.0)
            db = open_db(db_path)
            counted = {r["device_id"]: r["count"] for r in db["rejected_daily"].rows}
            rows = db["rejected"].count
            db.close()
            growth_mib = (db_bytes(db_path) - before) / MIB
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
            broker.kill()
        log_text = (workdir / "collector.log").read_text()  # after the stop: its last summaries too
        print(f"flood: {args.messages} junk messages of {(MAX_PAYLOAD_BYTES - 1024) / MIB:.2f} MiB at QoS 1 "
              f"and as many at QoS 0 ({total_mib:,.0f} MiB), then a valid night each")
        print(f"  sent in {seconds['flood-qos1']:.1f} s (QoS 1) and {seconds['flood-qos0']:.1f} s (QoS 0)")
        print(f"collector peak RSS: {collector_mib:.0f} MiB"
              + (f"; validator process peak RSS: {validator_mib:.0f} MiB" if validator_pids else " (no validator process)"))
        print(f"database growth: {growth_mib:.2f} MiB (with its WAL)")
        print(f"rejected rows kept: {rows}; refused messages counted: {counted}")
        warnings = [line for line in log_text.splitlines() if line.startswith("WARNING")]
        print(f"collector log: {len(warnings)} warning lines for {2 * args.messages} refused messages")
        for line in warnings:
            print(f"  {line}")


if __name__ == "__main__":
    main()

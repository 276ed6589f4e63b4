"""What the daemon costs on the Pi: CPU, memory, wake-ups and SD-card writes, at 104 Hz in real time.

Runs the daemon as `rlsmon-device run --emulate` does (`device.daemon.run_command`, speed 1: real
time) in a child process, inside a night window, for `--seconds` after `--warmup` s of start-up. A
meter thread in that process reads its counters from /proc: CPU (utime + stime) as a percentage of
one core (to the nanosecond: `process_time`, schedstat), RSS (and its peak), the bytes written (`wchar`: every write(2), i.e. the SQLite WAL and
checkpoints; the broker is unreachable, so no network writes) extrapolated to an hour and to a
10-hour night, and each thread's CPU and voluntary context switches (its wake-ups; a reader
thread's CPU includes the chip's side of its transfers).

By default the broker is unreachable (the daemon retries with its backoff); with `--broker` a real
mosquitto (tests/broker.py: TLS, a password, the production ACL) runs beside it, and the daemon is
connected the whole time, as at a bedside: its network thread then waits on the socket until traffic
or the keepalive (60 s) is due. `wakeups_per_s` is the sum over the daemon's threads (the meter's
and the emulator's timer thread left out; the reader thread's wake-ups are the chip's FIFO reads).

The emulated chip runs in the same process: its own CPU (its timer thread, and its side of every
I2C transfer, which runs on the reader's thread) is metered by `device.sensor.emulator.EMULATOR_CPU`
and reported apart; `daemon_cpu_pct` is the process without the emulator and without the meter.
The progress is committed once a minute, so a 60-s run holds one or two commits: `--seconds 600`
gives a steadier write figure.

Bars: < 1 % of one core and RSS < 80 MB (issue 4), < 5 MB of writes a night; the daemon without
the emulator <= 0.1 % of one core (issue 14).

    .venv/bin/python benchmarks/daemon_cost.py [--seconds 60] [--broker] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

def _cpu_s(task: Path) -> float:
    """A thread's CPU seconds, to the nanosecond (schedstat; stat counts 10-ms ticks)."""
    return int((task / "schedstat").read_text().split()[0]) / 1e9


def _threads() -> dict[int, dict[str, float | str]]:
    """This process's threads by native id: name, CPU seconds, voluntary context switches."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[int, dict[str, float | str]] = {}
    for task in Path("/proc/self/task").iterdir():
        tid = int(task.name)
        try:
            status = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines() if ":" in line)
            out[tid] = {"name": names.get(tid, "?"), "cpu_s": _cpu_s(task),
                        "wakeups": int(status["voluntary_ctxt_switches"])}
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
    return out


def _counters() -> dict[str, object]:
    from device.sensor.emulator import EMULATOR_CPU

    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return {"cpu_s": time.process_time(), "emulator_cpu_s": EMULATOR_CPU.seconds(),
            "meter_cpu_s": time.thread_time(), "threads": _threads(),
            "rss_mb": int(status["VmRSS"].split()[0]) / 1024, "hwm_mb": int(status["VmHWM"].split()[0]) / 1024,
            "wchar": int(io["wchar"]), "write_bytes": int(io["write_bytes"])}


def _meter(warmup_s: float, seconds: float, out_path: str) -> None:
    time.sleep(warmup_s)
    a, t0 = _counters(), time.monotonic()
    time.sleep(seconds)
    b, elapsed = _counters(), time.monotonic() - t0
    threads = {}
    for tid, after in b["threads"].items():  # type: ignore[union-attr]
        before = a["threads"].get(tid, {"cpu_s": 0.0, "wakeups": 0})  # type: ignore[union-attr]
        threads[f"{after['name']} ({tid})"] = {
            "cpu_pct": round(100 * (after["cpu_s"] - before["cpu_s"]) / elapsed, 3),
            "wakeups_per_s": round((after["wakeups"] - before["wakeups"]) / elapsed, 2)}
    # Not the daemon's: the meter itself, and the emulated chip's timer thread.
    daemon_threads = {k: t for k, t in threads.items() if not k.startswith(("meter ", "lsm6ds-emulator"))}
    cpu_s = b["cpu_s"] - a["cpu_s"]  # type: ignore[operator]
    emulator_s = b["emulator_cpu_s"] - a["emulator_cpu_s"]  # type: ignore[operator]
    meter_s = b["meter_cpu_s"] - a["meter_cpu_s"]  # type: ignore[operator]
    Path(out_path).write_text(json.dumps({
        "odr_hz": 104, "measured_s": round(elapsed, 1), "warmup_s": warmup_s,
        "process_cpu_pct": round(100 * cpu_s / elapsed, 3),
        "emulator_cpu_pct": round(100 * emulator_s / elapsed, 3),
        "daemon_cpu_pct": round(100 * (cpu_s - emulator_s - meter_s) / elapsed, 3),
        "wakeups_per_s": round(sum(t["wakeups_per_s"] for t in daemon_threads.values()), 2),
        "rss_mb": round(b["rss_mb"], 1), "peak_rss_mb": round(b["hwm_mb"], 1),  # type: ignore[arg-type]
        "writes_mb_per_night": round((b["wchar"] - a["wchar"]) * 36000 / elapsed / 1e6, 2),  # type: ignore[operator]
        "page_cache_mb_per_night": round((b["write_bytes"] - a["write_bytes"]) * 36000 / elapsed / 1e6, 2),  # type: ignore[operator]
        "threads": threads}))
    os.kill(os.getpid(), signal.SIGTERM)  # the daemon's own clean stop


def child(args: argparse.Namespace) -> int:
    """The measured process: the daemon, and a meter thread that stops it when done."""
    from device.daemon import run_command

    threading.Thread(target=_meter, args=(args.warmup, args.seconds, args.out), name="meter", daemon=True).start()
    return run_command(args.config, (args.recording,), 1.0, args.start_at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0, help="start-up seconds left out")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--broker", action="store_true", help="connected to a real mosquitto (default: none)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--recording", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.exit(child(args))

    from device.sim import simulate_night, write_night

    work = Path(tempfile.mkdtemp(prefix="rlsmon-cost-"))
    minutes = (args.seconds + args.warmup) / 60 + 1
    write_night(simulate_night("severe", 11, minutes / 60, 104.0), work / "rec.csv", work / "truth.json")
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    start, end = now - dt.timedelta(minutes=1), now + dt.timedelta(hours=2)
    broker = None
    port, ca_file = 1, work / "none.pem"
    if args.broker:
        import trustme

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.broker import Broker

        broker = Broker(work / "mosquitto", trustme.CA())
        broker.start()
        (work / "none").write_text(broker.add_device("bench"))
        port, ca_file = broker.port, broker.ca_file
    (work / "device.toml").write_text(f"""device_id = "bench"
data_dir = "{work / 'data'}"
[night]
start = "{start:%H:%M}"
end = "{end:%H:%M}"
timezone = "UTC"
[sensor]
odr_hz = 104
[broker]
port = {port}
ca_file = "{ca_file}"
password_file = "{work / 'none'}"
""")
    out = work / "cost.json"
    try:
        with open(work / "daemon.log", "w") as log:
            status = subprocess.run([sys.executable, __file__, "--child", "--config", str(work / "device.toml"),
                                     "--recording", str(work / "rec.csv"), "--start-at", now.isoformat(),
                                     "--warmup", str(args.warmup), "--seconds", str(args.seconds), "--out", str(out)],
                                    stderr=log, timeout=args.warmup + args.seconds + 120)
    finally:
        if broker is not None:
            broker.stop()
    if not out.exists():
        sys.exit(f"the daemon exited early (status {status.returncode}); see {work / 'daemon.log'}")
    figures = json.loads(out.read_text())
    figures["broker"] = "connected" if args.broker else "unreachable"
    if args.json:
        print(json.dumps(figures, indent=1))
        return
    print(f"daemon at 104 Hz, real time, {figures['measured_s']:.0f} s measured after {args.warmup:.0f} s of start-up")
    print(f"CPU      {figures['daemon_cpu_pct']:.3f} % of one core without the emulated chip   bar <= 0.1 %")
    print(f"         ({figures['process_cpu_pct']:.3f} % for the process, {figures['emulator_cpu_pct']:.3f} % "
          "of it the emulated chip)   bar < 1 %")
    print(f"wake-ups {figures['wakeups_per_s']:.2f}/s over the daemon's threads (broker {figures['broker']})")
    print(f"RSS      {figures['rss_mb']:.1f} MB (peak {figures['peak_rss_mb']:.1f} MB)                 bar < 80 MB")
    print(f"writes   {figures['writes_mb_per_night']:.2f} MB per 10-h night by SQLite   bar < 5 MB")
    print(f"         (page cache: {figures['page_cache_mb_per_night']:.2f} MB per night, counting each dirtied "
          "4-KiB page, the -shm index included)")
    for name, t in sorted(figures["threads"].items(), key=lambda kv: -kv[1]["wakeups_per_s"]):
        print(f"thread   {name:28} {t['cpu_pct']:7.3f} % CPU {t['wakeups_per_s']:7.2f} wake-ups/s")


if __name__ == "__main__":
    main()

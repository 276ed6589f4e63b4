"""What the daemon costs on the Pi: CPU, memory and SD-card writes, at 104 Hz in real time.

Runs the real `rlsmon-device run` against the emulated chip (speed 1: real time) inside a night
window for 60 s after start-up, and reads the process's own counters from /proc:
CPU (utime + stime) as a percentage of one core, RSS (and its peak), and the bytes it wrote
(`wchar`: every write(2), i.e. the SQLite WAL and checkpoints; no broker is configured, so no
network writes) extrapolated to an hour and to a 10-hour night. The progress is committed once a
minute, so a 60-s run holds one or two commits: `--seconds 600` gives a steadier write figure. The emulated chip runs in the same
process, so the CPU figure is an upper bound for the daemon alone.

Bars (issue 4): < 1 % of one core, RSS < 80 MB, < 5 MB of writes a night.

    .venv/bin/python benchmarks/daemon_cost.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RLSMON_DEVICE = str(Path(sys.executable).with_name("rlsmon-device"))


def proc_counters(pid: int) -> dict[str, float]:
    """CPU seconds, RSS and peak RSS (MB), and bytes written, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return {"cpu_s": (int(stat[11]) + int(stat[12])) / ticks,
            "rss_mb": int(status["VmRSS"].split()[0]) / 1024, "hwm_mb": int(status["VmHWM"].split()[0]) / 1024,
            "wchar": int(io["wchar"]), "write_bytes": int(io["write_bytes"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0, help="start-up seconds left out")
    args = parser.parse_args()

    from device.sim import simulate_night, write_night

    work = Path(tempfile.mkdtemp(prefix="rlsmon-cost-"))
    minutes = (args.seconds + args.warmup) / 60 + 1
    write_night(simulate_night("severe", 11, minutes / 60, 104.0), work / "rec.csv", work / "truth.json")
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    start, end = now - dt.timedelta(minutes=1), now + dt.timedelta(hours=2)
    (work / "device.toml").write_text(f"""device_id = "bench"
data_dir = "{work / 'data'}"
[night]
start = "{start:%H:%M}"
end = "{end:%H:%M}"
timezone = "UTC"
[sensor]
odr_hz = 104
[broker]
port = 1
ca_file = "{work / 'none.pem'}"
password_file = "{work / 'none'}"
""")
    proc = subprocess.Popen([RLSMON_DEVICE, "run", "--config", str(work / "device.toml"), "--emulate",
                             str(work / "rec.csv"), "--speed", "1", "--start-at", now.isoformat()],
                            stderr=open(work / "daemon.log", "w"))
    try:
        time.sleep(args.warmup)
        if proc.poll() is not None:
            sys.exit(f"the daemon exited early; see {work / 'daemon.log'}")
        a, t0 = proc_counters(proc.pid), time.monotonic()
        time.sleep(args.seconds)
        b, elapsed = proc_counters(proc.pid), time.monotonic() - t0
    finally:
        proc.terminate()
        proc.wait(30)
    cpu_pct = 100 * (b["cpu_s"] - a["cpu_s"]) / elapsed
    per_hour = (b["wchar"] - a["wchar"]) * 3600 / elapsed
    block_per_hour = (b["write_bytes"] - a["write_bytes"]) * 3600 / elapsed
    print(f"daemon at 104 Hz, real time, {elapsed:.0f} s measured after {args.warmup:.0f} s of start-up")
    print(f"CPU      {cpu_pct:.2f} % of one core (emulated chip included)   bar < 1 %")
    print(f"RSS      {b['rss_mb']:.1f} MB (peak {b['hwm_mb']:.1f} MB)                 bar < 80 MB")
    print(f"writes   {per_hour / 1e3:.0f} kB/h by SQLite -> {per_hour * 10 / 1e6:.2f} MB per 10-h night   bar < 5 MB")
    print(f"         (page cache: {block_per_hour * 10 / 1e6:.2f} MB per night, counting each dirtied 4-KiB page, "
          "the -shm index included)")


if __name__ == "__main__":
    main()

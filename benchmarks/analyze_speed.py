"""How fast `rlsmon-device analyze` is on a whole night, and what the live detector costs.

    .venv/bin/python benchmarks/analyze_speed.py [--hours 8] [--dir DIR] [--repeat 3]

For an 8-hour simulated PLMD night at 52 Hz and at 104 Hz it prints:
- the wall time of `rlsmon-device analyze NIGHT.csv --json` as a fresh process (interpreter start,
  imports, read, detect, score, JSON), and its samples per second;
- its peak RSS, read with getrusage(RUSAGE_CHILDREN) in a wrapper process that runs only it;
- the same for a bare `np.loadtxt` of the CSV (numpy alone; pandas is not installed), and the ratio;
- in-process figures without the interpreter start: `read_recording` alone, the whole analysis, and
  `np.loadtxt`.
Then the live path: CPU seconds to feed one hour of 104 Hz samples to `LegDetector` in the blocks a
FIFO watermark delivers (0.25 s), as a share of one core.

Bars (issue 3): < 2 s at 52 Hz, ≤ 1.5× the bare read, peak RSS < 300 MB, live path < 1 % of a core.
Timings take the best of `--repeat` runs, since the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Runs the command given as its arguments as its only child; reports wall time and the child's peak RSS.
WRAPPER = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
wall = time.perf_counter() - t0
use = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall_s": wall, "cpu_s": use.ru_utime + use.ru_stime, "peak_rss_mb": use.ru_maxrss / 1024}))
"""
ANALYZE = [sys.executable, "-c", "from device.cli import main; main()", "analyze"]
LOADTXT = [sys.executable, "-c", "import sys, numpy as np; np.loadtxt(sys.argv[1], delimiter=',', skiprows=1)"]


def measure(cmd: list[str], repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], check=True, capture_output=True, text=True, cwd=ROOT)
        runs.append(json.loads(out.stdout))
    return {"wall_s": min(r["wall_s"] for r in runs), "cpu_s": min(r["cpu_s"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def best_of(fn, repeat: int) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds) of `repeat` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def night_csv(folder: Path, hours: float, odr_hz: float) -> Path:
    from device.sim import simulate_night, write_night

    path = folder / f"plmd_{hours:g}h_{odr_hz:g}hz.csv"
    if not path.exists():
        t0 = time.perf_counter()
        write_night(simulate_night("plmd", 7, hours, odr_hz), path, path.with_suffix(".json"))
        print(f"  (simulated {path.name} in {time.perf_counter() - t0:.1f} s)")
    return path


def rows_in(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1


def offline(path: Path, repeat: int) -> None:
    from device.analyze import analyze_recordings
    from device.recording import read_recording

    rows = rows_in(path)
    cli = measure(ANALYZE + [str(path), "--json"], repeat)
    bare = measure(LOADTXT + [str(path)], repeat)
    read_s = best_of(lambda: sum(len(b) for b in read_recording(path, block_rows=16384)), repeat)
    analysis_s = best_of(lambda: analyze_recordings([path]), repeat)
    loadtxt_s = best_of(lambda: np.loadtxt(path, delimiter=",", skiprows=1), repeat)
    print(f"{path.name}: {rows:,} samples, {path.stat().st_size / 1e6:.0f} MB")
    for name, m in (("analyze", cli), ("np.loadtxt", bare)):
        print(f"  {name:10s} (fresh process) wall {m['wall_s']:5.2f} s, CPU {m['cpu_s']:5.2f} s, "
              f"{rows / m['wall_s'] / 1e6:4.2f} M samples/s, peak RSS {m['peak_rss_mb']:4.0f} MB")
    print(f"  ratio analyze / bare read: wall {cli['wall_s'] / bare['wall_s']:.2f}x, CPU {cli['cpu_s'] / bare['cpu_s']:.2f}x")
    print(f"  in process (wall / CPU s): read_recording {read_s[0]:.2f} / {read_s[1]:.2f}, whole analysis "
          f"{analysis_s[0]:.2f} / {analysis_s[1]:.2f}, np.loadtxt {loadtxt_s[0]:.2f} / {loadtxt_s[1]:.2f}")


def live(path: Path, block_s: float = 0.25) -> None:
    """CPU seconds per hour of data for LegDetector fed FIFO-sized blocks, as the daemon does."""
    from device.detect import LegDetector
    from device.recording import read_recording
    from device.samples import SampleBlock

    blocks = list(read_recording(path, block_rows=1 << 20))
    t = np.concatenate([b.t_s for b in blocks])
    accel = np.concatenate([b.accel_g for b in blocks])
    gyro = np.concatenate([b.gyro_dps for b in blocks])
    odr_hz = blocks[0].odr_hz
    step = max(1, round(block_s * odr_hz))
    chunks = [SampleBlock(t[i:i + step], accel[i:i + step], gyro[i:i + step], odr_hz) for i in range(0, len(t), step)]
    detector = LegDetector(odr_hz)
    c0 = time.process_time()
    for chunk in chunks:
        detector.feed(chunk)
    detector.finish()
    cpu_s = time.process_time() - c0
    hours = (t[-1] - t[0]) / 3600.0
    print(f"live path at {odr_hz:.0f} Hz, {step}-sample blocks: {cpu_s / hours:.2f} CPU s per hour of data "
          f"= {100 * cpu_s / hours / 3600:.3f} % of one core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--dir", type=Path, default=None, help="Keep the simulated nights here between runs.")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [night_csv(folder, args.hours, odr) for odr in (52.0, 104.0)]
        for path in paths:
            offline(path, args.repeat)
        live(paths[1])


if __name__ == "__main__":
    main()

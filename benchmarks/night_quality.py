"""The read-time cost of night quality: one patient's nights, each a full summary of ~55 PLMs/h
(about 500 LMs) stored through the real ingest, assessed as the patient page does.

    .venv/bin/python benchmarks/night_quality.py [--nights 365]

Prints the summary size, and the wall and CPU time of `night_quality.of_patient` (best of 5).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.db import open_db  # noqa: E402
from server.web import night_quality  # noqa: E402
from tests.web.seed import patient_with_nights  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=365)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = open_db(Path(tmp) / "server.db")
        pid = patient_with_nights(db, "dev-q", "P-Q", 55.0, args.nights)
        size = db.execute("SELECT avg(length(summary_json)) FROM nights").fetchone()[0]
        runs = []
        for _ in range(5):
            wall, cpu = time.perf_counter(), time.process_time()
            found = night_quality.of_patient(db, pid)
            runs.append((time.perf_counter() - wall, time.process_time() - cpu))
        assert len(found) == args.nights
        wall_s, cpu_s = min(runs)
        print(f"{args.nights} nights, summary {size / 1024:.0f} KiB on average: night quality "
              f"{wall_s * 1000:.1f} ms wall, {cpu_s * 1000:.1f} ms CPU (best of 5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What keeping device_latest costs ingest (issue 14, item 1): CPU ms per night through the real
`ingest()`, on the schema before migration 0005 (no triggers) and after it, same nights (~500 LMs
each, 50 devices), best of a few runs. The triggers run once per night stored, so that the
patients list need not find each device's latest night on every view.

    .venv/bin/python benchmarks/latest_cost.py [--nights 1000] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlite_utils import Database  # noqa: E402

from server.collector import ingest  # noqa: E402
from server.db import MIGRATIONS  # noqa: E402
from tests.web.seed import make_night  # noqa: E402

DEVICES = 50


def cpu_ms_per_night(payloads: list[tuple[str, bytes]], stop_before: str | None) -> float:
    """Ingest every payload into a new database migrated up to ``stop_before`` (None: all)."""
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(Path(scratch) / "server.db")
        db.enable_wal()
        MIGRATIONS.apply(db, stop_before=stop_before)
        t0 = time.process_time()
        with db.atomic():
            for topic, payload in payloads:
                if ingest(db, topic, payload).kind != "stored":
                    raise SystemExit(f"{topic}: not stored")
        cpu_s = time.process_time() - t0
        db.close()
    return cpu_s * 1000 / len(payloads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nights", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    payloads = []
    for i in range(args.nights):
        device = f"dev-{i % DEVICES:03d}"
        night = make_night(device, date(2026, 1, 1) + timedelta(days=i // DEVICES), 55.0,
                           sporadic_per_h=12.0)
        payloads.append((f"rlsmon/v1/{device}/summary", json.dumps(night).encode()))
    figures = {}
    for name, stop in (("without_device_latest", "0005_latest_nights"),
                       ("with_device_latest", None)):
        figures[name] = round(min(cpu_ms_per_night(payloads, stop) for _ in range(args.runs)), 3)
    figures["added_ms_per_night"] = round(figures["with_device_latest"]
                                          - figures["without_device_latest"], 3)
    if args.json:
        print(json.dumps({"nights": args.nights, "cpu_ms_per_night": figures}, indent=1))
    else:
        for name, value in figures.items():
            print(f"{name:<24} {value:6.3f} ms of CPU per night")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

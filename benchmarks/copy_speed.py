"""How fast `rlsmon-server copy-to` moves a clinic from SQLite to PostgreSQL and back, and how much
memory it takes (its peak RSS should not grow with the database: it reads and writes in batches).

Builds a SQLite clinic of `--patients` devices × `--nights` nights with bulk inserts, each night
carrying a real summary's JSON (~300 LMs, ~45 kB, as `tests/web/seed.make_night` makes one), then
runs the real command in a child process into a PostgreSQL database of a `tests/pgserver.py`
cluster with PostgreSQL's durable defaults (fsync on), and from there into a new SQLite file.
Wall time and the child's peak RSS; PostgreSQL's own CPU is not in them.

    .venv/bin/python benchmarks/copy_speed.py [--patients 100] [--nights 365] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.db import open_db  # noqa: E402
from tests.pgserver import PgServer  # noqa: E402
from tests.web.seed import make_night  # noqa: E402

_NIGHT_COLUMNS = ("device_id, night, summary_id, generated_at, received_at, rules, plm_index, lm_index, "
                  "lm_count, clm_count, plm_count, plm_series_count, time_in_bed_s, recorded_s, "
                  "periodicity_index, severity, clinically_significant, summary_json, duration_s")


def build(path: Path, patients: int, nights: int) -> int:
    """The clinic at `path`; returns how many rows it holds."""
    db = open_db(path)
    db.execute("PRAGMA synchronous = OFF")  # a scratch database: durability is not the point
    s = make_night("dev-00000", date(2026, 1, 1), 30.0, sporadic_per_h=12.0)
    text = json.dumps(s)
    last = date(2026, 11, 30)
    with db.atomic():
        for i in range(patients):
            device = f"dev-{i:05d}"
            db.execute("INSERT INTO devices (device_id, status, created_at) VALUES (?, 'online', ?)",
                       [device, "2025-01-01T00:00:00+00:00"])
            db.conn.executemany(
                f"INSERT INTO nights ({_NIGHT_COLUMNS}) VALUES ({', '.join('?' * 19)})",
                [(device, (last - timedelta(days=k)).isoformat(), f"{i}-{k}", s["generated_at"],
                  s["generated_at"], s["rules"], s["plm_index"], s["lm_index"], s["lm_count"],
                  s["clm_count"], s["plm_count"], s["plm_series_count"], s["time_in_bed_s"],
                  s["coverage"]["recorded_s"], s["periodicity_index"], s["severity"],
                  int(s["clinically_significant"]), text, s["duration_s"]) for k in range(nights)])
            db.execute("INSERT INTO patients (pseudonym, created_at) VALUES (?, ?)",
                       [f"P-{i:05d}", "2025-01-01T00:00:00+00:00"])
            db.execute("UPDATE devices SET patient_id = (SELECT max(id) FROM patients) WHERE device_id = ?",
                       [device])
    db.conn.close()
    return patients * (nights + 2)


def copy_to(config: Path, target: str, log: Path) -> tuple[float, float]:
    """Run `rlsmon-server copy-to target` in a child process; its wall time (s) and peak RSS (MB)."""
    started = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen([str(Path(sys.executable).with_name("rlsmon-server")), "copy-to", target,
                                  "--config", str(config)], stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"copy-to failed: {log.read_text()}")
    return seconds, usage.ru_maxrss / 1024  # kB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--nights", type=int, default=365)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rlsmon-copy-"))
    source = work / "server.db"
    rows = build(source, args.patients, args.nights)
    pg = PgServer(durable=True).start()
    try:
        url = pg.create_database()
        to_pg = work / "sqlite.toml"
        to_pg.write_text(f'[database]\npath = "{source}"\n')
        pg_s, pg_rss = copy_to(to_pg, url, work / "to_pg.log")
        back = work / "pg.toml"
        back.write_text(f'[database]\nurl = "{url}"\n')
        sqlite_s, sqlite_rss = copy_to(back, str(work / "back.db"), work / "back.log")
    finally:
        pg.stop()
    figures = {
        "patients": args.patients, "nights": args.patients * args.nights, "rows": rows,
        "source_mb": round(source.stat().st_size / 1e6, 1),
        "sqlite_to_postgresql": {"s": round(pg_s, 1), "rows_per_s": round(rows / pg_s),
                                 "mb_per_s": round(source.stat().st_size / 1e6 / pg_s, 1),
                                 "peak_rss_mb": round(pg_rss, 1)},
        "postgresql_to_sqlite": {"s": round(sqlite_s, 1), "rows_per_s": round(rows / sqlite_s),
                                 "peak_rss_mb": round(sqlite_rss, 1)},
    }
    shutil.rmtree(work)
    print(json.dumps(figures) if args.json else json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

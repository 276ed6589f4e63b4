"""The cost of the clinic's answers over nights on a year of one patient: the patient page's
regularity (28 summaries parsed, the SRI on minute epochs) and the one-page PDF report, the first
one in a process (matplotlib imported) and later ones.

    .venv/bin/python benchmarks/report_cost.py [--nights 365]

Prints CPU time: regularity (best of 5), the first report, and later reports (best of 5).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.db import open_db  # noqa: E402
from server.web import medications, queries, regularity, report  # noqa: E402
from tests.web.seed import patient_with_nights  # noqa: E402


def _cpu(task) -> float:
    cpu = time.process_time()
    task()
    return 1000 * (time.process_time() - cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=365)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = open_db(Path(tmp) / "server.db")
        last = date(2026, 11, 30)
        pid = patient_with_nights(db, "dev-r", "P-R", 25.0, args.nights, last)
        medications.add(db, pid, drug="ropinirole", dose="0.25 mg", drug_class="dopamine_agonist",
                        started=last - timedelta(days=20), stopped=None, username="bench",
                        now_iso="2026-12-01T00:00:00+00:00")
        today = last + timedelta(days=1)
        reg = min(_cpu(lambda: regularity.load(db, pid, today)) for _ in range(5))
        patient = queries.patient(db, pid)
        first, end = report.span_of(db, pid, today)
        now = datetime(2026, 12, 1, 7, tzinfo=timezone.utc)

        def one() -> None:
            report.render_pdf(report.gather(db, patient, first, end, now, ()))

        first_report = _cpu(one)
        later = min(_cpu(one) for _ in range(5))
    print(f"{args.nights} nights: regularity {reg:.0f} ms CPU; report {first_report:.0f} ms CPU "
          f"the first time in a process, {later:.0f} ms after")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A patient's trend as the chart draws it: one night per date with its quality, the notes, and
the verdict over the eligible nights."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable

from sqlite_utils import Database

from server import quality
from server.consistency import CLINICAL_PLMI_ADULT
from server.web import medications, night_quality, queries

TrendArgs = tuple[tuple[tuple[date, float], ...], tuple[tuple[date, str], ...],
                  tuple[tuple[date, date | None, str], ...]]


def one_per_night(nights: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One night per date for the trend: when two devices recorded the same date (a device swap),
    the one with more time in bed."""
    best: dict[str, dict[str, Any]] = {}
    for n in nights:
        if n["night"] not in best or n["time_in_bed_s"] > best[n["night"]]["time_in_bed_s"]:
            best[n["night"]] = n
    return [best[k] for k in sorted(best)]


def load_trend(db: Database, patient_id: int) -> tuple[list[dict], list[dict], TrendArgs]:
    """A patient's nights (one per date, each with its ``quality``) and notes, and the trend
    chart's arguments from them and the medications."""
    nights = one_per_night(queries.patient_nights(db, patient_id))
    qualities = night_quality.of_patient(db, patient_id)
    for n in nights:
        n["quality"] = qualities[(n["device_id"], n["night"])]
    notes = queries.notes(db, patient_id)
    # Only eligible nights are drawn (issue 12): an excluded night has no index worth drawing, a
    # provisional one is counted apart; both stay in the table with their reasons.
    series = tuple((date.fromisoformat(n["night"]), n["plm_index"]) for n in nights
                   if n["quality"].label == quality.ELIGIBLE)
    marks = tuple((date.fromisoformat(n["date"]), n["text"]) for n in notes)
    bars = tuple((m.started, m.stopped, m.label) for m in medications.of_patient(db, patient_id))
    return nights, notes, (series, marks, bars)


# The verdict over nights. One night says little: the PLM index varies a lot from night to night
# (Trotti et al., Sleep Med 2009; a correlation of only 0.54 between two nights, Sforza et al.,
# Sleep Med 2005), while the periodicity index is far steadier (Ferri et al., Sleep Med 2013).
MIN_NIGHTS_FOR_VERDICT = 3
# Periodicity index (Ferri et al., Sleep 2006: the share of IMIs of 10-90 s in runs; high in the
# RLS patients whose IMIs peak at 15-30 s, low in controls). No validated cut-off exists: reading
# >= 0.6 as "periodic" is our choice, stated beside the figure on the page.
PERIODIC_PI = 0.6


@dataclass(frozen=True)
class Verdict:
    """What the eligible nights show; the statistics are None under ``MIN_NIGHTS_FOR_VERDICT``."""
    eligible: int
    provisional: int
    excluded: int
    mean_plmi: float | None = None
    median_plmi: float | None = None
    iqr_plmi: tuple[float, float] | None = None   # 25th and 75th percentile
    sd_plmi: float | None = None
    above_15: int | None = None
    mean_periodicity: float | None = None
    line: str = ""


def verdict(nights: list[dict[str, Any]]) -> Verdict:
    """The verdict over ``nights`` (each with ``quality``, ``plm_index``, ``periodicity_index``):
    statistics over the eligible ones, the others only counted. Says what the data shows, never
    a diagnosis (PLMD also needs a sleep complaint not explained otherwise, ICSD-3)."""
    labels = [n["quality"].label for n in nights]
    counts = {lab: labels.count(lab) for lab in (quality.ELIGIBLE, quality.PROVISIONAL,
                                                  quality.EXCLUDED)}
    base = dict(eligible=counts[quality.ELIGIBLE], provisional=counts[quality.PROVISIONAL],
                excluded=counts[quality.EXCLUDED])
    eligible = [n for n in nights if n["quality"].label == quality.ELIGIBLE]
    n = len(eligible)
    if n < MIN_NIGHTS_FOR_VERDICT:
        return Verdict(**base, line=(
            f"{n} eligible night{'' if n == 1 else 's'}: too few for a verdict (at least "
            f"{MIN_NIGHTS_FOR_VERDICT}; more are better, as the PLM index varies from night to night)."))
    plmi = [e["plm_index"] for e in eligible]
    q1, _, q3 = statistics.quantiles(plmi, n=4, method="inclusive")
    above = sum(p > CLINICAL_PLMI_ADULT for p in plmi)
    pi = statistics.fmean(e["periodicity_index"] for e in eligible)
    head = f"PLMI above 15/h on {above} of {n} eligible nights, periodicity {pi:.2f}"
    if above * 2 > n:
        tail = ("consistent with PLMD" if pi >= PERIODIC_PI else
                "frequent but not clearly periodic leg movements")
    elif above:
        tail = "above 15/h on a minority of nights"
    else:
        tail = "not above 15/h on any night"
    return Verdict(**base, mean_plmi=statistics.fmean(plmi), median_plmi=statistics.median(plmi),
                   iqr_plmi=(q1, q3), sd_plmi=statistics.stdev(plmi), above_15=above,
                   mean_periodicity=pi, line=f"{head}: {tail}.")

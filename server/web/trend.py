"""A patient's trend as the chart draws it: one night per date, and the notes."""

from __future__ import annotations

from datetime import date
from typing import Any, Iterable

from sqlite_utils import Database

from server.web import queries

INSUFFICIENT = "insufficient_data"
TrendArgs = tuple[tuple[tuple[date, float], ...], tuple[tuple[date, str], ...]]


def one_per_night(nights: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One night per date for the trend: when two devices recorded the same date (a device swap),
    the one with more time in bed."""
    best: dict[str, dict[str, Any]] = {}
    for n in nights:
        if n["night"] not in best or n["time_in_bed_s"] > best[n["night"]]["time_in_bed_s"]:
            best[n["night"]] = n
    return [best[k] for k in sorted(best)]


def load_trend(db: Database, patient_id: int) -> tuple[list[dict], list[dict], TrendArgs]:
    """A patient's nights (one per date) and notes, and the trend chart's arguments from them."""
    nights = one_per_night(queries.patient_nights(db, patient_id))
    notes = queries.notes(db, patient_id)
    # A night with too little time in bed has no index worth drawing (docs/summary.md, severity
    # "insufficient_data"): it stays in the table, off the chart and its rolling mean.
    series = tuple((date.fromisoformat(n["night"]), n["plm_index"]) for n in nights
                   if n["severity"] != INSUFFICIENT)
    marks = tuple((date.fromisoformat(n["date"]), n["text"]) for n in notes)
    return nights, notes, (series, marks)


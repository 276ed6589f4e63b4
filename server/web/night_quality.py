"""Night quality at read time: the stored columns plus five small fields of the stored summary
(one JSON parse per night), given to the pure rules of `server.quality`. Nothing is persisted,
so a change of a rule applies to every night already stored."""

from __future__ import annotations

import json
from typing import Any, Iterable

from sqlite_utils import Database

from server import quality
from server.db import json_array_of

Key = tuple[str, str]  # (device_id, night)

def _select(db: Database, source: str = "nights n") -> str:
    return f"""
SELECT n.device_id, n.night, n.time_in_bed_s, n.recorded_s,
       {json_array_of(db, "n.summary_json", "duration_s", "in_bed", "clock_synced", "min_time_in_bed_s",
                       "wear.not_worn")}
FROM {source} """


def _assess(rows: Iterable[tuple[Any, ...]]) -> dict[Key, quality.Quality]:
    out = {}
    for device_id, night, time_in_bed_s, recorded_s, extra in rows:
        duration_s, in_bed, synced, floor_s, not_worn = json.loads(extra)
        out[(device_id, night)] = quality.assess(quality.facts(
            time_in_bed_s=time_in_bed_s, recorded_s=recorded_s, duration_s=duration_s,
            in_bed=in_bed, clock_synced=synced, min_time_in_bed_s=floor_s, not_worn=not_worn))
    return out


def of_patient(db: Database, patient_id: int) -> dict[Key, quality.Quality]:
    """The quality of every night of the patient's devices."""
    return _assess(db.execute(
        _select(db) + "JOIN devices d ON d.device_id = n.device_id WHERE d.patient_id = ?",
        [patient_id]).fetchall())


def of_nights(db: Database, keys: Iterable[Key]) -> dict[Key, quality.Quality]:
    """The quality of the given nights (e.g. the last nights on one page of the patients list), in
    one query: the keys are a VALUES list that the nights' primary key is probed with, one index
    lookup per key, so a page costs one round trip to PostgreSQL whatever its size."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return {}
    # VALUES names its columns column1, column2 on both databases; CROSS JOIN keeps the keys the
    # outer loop on SQLite (PostgreSQL's planner finds that order itself).
    values = ", ".join(["(?, ?)"] * len(keys))
    return _assess(db.execute(
        _select(db, f"(VALUES {values}) k CROSS JOIN nights n")
        + "ON n.device_id = k.column1 AND n.night = k.column2",
        [part for key in keys for part in key]).fetchall())

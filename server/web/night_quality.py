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

def _select(db: Database) -> str:
    return f"""
SELECT n.device_id, n.night, n.time_in_bed_s, n.recorded_s,
       {json_array_of(db, "n.summary_json", "duration_s", "in_bed", "clock_synced", "min_time_in_bed_s",
                       "wear.not_worn")}
FROM nights n """


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
    """The quality of the given nights (e.g. the last nights on one page of the patients list);
    each is found by the nights' primary key."""
    out: dict[Key, quality.Quality] = {}
    for key in keys:
        out.update(_assess(db.execute(_select(db) + "WHERE n.device_id = ? AND n.night = ?",
                                      list(key)).fetchall()))
    return out

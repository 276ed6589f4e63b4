"""Test data for the dashboard: realistic night summaries, stored through the collector's `ingest`.

`make_night` builds a summary that passes `server.model.NightSummary` (counts agree with the
events, series are runs of CLMs 10–90 s apart, the IMI histogram and the hourly counts are
derived from the events), so the dashboard is tested on what the collector really stores.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from server.collector import ingest

CAVEATS = [
    "Respiratory-related leg movements are not excluded (no respiratory signal).",
    "Indices are per hour in bed (no EEG), as PAM-RL reports them.",
]


def _severity(plmi: float) -> str:
    # WASM/ARCHITECTURE bands: < 5 normal, 5–24 mild, 25–49 moderate, ≥ 50 severe.
    return "normal" if plmi < 5 else "mild" if plmi < 25 else "moderate" if plmi < 50 else "severe"


def _events(rng: random.Random, start_s: float, end_s: float, plm_target: int,
            sporadic: int) -> list[dict]:
    """LMs between start_s and end_s: PLM series of 4–15 CLMs 15–40 s apart, plus sporadic LMs
    far (≥ 120 s) from any series, so that no sporadic LM joins or breaks a series."""
    onsets: list[tuple[float, float, int | None]] = []  # (onset, duration, series)
    t = start_s + rng.uniform(60, 900)
    series = 0
    while plm_target > 0 and t < end_s - 600:
        n = min(plm_target, rng.randint(4, 15))
        if n < 4:
            break
        for _ in range(n):
            onsets.append((t, round(rng.uniform(0.8, 4.5), 2), series))
            t += rng.uniform(15, 40)
        plm_target -= n
        series += 1
        t += rng.uniform(240, 1500)
    taken = [(o - 120, o + 120) for o, _, _ in onsets]
    for _ in range(sporadic * 4):
        if sporadic == 0:
            break
        o = rng.uniform(start_s, end_s - 30)
        if any(a <= o <= b for a, b in taken):
            continue
        # Every fifth sporadic LM is long (> 10 s): scored, but not a CLM.
        onsets.append((o, round(rng.uniform(11, 20) if sporadic % 5 == 0 else rng.uniform(0.6, 6), 2),
                       None))
        taken.append((o - 120, o + 120))
        sporadic -= 1
    onsets.sort()
    out = []
    last_clm: float | None = None
    for onset, duration, s in onsets:
        clm = duration <= 10.0
        out.append({
            "onset_s": round(onset, 2), "offset_s": round(onset + duration, 2),
            "duration_s": duration, "periodic": s is not None, "clm": clm,
            "bilateral": rng.random() < 0.15 and clm, "series": s,
            "imi_s": round(onset - last_clm, 2) if clm and last_clm is not None else None,
        })
        if clm:
            last_clm = onset
    return out


def make_night(device_id: str, night: date, plm_index: float, *, seed: int = 0,
               sporadic_per_h: float = 3.0, tz: str = "Europe/Berlin",
               gap: bool = True, gaps: list[dict] | None = None,
               in_bed_s: tuple[float, float] | None = None) -> dict:
    """A complete, valid `rlsmon.night/1` summary for ``device_id`` on the evening of ``night``:
    with one 7-minute gap (``gap``), or with the ``gaps`` given, inside the time in bed, which is
    ``in_bed_s`` (start, end) or 10 min after the start to 15 min before the end."""
    rng = random.Random(f"{device_id}/{night}/{seed}")
    zone = ZoneInfo(tz)
    start = datetime.combine(night, time(22, 30), zone)
    duration_s = 8 * 3600.0
    bed = in_bed_s or (600.0, duration_s - 900.0)
    if gaps is None:
        gaps = [{"start_s": 3 * 3600.0, "end_s": 3 * 3600.0 + 420.0}] if gap else []
    time_in_bed_s = bed[1] - bed[0] - sum(g["end_s"] - g["start_s"] for g in gaps)
    hours_in_bed = time_in_bed_s / 3600
    lms = _events(rng, bed[0], bed[1], int(round(plm_index * hours_in_bed)),
                  int(sporadic_per_h * hours_in_bed))
    plm_count = sum(lm["periodic"] for lm in lms)
    imis = [lm["imi_s"] for lm in lms if lm["imi_s"] is not None]
    counts = [0] * 45
    for imi in imis:
        if imi < 90:
            counts[int(imi // 2)] += 1
    in_range = sum(10 <= i <= 90 for i in imis)
    hourly = []
    for h in range(int(duration_s // 3600)):
        lo, hi = h * 3600.0, (h + 1) * 3600.0
        hourly.append({"start_s": lo, "end_s": hi, "clock_hour": (start + timedelta(hours=h)).hour,
                       "lm_count": sum(lo <= lm["onset_s"] < hi for lm in lms),
                       "plm_count": sum(lo <= lm["onset_s"] < hi and lm["periodic"] for lm in lms)})
    plmi = plm_count / hours_in_bed
    generated = (start + timedelta(seconds=duration_s + 300)).astimezone(timezone.utc)
    return {
        "schema": "rlsmon.night/1", "rules": "WASM2016", "algorithm_version": "0.1.0",
        "recording_start": start.isoformat(), "duration_s": duration_s, "lm_events": lms,
        "lm_count": len(lms), "clm_count": sum(lm["clm"] for lm in lms), "plm_count": plm_count,
        "plm_series_count": len({lm["series"] for lm in lms if lm["periodic"]}),
        "in_bed": [{"start_s": bed[0], "end_s": bed[1]}], "time_in_bed_s": time_in_bed_s,
        "lm_index": len(lms) / hours_in_bed, "plm_index": plmi,
        "periodicity_index": round(in_range / len(imis), 3) if imis else 0.0,
        "imi_histogram": {"bin_width_s": 2, "counts": counts,
                          "below_10_s": sum(i < 10 for i in imis), "from_10_to_90_s": in_range,
                          "above_90_s": sum(i > 90 for i in imis)},
        "hourly": hourly,
        "coverage": {"recorded_s": duration_s - sum(g["end_s"] - g["start_s"] for g in gaps),
                     "gaps": gaps},
        "severity": _severity(plmi), "clinically_significant": plmi > 15, "caveats": CAVEATS,
        "device_id": device_id, "night": night.isoformat(),
        "summary_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "generated_at": generated.isoformat(),
        "window": {"start": start.isoformat(),
                   "end": (start + timedelta(seconds=duration_s)).isoformat(), "timezone": tz},
        "software_version": "0.1.0",
        "sensor": {"chip": "LSM6DSOX", "who_am_i": 0x6C, "driver": "fifo", "legs": 1,
                   "odr_hz": 52.0, "odr_measured_hz": 52.1, "accel_fs_g": 4.0,
                   "gyro_fs_dps": 500.0},
        "clock_synced": True,
        "markers": [{"t_s": bed[0], "kind": "lights_off"}, {"t_s": bed[1], "kind": "lights_on"}],
    }


def store(db: Database, summary: dict, received_at: datetime | None = None) -> None:
    """Deliver ``summary`` as the collector would receive it; fail loudly if it is not stored."""
    outcome = ingest(db, f"rlsmon/v1/{summary['device_id']}/summary",
                     json.dumps(summary).encode(),
                     received_at=received_at.isoformat() if received_at else None)
    assert outcome.kind in ("stored", "replaced"), outcome


def patient_with_nights(db: Database, device_id: str, pseudonym: str, plm_index: float, nights: int,
                        last: date = date(2026, 11, 30)) -> int:
    """Store `nights` nights of ``device_id`` up to ``last`` (sporadic LMs besides the PLMs, as a real
    night has), assign the device to a new patient ``pseudonym``, and return the patient's id."""
    from server.db import assign_device

    for k in range(nights):
        store(db, make_night(device_id, last - timedelta(days=k), plm_index, sporadic_per_h=12.0))
    return assign_device(db, device_id, pseudonym, "2026-12-01T00:00:00+00:00")


def set_status(db: Database, device_id: str, status: str, at: datetime) -> None:
    """Deliver a status message (online/offline) for ``device_id``."""
    outcome = ingest(db, f"rlsmon/v1/{device_id}/status", status.encode(),
                     received_at=at.isoformat())
    assert outcome.kind == "status", outcome

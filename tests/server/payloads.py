"""Valid night summaries for the server tests and the ingest benchmark, built to the contract
(docs/summary.md): counts and headline figures agree with the events, PLM series of CLMs at 20-s
intervals."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

CAVEATS = [
    "Respiratory-related leg movements are not excluded: no respiratory signals are recorded.",
    "Indices are per hour in bed, not per hour of sleep: no EEG is recorded.",
]


def make_summary(
    device_id: str = "dev-a",
    night: str = "2026-01-05",
    n_lms: int = 40,
    *,
    generated_at: datetime | None = None,
    summary_id: str | None = None,
) -> dict[str, Any]:
    """A consistent published night with `n_lms` LMs: series of 5 periodic CLMs 20 s apart, then one
    long non-CLM LM that breaks the series, repeated."""
    start = datetime.combine(date.fromisoformat(night), datetime.min.time(), timezone.utc) + timedelta(
        hours=22
    )
    events = []
    series = -1
    t_s = 600.0
    for i in range(n_lms):
        k = i % 6
        if k < 5:
            # A series needs at least 4 CLMs (WASM 2016): a short run at the end is not periodic.
            periodic = min(n_lms - (i - k), 5) >= 4
            if k == 0 and periodic:
                series += 1
            duration_s = 2.0
            events.append(
                {"onset_s": t_s, "offset_s": t_s + duration_s, "duration_s": duration_s,
                 "periodic": periodic, "clm": True, "bilateral": False, "series": series if periodic else None,
                 "imi_s": 20.0 if k else None}
            )
            t_s += 20.0
        else:
            duration_s = 12.0
            events.append(
                {"onset_s": t_s, "offset_s": t_s + duration_s, "duration_s": duration_s,
                 "periodic": False, "clm": False, "bilateral": True, "series": None, "imi_s": None}
            )
            t_s += 120.0
    duration_s = max(t_s + 600.0, 8 * 3600.0)
    in_bed_s = duration_s - 600.0
    plm = sum(e["periodic"] for e in events)
    clm = sum(e["clm"] for e in events)
    hist = [0] * 45
    hist[10] = sum(1 for e in events if e["imi_s"] is not None)
    plm_index = plm / (in_bed_s / 3600.0)
    hour_starts_s = [h * 3600.0 for h in range(math.ceil(duration_s / 3600.0))]
    return {
        "schema": "rlsmon.night/1",
        "rules": "WASM2016",
        "algorithm_version": "0.1.0",
        "recording_start": start.isoformat(),
        "duration_s": duration_s,
        "lm_events": events,
        "lm_count": len(events),
        "clm_count": clm,
        "plm_count": plm,
        "plm_series_count": series + 1,
        "in_bed": [{"start_s": 300.0, "end_s": 300.0 + in_bed_s}],
        "time_in_bed_s": in_bed_s,
        "lm_index": len(events) / (in_bed_s / 3600.0),
        "plm_index": plm_index,
        "periodicity_index": 0.8 if hist[10] else 0.0,
        "imi_histogram": {"bin_width_s": 2, "counts": hist, "below_10_s": 0,
                          "from_10_to_90_s": hist[10], "above_90_s": 0},
        "hourly": [
            {"start_s": h_s, "end_s": min(h_s + 3600.0, duration_s), "clock_hour": (22 + int(h_s // 3600)) % 24,
             "lm_count": sum(h_s <= e["onset_s"] < h_s + 3600.0 for e in events),
             "plm_count": sum(h_s <= e["onset_s"] < h_s + 3600.0 and e["periodic"] for e in events)}
            for h_s in hour_starts_s
        ],
        "coverage": {"recorded_s": duration_s - 30.0, "gaps": [{"start_s": 100.0, "end_s": 130.0}]},
        "severity": "normal" if plm_index < 5 else "mild" if plm_index < 25
        else "moderate" if plm_index < 50 else "severe",
        "clinically_significant": plm_index > 15,
        "caveats": CAVEATS,
        "device_id": device_id,
        "night": night,
        "summary_id": summary_id or str(uuid.uuid4()),
        "generated_at": (generated_at or datetime.now(timezone.utc)).isoformat(),
        "window": {"start": start.isoformat(), "end": (start + timedelta(hours=10)).isoformat(),
                   "timezone": "Europe/Berlin"},
        "software_version": "0.1.0",
        "sensor": {"chip": "LSM6DSOX", "who_am_i": 0x6C, "driver": "fifo", "legs": 2,
                   "odr_hz": 52.0, "odr_measured_hz": 51.9, "accel_fs_g": 4.0, "gyro_fs_dps": 500.0},
        "clock_synced": True,
        "markers": [{"t_s": 300.0, "kind": "lights_off"}, {"t_s": 300.0 + in_bed_s, "kind": "lights_on"}],
    }


def put(path: list[Any] | tuple[Any, ...], value: Any):
    """A mutation for tests: set `value` at `path` (keys and indices) inside a summary."""
    def apply(summary: dict[str, Any]) -> None:
        target: Any = summary
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return apply


def encode(summary: dict[str, Any]) -> bytes:
    """The summary as the daemon puts it on the wire."""
    return json.dumps(summary, separators=(",", ":")).encode()


def kept(payload: bytes, prefix_bytes: int = 4096) -> dict[str, Any]:
    """What `rejected` keeps of a refused payload (server/rejected.py): its first bytes, size and hash."""
    return {"payload": payload[:prefix_bytes], "size_bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}


def largest_summary(device_id: str = "d" * 63) -> dict[str, Any]:
    """The largest summary a device can legitimately publish: the contract's bounds reached where a
    device can reach them, and every value at its widest.

    A night window is under 24 h (device/config.py). The LMs fill MAX_LM_EVENTS, evenly spread over
    21 h in bed starting past 10,000 s, so each time has 5 digits and 3 decimals; every LM is a CLM
    with an IMI (a number is wider than null); `periodic`/`series` are as wide either way
    (`true, 12345` vs `false, null`). The gaps fill MAX_INTERVALS (a failing sensor), one after every
    other LM; one in-bed span; MAX_MARKERS button presses; 64 characters in each text field. The
    device's wire format is `json.dumps` with its default separators (device/store.py).
    """
    from server.model import MAX_INTERVALS, MAX_LM_EVENTS, MAX_MARKERS

    duration_s = 86_399.999
    bed_start_s, bed_end_s = 10_000.125, 86_000.875
    spacing_s = (bed_end_s - bed_start_s - 20.0) / MAX_LM_EVENTS
    events, gaps = [], []
    for i in range(MAX_LM_EVENTS):
        onset_s = round(bed_start_s + 10.0 + i * spacing_s, 3)
        events.append({"onset_s": onset_s, "offset_s": round(onset_s + 1.234, 3), "duration_s": 1.234,
                       "periodic": False, "clm": True, "bilateral": False, "series": None,
                       "imi_s": round(spacing_s, 3) if i else None})
        if i % 2 and len(gaps) < MAX_INTERVALS:
            gaps.append({"start_s": round(onset_s + 1.5, 3), "end_s": round(onset_s + 2.0, 3)})
    gap_s = sum(g["end_s"] - g["start_s"] for g in gaps)
    time_in_bed_s = round(bed_end_s - bed_start_s - gap_s, 3)
    hours = [{"start_s": h * 3600.0, "end_s": min((h + 1) * 3600.0, duration_s), "clock_hour": h,
              "lm_count": 0, "plm_count": 0} for h in range(24)]
    for e in events:
        hours[int(e["onset_s"] // 3600)]["lm_count"] += 1
    imis = MAX_LM_EVENTS - 1
    summary = make_summary(device_id, "2026-01-05", 0)
    summary.update({
        "algorithm_version": "v" * 64, "recording_start": "2026-01-05T00:00:00.000000+14:00",
        "duration_s": duration_s, "lm_events": events, "lm_count": len(events), "clm_count": len(events),
        "plm_count": 0, "plm_series_count": 0, "in_bed": [{"start_s": bed_start_s, "end_s": bed_end_s}],
        "time_in_bed_s": time_in_bed_s, "lm_index": round(len(events) / (time_in_bed_s / 3600.0), 2),
        "plm_index": 0.0, "periodicity_index": 0.0, "severity": "normal", "clinically_significant": False,
        "imi_histogram": {"bin_width_s": 2, "counts": [0, imis] + [0] * 43, "below_10_s": imis,
                          "from_10_to_90_s": 0, "above_90_s": 0},
        "hourly": hours, "coverage": {"recorded_s": round(duration_s - gap_s, 3), "gaps": gaps},
        "software_version": "s" * 64,
        "sensor": {**summary["sensor"], "chip": "c" * 64, "driver": "d" * 64, "odr_measured_hz": 51.987654321},
        "window": {"start": "2026-01-05T00:00:00.000000+14:00", "end": "2026-01-05T23:59:59.999999+14:00",
                   "timezone": "America/Argentina/ComodRivadavia"},
        "markers": [{"t_s": round(bed_start_s + 60.0 * i, 3), "kind": "lights_off" if i % 2 else "lights_on"}
                    for i in range(MAX_MARKERS)],
        "generated_at": "2026-01-06T00:00:00.000000+00:00",
    })
    return summary

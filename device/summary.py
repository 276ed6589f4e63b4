"""The published night summary (docs/summary.md), built from what the night store holds."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from device import __version__
from device.detect.bed import in_bed_intervals, merge, subtract
from device.detect.events import Interval
from device.detect.scoring import score_night
from device.store import Segment, StoredNight
from device.wear import assess, worn_in_bed


def coverage_gaps(segments: list[Segment], detector_gaps: list[Interval], duration_s: float) -> list[Interval]:
    """The window's gaps: everything no segment covers, plus gaps the detector saw, merged."""
    holes: list[Interval] = list(detector_gaps)
    cursor = 0.0
    for seg in sorted(segments, key=lambda s: s.start_s):
        if seg.start_s > cursor:
            holes.append(Interval(cursor, seg.start_s))
        cursor = max(cursor, seg.end_s)
    if cursor < duration_s:
        holes.append(Interval(cursor, duration_s))
    merged: list[Interval] = []
    for h in sorted(holes, key=lambda i: i.start_s):
        start, end = max(0.0, h.start_s), min(duration_s, h.end_s)
        if end - start <= 0:
            continue
        if merged and start <= merged[-1].end_s:
            merged[-1] = Interval(merged[-1].start_s, max(merged[-1].end_s, end))
        else:
            merged.append(Interval(start, end))
    return merged


def build_summary(stored: StoredNight, device_id: str, generated_at: dt.datetime) -> dict[str, Any]:
    """The published summary: `score_night`'s core from the stored night plus the device metadata
    of docs/summary.md."""
    info = stored.info
    legs_n = int(info.sensor.get("legs", 1))
    gaps = coverage_gaps(stored.segments, stored.gaps, info.duration_s)
    legs = [[m for m in stored.movements if m.leg == k] for k in range(legs_n)]
    # The evening test (docs/sit.md) is a wake test before bedtime, as a PSG's SIT precedes lights
    # off: its hour is not the night's time in bed, so its provoked LMs do not count in the night.
    # Nor is time the sensor was not worn (device/wear.py).
    wear = assess(stored.wear_epochs.values())
    in_bed = worn_in_bed(subtract(in_bed_intervals(stored.postures, stored.markers, info.duration_s),
                                  merge(stored.sits)), wear.not_worn)
    # The stored sensor info keeps each leg's side (config `sensor.side`); the summary says it per
    # LM (`leg`), not in its sensor metadata. A night stored without it has unknown sides.
    sensor = dict(info.sensor)
    sides = sensor.pop("sides", ())
    core = score_night(legs, in_bed, gaps, info.duration_s, rules=info.rules,
                       recording_start=dt.datetime.fromisoformat(info.window_start), sides=sides)
    recorded_s = sum(s.end_s - s.start_s for s in stored.segments)
    samples = sum(s.samples for s in stored.segments)
    sensor["odr_measured_hz"] = round(samples / legs_n / recorded_s, 3) if recorded_s > 0 else None
    if stored.sits:
        core["caveats"].append("The evening test (SIT) is not part of the night's time in bed; its result is "
                               "reported apart (rlsmon.sit/1).")
    return {
        **core,
        "wear": wear.summary(info.duration_s),
        "caveats": core["caveats"] + wear.caveats(),
        "device_id": device_id,
        "night": info.night,
        "summary_id": str(uuid.uuid4()),
        "generated_at": generated_at.astimezone(dt.timezone.utc).isoformat(),
        "window": {"start": info.window_start, "end": info.window_end, "timezone": info.timezone},
        "software_version": __version__,
        "sensor": sensor,
        "clock_synced": info.clock_synced,
        "markers": [{"t_s": t, "kind": kind} for t, kind in stored.markers],
    }

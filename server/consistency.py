"""The headline figures of a night must follow from the events and intervals it carries.

A summary states its figures (`plm_index`, `severity`, `time_in_bed_s`, `hourly`, …) next to the
events and spans they come from. A payload whose events give a PLMI of 3.2 but that states 99,
"severe" and clinically significant must not reach a clinician, so every figure is checked here
against what the same payload carries, with a tolerance for the device's rounding (3 decimals on
times, 2 on indices). These are the rules of docs/summary.md; `server.model.NightCore` applies
`check_figures()` and the collector applies `check_not_future()`.

This module is the server's own statement of the rules: `server/` never imports `device/`, and the
tests run the device's real output through it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.model import NightCore, NightSummary

# PLMD severity of the PLM index (per hour): ICSD-R (American Sleep Disorders Association, 1997):
# mild 5–24, moderate 25–49, severe ≥ 50; below 5 is normal.
SEVERITY_BANDS: tuple[tuple[float, str], ...] = ((50.0, "severe"), (25.0, "moderate"), (5.0, "mild"))
# ICSD-3 (AASM, 2014), PLMD: a PLMS index > 15/h in adults is clinically significant.
CLINICAL_PLMI_ADULT = 15.0
# WASM 2016 (Ferri et al., Sleep Med 2016) and AASM 2012: a PLM series has at least 4 CLMs.
MIN_SERIES_CLMS = 4
# Below this much time in bed the device leaves the indices at 0 (a few LMs in a minute would read
# as hundreds per hour); docs/summary.md.
MIN_TIME_IN_BED_S = 600.0
INSUFFICIENT = "insufficient_data"
# The device rounds indices to 2 decimals and times to 3 (ms): a stated figure may differ from the
# one recomputed here by half a unit of its last digit, plus float error.
INDEX_TOLERANCE = 0.01
# The periodicity index is a share (0–1), rounded to at most 3 decimals.
SHARE_TOLERANCE = 0.001
TIME_ROUNDING_S = 0.001
# The last hourly row may run up to a second past the hour rather than leave a sliver of an hour
# for the last sample's milliseconds.
MAX_HOUR_ROW_S = 3600.0 + 1.0
# A device's clock may run a little ahead of the collector's. NTP keeps a synced Pi within tens of
# milliseconds (RFC 5905); an unsynced one restores its last saved time at boot (fake-hwclock), so it
# runs behind, not ahead. 10 minutes is twice Kerberos's customary 5-minute skew (RFC 4120, 1.6)
# and still refuses a night dated tomorrow.
CLOCK_SKEW = timedelta(minutes=10)
# The evening's date is local: the zone furthest ahead of UTC is UTC+14 (Line Islands).
MAX_UTC_OFFSET = timedelta(hours=14)


def severity(plm_index: float) -> str:
    """The PLMI band: normal < 5, mild 5–24, moderate 25–49, severe ≥ 50 (ICSD-R, ASDA 1997)."""
    for floor, name in SEVERITY_BANDS:
        if plm_index >= floor:
            return name
    return "normal"


def _union_s(spans: Sequence[Any], join_within_s: float = 0.0) -> list[tuple[float, float]]:
    """The spans as sorted, disjoint (start_s, end_s), joining those less than `join_within_s` apart."""
    merged: list[tuple[float, float]] = []
    for s in sorted(spans, key=lambda s: s.start_s):
        if merged and s.start_s <= merged[-1][1] + join_within_s:
            merged[-1] = (merged[-1][0], max(merged[-1][1], s.end_s))
        else:  # an empty span too: rounded to ms, a sliver in bed may read [t, t] yet hold an onset
            merged.append((s.start_s, s.end_s))
    return merged


def _minus_s(spans: list[tuple[float, float]], holes: list[tuple[float, float]]) -> float:
    """Seconds of `spans` outside `holes` (both sorted and disjoint), in one pass over each."""
    total, h = 0.0, 0
    for start_s, end_s in spans:
        while h < len(holes) and holes[h][1] <= start_s:
            h += 1
        covered, k = 0.0, h
        while k < len(holes) and holes[k][0] < end_s:
            covered += min(end_s, holes[k][1]) - max(start_s, holes[k][0])
            k += 1
        total += end_s - start_s - covered
    return total


def _index_ok(stated: float, count: int, time_in_bed_s: float) -> bool:
    # The device computes from the unrounded time in bed, so near the 600 s floor either answer holds.
    answers = []
    if time_in_bed_s < MIN_TIME_IN_BED_S + TIME_ROUNDING_S:
        answers.append(0.0)
    if time_in_bed_s >= MIN_TIME_IN_BED_S - TIME_ROUNDING_S and time_in_bed_s > 0:
        answers.append(count / (time_in_bed_s / 3600.0))
    return any(abs(stated - a) <= INDEX_TOLERANCE for a in answers)


def _check_spans(core: NightCore) -> None:
    end_s = core.duration_s + TIME_ROUNDING_S
    for key, spans in (("in_bed", core.in_bed), ("coverage.gaps", core.coverage.gaps)):
        for i, span in enumerate(spans):
            if span.end_s > end_s:
                raise ValueError(f"{key}[{i}] ends after duration_s")
    in_bed, gaps = _union_s(core.in_bed), _union_s(core.coverage.gaps)
    tolerance_s = TIME_ROUNDING_S * (2 + 2 * (len(core.in_bed) + len(core.coverage.gaps)))
    if abs(_minus_s(in_bed, gaps) - core.time_in_bed_s) > tolerance_s:
        raise ValueError("time_in_bed_s is not the time in in_bed minus coverage.gaps")
    if abs(_minus_s([(0.0, core.duration_s)], gaps) - core.coverage.recorded_s) > tolerance_s:
        raise ValueError("coverage.recorded_s is not duration_s minus coverage.gaps")
    # Only LMs with their onset in bed are scored (docs/summary.md), and none ends after the
    # recording. The onsets are sorted (NightCore checks it), so the LMs in each span are a
    # contiguous run found by bisection; all of them must be in some span.
    onsets_s = [lm["onset_s"] for lm in core.lm_events]
    spans = _union_s(core.in_bed, join_within_s=2 * TIME_ROUNDING_S)
    inside = sum(bisect_right(onsets_s, end + TIME_ROUNDING_S) - bisect_left(onsets_s, start - TIME_ROUNDING_S)
                 for start, end in spans)
    if inside != len(onsets_s):
        starts = [start for start, _ in spans]
        for i, onset_s in enumerate(onsets_s):
            k = bisect_right(starts, onset_s + TIME_ROUNDING_S) - 1
            if k < 0 or onset_s > spans[k][1] + TIME_ROUNDING_S:
                raise ValueError(f"lm_events[{i}]: onset_s is not in bed")
    if onsets_s and max(lm["offset_s"] for lm in core.lm_events) > end_s:
        i = next(i for i, lm in enumerate(core.lm_events) if lm["offset_s"] > end_s)
        raise ValueError(f"lm_events[{i}]: offset_s is after duration_s")


def _check_legs(core: NightCore) -> None:
    """An LM's `leg`, when given, is "both" exactly when it is bilateral (it joins both legs)."""
    for i, lm in enumerate(core.lm_events):
        leg = lm.get("leg")
        if leg is not None and (leg == "both") != lm["bilateral"]:
            raise ValueError(f"lm_events[{i}]: leg is {leg!r} but bilateral is {lm['bilateral']}; "
                             "leg must be \"both\" exactly when bilateral")


def _check_wear(core: NightCore) -> None:
    """The not-worn spans lie within the recording, in order, without overlapping one another or
    the time in bed (not-worn time is not in bed, docs/summary.md)."""
    if core.wear is None:
        return
    spans = core.wear.not_worn
    if spans and not core.wear.assessed:
        raise ValueError("wear.not_worn has spans but wear.assessed is false")
    end_s = core.duration_s + TIME_ROUNDING_S
    for i, span in enumerate(spans):
        if span.end_s > end_s:
            raise ValueError(f"wear.not_worn[{i}] ends after duration_s")
        if i and span.start_s < spans[i - 1].end_s - TIME_ROUNDING_S:
            raise ValueError(f"wear.not_worn[{i}] is out of order or overlaps the span before")
    in_bed = _union_s(core.in_bed)
    off = [(s.start_s, s.end_s) for s in spans]
    overlap_s = sum(end - start for start, end in in_bed) - _minus_s(in_bed, off)
    if overlap_s > TIME_ROUNDING_S * (2 + 2 * (len(in_bed) + len(off))):
        raise ValueError("in_bed overlaps wear.not_worn: time not worn is not time in bed")


def _check_hourly(core: NightCore) -> None:
    hours = core.hourly
    if not hours:
        if core.duration_s >= TIME_ROUNDING_S:
            raise ValueError("hourly is empty for a recording of some length")
        return
    edge_s = 0.0
    for i, hour in enumerate(hours):
        # A first hour cut a few µs before the clock's hour rounds to [0.0, 0.0]: empty rows are allowed.
        if abs(hour.start_s - edge_s) > TIME_ROUNDING_S or not 0 <= hour.end_s - hour.start_s <= MAX_HOUR_ROW_S:
            raise ValueError(f"hourly[{i}]: hours must follow each other from 0, each at most an hour")
        if (hour.clock_hour is None) != (core.recording_start is None):
            raise ValueError(f"hourly[{i}]: clock_hour is set exactly when recording_start is")
        if hour.plm_count > hour.lm_count:
            raise ValueError(f"hourly[{i}]: plm_count exceeds lm_count")
        edge_s = hour.end_s
    if abs(edge_s - core.duration_s) > TIME_ROUNDING_S:
        raise ValueError("hourly does not end at duration_s")
    for key, stated in (("lm_count", core.lm_count), ("plm_count", core.plm_count)):
        if sum(getattr(hour, key) for hour in hours) != stated:
            raise ValueError(f"hourly {key}s do not add up to {key}")


def _check_intervals(core: NightCore, imis: int) -> None:
    h = core.imi_histogram
    if h.below_10_s + h.from_10_to_90_s + h.above_90_s != imis:
        raise ValueError(f"imi_histogram counts {h.below_10_s + h.from_10_to_90_s + h.above_90_s} IMIs "
                         f"but lm_events give {imis}")
    if sum(h.counts) != h.below_10_s + h.from_10_to_90_s:
        raise ValueError("imi_histogram.counts do not add up to the IMIs of 0–90 s")
    # Ferri 2006: the periodicity index counts IMIs of 10–90 s (in runs) over all IMIs.
    if core.periodicity_index > (h.from_10_to_90_s / imis if imis else 0.0) + SHARE_TOLERANCE:
        raise ValueError("periodicity_index exceeds the share of IMIs of 10–90 s")


def check_figures(core: NightCore, series_sizes: dict[int, int], imis: int) -> None:
    """Raise ValueError naming the first headline figure of `core` that its events and intervals
    contradict. `series_sizes` maps each PLM series to its number of LMs and `imis` counts the CLMs
    with an IMI, both from one pass over `lm_events` (the counts themselves are checked there)."""
    for series, size in series_sizes.items():
        if size < MIN_SERIES_CLMS:
            raise ValueError(f"PLM series {series} has {size} CLMs, fewer than {MIN_SERIES_CLMS}")
    if sorted(series_sizes) != list(range(len(series_sizes))):
        raise ValueError("PLM series are not numbered 0, 1, …")
    if core.time_in_bed_s > core.duration_s + TIME_ROUNDING_S:
        raise ValueError("time_in_bed_s exceeds duration_s")
    _check_spans(core)
    _check_legs(core)
    _check_wear(core)
    # A night with insufficient data has no index, band or flag (the model checks they are 0 and
    # false, and that its time in bed is under its stated minimum): there is nothing to recompute.
    if core.severity != INSUFFICIENT:
        for key, stated, count in (("plm_index", core.plm_index, core.plm_count),
                                   ("lm_index", core.lm_index, core.lm_count)):
            if not _index_ok(stated, count, core.time_in_bed_s):
                raise ValueError(f"{key} does not follow from the count and time_in_bed_s")
        if core.severity != severity(core.plm_index):
            raise ValueError(f"severity {core.severity!r} is not the band of plm_index")
        if core.clinically_significant != (core.plm_index > CLINICAL_PLMI_ADULT):
            raise ValueError(f"clinically_significant must be plm_index > {CLINICAL_PLMI_ADULT:g}")
    _check_hourly(core)
    _check_intervals(core, imis)


def check_not_future(night: NightSummary, now: datetime) -> None:
    """Raise ValueError when `night` is dated after `now` (aware) beyond `CLOCK_SKEW`: its date, its
    window's start, its recording's start or its `generated_at`."""
    latest = now + CLOCK_SKEW
    if night.night > latest_local_date(latest):
        raise ValueError("night is a date in the future")
    for key, moment in (("generated_at", night.generated_at), ("window.start", night.window.start),
                        ("recording_start", night.recording_start)):
        if moment is not None and moment > latest:
            raise ValueError(f"{key} is in the future")


def latest_local_date(moment: datetime) -> date:
    """The latest calendar date anywhere on Earth at `moment` (aware)."""
    return (moment.astimezone(timezone.utc) + MAX_UTC_OFFSET).date()

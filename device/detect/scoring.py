"""Score a night: leg movements in, the summary core of docs/summary.md out. Pure: no I/O, no clock.

The steps, each by the figures of a `RuleSet` (device/detect/rules.py), applied here whatever made
the LMs (our detector, or a PSG's scoring imported by `rlsmon-device score`):
0. On each leg, movements less than 0.5 s apart are one LM, and what is still under 0.5 s is no LM.
1. LMs of the two legs combine into bilateral LMs.
2. Only LMs whose onset lies in bed, outside any gap, are scored: an LM while up and about is not a
   sleep LM (the PSG standards score LMs between lights off and lights on), and a clinician reading
   "PLMs per hour in bed" expects both the count and the hours from the same spans.
3. Each LM is a CLM or not; CLMs form PLM series by their onset-to-onset intervals (IMI).
4. The night statistics: indices per hour in bed, the periodicity index, the IMI histogram, the
   counts per clock hour, coverage and severity.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from device import __version__
from device.detect.bed import merge, subtract
from device.detect.events import Interval, LegMovement
from device.detect.rules import WASM2016, RuleSet, rule_set

SCHEMA = "rlsmon.night/1"
Side = Literal["left", "right"]
# Two recordings or sensors are the left leg, then the right (`analyze`, device/config.py).
LEFT_RIGHT: tuple[Side, Side] = ("left", "right")
IMI_BIN_WIDTH_S = 2
IMI_BINS = 45  # 2-s bins from 0 to 90 s (docs/summary.md)
# Onsets are kept to 0.1 ms in the recording; rounding IMIs and spacings to 1 µs makes 100.3 - 90.3
# exactly 10.0, so the 0.5 s, 5 s, 10 s and 90 s bounds hold despite binary floating point.
_IMI_DECIMALS = 6
# An LM's duration is judged to the millisecond: the same movement measures 0.49993 s from a CSV's
# time stamps (kept to 0.1 ms, the ODR estimated from them) and 0.50000 s live, and must count the
# same either way (tests/deploy/test_e2e.py).
_DURATION_DECIMALS = 3

# Severity bands of the PLM index (per hour): ICSD-R (American Sleep Disorders Association, 1997),
# PLMD severity: mild 5–24, moderate 25–49, severe ≥ 50; below 5 is normal.
SEVERITY_BANDS: tuple[tuple[float, str], ...] = ((50.0, "severe"), (25.0, "moderate"), (5.0, "mild"))
# ICSD-3 (AASM, 2014), PLMD: a PLMS index > 15/h in adults is clinically significant. For
# children the threshold is > 5/h; this summary uses the adult one.
CLINICAL_PLMI_ADULT = 15.0

# Below this much recorded time in bed the night has insufficient data: no index, no severity band,
# no flag. The fewest PLMs a night can have is one series of 4 (WASM 2016); below 48 min those 4
# alone read as more than 5/h, the floor of the mild band (ICSD-R), so the index could not tell a
# normal night from a mild one, and an empty night would be called normal on no evidence.
# 4 PLMs / 0.8 h = 5/h: from 48 min on, one series is at most the band's floor.
MIN_TIME_IN_BED_S = WASM2016.min_series_clms / SEVERITY_BANDS[-1][0] * 3600.0
INSUFFICIENT = "insufficient_data"

CAVEATS = (
    "Respiratory-related leg movements are not excluded: without respiratory signals they cannot be "
    "told apart (WASM 2016 and AASM both exclude them in a PSG).",
    "Indices are per hour in bed, not per hour of sleep: there is no EEG, so wake in bed counts as "
    "time in bed (as PAM-RL reports them).",
)


@dataclass
class _LM:
    onset_s: float
    offset_s: float
    parts: int
    legs: set[int]
    longest_part_s: float
    segment: int = -1
    clm: bool = False
    imi_s: float | None = None
    series: int | None = None

    @property
    def duration_s(self) -> float:
        return self.offset_s - self.onset_s


def score_night(
    legs: Sequence[Sequence[LegMovement]],
    in_bed: Sequence[Interval],
    gaps: Sequence[Interval],
    duration_s: float,
    rules: str = "WASM2016",
    recording_start: datetime | None = None,
    sides: Sequence[Side | None] = (),
) -> dict:
    """Score the LMs of one or two legs into the summary core (docs/summary.md).

    `legs` holds one list of LMs per leg (the list's position is the leg). `in_bed` and `gaps` are
    spans in seconds on the same timeline; `duration_s` is the end of the last sample. A gap or a
    spell out of bed ends any series. `recording_start`, when known, must carry its UTC offset; it
    names the clock hours. `sides`, when known, names each leg's side ("left" or "right", None for
    unknown), and each LM then says its `leg`; a bilateral LM's is "both" in any case. Raises
    ValueError for an unknown rule set, a naive `recording_start`, or `sides` that do not name
    each leg once.
    """
    rs = rule_set(rules)
    named = [s for s in sides if s is not None]
    if sides and (len(sides) != len(legs) or len(set(named)) < len(named) or not set(named) <= set(LEFT_RIGHT)):
        raise ValueError(f"sides {list(sides)} must give each of the {len(legs)} leg(s) left, right or None, "
                         "each side once")
    duration_s = float(duration_s)
    if recording_start is not None and recording_start.utcoffset() is None:
        raise ValueError("recording_start must carry its UTC offset (an aware datetime)")
    gaps = merge(g for g in gaps if g.end_s > g.start_s)
    in_bed = merge(s for s in in_bed if s.end_s > s.start_s)
    scored = subtract(in_bed, gaps)  # the spans that count: in bed and recorded
    joined = [join_one_leg(moves, rs) for moves in legs]
    kept = [[m for m in moves if round(m[1] - m[0], _DURATION_DECIMALS) >= rs.lm_min_s] for moves in joined]
    too_short = sum(map(len, joined)) - sum(map(len, kept))
    lms = combine_legs(kept, rs)
    total = len(lms)
    lms = _in_spans(lms, scored)
    for lm in lms:
        lm.clm = is_clm(lm, rs)
    series_count = mark_series(lms, rs)
    time_in_bed_s = float(sum(s.duration_s for s in scored))  # plain floats and bools for JSON
    sufficient = _r3(time_in_bed_s) >= MIN_TIME_IN_BED_S  # on the figure reported, so readers agree
    hours_in_bed = time_in_bed_s / 3600.0 if sufficient else 0.0
    plm_count = sum(lm.series is not None for lm in lms)
    # Bands and flags read the index as reported, so a printed 25.0 is never called mild.
    plm_index = round(plm_count / hours_in_bed, 2) if hours_in_bed > 0 else 0.0
    imis = [lm.imi_s for lm in lms if lm.clm and lm.imi_s is not None]
    caveats = list(CAVEATS)
    if too_short:
        caveats.append(
            f"{too_short} movements shorter than {rs.lm_min_s:g} s (after joining those less than "
            f"{rs.same_leg_within_s:g} s apart on one leg) are not leg movements and are not scored."
        )
    if total > len(lms):
        caveats.append(
            f"{total - len(lms)} leg movements while out of bed or in a recording gap are not scored."
        )
    if not sufficient:
        caveats.append(
            f"Insufficient data: {time_in_bed_s / 60:.0f} min recorded in bed (lying, between lights off "
            f"and on, outside gaps), and a PLM index needs at least "
            f"{MIN_TIME_IN_BED_S / 60:.0f} min. The indices are left at 0 with no severity and no flag."
        )
    return {
        "schema": SCHEMA,
        "rules": rs.name,
        "algorithm_version": __version__,
        "recording_start": recording_start.isoformat() if recording_start else None,
        "duration_s": _r3(duration_s),
        "lm_events": [
            {
                "onset_s": _r3(lm.onset_s),
                "offset_s": _r3(lm.offset_s),
                "duration_s": _r3(lm.duration_s),
                "periodic": lm.series is not None,
                "clm": lm.clm,
                "bilateral": len(lm.legs) > 1,
                "series": lm.series,
                "imi_s": None if lm.imi_s is None else _r3(lm.imi_s),
                **_leg(lm, sides),
            }
            for lm in lms
        ],
        "lm_count": len(lms),
        "clm_count": sum(lm.clm for lm in lms),
        "plm_count": plm_count,
        "plm_series_count": series_count,
        "in_bed": [_span(s, duration_s) for s in in_bed],
        "time_in_bed_s": _r3(time_in_bed_s),
        "lm_index": round(len(lms) / hours_in_bed, 2) if hours_in_bed > 0 else 0.0,
        "plm_index": plm_index,
        "periodicity_index": round(periodicity_index(lms), 4),
        "imi_histogram": imi_histogram(imis),
        "hourly": hourly(lms, duration_s, recording_start),
        "coverage": {
            "recorded_s": _r3(sum(s.duration_s for s in subtract([Interval(0.0, duration_s)], gaps))),
            "gaps": [_span(g, duration_s) for g in gaps],
        },
        "severity": severity(plm_index) if sufficient else INSUFFICIENT,
        "clinically_significant": sufficient and plm_index > CLINICAL_PLMI_ADULT,
        "min_time_in_bed_s": MIN_TIME_IN_BED_S,
        "caveats": caveats,
    }


def join_one_leg(moves: Sequence[LegMovement], rs: RuleSet) -> list[tuple[float, float]]:
    """One leg's movements as (onset_s, offset_s) by onset, those that overlap or lie less than
    `rs.same_leg_within_s` apart joined into one (WASM 2016; PLMScoRe `lm_unil`)."""
    out: list[list[float]] = []
    for onset_s, offset_s in sorted((float(m.onset_s), float(m.offset_s)) for m in moves):
        if out and round(onset_s - out[-1][1], _IMI_DECIMALS) < rs.same_leg_within_s:
            out[-1][1] = max(out[-1][1], offset_s)
        else:
            out.append([onset_s, offset_s])
    return [(a, b) for a, b in out]


def combine_legs(legs: Sequence[Sequence[tuple[float, float]]], rs: RuleSet) -> list[_LM]:
    """Merge the legs' LMs, (onset_s, offset_s) each as `join_one_leg` gives them, into one list by
    onset, joining LMs of different legs per `rs.bilateral`.

    `"gap"` (WASM 2016) chains LMs while each starts less than `bilateral_within_s` after the
    running offset (overlap counts), so a chain of parts on alternating legs is one LM; its parts
    are whole single-leg LMs, as WASM 2016 counts them (at most 4). `"onset"` (AASM 2012) joins an
    LM of another leg whose onset is less than `bilateral_within_s` after the previous part's
    onset. The combined LM runs from the earliest onset to the latest offset, so its IMI is taken
    from the earliest onset (WASM 2016).
    """
    moves = sorted(
        ((onset_s, offset_s, leg) for leg, ms in enumerate(legs) for onset_s, offset_s in ms),
        key=lambda m: (m[0], m[1]),
    )
    out: list[_LM] = []
    last_onset_s = last_leg = None
    for onset_s, offset_s, leg in moves:
        if out and last_leg is not None:
            prev = out[-1]
            if rs.bilateral == "gap":
                joins = round(onset_s - prev.offset_s, _IMI_DECIMALS) < rs.bilateral_within_s
            else:
                joins = leg != last_leg and round(onset_s - last_onset_s, _IMI_DECIMALS) < rs.bilateral_within_s
            if joins:
                prev.offset_s = max(prev.offset_s, offset_s)
                prev.parts += 1
                prev.legs.add(leg)
                prev.longest_part_s = max(prev.longest_part_s, offset_s - onset_s)
                last_onset_s, last_leg = onset_s, leg
                continue
        out.append(_LM(onset_s, offset_s, 1, {leg}, offset_s - onset_s))
        last_onset_s, last_leg = onset_s, leg
    return out


def is_clm(lm: _LM, rs: RuleSet) -> bool:
    """Whether `lm` is a candidate LM: 0.5–10 s on one leg; bilateral within the rule set's limits."""
    duration_s = round(lm.duration_s, _DURATION_DECIMALS)
    if len(lm.legs) == 1:
        return rs.clm_min_s <= duration_s <= rs.clm_max_s
    if round(lm.longest_part_s, _DURATION_DECIMALS) > rs.clm_max_s or duration_s < rs.clm_min_s:
        return False
    if rs.bilateral_max_s is not None and duration_s > rs.bilateral_max_s:
        return False
    return rs.bilateral_max_parts is None or lm.parts <= rs.bilateral_max_parts


def mark_series(lms: Sequence[_LM], rs: RuleSet) -> int:
    """Set `imi_s` on each CLM and `series` on each PLM, in onset order; return the number of series.

    The IMI runs from the previous CLM's onset in the same scored span (none across a gap or a spell
    out of bed). A run of CLMs whose IMIs all lie in [imi_min_s, imi_max_s] is a series when it has
    at least `min_series_clms` CLMs. It ends at a gap or out of bed, at an IMI > imi_max_s, at a
    non-CLM LM when the rule set says so, and at an IMI < imi_min_s under `"break"`; under `"skip"`
    that CLM is passed over and the next IMI is measured from the CLM before it.

    Where a non-CLM LM breaks series, the intervals next to it are missing: the CLM after it has no
    IMI, as a gap leaves none. PLMScoRe (Fulda's R code of WASM 2016, R/lm_score.R, `plm()`) sets
    the IMIs next to a non-CLM LM to NA and starts the next run from the CLM after it; measuring
    across the long LM would put an interval in the histogram and the periodicity index that no
    series can use.
    """
    series = 0
    run: list[_LM] = []
    anchor: _LM | None = None

    def close() -> None:
        nonlocal series, run
        if len(run) >= rs.min_series_clms:
            for lm in run:
                lm.series = series
            series += 1
        run = []

    for lm in lms:
        if anchor is not None and anchor.segment != lm.segment:
            close()
            anchor = None
        if not lm.clm:
            if rs.long_lm_breaks_series:
                close()
                anchor = None
            continue
        imi_s = None if anchor is None else round(lm.onset_s - anchor.onset_s, _IMI_DECIMALS)
        lm.imi_s = imi_s
        if imi_s is not None and imi_s < rs.imi_min_s and rs.short_imi == "skip":
            continue
        if imi_s is None or imi_s < rs.imi_min_s or imi_s > rs.imi_max_s:
            close()
        run.append(lm)
        anchor = lm
    close()
    return series


def periodicity_index(lms: Sequence[_LM]) -> float:
    """Ferri 2006: the IMIs of 10–90 s that belong to runs of ≥ 3 consecutive such IMIs, ÷ all IMIs.

    Ferri R, Zucconi M, Manconi M, et al. New approaches to the study of periodic leg movements
    during sleep in restless legs syndrome. Sleep 2006;29:759–769. The 10–90 s window is Ferri's,
    whichever rule set scores the series. The IMIs are those `mark_series` set: a CLM without one
    (after a gap, out of bed, or, when the rule set says so, after a non-CLM LM, as in PLMScoRe)
    cuts the run and adds nothing to the denominator. 0 when there is no IMI.
    """
    total = in_runs = run = 0
    for lm in lms:
        if not lm.clm:
            continue
        if lm.imi_s is None:
            in_runs += run if run >= 3 else 0
            run = 0
            continue
        total += 1
        if 10.0 <= lm.imi_s <= 90.0:
            run += 1
        else:
            in_runs += run if run >= 3 else 0
            run = 0
    in_runs += run if run >= 3 else 0
    return in_runs / total if total else 0.0


def imi_histogram(imis_s: Sequence[float]) -> dict:
    """IMIs between consecutive CLMs in 2-s bins from 0 to 90 s (90.0 falls in the last), and the
    counts below 10 s, from 10 to 90 s (inclusive, as the PLM bounds) and above 90 s."""
    counts = [0] * IMI_BINS
    for imi in imis_s:
        if imi <= IMI_BINS * IMI_BIN_WIDTH_S:
            counts[min(int(imi // IMI_BIN_WIDTH_S), IMI_BINS - 1)] += 1
    return {
        "bin_width_s": IMI_BIN_WIDTH_S,
        "counts": counts,
        "below_10_s": sum(imi < 10.0 for imi in imis_s),
        "from_10_to_90_s": sum(10.0 <= imi <= 90.0 for imi in imis_s),
        "above_90_s": sum(imi > 90.0 for imi in imis_s),
    }


def hourly(lms: Sequence[_LM], duration_s: float, recording_start: datetime | None) -> list[dict]:
    """LMs and PLMs per clock hour, by onset. With a known start the first and last hours are cut
    at the clock's hour boundaries; otherwise hours run from t = 0 and `clock_hour` is null."""
    if recording_start is None:
        first_s, start_utc = 3600.0, None
    else:
        start_utc = recording_start.astimezone(timezone.utc)
        into_hour_s = recording_start.minute * 60 + recording_start.second + recording_start.microsecond / 1e6
        first_s = 3600.0 - into_hour_s
    bounds = [0.0]
    edge = first_s
    while edge < duration_s - 1.0:  # no sliver of an hour for the last sample's few milliseconds
        bounds.append(edge)
        edge += 3600.0
    bounds.append(duration_s)
    rows = [
        {
            "start_s": _r3(a),
            "end_s": _r3(b),
            "clock_hour": None
            if start_utc is None
            else (start_utc + timedelta(seconds=a)).astimezone(recording_start.tzinfo).hour,
            "lm_count": 0,
            "plm_count": 0,
        }
        for a, b in zip(bounds[:-1], bounds[1:])
        if b > a
    ]
    starts = [row["start_s"] for row in rows]
    for lm in lms:
        i = bisect.bisect_right(starts, lm.onset_s) - 1
        if 0 <= i < len(rows):
            rows[i]["lm_count"] += 1
            rows[i]["plm_count"] += lm.series is not None
    return rows


def severity(plm_index: float) -> str:
    """The PLMI band: normal < 5, mild 5–24, moderate 25–49, severe ≥ 50 (ICSD-R, ASDA 1997)."""
    for floor, name in SEVERITY_BANDS:
        if plm_index >= floor:
            return name
    return "normal"


def _in_spans(lms: list[_LM], spans: Sequence[Interval]) -> list[_LM]:
    starts = [s.start_s for s in spans]
    kept = []
    for lm in lms:
        i = bisect.bisect_right(starts, lm.onset_s) - 1
        if i >= 0 and lm.onset_s < spans[i].end_s:
            lm.segment = i
            kept.append(lm)
    return kept


def _leg(lm: _LM, sides: Sequence[Side | None]) -> dict:
    """`{"leg": …}` for an LM whose leg is known, else nothing (docs/summary.md: omitted when unknown)."""
    if len(lm.legs) > 1:
        return {"leg": "both"}
    (k,) = lm.legs
    side = sides[k] if k < len(sides) else None
    return {"leg": side} if side else {}


def _span(s: Interval, duration_s: float) -> dict:
    return {"start_s": _r3(max(0.0, s.start_s)), "end_s": _r3(min(duration_s, s.end_s))}


def _r3(x: float) -> float:
    return round(float(x), 3)

"""Offline analysis of a recorded night: recording CSV(s) → detection → scoring → summary core; or
LMs scored elsewhere (a PSG's annotations) → scoring → the same summary core and report; or a
recorded evening test (SIT) → detection → the SIT rules → the core of `rlsmon.sit/1` (docs/sit.md).

The same detection and scoring code as the live daemon, fed from `read_recording` block by block,
so memory stays flat whatever the length of the night.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from device.detect import LegDetector
from device.detect.bed import Marker, in_bed_intervals, merge
from device.detect.detector import GAP_PERIODS
from device.detect.events import Interval, LegMovement, PostureSegment
from device.detect.scoring import INSUFFICIENT, LEFT_RIGHT, score_night
from device.errors import RecordingMismatchError
from device.lm_import import ImportedEvents
from device.recording import read_recording
from device.wear import WearEpoch, WearEpochs, assess, worn_in_bed

# Blocks of a few seconds keep per-call overhead low offline; the detector's frames make the result
# independent of the block size.
BLOCK_ROWS = 16384


@dataclass
class NightAnalysis:
    """The scored night, and what a plot needs besides: the postures of the first leg's shin."""

    summary: dict
    postures: list[PostureSegment] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)


@dataclass
class _Leg:
    path: str
    movements: list[LegMovement] = field(default_factory=list)
    postures: list[PostureSegment] = field(default_factory=list)
    gaps: list[Interval] = field(default_factory=list)
    wear_epochs: list[WearEpoch] = field(default_factory=list)
    start_s: float | None = None  # the first sample; None when the recording has none
    end_s: float = 0.0
    dt_s: float = 0.0


def analyze_recordings(
    paths: Sequence[str | os.PathLike],
    rules: str = "WASM2016",
    markers: Sequence[Marker] = (),
    progress: Callable[[int], None] | None = None,
    recording_start: datetime | None = None,
) -> NightAnalysis:
    """Detect and score one recording per leg (left first); both legs share one timeline.

    `progress`, when given, is called with the number of rows just read. `recording_start` (aware)
    names the clock hours. A gap in either leg is a gap of the night, since a bilateral LM cannot be
    scored with one leg missing; so is any time of the night before a leg's first sample or after
    its last. Raises `RecordingFormatError` for a malformed file, `RecordingMismatchError` for two
    legs that share no time (they are not one night), and ValueError for an unknown rule set.
    """
    legs, duration_s, gaps, postures = _detect_legs(paths, progress)
    # A recording with a temp_c column says when the sensor was off the leg: not time in bed. Read
    # in long blocks, its temperature comes as a mean every few minutes, so a span's start may be
    # placed a few minutes later than the daemon, reading every 5 s, would place it.
    wear = assess(leg.wear_epochs for leg in legs)
    in_bed = worn_in_bed(in_bed_intervals(postures, markers, duration_s), wear.not_worn)
    # One recording per leg, left first: two name their legs; one alone could be either.
    sides = LEFT_RIGHT if len(legs) == 2 else ()
    summary = score_night([leg.movements for leg in legs], in_bed, gaps, duration_s, rules, recording_start,
                          sides)
    summary.update(wear=wear.summary(duration_s), caveats=summary["caveats"] + wear.caveats())
    return NightAnalysis(summary=summary, postures=postures, markers=list(markers))


def analyze_sit(paths: Sequence[str | os.PathLike], progress: Callable[[int], None] | None = None) -> dict:
    """Detect one recording per leg of an evening test and score it by the SIT rules
    (`device.detect.sit.score_sit`): the whole recording is the test, and the time the shin was not
    near horizontal (walking in and out, standing up) is reported and excluded. Errors as
    `analyze_recordings`."""
    from device.detect.sit import score_sit

    legs, duration_s, gaps, postures = _detect_legs(paths, progress)
    return score_sit([leg.movements for leg in legs], postures, gaps, 0.0, duration_s, duration_s, False)


def _detect_legs(paths: Sequence[str | os.PathLike], progress: Callable[[int], None] | None
                 ) -> tuple[list[_Leg], float, list[Interval], list[PostureSegment]]:
    """Each leg's detection, the shared duration, the gaps of either leg and the postures."""
    legs = [_detect(path, leg, progress) for leg, path in enumerate(paths)]
    if len(legs) > 1:
        _check_overlap(legs)
    duration_s = max((leg.end_s for leg in legs), default=0.0)
    gaps = merge([g for leg in legs for g in leg.gaps] + [g for leg in legs for g in _unrecorded(leg, duration_s)])
    # Both shins lie and stand together, so the first leg's posture speaks for the patient.
    postures = legs[0].postures if legs else []
    return legs, duration_s, gaps, postures


def score_events(
    events: ImportedEvents,
    rules: str = "WASM2016",
    markers: Sequence[Marker] = (),
    gaps: Sequence[Interval] = (),
    duration_s: float | None = None,
    recording_start: datetime | None = None,
) -> NightAnalysis:
    """Score LMs scored elsewhere (`device.lm_import.read_events`) as `analyze_recordings` scores ours.

    In bed runs from lights off to lights on (`markers`; without any, the whole recording), as a
    PSG's time in bed. There is no posture, so the patient counts as lying throughout. `gaps` add
    to the file's own. `duration_s` defaults to the end of the file's records or last LM, or of the
    last marker or gap if later. Raises ValueError for an unknown rule set.
    """
    markers = list(markers)
    gaps = [*events.gaps, *gaps]
    if duration_s is None:
        duration_s = max([events.duration_s, *(t for t, _ in markers), *(g.end_s for g in gaps)])
    lying = [PostureSegment(0.0, duration_s, "lying")]
    in_bed = in_bed_intervals(lying, markers, duration_s)
    summary = score_night(events.legs, in_bed, merge(gaps), duration_s, rules, recording_start, events.sides)
    return NightAnalysis(summary=summary, markers=markers)


def _check_overlap(legs: Sequence[_Leg]) -> None:
    def span(leg: _Leg) -> str:
        if leg.start_s is None:
            return f"{leg.path} (no samples)"
        return f"{leg.path} (t = {leg.start_s:g}–{leg.end_s:g} s)"

    recorded = [leg for leg in legs if leg.start_s is not None]
    if len(recorded) < len(legs) or max(leg.start_s for leg in legs) >= min(leg.end_s for leg in legs):
        raise RecordingMismatchError(
            f"{' and '.join(span(leg) for leg in legs)} do not overlap in time: they are not the two "
            "legs of one night"
        )


def _unrecorded(leg: _Leg, duration_s: float) -> list[Interval]:
    """The night's time before the leg's first sample and after its last, beyond the detector's
    own gap tolerance (so the few ms between two sensors' last samples are no gap)."""
    if leg.start_s is None:
        return [Interval(0.0, duration_s)] if duration_s > 0 else []
    tolerance_s = GAP_PERIODS * leg.dt_s
    spans = [Interval(0.0, leg.start_s), Interval(leg.end_s, duration_s)]
    return [s for s in spans if s.duration_s > tolerance_s]


def _detect(path: str | os.PathLike, leg: int, progress: Callable[[int], None] | None) -> _Leg:
    out = _Leg(os.fspath(path))
    detector: LegDetector | None = None
    wear = WearEpochs()
    for block in read_recording(path, block_rows=BLOCK_ROWS):
        if detector is None:
            detector = LegDetector(block.odr_hz, leg=leg)
            out.start_s, out.dt_s = float(block.t_s[0]), 1.0 / block.odr_hz
        _collect(out, detector.feed(block))
        out.wear_epochs += wear.feed(block)
        out.end_s = float(block.t_s[-1]) + 1.0 / block.odr_hz  # the end of the last sample
        if progress:
            progress(len(block))
    if detector is not None:
        _collect(out, detector.finish())
    out.wear_epochs += wear.finish()
    return out


def _collect(leg: _Leg, output) -> None:
    leg.movements.extend(output.movements)
    leg.postures.extend(output.postures)
    leg.gaps.extend(output.gaps)


def estimate_rows(path: str | os.PathLike) -> int:
    """About how many rows the recording holds, from its size and its first lines (for a progress bar)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(65536)
    lines = max(1, head.count(b"\n"))
    return max(1, int(size / (len(head) / lines)))


def report(analysis: NightAnalysis, names: Sequence[str]) -> str:
    """A short human report: counts, the PLM index with its band, time in bed, coverage, caveats."""
    s = analysis.summary
    h = s["imi_histogram"]
    gaps = s["coverage"]["gaps"]
    gap_s = sum(g["end_s"] - g["start_s"] for g in gaps)
    coverage = 100.0 * s["coverage"]["recorded_s"] / s["duration_s"] if s["duration_s"] else 0.0
    lm_index = "no index" if s["severity"] == INSUFFICIENT else f"LM index {s['lm_index']:.1f}/h"
    lines = [
        f"rlsmon night analysis of {' + '.join(names)} ({s['rules']} rules, algorithm {s['algorithm_version']})",
        f"  Recorded        {hours_minutes(s['duration_s'])}, coverage {coverage:.1f} % "
        f"({_plural(len(gaps), 'gap')}, {hours_minutes(gap_s)})",
        f"  Time in bed     {hours_minutes(s['time_in_bed_s'])} in {_plural(len(s['in_bed']), 'span')}",
        f"  Leg movements   {s['lm_count']} ({lm_index}), {s['clm_count']} candidate LMs",
        f"  PLMs            {s['plm_count']} in {s['plm_series_count']} series",
        f"  PLM index       {plm_index_verdict(s)}",
        f"  Periodicity     {s['periodicity_index']:.2f}; IMIs < 10 s: {h['below_10_s']}, "
        f"10–90 s: {h['from_10_to_90_s']}, > 90 s: {h['above_90_s']}",
        "  Caveats:",
        *(f"  - {c}" for c in s["caveats"]),
    ]
    return "\n".join(lines)


def sit_report(result: dict, names: Sequence[str]) -> str:
    """A short human report of an evening test: the SIT indices, the verdict against 40/h, the
    excluded time and the PLMs of each 10-min block."""
    if result["plm_index"] is None:
        verdict = f"no index: {result['scored_s'] / 60:.0f} min scored, an index needs {result['min_scored_s'] / 60:.0f} min"
    else:
        above = "above" if result["above_threshold"] else "not above"
        verdict = f"{result['plm_index']:.1f}/h, {above} {result['threshold_per_h']:g}/h (Montplaisir et al. 1998)"
    blocks = " | ".join(f"{b['plm_count']} ({b['scored_s'] / 60:.0f} min)" for b in result["blocks"])
    lines = [
        f"rlsmon SIT analysis of {' + '.join(names)} ({result['rules']} rules, algorithm {result['algorithm_version']})",
        f"  Test            {hours_minutes(result['duration_s'])}, scored {hours_minutes(result['scored_s'])}; "
        f"not near horizontal {hours_minutes(result['not_horizontal_s'])}, gaps {hours_minutes(result['gap_s'])}",
        f"  Leg movements   {result['lm_count']}"
        + ("" if result["lm_index"] is None else f" (SIT LM index {result['lm_index']:.1f}/h)"),
        f"  SIT PLM index   {verdict}",
        f"  PLMs by 10 min  {blocks}",
        "  Caveats:",
        *(f"  - {c}" for c in result["caveats"]),
    ]
    return "\n".join(lines)


def plm_index_verdict(summary: dict) -> str:
    """The PLM index with its band and flag, or that the night has too little data for one."""
    if summary["severity"] == INSUFFICIENT:
        return (f"insufficient data: {summary['time_in_bed_s'] / 60:.0f} min in bed, an index needs "
                f"{summary['min_time_in_bed_s'] / 60:.0f} min (no severity, no flag)")
    significance = "clinically significant" if summary["clinically_significant"] else "not clinically significant"
    return f"{summary['plm_index']:.1f}/h: {summary['severity']}, {significance} (threshold > 15/h in adults)"


def hours_minutes(seconds: float) -> str:
    """`seconds` as "7 h 52 min"."""
    minutes = int(round(seconds / 60.0))
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"

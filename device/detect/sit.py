"""Score a Suggested Immobilization Test: the LMs of one sitting hour in, the core of `rlsmon.sit/1`
out (docs/sit.md). Pure: no I/O, no clock.

The same steps as a night (device/detect/scoring.py), by the SIT rule set (device/detect/rules.py):
the legs' LMs are joined and combined, and only those whose onset lies in the scored time count.
The scored time is the test's span while the shin lies near horizontal (the legs outstretched)
and the sensor recorded; time with the shin otherwise (the patient stood up) is reported and
excluded, as a gap is, and either ends a series.
"""

from __future__ import annotations

from collections.abc import Sequence

from device import __version__
from device.detect.bed import merge, subtract
from device.detect.events import Interval, LegMovement, PostureSegment
from device.detect.rules import SIT, RuleSet
from device.detect.scoring import _in_spans, _r3, combine_legs, is_clm, join_one_leg, mark_series

SCHEMA = "rlsmon.sit/1"
# Montplaisir et al., Mov Disord 1998;13:324–329: a SIT PLM index above 40/h separated RLS patients
# from controls with about 81 % sensitivity and specificity.
THRESHOLD_PER_H = 40.0
# The m-SIT rates symptoms every 10 min (Garcia-Borreguero et al., Sleep 2013;36:1101–1109);
# the result gives the LMs, PLMs and scored time of each.
BLOCK_S = 600.0
# Below this much scored time a single PLM series (4 PLMs) alone reads above 40/h, so the index
# could not tell a patient from a control: no verdict (the night's rule, device/detect/scoring.py,
# with the SIT's threshold). 4 / 40 h = 6 min.
MIN_SCORED_S = SIT.min_series_clms / THRESHOLD_PER_H * 3600.0

CAVEATS = (
    "The SIT is scored without EEG: every LM of the test counts, whether or not the patient dozed "
    "(the SIT's PLM index is of LMs while awake, Montplaisir et al. 1998).",
)


def horizontal_spans(postures: Sequence[PostureSegment]) -> list[Interval]:
    """The spans the shin lay near horizontal (the `"lying"` posture: legs outstretched in bed)."""
    return merge([Interval(p.start_s, p.end_s) for p in postures if p.posture == "lying"])


def score_sit(legs: Sequence[Sequence[LegMovement]], postures: Sequence[PostureSegment],
              gaps: Sequence[Interval], start_s: float, end_s: float, planned_s: float,
              ended_early: bool, rules: RuleSet = SIT) -> dict:
    """Score the SIT that ran from `start_s` to `end_s` (seconds on the timeline of the LMs,
    postures and gaps). `planned_s` is its planned length; `ended_early` says the patient ended it
    with the button. Times in the result count from the test's start."""
    test = [Interval(start_s, end_s)]
    gaps_in = _clip(merge(g for g in gaps if g.end_s > g.start_s), start_s, end_s)
    recorded = subtract(test, gaps_in)
    scored = subtract(_clip(horizontal_spans(postures), start_s, end_s), gaps_in)
    not_horizontal = subtract(recorded, scored)
    joined = [join_one_leg(moves, rules) for moves in legs]
    kept = [[m for m in moves if round(m[1] - m[0], 6) >= rules.lm_min_s] for moves in joined]
    lms = combine_legs(kept, rules)
    in_test = [lm for lm in lms if start_s <= lm.onset_s < end_s]
    lms = _in_spans(in_test, scored)
    for lm in lms:
        lm.clm = is_clm(lm, rules)
    mark_series(lms, rules)
    scored_s = float(sum(s.duration_s for s in scored))
    sufficient = _r3(scored_s) >= MIN_SCORED_S
    plm_count = sum(lm.series is not None for lm in lms)
    hours = scored_s / 3600.0
    plm_index = round(plm_count / hours, 2) if sufficient else None
    caveats = list(CAVEATS)
    if len(in_test) > len(lms):
        caveats.append(f"{len(in_test) - len(lms)} leg movements while the shin was not near horizontal "
                       "or the sensor was not recording are not scored.")
    if not sufficient:
        caveats.append(f"Insufficient data: {scored_s / 60:.0f} min scored, and a SIT index needs at least "
                       f"{MIN_SCORED_S / 60:.0f} min; no index and no verdict.")

    def rel(x: float) -> float:
        return _r3(x - start_s)

    return {
        "schema": SCHEMA,
        "rules": rules.name,
        "algorithm_version": __version__,
        "taken": True,
        "ended_early": bool(ended_early),
        "planned_s": _r3(planned_s),
        "duration_s": rel(end_s),
        "scored_s": _r3(scored_s),
        "not_horizontal_s": _r3(sum(s.duration_s for s in not_horizontal)),
        "gap_s": _r3(sum(g.duration_s for g in gaps_in)),
        "excluded": sorted(
            [{"start_s": rel(s.start_s), "end_s": rel(s.end_s), "reason": "not_horizontal"} for s in not_horizontal]
            + [{"start_s": rel(g.start_s), "end_s": rel(g.end_s), "reason": "gap"} for g in gaps_in],
            key=lambda e: e["start_s"]),
        "lm_events": [
            {"onset_s": rel(lm.onset_s), "offset_s": rel(lm.offset_s), "duration_s": _r3(lm.duration_s),
             "clm": lm.clm, "periodic": lm.series is not None, "bilateral": len(lm.legs) > 1,
             "imi_s": None if lm.imi_s is None else _r3(lm.imi_s)}
            for lm in lms
        ],
        "lm_count": len(lms),
        "plm_count": plm_count,
        "lm_index": round(len(lms) / hours, 2) if sufficient else None,
        "plm_index": plm_index,
        "threshold_per_h": THRESHOLD_PER_H,
        "above_threshold": None if plm_index is None else plm_index > THRESHOLD_PER_H,
        "min_scored_s": MIN_SCORED_S,
        "blocks": _blocks(lms, scored, start_s, end_s),
        "caveats": caveats,
    }


def not_taken(planned_s: float, rules: RuleSet = SIT) -> dict:
    """The core of a SIT offered and not taken: the patient never pressed the button."""
    return {
        "schema": SCHEMA, "rules": rules.name, "algorithm_version": __version__,
        "taken": False, "ended_early": False, "planned_s": _r3(planned_s), "duration_s": 0.0,
        "scored_s": 0.0, "not_horizontal_s": 0.0, "gap_s": 0.0, "excluded": [], "lm_events": [],
        "lm_count": 0, "plm_count": 0, "lm_index": None, "plm_index": None,
        "threshold_per_h": THRESHOLD_PER_H, "above_threshold": None, "min_scored_s": MIN_SCORED_S,
        "blocks": [], "caveats": ["The test was offered and not taken."],
    }


def _blocks(lms: Sequence, scored: Sequence[Interval], start_s: float, end_s: float) -> list[dict]:
    """Each 10-min block of the test (the last one cut at its end): scored time, LMs and PLMs."""
    rows = []
    edge = start_s
    while edge < end_s - 1e-6:
        top = edge + BLOCK_S
        if top > end_s - 1.0:  # no block for the last sample's sliver of a second: the last one takes it
            top = end_s
        inside = [lm for lm in lms if edge <= lm.onset_s < top]
        rows.append({
            "start_s": _r3(edge - start_s), "end_s": _r3(top - start_s),
            "scored_s": _r3(sum(s.duration_s for s in _clip(scored, edge, top))),
            "lm_count": len(inside), "plm_count": sum(lm.series is not None for lm in inside),
        })
        edge = top
    return rows


def _clip(spans: Sequence[Interval], start_s: float, end_s: float) -> list[Interval]:
    clipped = (Interval(max(start_s, s.start_s), min(end_s, s.end_s)) for s in spans)
    return [s for s in clipped if s.end_s > s.start_s]

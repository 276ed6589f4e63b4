"""Can a night be used? A label (eligible, provisional, excluded) and its reasons, from the
summary's own fields (docs/dashboard.md, "Night quality").

Pure: facts in, a label out. Each rule is one row of ``RULES``; a new check is a new row, not a
new branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

ELIGIBLE, PROVISIONAL, EXCLUDED = "eligible", "provisional", "excluded"
_RANK = {ELIGIBLE: 0, PROVISIONAL: 1, EXCLUDED: 2}

# docs/summary.md min_time_in_bed_s: below 48 min one PLM series (4 PLMs) alone reads >= 5/h, the
# floor of the mild band; summaries from before that field carry the same floor implicitly.
MIN_TIME_IN_BED_S = 2880.0
# Under 4 h of time in bed a night is provisional. No scoring standard sets this figure; it is our
# choice, half of a usual 8-h night: PLMs are not spread evenly over the night (they are denser in
# its first hours, as the simulator's PLMD nights model), so the index of a short night is biased
# toward its early part and does not stand for a whole night.
FULL_TIME_IN_BED_S = 4 * 3600.0
# Coverage of the whole recording under 90% (more than ~48 min of an 8 h night missing) is
# provisional. No clinical source sets this; it is our engineering margin: the missing time is
# not counted as in bed, but a patient who wakes restless may be the one whose sensor drops out.
MIN_COVERAGE = 0.90
# Gaps inside the time in bed are sensor faults during the very time the index is computed on.
# Each gap ends a PLM series (an IMI is only measured between consecutive CLMs, WASM 2016), so a
# gap loses more PLMs than its length: over 10% of the in-bed span is provisional, over 50%
# excluded (more of the night unseen than seen). Engineering thresholds, not clinical ones.
MAX_GAP_IN_BED_PROVISIONAL = 0.10
MAX_GAP_IN_BED_EXCLUDED = 0.50
# The sensor off the leg within the sleep period (from the first time in bed to the last): the
# index counts only worn time in bed, but the PLMs of the unseen time are lost and each span ends
# a series, as a gap does, so the same engineering thresholds apply: over 10% provisional, over
# 50% excluded. Not-worn time before bed or after rising (a sensor left on the table until
# bedtime) is not counted.
MAX_NOT_WORN_PROVISIONAL = 0.10
MAX_NOT_WORN_EXCLUDED = 0.50


@dataclass(frozen=True)
class NightFacts:
    """What the rules read of one night, all from its summary."""
    time_in_bed_s: float
    in_bed_span_s: float          # sum of the `in_bed` spans, before gaps are taken off
    duration_s: float
    recorded_s: float
    clock_synced: bool | None     # None: not in the summary (an `analyze` core)
    min_time_in_bed_s: float = MIN_TIME_IN_BED_S
    sleep_period_s: float = 0.0       # from the first in-bed start to the last in-bed end
    not_worn_in_period_s: float = 0.0  # the summary's wear.not_worn within that period


@dataclass(frozen=True)
class Quality:
    """A night's label and the reasons for it (empty when eligible)."""
    label: str
    reasons: tuple[str, ...]


Finding = tuple[str, str] | None  # (label, reason) or nothing to say
Rule = Callable[[NightFacts], Finding]


def _hours(seconds: float) -> str:
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def time_in_bed(f: NightFacts) -> Finding:
    """Too little time in bed for an index (excluded) or for a whole night (provisional)."""
    if f.time_in_bed_s < f.min_time_in_bed_s:
        return EXCLUDED, (f"only {_hours(f.time_in_bed_s)} in bed, under the "
                          f"{_hours(f.min_time_in_bed_s)} an index needs")
    if f.time_in_bed_s < FULL_TIME_IN_BED_S:
        return PROVISIONAL, f"only {_hours(f.time_in_bed_s)} in bed, under 4 h"
    return None


def coverage(f: NightFacts) -> Finding:
    """Too much of the recording missing (gaps anywhere)."""
    if f.duration_s > 0 and f.recorded_s / f.duration_s < MIN_COVERAGE:
        return PROVISIONAL, f"{1 - f.recorded_s / f.duration_s:.0%} of the recording missing (gaps)"
    return None


def sensor_faults(f: NightFacts) -> Finding:
    """Gaps inside the time in bed: the sensor failed while the index was being counted."""
    if f.in_bed_span_s <= 0:
        return None
    lost = (f.in_bed_span_s - f.time_in_bed_s) / f.in_bed_span_s
    if lost > MAX_GAP_IN_BED_EXCLUDED:
        return EXCLUDED, f"sensor faults: {lost:.0%} of the time in bed missing"
    if lost > MAX_GAP_IN_BED_PROVISIONAL:
        return PROVISIONAL, f"sensor faults: {lost:.0%} of the time in bed missing"
    return None


def clock(f: NightFacts) -> Finding:
    """Clock not NTP-synchronised: the indices hold (they use time from the start), but the date
    and the clock hours may be wrong, so the night cannot be placed with confidence."""
    if f.clock_synced is False:
        return PROVISIONAL, "clock not synchronised: date and clock hours may be wrong"
    return None


def wear(f: NightFacts) -> Finding:
    """Sensor not worn during the sleep period (summaries without wear spans say nothing here)."""
    if f.sleep_period_s <= 0 or f.not_worn_in_period_s <= 0:
        return None
    share = f.not_worn_in_period_s / f.sleep_period_s
    reason = f"sensor not worn for {_hours(f.not_worn_in_period_s)} ({share:.0%} of the night in bed)"
    if share > MAX_NOT_WORN_EXCLUDED:
        return EXCLUDED, reason
    if share > MAX_NOT_WORN_PROVISIONAL:
        return PROVISIONAL, reason
    return None


RULES: tuple[Rule, ...] = (time_in_bed, coverage, sensor_faults, clock, wear)


def assess(facts: NightFacts) -> Quality:
    """The night's label (the worst any rule gives) and every rule's reason."""
    findings = [found for rule in RULES if (found := rule(facts)) is not None]
    label = max((lab for lab, _ in findings), key=_RANK.__getitem__, default=ELIGIBLE)
    return Quality(label, tuple(reason for _, reason in findings))


def facts(*, time_in_bed_s: float, recorded_s: float, duration_s: float,
          in_bed: list[dict[str, Any]], clock_synced: bool | None,
          min_time_in_bed_s: float | None, not_worn: list[dict[str, Any]] | None = None) -> NightFacts:
    """The facts of a night from its summary's fields (``in_bed`` and ``not_worn``, the summary's
    ``wear.not_worn``, as in the summary)."""
    first_s = min((s["start_s"] for s in in_bed), default=0.0)
    last_s = max((s["end_s"] for s in in_bed), default=0.0)
    return NightFacts(
        time_in_bed_s=time_in_bed_s, recorded_s=recorded_s, duration_s=duration_s,
        in_bed_span_s=sum(s["end_s"] - s["start_s"] for s in in_bed),
        clock_synced=clock_synced,
        min_time_in_bed_s=MIN_TIME_IN_BED_S if min_time_in_bed_s is None else min_time_in_bed_s,
        sleep_period_s=max(0.0, last_s - first_s),
        not_worn_in_period_s=sum(max(0.0, min(last_s, s["end_s"]) - max(first_s, s["start_s"]))
                                 for s in not_worn or []))


def of_summary(summary: dict[str, Any]) -> Quality:
    """The quality of a whole stored summary."""
    return assess(facts(time_in_bed_s=summary["time_in_bed_s"],
                        recorded_s=summary["coverage"]["recorded_s"],
                        duration_s=summary["duration_s"], in_bed=summary["in_bed"],
                        clock_synced=summary.get("clock_synced"),
                        min_time_in_bed_s=summary.get("min_time_in_bed_s"),
                        not_worn=(summary.get("wear") or {}).get("not_worn")))

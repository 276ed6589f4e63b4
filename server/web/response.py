"""Treatment response: the eligible nights before and after each medication change, and the
prompt to review a dopamine agonist for augmentation or tolerance.

Pure: medications and nights (each with its ``night``, ``plm_index`` and ``quality``) in,
comparisons out. Only eligible nights count (issue 12; docs/dashboard.md "Night quality").
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Sequence

from server import quality
from server.web.medications import DOPAMINE_AGONIST, Medication
from server.web.trend import MIN_NIGHTS_FOR_VERDICT

# Each side of a change is compared over up to 14 calendar nights, cut short at the next or the
# previous change so that one comparison speaks of one change. Our choice: two weeks hold enough
# nights for a median when the PLM index varies a lot from night to night (Trotti et al., Sleep
# Med 2009), and are short enough to stay near the change.
WINDOW_NIGHTS = 14
# No comparison from fewer eligible nights on a side than the verdict needs (server/web/trend.py).
MIN_NIGHTS = MIN_NIGHTS_FOR_VERDICT
# The augmentation prompt reads 7-night medians (a calendar week holding at least 3 eligible
# nights), as the trend's rolling mean does, so that one restless night neither makes nor
# breaks it.
ROLLING_NIGHTS = 7
# "Fell": the weekly median at most half the baseline. No standard defines a PLMI response;
# halving is our choice, larger than the night-to-night spread of a single night's index
# (Trotti et al. 2009), so a fall is more than noise.
FALL_FRACTION = 0.5
# No prompt when the baseline median is under 5/h, the floor of the mild band (ICSD-R, ASDA
# 1997): there was nothing to fall from.
MIN_BASELINE_PLMI = 5.0


@dataclass(frozen=True)
class Window:
    """The eligible nights of a span of calendar nights, ``first`` to ``last`` inclusive."""

    first: date
    last: date
    plmi: tuple[float, ...]
    provisional: int = 0

    @property
    def enough(self) -> bool:
        """Whether there are enough eligible nights to say anything."""
        return len(self.plmi) >= MIN_NIGHTS

    @property
    def median(self) -> float | None:
        """Median PLMI, or None with too few nights."""
        return statistics.median(self.plmi) if self.enough else None

    @property
    def iqr(self) -> tuple[float, float] | None:
        """25th and 75th percentiles (inclusive quartiles, as the verdict), or None."""
        if not self.enough:
            return None
        q1, _, q3 = statistics.quantiles(self.plmi, n=4, method="inclusive")
        return q1, q3

    def describe(self) -> str:
        """e.g. "1–14 Nov: 12 eligible nights, median 30.0/h (IQR 27.0–33.0, range 22.0–38.0)"."""
        span = f"{_day(self.first)}–{_day(self.last)}"
        n = len(self.plmi)
        nights = f"{n} eligible night{'' if n == 1 else 's'}"
        if not self.enough:
            return f"{span}: {nights}, too few to compare (at least {MIN_NIGHTS})"
        q1, q3 = self.iqr  # type: ignore[misc]
        return (f"{span}: {nights}, median {self.median:.1f}/h (IQR {q1:.1f}–{q3:.1f}, "
                f"range {min(self.plmi):.1f}–{max(self.plmi):.1f})")


def _day(d: date) -> str:
    return f"{d.day} {d:%b}"


@dataclass(frozen=True)
class Change:
    """One medication change (a start or a stop) and the nights on either side of it."""

    on: date
    kind: str  # "started" or "stopped"
    medication: Medication
    before: Window
    after: Window

    @property
    def line(self) -> str:
        """What the nights show, in one line."""
        head = f"{self.medication.label} ({self.medication.class_name}) {self.kind} {_day(self.on)}"
        text = f"{head}. Before, {self.before.describe()}. After, {self.after.describe()}."
        if self.before.enough and self.after.enough:
            delta = self.after.median - self.before.median  # type: ignore[operator]
            sign = "+" if delta >= 0 else "−"
            text += f" Median {sign}{abs(delta):.1f}/h"
            if self.before.median:
                text += f" ({sign}{abs(delta) / self.before.median:.0%})"
            text += "."
        return text


def _eligible(nights: Sequence[dict[str, Any]]) -> list[tuple[date, float]]:
    return [(date.fromisoformat(n["night"]), n["plm_index"]) for n in nights
            if n["quality"].label == quality.ELIGIBLE]


def _window(nights: Sequence[dict[str, Any]], first: date, last: date) -> Window:
    inside = [n for n in nights if first <= date.fromisoformat(n["night"]) <= last]
    return Window(first, last, tuple(n["plm_index"] for n in inside
                                     if n["quality"].label == quality.ELIGIBLE),
                  sum(n["quality"].label == quality.PROVISIONAL for n in inside))


def changes(medications: Sequence[Medication], nights: Sequence[dict[str, Any]]) -> list[Change]:
    """Every start and stop, oldest first, with the eligible nights before (up to
    ``WINDOW_NIGHTS`` nights up to the evening before) and after (from the evening of the change,
    to the latest night at most), each cut at the neighbouring change on another date."""
    events = sorted([(m.started, "started", m) for m in medications]
                    + [(m.stopped, "stopped", m) for m in medications if m.stopped],
                    key=lambda e: (e[0], e[1], e[2].id))
    dates = sorted({on for on, _, _ in events})
    # The "after" window never runs past the latest night recorded: nights not yet slept are
    # not nights without a recording.
    latest = max((date.fromisoformat(n["night"]) for n in nights), default=None)
    out = []
    for on, kind, med in events:
        earlier = [d for d in dates if d < on]
        later = [d for d in dates if d > on]
        first = max([on - timedelta(days=WINDOW_NIGHTS)] + earlier[-1:])
        last = min([on + timedelta(days=WINDOW_NIGHTS - 1)]
                   + [d - timedelta(days=1) for d in later[:1]])
        if latest is not None:
            last = max(on, min(last, latest))
        out.append(Change(on, kind, med, _window(nights, first, on - timedelta(days=1)),
                          _window(nights, on, last)))
    return out


@dataclass(frozen=True)
class Prompt:
    """A dopamine agonist after which the PLM index fell and then climbed back to its baseline."""

    medication: Medication
    baseline: float
    lowest: tuple[date, float]  # the week (ending on that night) with the lowest median
    back: tuple[date, float]    # the first week after the fall at or above the baseline

    @property
    def line(self) -> str:
        """The prompt, worded as a question to ask, not a finding."""
        return (f"Review for augmentation or tolerance: after {self.medication.label} started "
                f"{_day(self.medication.started)}, the weekly median PLM index fell from "
                f"{self.baseline:.1f}/h to {self.lowest[1]:.1f}/h (week to {_day(self.lowest[0])}), "
                f"then climbed back to {self.back[1]:.1f}/h (week to {_day(self.back[0])}), at or "
                f"above the baseline. Augmentation is defined by symptoms (Max Planck Institute "
                f"criteria, García-Borreguero et al., Sleep Med 2007): ask about earlier onset, "
                f"spread and intensity of the symptoms; this is a prompt, not a finding.")


def weekly_medians(nights: Sequence[tuple[date, float]]) -> list[tuple[date, float]]:
    """For each night, the median PLMI of the ``ROLLING_NIGHTS`` calendar nights ending on it,
    when they hold at least ``MIN_NIGHTS`` nights (``nights`` sorted by date)."""
    out = []
    for night, _ in nights:
        week = [v for d, v in nights if night - timedelta(days=ROLLING_NIGHTS) < d <= night]
        if len(week) >= MIN_NIGHTS:
            out.append((night, statistics.median(week)))
    return out


def augmentation_prompts(medications: Sequence[Medication],
                         nights: Sequence[dict[str, Any]]) -> list[Prompt]:
    """For each dopamine agonist: baseline = the median of the eligible nights before it started
    (the "before" window of its start, at least ``MIN_NIGHTS``, at least ``MIN_BASELINE_PLMI``).
    While it is taken, the PLM index "fell" when a weekly median is at most ``FALL_FRACTION`` of
    the baseline, and "climbed back" when a later weekly median is at or above the baseline.
    Both are needed for a prompt."""
    out = []
    for change in changes(medications, nights):
        med = change.medication
        if med.drug_class != DOPAMINE_AGONIST or change.kind != "started":
            continue
        baseline = change.before.median
        if baseline is None or baseline < MIN_BASELINE_PLMI:
            continue
        taken = [(d, v) for d, v in _eligible(nights)
                 if d >= med.started and (med.stopped is None or d < med.stopped)]
        medians = weekly_medians(taken)
        fell = next((i for i, (_, m) in enumerate(medians) if m <= FALL_FRACTION * baseline), None)
        if fell is None:
            continue
        back = next((i for i in range(fell + 1, len(medians)) if medians[i][1] >= baseline),
                    None)
        if back is not None:
            lowest = min(medians[fell:back], key=lambda m: m[1])
            out.append(Prompt(med, baseline, lowest, medians[back]))
    return out

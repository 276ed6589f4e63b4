"""Sleep regularity: each night's lights-off and rising times, their spread over the last 7 and
28 nights, and the Sleep Regularity Index on in-bed state.

rlsmon's patient article says: go to bed and get up at the same time every day, weekends
included. This module shows whether the patient does. The times come from the patient's button
(lights off, lights on) and otherwise from the in-bed span the shin's posture gave
(docs/summary.md: ``markers``, ``in_bed``). Statistics use eligible nights only (issue 12).

Clock times are circular (23:50 and 00:10 are 20 minutes apart, not 23 h 40 min), so their mean
and spread are circular statistics: the mean direction and the circular standard deviation
sqrt(-2 ln R), R the mean resultant length (Mardia & Jupp, Directional Statistics, 2000, 2.3.4;
Fisher, Statistical Analysis of Circular Data, 1993).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Sequence

from sqlite_utils import Database

from server import quality
from server.web.charts import recording_start
from server.web.trend import MIN_NIGHTS_FOR_VERDICT, one_per_night

DAY_MIN = 1440
# The spans the page states, in calendar nights ending on the patient's latest night.
SPANS_NIGHTS = (7, 28)
# A spread from fewer eligible nights than the verdict needs says nothing (server/web/trend.py).
MIN_NIGHTS = MIN_NIGHTS_FOR_VERDICT
# Sleep Regularity Index (Phillips et al., Sci Rep 2017;7:3216): the chance that the state (here
# in bed or not) is the same at two times 24 h apart, scaled to -100..100 as in Phillips 2017
# and GGIR (100: the same every day; 0: no more alike than chance would make it; -100: always
# opposite). Epochs of 1 min (Phillips used 30-s actigraphy epochs; in-bed spans change on a
# scale of minutes, so a finer epoch changes nothing). Only minutes recorded on both days count:
# the recording covers the night window, not the day, so unlike a 24-h SRI this one is not
# inflated by the daytime that everyone spends out of bed, and it is not comparable with
# published 24-h values.
SRI_EPOCH_MIN = 1
# At least 5 pairs of consecutive eligible nights for an SRI: our choice, fewer make an unstable
# figure (each pair is one comparison of a night with the next).
MIN_SRI_PAIRS = 5


@dataclass(frozen=True)
class BedTimes:
    """One night's lights off and rising, as local wall-clock times, and where each came from
    ("button" or "in bed", the span the posture gave)."""

    night: date
    lights_off: datetime
    rising: datetime
    off_source: str
    rise_source: str
    label: str
    in_bed: tuple[tuple[datetime, datetime], ...] = ()   # in-bed spans, wall clock
    unseen: tuple[tuple[datetime, datetime], ...] = ()   # gaps and outside the recording

    @property
    def off_min(self) -> float:
        """Lights off in minutes after noon of the night's date (0..1440 and beyond)."""
        return _after_noon(self.night, self.lights_off)

    @property
    def rise_min(self) -> float:
        """Rising in minutes after noon of the night's date."""
        return _after_noon(self.night, self.rising)


def _after_noon(night: date, moment: datetime) -> float:
    noon = datetime.combine(night, time(12), moment.tzinfo)
    return (moment - noon).total_seconds() / 60


def bed_times(night: date, summary: dict[str, Any], label: str) -> BedTimes | None:
    """The night's times from its summary: the first lights-off press and the last lights-on
    press after it, else the first in-bed start and the last in-bed end; None when the night has
    no clock (no ``recording_start`` or window) or no time in bed."""
    start = recording_start(summary)
    spans = sorted((s["start_s"], s["end_s"]) for s in summary.get("in_bed", []))
    if start is None or not spans:
        return None
    markers = summary.get("markers", [])
    offs = [m["t_s"] for m in markers if m["kind"] == "lights_off"]
    off_s, off_source = (min(offs), "button") if offs else (spans[0][0], "in bed")
    ons = [m["t_s"] for m in markers if m["kind"] == "lights_on" and m["t_s"] > off_s]
    rise_s, rise_source = (max(ons), "button") if ons else (spans[-1][1], "in bed")
    def at(seconds: float) -> datetime:
        return start + timedelta(seconds=seconds)

    gaps = [(g["start_s"], g["end_s"]) for g in summary.get("coverage", {}).get("gaps", [])]
    duration_s = summary.get("duration_s", 0.0)
    return BedTimes(night, at(off_s), at(rise_s), off_source, rise_source, label,
                    tuple((at(a), at(b)) for a, b in spans),
                    tuple((at(a), at(b)) for a, b in gaps)
                    + ((at(-DAY_MIN * 60.0), at(0)), (at(duration_s), at(duration_s + DAY_MIN * 60))))


def circular_mean_sd(minutes: Sequence[float]) -> tuple[float, float]:
    """The circular mean (minutes after midnight, 0 to 1440) and the circular standard deviation
    in minutes, sqrt(-2 ln R) (Mardia & Jupp 2000), of clock times given in minutes."""
    angles = [2 * math.pi * (m % DAY_MIN) / DAY_MIN for m in minutes]
    s = sum(math.sin(a) for a in angles) / len(angles)
    c = sum(math.cos(a) for a in angles) / len(angles)
    r = min(1.0, math.hypot(s, c))
    mean = (math.atan2(s, c) % (2 * math.pi)) * DAY_MIN / (2 * math.pi)
    sd = math.sqrt(max(0.0, -2 * math.log(r))) * DAY_MIN / (2 * math.pi) if r > 0 else math.inf
    return mean, sd


@dataclass(frozen=True)
class Spread:
    """Lights off and rising over the eligible nights of a span."""

    nights: int                       # the span, in calendar nights
    count: int                        # eligible nights with times in it
    off_mean_min: float | None = None  # minutes after midnight
    off_sd_min: float | None = None
    rise_mean_min: float | None = None
    rise_sd_min: float | None = None


def spread(times: Sequence[BedTimes], last: date, nights: int) -> Spread:
    """The circular mean and SD of lights off and rising over the eligible nights among the
    ``nights`` calendar nights ending on ``last``; no figures under ``MIN_NIGHTS``."""
    inside = [t for t in times if t.label == quality.ELIGIBLE
              and last - timedelta(days=nights) < t.night <= last]
    if len(inside) < MIN_NIGHTS:
        return Spread(nights, len(inside))
    off = circular_mean_sd([t.off_min + 720 for t in inside])
    rise = circular_mean_sd([t.rise_min + 720 for t in inside])
    return Spread(nights, len(inside), off[0], off[1], rise[0], rise[1])


def _states(t: BedTimes) -> list[bool | None]:
    """In bed (True), out of bed (False) or unknown (None) for each epoch of the 24 h from noon
    of the night's date."""
    # In minutes after noon, as plain numbers: the loop runs 1440 times a night.
    unseen = [(_after_noon(t.night, a), _after_noon(t.night, b)) for a, b in t.unseen]
    in_bed = [(_after_noon(t.night, a), _after_noon(t.night, b)) for a, b in t.in_bed]
    out: list[bool | None] = []
    for k in range(DAY_MIN // SRI_EPOCH_MIN):
        mid = (k + 0.5) * SRI_EPOCH_MIN
        if any(a <= mid < b for a, b in unseen):
            out.append(None)
        else:
            out.append(any(a <= mid < b for a, b in in_bed))
    return out


@dataclass(frozen=True)
class Sri:
    """The Sleep Regularity Index on in-bed state, -100..100, and what it was computed from."""

    value: float | None
    pairs: int       # pairs of consecutive eligible nights
    epochs: int      # minutes compared (recorded on both days)


def sleep_regularity_index(times: Sequence[BedTimes], last: date, nights: int = 28) -> Sri:
    """SRI = -100 + 200 x (epochs in the same state 24 h apart / epochs compared), over the
    pairs of consecutive eligible nights among the ``nights`` calendar nights ending on ``last``
    (Phillips et al. 2017). None under ``MIN_SRI_PAIRS`` pairs."""
    by_night = {t.night: t for t in times if t.label == quality.ELIGIBLE
                and last - timedelta(days=nights) < t.night <= last}
    same = compared = pairs = 0
    states = {d: _states(t) for d, t in by_night.items()}
    for d in sorted(states):
        following = states.get(d + timedelta(days=1))
        if following is None:
            continue
        pairs += 1
        for a, b in zip(states[d], following):
            if a is not None and b is not None:
                compared += 1
                same += a == b
    if pairs < MIN_SRI_PAIRS or not compared:
        return Sri(None, pairs, compared)
    return Sri(-100 + 200 * same / compared, pairs, compared)


@dataclass(frozen=True)
class Regularity:
    """What the page shows: each night's times (last 28 nights), the spreads and the SRI."""

    times: list[BedTimes]
    spreads: list[Spread]
    sri: Sri
    last: date | None


def load(db: Database, patient_id: int, today: date) -> Regularity:
    """The regularity of the patient's last ``max(SPANS_NIGHTS)`` nights up to their latest night
    (reads only those nights' summaries). ``today`` bounds the search for the latest night."""
    span = max(SPANS_NIGHTS)
    latest = db.execute("SELECT max(n.night) FROM nights n JOIN devices d "
                        "ON d.device_id = n.device_id WHERE d.patient_id = ? AND n.night <= ?",
                        [patient_id, today.isoformat()]).fetchone()[0]
    if latest is None:
        return Regularity([], [Spread(n, 0) for n in SPANS_NIGHTS], Sri(None, 0, 0), None)
    last = date.fromisoformat(latest)
    rows = db.execute(
        "SELECT n.device_id, n.night, n.time_in_bed_s, n.summary_json FROM nights n "
        "JOIN devices d ON d.device_id = n.device_id WHERE d.patient_id = ? AND n.night > ? "
        "AND n.night <= ? ORDER BY n.night",
        [patient_id, (last - timedelta(days=span)).isoformat(), latest]).fetchall()
    chosen = one_per_night({"night": r[1], "time_in_bed_s": r[2], "summary": json.loads(r[3])}
                           for r in rows)
    times = [t for n in chosen if (t := bed_times(
        date.fromisoformat(n["night"]), n["summary"],
        quality.of_summary(n["summary"]).label)) is not None]
    return Regularity(times, [spread(times, last, n) for n in SPANS_NIGHTS],
                      sleep_regularity_index(times, last, span), last)

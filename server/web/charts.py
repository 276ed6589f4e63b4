"""Charts for the dashboard: plain data in, an inline SVG string out, written directly.

Written as SVG text rather than drawn with a plotting library: a night's three charts cost about a
millisecond of CPU instead of ~150 ms (benchmarks/page_latency.py), so any night, old or new, is
cheap on first view with no cache and nothing drawn ahead; the pages need no JavaScript (the CSP
stays script-free) and text stays text, sharp on a tablet and readable by the browser tests.

Each mark carries a class (``lm``, ``plm``, ``series``, ``in-bed``, ``gap``, ``not-worn``, ``marker``, ``bound``,
``night``, ``mean``, ``range``, ``note``, ``threshold``, ``xtick``, ``ytick``) so that tests read
what a chart shows from the SVG itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from html import escape
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.consistency import CLINICAL_PLMI_ADULT
from server.sit import SIT_THRESHOLD_PER_H  # Montplaisir et al., Mov Disord 1998

# A calm palette: muted slate for ordinary LMs, a warm amber for periodic ones.
INK = "#33415c"
MUTED = "#8d99ae"
LM_COLOUR = "#7b8fa6"
PLM_COLOUR = "#c8553d"
SERIES_FILL = "#f6d7c3"
IN_BED_FILL = "#dbe7f0"
NOT_WORN_FILL = "#d9d4ca"  # a warm grey: the sensor lay off the leg, nothing was seen
GAP_COLOUR = "#b0b0b0"
MEAN_COLOUR = "#2a6f97"
SPREAD_FILL = "#cfe1ee"
NOTE_COLOUR = "#6a4c93"

# WASM 2016 (Ferri et al., Sleep Med 2016): PLM series need onset-to-onset intervals of 10–90 s.
IMI_MIN_S = 10.0
IMI_MAX_S = 90.0
# The timeline's stems stop at 12 s: a long LM (> 10 s is not a CLM, WASM 2016) still shows as long.
STEM_TOP_S = 12.0
FONT_PX = 13


@dataclass(frozen=True)
class _Frame:
    """The plot area in SVG pixels and the data ranges it maps."""

    left: float
    top: float
    right: float
    bottom: float
    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, value: float) -> float:
        """The pixel column of data ``value``."""
        return self.left + (value - self.x0) / ((self.x1 - self.x0) or 1.0) * (self.right - self.left)

    def y(self, value: float) -> float:
        """The pixel row of data ``value``."""
        return self.bottom - (value - self.y0) / ((self.y1 - self.y0) or 1.0) * (self.bottom - self.top)


def _n(value: float) -> str:
    return f"{value:.1f}"


def _text(x: float, y: float, text: str, *, cls: str = "", anchor: str = "start",
          colour: str = INK, size: int = FONT_PX, extra: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return (f'<text{klass} x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}" fill="{colour}"'
            f' font-size="{size}"{extra}>{escape(text)}</text>')


def _rect(f: _Frame, x0: float, x1: float, cls: str, fill: str, y0: float | None = None,
          y1: float | None = None, extra: str = "") -> str:
    top = f.top if y1 is None else f.y(y1)
    bottom = f.bottom if y0 is None else f.y(y0)
    return (f'<rect class="{cls}" x="{_n(f.x(x0))}" y="{_n(top)}"'
            f' width="{_n(max(f.x(x1) - f.x(x0), 0.5))}" height="{_n(bottom - top)}"'
            f' fill="{fill}"{extra}/>')


def _vline(f: _Frame, x: float, cls: str, colour: str, dash: str = "", width: float = 1.2) -> str:
    dashes = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<line class="{cls}" x1="{_n(f.x(x))}" x2="{_n(f.x(x))}" y1="{_n(f.top)}"'
            f' y2="{_n(f.bottom)}" stroke="{colour}" stroke-width="{width}"{dashes}/>')


def _axes(f: _Frame, xticks: Iterable[tuple[float, str]], yticks: Iterable[tuple[float, str]],
          xlabel: str, ylabel: str) -> list[str]:
    """The left and bottom axes with their ticks and labels."""
    out = [f'<path d="M{_n(f.left)},{_n(f.top)} V{_n(f.bottom)} H{_n(f.right)}" fill="none"'
           f' stroke="{MUTED}"/>']
    for value, label in xticks:
        x = f.x(value)
        out.append(f'<path d="M{_n(x)},{_n(f.bottom)} v4" stroke="{MUTED}"/>')
        out.append(_text(x, f.bottom + 18, label, cls="xtick", anchor="middle"))
    for value, label in yticks:
        y = f.y(value)
        out.append(f'<path d="M{_n(f.left)},{_n(y)} h-4" stroke="{MUTED}"/>')
        out.append(_text(f.left - 7, y + 4, label, cls="ytick", anchor="end"))
    if xlabel:
        out.append(_text((f.left + f.right) / 2, f.bottom + 38, xlabel, cls="xlabel",
                         anchor="middle"))
    mid = (f.top + f.bottom) / 2
    out.append(_text(16, mid, ylabel, cls="ylabel", anchor="middle",
                     extra=f' transform="rotate(-90 16 {_n(mid)})"'))
    return out


def _svg(width: int, height: int, title: str, body: Iterable[str]) -> str:
    """An SVG that scales with its container (a viewBox, no width or height), with a title."""
    safe = escape(title)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
            f' role="img" aria-label="{safe}" font-family="DejaVu Sans, sans-serif">'
            f'<title>{safe}</title>{"".join(body)}</svg>')


def count_ticks(highest: float, most: int = 5) -> list[int]:
    """Whole-number ticks from 0 up to or just above ``highest`` (at least 1), 1-2-5 steps,
    at most about ``most`` of them: never a negative or fractional count."""
    highest = max(highest, 1.0)
    raw = highest / (most - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = max(1, int(next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)))
    return list(range(0, step * math.ceil(highest / step) + 1, step))


def _legend(x_right: float, y: float, entries: Sequence[tuple[str, str]]) -> list[str]:
    """Swatches and names in a row ending at ``x_right``."""
    out: list[str] = []
    x = x_right - sum(len(name) * FONT_PX * 0.62 + 40 for name, _ in entries) + 22
    for name, colour in entries:
        out.append(f'<rect x="{_n(x)}" y="{_n(y - 5)}" width="11" height="10" fill="{colour}"/>')
        out.append(_text(x + 16, y + 4, name, cls="legend"))
        x += len(name) * FONT_PX * 0.62 + 40
    return out


# ---- a night ------------------------------------------------------------------------------------

def time_ticks(hours: float, recording_start: datetime | None) -> list[tuple[float, str]]:
    """Ticks (hours since t = 0, label) every 5 min to 3 h, whichever gives 3–10 of them, on
    whole clock multiples of that step ("23:00", "00:00"), or from the start without a clock."""
    span_min = hours * 60
    step_min = next((s for s in (5, 10, 15, 30, 60, 120, 180) if span_min / s <= 9), 180)
    offset_min = 0.0
    if recording_start is not None:
        into_day = recording_start.hour * 60 + recording_start.minute + recording_start.second / 60
        offset_min = (-into_day) % step_min
    out = []
    k = 0
    while offset_min + k * step_min <= span_min + 1e-9:
        minutes = offset_min + k * step_min
        if recording_start is None:
            label = f"{minutes / 60:g} h" if step_min >= 60 else f"{minutes:g} min"
        else:
            label = (recording_start + timedelta(minutes=minutes)).strftime("%H:%M")
        out.append((minutes / 60, label))
        k += 1
    return out


def night_timeline_svg(
    lm_events: Sequence[dict],
    in_bed: Sequence[dict],
    gaps: Sequence[dict],
    markers: Sequence[dict],
    duration_s: float,
    recording_start: datetime | None = None,
    not_worn: Sequence[dict] = (),
) -> str:
    """The night on one axis: each LM as a stem as tall as it lasted, PLMs and their series in amber.

    ``lm_events`` are summary LMs (``onset_s``, ``duration_s``, ``periodic``, ``series``);
    ``in_bed``, ``gaps`` and ``not_worn`` (the summary's ``wear.not_worn``) are ``{start_s,
    end_s}``; ``markers`` are ``{t_s, kind}`` (the patient's button). The axis spans at least 10
    minutes, so a short night still has a scale.
    """
    hours = max(duration_s, 600.0) / 3600.0
    f = _Frame(left=62, top=26, right=868, bottom=262, x0=0, x1=hours, y0=0, y1=STEM_TOP_S * 1.15)
    body = [f'<defs><pattern id="gap-hatch" width="6" height="6" patternUnits="userSpaceOnUse"'
            f' patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="{GAP_COLOUR}"'
            f' stroke-width="2"/></pattern></defs>']
    for span in in_bed:
        a, b = span["start_s"] / 3600, span["end_s"] / 3600
        body.append(_rect(f, a, b, "in-bed", IN_BED_FILL, extra=' fill-opacity="0.45"'))
        body.append(_rect(f, a, b, "in-bed-bar", MEAN_COLOUR, 0, f.y1 * 0.025,
                          ' fill-opacity="0.4"'))
    for gap in gaps:
        body.append(_rect(f, gap["start_s"] / 3600, gap["end_s"] / 3600, "gap", "url(#gap-hatch)"))
    for span in not_worn:
        a, b = span["start_s"] / 3600, span["end_s"] / 3600
        body.append(_rect(f, a, b, "not-worn", NOT_WORN_FILL, extra=' fill-opacity="0.7"'))
        if f.x(b) - f.x(a) > 50:  # labelled where the label fits
            body.append(_text((f.x(a) + f.x(b)) / 2, f.top + 14, "not worn", cls="not-worn-label",
                              anchor="middle", colour=INK, size=12))
    series: dict[int, list[float]] = {}
    for lm in lm_events:
        if lm.get("periodic") and lm.get("series") is not None:
            series.setdefault(int(lm["series"]), []).extend(
                (lm["onset_s"], lm["onset_s"] + lm["duration_s"]))
    for k in sorted(series):
        body.append(_rect(f, min(series[k]) / 3600, max(series[k]) / 3600, "series", SERIES_FILL,
                          extra=f' fill-opacity="0.8" data-series="{k}"'))
    for cls, colour, periodic in (("lm", LM_COLOUR, False), ("plm", PLM_COLOUR, True)):
        # One path per kind with a stem per LM ("M x,y0 V y1"): small, and one element to style.
        stems = [f"M{_n(f.x(lm['onset_s'] / 3600))},{_n(f.bottom)}"
                 f"V{_n(f.y(min(lm['duration_s'], STEM_TOP_S)))}"
                 for lm in lm_events if bool(lm.get("periodic")) == periodic]
        if stems:
            body.append(f'<path class="{cls}" data-count="{len(stems)}" d="{"".join(stems)}"'
                        f' stroke="{colour}" stroke-width="1.3" fill="none"/>')
    for marker in markers:
        x = marker["t_s"] / 3600
        body.append(_vline(f, x, "marker", INK, "5 3", 1.0))
        # Label on the inner side of the line, so it stays inside the plot at either edge.
        inner = "start" if x < hours / 2 else "end"
        shift = 4 if inner == "start" else -4
        body.append(_text(f.x(x) + shift, f.top - 6, marker["kind"].replace("_", " "),
                          cls="marker-label", anchor=inner, size=12))
    body += _axes(f, time_ticks(hours, recording_start),
                  [(v, f"{v:g}") for v in (0, 5, 10)], "", "LM duration (s)")
    return _svg(900, 290, "Timeline of leg movements; periodic ones highlighted", body)


def hourly_svg(hourly: Sequence[dict]) -> str:
    """LMs and PLMs per clock hour, side by side."""
    ticks = count_ticks(max([h["lm_count"] for h in hourly] + [1]), most=5)
    n = max(len(hourly), 1)
    f = _Frame(left=58, top=30, right=470, bottom=248, x0=-0.6, x1=n - 0.4, y0=0, y1=ticks[-1])
    body = []
    for i, h in enumerate(hourly):
        for shift, key, colour, cls in ((-0.4, "lm_count", LM_COLOUR, "lm"),
                                        (0.0, "plm_count", PLM_COLOUR, "plm")):
            body.append(_rect(f, i + shift, i + shift + 0.4, cls, colour, 0, h[key],
                              f' data-count="{h[key]}"'))
    clock = bool(hourly) and hourly[0].get("clock_hour") is not None
    labels = [(i, f"{h['clock_hour']:02d}" if h.get("clock_hour") is not None else f"+{i}")
              for i, h in enumerate(hourly)]
    body += _axes(f, labels, [(v, str(v)) for v in ticks],
                  "clock hour" if clock else "hour from start", "count")
    body += _legend(f.right, 14, [("LMs", LM_COLOUR), ("PLMs", PLM_COLOUR)])
    return _svg(480, 300, "Leg movements and periodic leg movements per hour", body)


def imi_histogram_svg(imi_histogram: dict) -> str:
    """Inter-movement intervals in 2-s bins, with the 10 s and 90 s bounds of a PLM series."""
    width = float(imi_histogram.get("bin_width_s", 2))
    counts = list(imi_histogram.get("counts", []))
    ticks = count_ticks(max(counts + [1]), most=5)
    f = _Frame(left=58, top=30, right=470, bottom=248, x0=0,
               x1=max(IMI_MAX_S + 4, len(counts) * width), y0=0, y1=ticks[-1])
    # One filled step outline rather than a bar per bin: the same picture, a fraction of the SVG.
    if any(counts):
        d = [f"M{_n(f.x(0))},{_n(f.bottom)}"]
        for i, c in enumerate(counts):
            d.append(f"V{_n(f.y(c))}H{_n(f.x((i + 1) * width))}")
        d.append(f"V{_n(f.bottom)}Z")
        body = [f'<path class="bins" data-counts="{",".join(map(str, counts))}" d="{"".join(d)}"'
                f' fill="{LM_COLOUR}"/>']
    else:
        body = [_text((f.left + f.right) / 2, (f.top + f.bottom) / 2, "no intervals this night",
                      cls="empty", anchor="middle", colour=MUTED)]
    for bound in (IMI_MIN_S, IMI_MAX_S):
        body.append(_vline(f, bound, "bound", PLM_COLOUR, "5 3"))
        # The 90 s label sits left of its line, inside the plot.
        low = bound == IMI_MIN_S
        body.append(_text(f.x(bound) + (4 if low else -4), f.top + 12, f"{bound:g} s",
                          cls="bound-label", anchor="start" if low else "end", colour=PLM_COLOUR,
                          size=12))
    body += _axes(f, [(v, str(v)) for v in (0, 10, 30, 60, 90)], [(v, str(v)) for v in ticks],
                  f"onset-to-onset interval (s); above 90 s: {imi_histogram.get('above_90_s', 0)}",
                  "count")
    return _svg(480, 300, "Histogram of inter-movement intervals", body)


def recording_start(summary: dict) -> datetime | None:
    """The wall clock of a night summary's t = 0 in the night's own time zone, when known."""
    start = summary.get("recording_start") or summary.get("window", {}).get("start")
    if not start:
        return None
    moment = datetime.fromisoformat(start)
    try:
        return moment.astimezone(ZoneInfo(summary.get("window", {}).get("timezone", "")))
    except (ZoneInfoNotFoundError, ValueError):
        return moment


def night_charts(summary: dict) -> dict[str, str]:
    """All charts of a night page, from its summary: {"timeline", "hourly", "imi"} → SVG."""
    return {
        "timeline": night_timeline_svg(
            summary["lm_events"], summary["in_bed"], summary["coverage"]["gaps"],
            summary.get("markers", []), summary["duration_s"], recording_start(summary),
            (summary.get("wear") or {}).get("not_worn", [])),
        "hourly": hourly_svg(summary["hourly"]),
        "imi": imi_histogram_svg(summary["imi_histogram"]),
    }


# ---- a trend ------------------------------------------------------------------------------------

def rolling_stats(
    nights: Sequence[tuple[date, float]], window_nights: int = 7, min_nights: int = 3
) -> list[tuple[date, float, float, float] | None]:
    """For each night: (night, mean, min, max) of the PLMI over the ``window_nights`` calendar nights
    ending on it, or None when fewer than ``min_nights`` of them were recorded.

    A calendar window, not the last seven rows: a fortnight without recordings must not be averaged
    across as if the nights were consecutive.
    """
    out: list[tuple[date, float, float, float] | None] = []
    start = 0
    for i, (night, _) in enumerate(nights):
        while nights[start][0] <= night - timedelta(days=window_nights):
            start += 1
        values = [v for _, v in nights[start:i + 1]]
        if len(values) < min_nights:
            out.append(None)
        else:
            out.append((night, sum(values) / len(values), min(values), max(values)))
    return out


def date_ticks(first: date, last: date, most: int = 10) -> list[tuple[date, str]]:
    """Whole dates only (never "12:00" between nights): every 1, 2, 7, 14 or 28 days, labelled
    "3 Dec", with the year on the first tick and where it changes."""
    span = (last - first).days
    step = next((s for s in (1, 2, 7, 14, 28, 56, 91) if span / s < most), 182)
    if step >= 7:  # weekly steps start on a Monday, as a calendar does
        first += timedelta(days=(7 - first.weekday()) % 7)
    out: list[tuple[date, str]] = []
    day = first
    while day <= last:
        show_year = not out or out[-1][0].year != day.year
        out.append((day, f"{day.day} {day:%b}" + (f" {day.year}" if show_year else "")))
        day += timedelta(days=step)
    return out


def _runs(points: Sequence[tuple[float, ...] | None]) -> list[list[tuple[float, ...]]]:
    """Consecutive non-None points, as separate runs (a line breaks where the mean is not known)."""
    runs: list[list[tuple[float, ...]]] = [[]]
    for p in points:
        if p is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(p)
    return [r for r in runs if r]


MedicationBar = tuple[date, date | None, str]  # started, stopped (None: still taken), label
MEDICATION_LANE_PX = 18


def trend_svg(nights: Sequence[tuple[date, float]], notes: Sequence[tuple[date, str]],
              medications: Sequence[MedicationBar] = ()) -> str:
    """PLM index per night, its 7-night rolling mean and range, staff notes, and the medications
    as bars above the plot, one lane each, from the evening started to the evening stopped.

    One night is not enough to judge: the PLMI varies a great deal from night to night
    (Trotti LM et al., Correlates of PLMs variability over multiple nights and impact upon RLS
    diagnosis, Sleep Med 2009;10:668–671), hence the rolling mean and the spread around it.
    ``nights`` must be sorted by date. The y axis starts a little below 0, so that nights and a
    mean at 0 are drawn above the axis line, not hidden in it.
    """
    lanes = len(medications)
    width, height = 900, 330 + lanes * MEDICATION_LANE_PX
    if not nights:
        return _svg(width, height, "PLM index per night with the 7-night rolling mean", [
            _text(width / 2, height / 2, "no nights yet", cls="empty", anchor="middle",
                  colour=MUTED)])
    xs = [n for n, _ in nights]
    first, last = xs[0] - timedelta(days=1), xs[-1] + timedelta(days=1)
    ticks = count_ticks(max(max(v for _, v in nights), CLINICAL_PLMI_ADULT) * 1.15, most=6)
    top = ticks[-1]
    lanes_px = lanes * MEDICATION_LANE_PX
    f = _Frame(left=64, top=34 + lanes_px, right=840, bottom=285 + lanes_px,
               x0=first.toordinal(), x1=last.toordinal(), y0=-top * 0.05, y1=top)
    body = []
    for lane, (started, stopped, label) in enumerate(medications):
        a = max(started, first).toordinal()
        b = min(stopped or last, last).toordinal()
        y = 30 + lane * MEDICATION_LANE_PX
        if b >= a:
            body.append(f'<rect class="medication" data-label="{escape(label)}"'
                        f' data-started="{started}" data-stopped="{stopped or ""}"'
                        f' x="{_n(f.x(a))}" y="{_n(y)}" width="{_n(max(f.x(b) - f.x(a), 2))}"'
                        f' height="{MEDICATION_LANE_PX - 5}" fill="{NOTE_COLOUR}" fill-opacity="0.25"'
                        f' stroke="{NOTE_COLOUR}"/>')
        # The label inside the bar from its start; left of the bar when the bar starts in the
        # right half, so that it stays inside the chart.
        late = b >= a and f.x(a) > (f.left + f.right) / 2
        body.append(_text(f.x(a) - 4 if late else (f.x(a) + 4 if b >= a else f.left), y + 10,
                          label + ("" if b >= a else " (outside these dates)"),
                          cls="medication-label", anchor="end" if late else "start",
                          colour=NOTE_COLOUR, size=11))
    stats = rolling_stats(nights)
    drawn = [s for s in stats if s is not None]
    for run in _runs([(s[0].toordinal(), s[1], s[2], s[3]) if s else None for s in stats]):
        upper = " ".join(f"{_n(f.x(p[0]))},{_n(f.y(p[3]))}" for p in run)
        lower = " ".join(f"{_n(f.x(p[0]))},{_n(f.y(p[2]))}" for p in reversed(run))
        body.append(f'<polygon class="range" points="{upper} {lower}" fill="{SPREAD_FILL}"'
                    f' fill-opacity="0.9" stroke="{SPREAD_FILL}"/>')
    for run in _runs([(s[0].toordinal(), s[1]) if s else None for s in stats]):
        points = " ".join(f"{_n(f.x(p[0]))},{_n(f.y(p[1]))}" for p in run)
        body.append(f'<polyline class="mean" points="{points}" fill="none" stroke="{MEAN_COLOUR}"'
                    f' stroke-width="2.2"/>')
    y15 = f.y(CLINICAL_PLMI_ADULT)
    body.append(f'<line class="threshold" x1="{_n(f.left)}" x2="{_n(f.right)}" y1="{_n(y15)}"'
                f' y2="{_n(y15)}" stroke="{PLM_COLOUR}" stroke-dasharray="2 3" stroke-width="1.3"/>')
    body.append(_text(f.right + 5, y15 + 4, "15/h", cls="threshold-label", colour=PLM_COLOUR,
                      size=12))
    for night, value in nights:
        body.append(f'<circle class="night" data-night="{night}" data-plmi="{value:.1f}"'
                    f' cx="{_n(f.x(night.toordinal()))}" cy="{_n(f.y(value))}" r="3.2"'
                    f' fill="{INK}" fill-opacity="0.75"/>')
    for night, text in notes:
        if not first <= night <= last:
            continue
        body.append(_vline(f, night.toordinal(), "note", NOTE_COLOUR))
        body.append(_text(f.x(night.toordinal()) + 4, f.top + 14, text, cls="note-label",
                          colour=NOTE_COLOUR, size=12))
    body += _axes(f, [(d.toordinal(), label) for d, label in date_ticks(xs[0], xs[-1])],
                  [(v, str(v)) for v in ticks], "", "PLMs per hour in bed")
    # The legend names only what is drawn: no mean or range before 3 nights in a week.
    entries = [("PLM index (night)", INK)]
    if drawn:
        entries += [("7-night mean", MEAN_COLOUR), ("7-night range", SPREAD_FILL)]
    body += _legend(f.right, 14, entries)
    return _svg(width, height, "PLM index per night with the 7-night rolling mean", body)


# ---- bed and rising times -----------------------------------------------------------------------

BedNight = tuple[date, float, float, bool]  # night, lights off and rising (minutes after noon), eligible


def _clock_label(minutes_after_noon: float) -> str:
    total = int(round(minutes_after_noon + 720)) % 1440
    return f"{total // 60:02d}:{total % 60:02d}"


def bedtimes_svg(nights: Sequence[BedNight], means: tuple[float, float] | None = None) -> str:
    """Lights off and rising per night on a clock axis running down from the evening to the
    morning (as a sleep diary reads), the time between them as a bar; eligible nights filled,
    provisional ones hollow. ``means``: the circular means of lights off and rising (minutes after
    noon), drawn as dashed lines."""
    width, height = 900, 300
    title = "Lights off and rising, night by night"
    if not nights:
        return _svg(width, height, title, [_text(width / 2, height / 2, "no nights yet",
                                                 cls="empty", anchor="middle", colour=MUTED)])
    xs = [n for n, *_ in nights]
    first, last = xs[0] - timedelta(days=1), xs[-1] + timedelta(days=1)
    low = min(off for _, off, _, _ in nights)
    high = max(rise for _, _, rise, _ in nights)
    y0 = max(0, 120 * math.floor((low - 30) / 120))        # whole 2-h steps around the times
    y1 = min(1440 + 720, 120 * math.ceil((high + 30) / 120))
    # The clock runs down the axis: the evening at the top.
    f = _Frame(left=64, top=34, right=840, bottom=255, x0=first.toordinal(), x1=last.toordinal(),
               y0=-y1, y1=-y0)
    body = []
    for night, off, rise, eligible in nights:
        x = f.x(night.toordinal())
        fill = INK if eligible else "#fff"
        cls = "" if eligible else " provisional"
        body.append(f'<line class="bed-span{cls}" x1="{_n(x)}" x2="{_n(x)}" y1="{_n(f.y(-off))}"'
                    f' y2="{_n(f.y(-rise))}" stroke="{MEAN_COLOUR}" stroke-width="3"'
                    f' stroke-opacity="0.45"/>')
        body.append(f'<circle class="bedtime{cls}" data-night="{night}" data-time="'
                    f'{_clock_label(off)}" cx="{_n(x)}" cy="{_n(f.y(-off))}" r="3.6" fill="{fill}"'
                    f' stroke="{INK}"/>')
        body.append(f'<rect class="risetime{cls}" data-night="{night}" data-time="'
                    f'{_clock_label(rise)}" x="{_n(x - 3.4)}" y="{_n(f.y(-rise) - 3.4)}"'
                    f' width="6.8" height="6.8" fill="{fill}" stroke="{INK}"/>')
    if means is not None:
        for value, cls in zip(means, ("mean-off", "mean-rise")):
            y = f.y(-value)
            body.append(f'<line class="{cls}" x1="{_n(f.left)}" x2="{_n(f.right)}" y1="{_n(y)}"'
                        f' y2="{_n(y)}" stroke="{MEAN_COLOUR}" stroke-dasharray="5 4"/>')
            body.append(_text(f.right + 5, y + 4, _clock_label(value), cls=f"{cls}-label",
                              colour=MEAN_COLOUR, size=12))
    yticks = [(-m, _clock_label(m)) for m in range(int(y0), int(y1) + 1, 120)]
    body += _axes(f, [(d.toordinal(), label) for d, label in date_ticks(xs[0], xs[-1])],
                  yticks, "", "clock time")
    # The legend draws each mark as it is on the chart (a circle, a square, hollow, dashed).
    x = f.left
    for name, mark in (("lights off", f'<circle cx="{{x}}" cy="14" r="3.6" fill="{INK}"/>'),
                       ("rising", f'<rect x="{{x}}" y="10.6" width="6.8" height="6.8" fill="{INK}"/>'),
                       ("provisional night", f'<circle cx="{{x}}" cy="14" r="3.6" fill="#fff" stroke="{INK}"/>'),
                       *((("28-night circular mean", f'<path d="M{{x}},14 h16" stroke="{MEAN_COLOUR}" stroke-dasharray="5 4"/>'),)
                         if means is not None else ())):
        body.append(mark.format(x=_n(x + 4)))
        body.append(_text(x + 24, 18, name, cls="legend"))
        x += len(name) * FONT_PX * 0.62 + 44
    return _svg(width, height, title, body)


def sit_svg(evenings: Sequence[tuple[date, float | None, bool]]) -> str:
    """Each evening's SIT PLM index against the 40/h line: (evening, PLM index or None, taken).
    A test not taken, or with too little scored time for an index, is marked on the axis."""
    width, height = 900, 220
    title = "SIT PLM index per evening against 40/h"
    if not evenings:
        return _svg(width, height, title, [_text(width / 2, height / 2, "no evening tests yet", cls="empty",
                                                 anchor="middle", colour=MUTED)])
    xs = [d for d, _, _ in evenings]
    first, last = xs[0] - timedelta(days=1), xs[-1] + timedelta(days=1)
    ticks = count_ticks(max([v for _, v, _ in evenings if v is not None] + [SIT_THRESHOLD_PER_H]) * 1.15, most=5)
    f = _Frame(left=64, top=24, right=840, bottom=175, x0=first.toordinal(), x1=last.toordinal(),
               y0=-ticks[-1] * 0.05, y1=ticks[-1])
    y40 = f.y(SIT_THRESHOLD_PER_H)
    body = [f'<line class="threshold" x1="{_n(f.left)}" x2="{_n(f.right)}" y1="{_n(y40)}" y2="{_n(y40)}"'
            f' stroke="{PLM_COLOUR}" stroke-dasharray="2 3" stroke-width="1.3"/>',
            _text(f.right + 5, y40 + 4, "40/h", cls="threshold-label", colour=PLM_COLOUR, size=12)]
    for evening, value, taken in evenings:
        x = f.x(evening.toordinal())
        if value is None:
            body.append(_text(x, f.bottom - 6, "not taken" if not taken else "too short", cls="sit-missing",
                              anchor="middle", colour=MUTED, size=11))
            continue
        colour = PLM_COLOUR if value > SIT_THRESHOLD_PER_H else INK
        body.append(f'<circle class="sit" data-evening="{evening}" data-plmi="{value:.1f}" cx="{_n(x)}"'
                    f' cy="{_n(f.y(value))}" r="4" fill="{colour}"/>')
    body += _axes(f, [(d.toordinal(), label) for d, label in date_ticks(xs[0], xs[-1])],
                  [(v, str(v)) for v in ticks], "", "SIT PLMs per hour")
    return _svg(width, height, title, body)

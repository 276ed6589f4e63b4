"""Charts for the dashboard: plain data in, an inline SVG string out.

Each function draws on its own matplotlib ``Figure`` (never pyplot), so requests on different
threads share no global figure state. Text stays text in the SVG (``svg.fonttype: none``): the
files are small, sharp at any zoom on a tablet, and readable by the browser tests.
"""

from __future__ import annotations

import functools
import io
import json
import re
import threading
from math import nan
from datetime import date, datetime, timedelta
from typing import Any, Callable, ParamSpec, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import matplotlib

matplotlib.use("Agg")

from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator  # noqa: E402

# A calm palette: muted slate for ordinary LMs, a warm amber for periodic ones.
INK = "#33415c"
MUTED = "#8d99ae"
LM_COLOUR = "#7b8fa6"
PLM_COLOUR = "#c8553d"
SERIES_FILL = "#f6d7c3"
IN_BED_FILL = "#dbe7f0"
GAP_COLOUR = "#b0b0b0"
MEAN_COLOUR = "#2a6f97"
SPREAD_FILL = "#cfe1ee"
NOTE_COLOUR = "#6a4c93"

# WASM 2016 (Ferri et al., Sleep Med 2016): PLM series need onset-to-onset intervals of 10–90 s.
IMI_MIN_S = 10.0
IMI_MAX_S = 90.0
# Clinically significant in adults: PLMI > 15 /h (WASM 2016; docs/architecture.md "Indices and flags").
PLMI_SIGNIFICANT = 15.0

P = ParamSpec("P")

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "rlsmon",
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.edgecolor": MUTED,
    "axes.labelcolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
}

_SVG_START = re.compile(r"^.*?(<svg\b)", re.S)
_SIZE_ATTRS = re.compile(r'\s(width|height)="[^"]*"')


# rc_context swaps matplotlib's global rcParams, so two charts must never render at once.
_RENDER_LOCK = threading.Lock()


def _serialised(chart: Callable[P, str]) -> Callable[P, str]:
    @functools.wraps(chart)
    def render(*args: P.args, **kwargs: P.kwargs) -> str:
        with _RENDER_LOCK:
            return chart(*args, **kwargs)

    return render


def _figure(width_in: float, height_in: float, margins: dict[str, float]) -> tuple[Figure, Any]:
    # Fixed margins rather than a constrained layout: that costs extra draw passes per chart.
    fig = Figure(figsize=(width_in, height_in))
    fig.subplots_adjust(**margins)
    ax = fig.add_subplot()
    return fig, ax


_WIDE = {"left": 0.065, "right": 0.975, "bottom": 0.12, "top": 0.9}
_SMALL = {"left": 0.12, "right": 0.97, "bottom": 0.17, "top": 0.9}


def _to_svg(fig: Figure, title: str) -> str:
    """Render ``fig`` as inline SVG that scales with its container, with an accessible title."""
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = _SVG_START.sub(r"\1", buf.getvalue(), count=1)
    head, rest = svg.split(">", 1)
    head = _SIZE_ATTRS.sub("", head)
    safe_title = title.replace("&", "&amp;").replace("<", "&lt;")
    return f'{head} role="img" aria-label="{safe_title}"><title>{safe_title}</title>{rest}'


def _clock_formatter(recording_start: datetime | None) -> FuncFormatter:
    """Hours since t = 0 on the axis, labelled with the wall clock when it is known."""

    def label(hours: float, _pos: int) -> str:
        if recording_start is None:
            return f"{hours:g} h"
        return (recording_start + timedelta(hours=hours)).strftime("%H:%M")

    return FuncFormatter(label)


def _hour_ticks(hours: float, recording_start: datetime | None) -> list[float]:
    """Tick positions (hours since t = 0) on whole clock hours, or whole hours from the start."""
    first = 0.0
    if recording_start is not None:
        past = recording_start.minute / 60 + recording_start.second / 3600
        first = (1.0 - past) % 1.0
    step = 1 if hours <= 14 else 2
    return [first + k for k in range(0, int(hours - first) + 1, step)]


@_serialised
def night_timeline_svg(
    lm_events: Sequence[dict],
    in_bed: Sequence[dict],
    gaps: Sequence[dict],
    markers: Sequence[dict],
    duration_s: float,
    recording_start: datetime | None = None,
) -> str:
    """The night on one axis: each LM as a stem as tall as it lasted, PLMs and their series in amber.

    ``lm_events`` are summary LMs (``onset_s``, ``duration_s``, ``periodic``, ``series``);
    ``in_bed`` and ``gaps`` are ``{start_s, end_s}``; ``markers`` are ``{t_s, kind}``.
    """
    with matplotlib.rc_context(_RC):
        fig, ax = _figure(9, 3.0, {**_WIDE, "top": 0.93})
        hours = max(duration_s, 1.0) / 3600.0
        top_s = 12.0
        top = top_s * 1.15

        def bars(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
            return [(a / 3600, (b - a) / 3600) for a, b in spans]

        # Spans as one broken_barh collection each (one SVG element set, not one patch per span).
        bed = bars([(s["start_s"], s["end_s"]) for s in in_bed])
        ax.broken_barh(bed, (0, top), facecolors=IN_BED_FILL, alpha=0.45, lw=0)
        ax.broken_barh(bed, (0, top * 0.025), facecolors=MEAN_COLOUR, alpha=0.4, lw=0)
        ax.broken_barh(bars([(g["start_s"], g["end_s"]) for g in gaps]), (0, top),
                       facecolors="none", edgecolors=GAP_COLOUR, hatch="///", lw=0)
        series: dict[int, list[float]] = {}
        for lm in lm_events:
            if lm.get("periodic") and lm.get("series") is not None:
                series.setdefault(int(lm["series"]), []).append(lm["onset_s"])
                series[int(lm["series"])].append(lm["onset_s"] + lm["duration_s"])
        ax.broken_barh(bars([(min(t), max(t)) for t in series.values()]), (0, top),
                       facecolors=SERIES_FILL, alpha=0.8, lw=0)
        plain = [lm for lm in lm_events if not lm.get("periodic")]
        periodic = [lm for lm in lm_events if lm.get("periodic")]
        for group, colour, label in ((plain, LM_COLOUR, "LM"), (periodic, PLM_COLOUR, "PLM")):
            if group:
                ax.vlines([lm["onset_s"] / 3600 for lm in group], 0,
                          [min(lm["duration_s"], top_s) for lm in group],
                          colors=colour, lw=1.1, label=label)
        for marker in markers:
            x = marker["t_s"] / 3600
            ax.axvline(x, color=INK, ls="--", lw=1)
            # Label on the inner side of the line, so it stays inside the plot at either edge.
            inner = "left" if x < hours / 2 else "right"
            ax.text(x, top_s * 1.04, f" {marker['kind'].replace('_', ' ')} ", color=INK,
                    fontsize=9, ha=inner, va="bottom")
        ax.set_xlim(0, hours)
        ax.set_ylim(0, top)
        ax.set_ylabel("LM duration (s)")
        ax.yaxis.set_major_locator(FixedLocator([0, 5, 10]))
        ax.xaxis.set_major_locator(FixedLocator(_hour_ticks(hours, recording_start)))
        ax.xaxis.set_major_formatter(_clock_formatter(recording_start))
        return _to_svg(fig, "Timeline of leg movements; periodic ones highlighted")


@_serialised
def hourly_svg(hourly: Sequence[dict]) -> str:
    """LMs and PLMs per clock hour, side by side."""
    with matplotlib.rc_context(_RC):
        fig, ax = _figure(4.8, 3.0, _SMALL)
        xs = list(range(len(hourly)))
        # Bars as one collection per series (broken_barh is one artist; ax.bar is one per bar).
        for shift, key, colour, label in ((-0.4, "lm_count", LM_COLOUR, "LMs"),
                                          (0.0, "plm_count", PLM_COLOUR, "PLMs")):
            heights = [h[key] for h in hourly]
            ax.add_collection(PolyCollection(
                [[(x + shift, 0), (x + shift, v), (x + shift + 0.4, v), (x + shift + 0.4, 0)]
                 for x, v in zip(xs, heights)], facecolors=colour, edgecolors="none", label=label))
        ax.set_xlim(-0.7, len(hourly) - 0.3)
        ax.set_ylim(0, max([h["lm_count"] for h in hourly] + [1]) * 1.1)
        labels = [f"{h['clock_hour']:02d}" if h.get("clock_hour") is not None else f"+{i}"
                  for i, h in enumerate(hourly)]
        ax.set_xticks(xs, labels)
        ax.set_xlabel("clock hour" if hourly and hourly[0].get("clock_hour") is not None
                      else "hour from start")
        ax.set_ylabel("count")
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
        ax.legend(frameon=False, fontsize=9)
        return _to_svg(fig, "Leg movements and periodic leg movements per hour")


@_serialised
def imi_histogram_svg(imi_histogram: dict) -> str:
    """Inter-movement intervals in 2-s bins, with the 10 s and 90 s bounds of a PLM series."""
    with matplotlib.rc_context(_RC):
        fig, ax = _figure(4.8, 3.0, _SMALL)
        width = float(imi_histogram.get("bin_width_s", 2))
        counts = imi_histogram.get("counts", [])
        # One filled step outline rather than 45 bar patches: the same picture, a fraction of the
        # SVG and of the rendering time.
        ax.stairs(counts, [i * width for i in range(len(counts) + 1)], fill=True, color=LM_COLOUR)
        for bound in (IMI_MIN_S, IMI_MAX_S):
            ax.axvline(bound, color=PLM_COLOUR, ls="--", lw=1.2)
            ax.text(bound, 1.0, f" {bound:g} s", color=PLM_COLOUR, fontsize=9,
                    transform=ax.get_xaxis_transform(), va="top")
        ax.set_xlim(0, max(IMI_MAX_S + 4, len(counts) * width))
        ax.set_xlabel(f"onset-to-onset interval (s); above 90 s: "
                      f"{imi_histogram.get('above_90_s', 0)}")
        ax.set_ylabel("count")
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
        ax.xaxis.set_major_locator(FixedLocator([0, 10, 30, 60, 90]))
        return _to_svg(fig, "Histogram of inter-movement intervals")


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
            summary.get("markers", []), summary["duration_s"], recording_start(summary)),
        "hourly": hourly_svg(summary["hourly"]),
        "imi": imi_histogram_svg(summary["imi_histogram"]),
    }


def night_charts_from_json(summary_json: str) -> dict[str, str]:
    """`night_charts` of a summary given as JSON text (what a worker process is sent)."""
    return night_charts(json.loads(summary_json))


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


@_serialised
def trend_svg(nights: Sequence[tuple[date, float]], notes: Sequence[tuple[date, str]]) -> str:
    """PLM index per night, its 7-night rolling mean and range, and staff treatment notes.

    One night is not enough to judge: the PLMI varies a great deal from night to night
    (Trotti LM et al., Correlates of PLMs variability over multiple nights and impact upon RLS
    diagnosis, Sleep Med 2009;10:668–671), hence the rolling mean and the spread around it.
    ``nights`` must be sorted by date.
    """
    with matplotlib.rc_context(_RC):
        fig, ax = _figure(9, 3.4, {**_WIDE, "right": 0.945})
        if nights:
            xs = [n for n, _ in nights]
            ax.scatter(xs, [v for _, v in nights], s=14, color=INK, alpha=0.7, lw=0,
                       label="PLM index (night)", zorder=3)
            # NaN where too few nights were recorded: matplotlib breaks the line and the band there.
            stats = [s or (n, nan, nan, nan) for s, (n, _) in zip(rolling_stats(nights), nights)]
            ax.fill_between(xs, [s[2] for s in stats], [s[3] for s in stats], color=SPREAD_FILL,
                            alpha=0.9, lw=0, label="7-night range")
            ax.plot(xs, [s[1] for s in stats], color=MEAN_COLOUR, lw=2, label="7-night mean")
            ax.axhline(PLMI_SIGNIFICANT, color=PLM_COLOUR, ls=":", lw=1.2)
            ax.text(1.0, PLMI_SIGNIFICANT, " 15/h", color=PLM_COLOUR, fontsize=9, va="center",
                    transform=ax.get_yaxis_transform())
            top = max(max(v for _, v in nights), PLMI_SIGNIFICANT) * 1.25
            for night, text in notes:
                ax.axvline(night, color=NOTE_COLOUR, lw=1.2)
                ax.text(night, top * 0.97, " " + text, color=NOTE_COLOUR, fontsize=9, va="top",
                        ha="left", rotation=0, clip_on=True)
            ax.set_ylim(0, top)
            span = (xs[-1] - xs[0]).days if len(xs) > 1 else 0
            ax.set_xlim(xs[0] - timedelta(days=1), xs[-1] + timedelta(days=max(1, span // 40)))
            locator = AutoDateLocator(maxticks=10)
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
            ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=9,
                      ncols=3)
        else:
            ax.text(0.5, 0.5, "no nights yet", transform=ax.transAxes, ha="center", color=MUTED)
        ax.set_ylabel("PLMs per hour in bed")
        return _to_svg(fig, "PLM index per night with the 7-night rolling mean")

"""Draw a scored night for a clinician: in bed and posture, every LM with its PLM series, LMs and
PLMs per hour, and the IMI histogram with the 10 s and 90 s bounds.

matplotlib is imported inside `plot_night`, and through `Figure` rather than pyplot: no GUI backend,
no global state, safe in a daemon or a server thread.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from device.analyze import NightAnalysis, hours_minutes, plm_index_verdict

_POSTURE_COLOURS = {"lying": "#9ecae1", "upright": "#fdae6b", "unknown": "#d9d9d9"}
_PLM = "#d62728"
_CLM = "#525252"
_LONG = "#6baed6"
_IN_BED = "#31a354"
_GAP = "#000000"


def plot_night(analysis: NightAnalysis, path: str | os.PathLike) -> None:
    """Write the night as a PNG to `path`."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    s = analysis.summary
    hours = max(s["duration_s"], 1.0) / 3600.0
    fig = Figure(figsize=(12, 8.5), dpi=110, layout="constrained")
    grid = fig.add_gridspec(4, 2, height_ratios=[0.9, 1.6, 2.2, 2.4], width_ratios=[1.6, 1])
    ax_bed = fig.add_subplot(grid[0, :])
    ax_lm = fig.add_subplot(grid[1, :], sharex=ax_bed)
    ax_hour = fig.add_subplot(grid[2:, 0])
    ax_imi = fig.add_subplot(grid[2:, 1])
    fig.suptitle(
        f"PLM index {plm_index_verdict(s)}\n"
        f"{s['plm_count']} PLMs in {s['plm_series_count']} series, {s['lm_count']} LMs   ·   "
        f"in bed {hours_minutes(s['time_in_bed_s'])}   ·   {s['rules']}",
        fontsize=12, fontweight="bold",
    )

    # 1. Posture and time in bed, with the recording gaps.
    for p in analysis.postures:
        ax_bed.broken_barh([(p.start_s / 3600, (p.end_s - p.start_s) / 3600)], (1.1, 0.8),
                           color=_POSTURE_COLOURS.get(p.posture, "#d9d9d9"))
    ax_bed.broken_barh([(b["start_s"] / 3600, (b["end_s"] - b["start_s"]) / 3600) for b in s["in_bed"]],
                       (0.1, 0.8), color=_IN_BED)
    ax_bed.broken_barh([(g["start_s"] / 3600, max(g["end_s"] - g["start_s"], 30) / 3600) for g in s["coverage"]["gaps"]],
                       (0.0, 2.0), facecolor="none", edgecolor=_GAP, hatch="////", linewidth=0)
    ax_bed.set_yticks([0.5, 1.5], ["in bed", "posture"])
    ax_bed.set_ylim(0, 2)
    ax_bed.legend(handles=[Patch(color=c, label=k) for k, c in _POSTURE_COLOURS.items()]
                  + [Patch(color=_IN_BED, label="in bed"), Patch(facecolor="none", hatch="////", label="gap")],
                  loc="upper right", ncol=5, fontsize=8, bbox_to_anchor=(1, 1.55), frameon=False)
    ax_bed.tick_params(labelbottom=False)

    # 2. Every LM on the timeline; PLM series shaded and their LMs in red.
    events = s["lm_events"]
    spans: dict[int, list[float]] = {}
    for e in events:
        if e["series"] is not None:
            first_last = spans.setdefault(e["series"], [e["onset_s"], e["offset_s"]])
            first_last[1] = e["offset_s"]
    for start_s, end_s in spans.values():
        ax_lm.axvspan(start_s / 3600, end_s / 3600, color=_PLM, alpha=0.12, linewidth=0)
    groups = [
        ([e for e in events if e["periodic"]], _PLM, 0.66, "PLM (in a series)"),
        ([e for e in events if e["clm"] and not e["periodic"]], _CLM, 0.33, "other candidate LM"),
        ([e for e in events if not e["clm"]], _LONG, 0.0, "LM not a CLM (e.g. > 10 s)"),
    ]
    for group, colour, y, label in groups:
        ax_lm.vlines([e["onset_s"] / 3600 for e in group], y + 0.03, y + 0.30, color=colour, linewidth=0.9,
                     label=f"{label}: {len(group)}")
    ax_lm.set_yticks([])
    ax_lm.set_ylim(0, 1)
    ax_lm.set_xlim(0, hours)
    ax_lm.set_xlabel(_time_axis_label(s["recording_start"]))
    ax_lm.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax_lm.set_title("Leg movements (shaded: PLM series)", fontsize=10, loc="left")
    _clock_ticks(ax_lm, s["recording_start"], hours)

    # 3. LMs and PLMs per clock hour.
    rows = s["hourly"]
    x = range(len(rows))
    ax_hour.bar(x, [r["lm_count"] for r in rows], color="#bdbdbd", label="LMs")
    ax_hour.bar(x, [r["plm_count"] for r in rows], color=_PLM, width=0.55, label="PLMs")
    ax_hour.set_xticks(list(x), [_hour_label(r, i) for i, r in enumerate(rows)], fontsize=8)
    ax_hour.set_ylabel("count per hour")
    ax_hour.set_title("LMs and PLMs per hour", fontsize=10, loc="left")
    ax_hour.legend(fontsize=8, frameon=False)

    # 4. IMI histogram, with the PLM bounds.
    h = s["imi_histogram"]
    width = h["bin_width_s"]
    ax_imi.bar([width * k for k in range(len(h["counts"]))], h["counts"], width=width, align="edge",
               color="#756bb1", edgecolor="white", linewidth=0.4)
    for bound in (10, 90):
        ax_imi.axvline(bound, color=_PLM, linestyle="--", linewidth=1)
    ax_imi.set_xlim(0, 92)
    ax_imi.set_xlabel("IMI, onset to onset (s)")
    ax_imi.set_ylabel("count")
    ax_imi.set_title(f"IMI histogram; periodicity index {s['periodicity_index']:.2f}", fontsize=10, loc="left")
    ax_imi.text(0.98, 0.97, f"< 10 s: {h['below_10_s']}\n10–90 s: {h['from_10_to_90_s']}\n> 90 s: {h['above_90_s']}",
                transform=ax_imi.transAxes, ha="right", va="top", fontsize=9,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85})
    fig.savefig(os.fspath(path), format="png")


def _time_axis_label(recording_start: str | None) -> str:
    return "clock time" if recording_start else "hours from the start of the recording"


def _clock_ticks(ax, recording_start: str | None, hours: float) -> None:
    if not recording_start:
        return
    start = datetime.fromisoformat(recording_start)
    # Ticks on the clock's whole hours, in hours from t = 0.
    first_h = (3600 - (start.minute * 60 + start.second + start.microsecond / 1e6)) % 3600 / 3600
    ticks = [first_h + k for k in range(int(hours - first_h) + 1)]
    ax.set_xticks(ticks, [(start + timedelta(hours=h)).strftime("%H:%M") for h in ticks])


def _hour_label(row: dict, i: int) -> str:
    return f"{row['clock_hour']:02d}h" if row["clock_hour"] is not None else f"{i}–{i + 1} h"

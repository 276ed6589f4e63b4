"""The one-page clinic report: a patient's span of nights (by default the last 14) on one A4
page that prints well in black and white: the verdict, the trend with the medications, the
quality of the nights, the evening tests (SIT), the treatment response, the regularity and the
caveats.

Drawn with matplotlib's own PDF backend (docs/dashboard.md, "The clinic report", says why): the
charts need real axes, and matplotlib was already the project's plotting library (the ``plot``
extra). TrueType fonts are embedded (``pdf.fonttype`` 42), so the text stays text: it can be
searched, copied and read by ``pdftotext``. Black, greys, line styles and marker shapes only:
nothing depends on colour.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Sequence

from sqlite_utils import Database

from server import quality
from server.consistency import CLINICAL_PLMI_ADULT
from server.sit import SIT_THRESHOLD_PER_H, SitRow, sit_results
from server.web import medications, regularity, response
from server.web.trend import Verdict, load_trend, verdict

DEFAULT_NIGHTS = 14
A4_IN = (8.27, 11.69)
# The trend draws the latest medications, one lane each; the lists below take the room left on
# the page and count what did not fit (the dashboard has everything).
MOST_LANES = 4
FOOTER = 0.035    # page fraction kept for the footer line
HEADING = 0.032   # page fraction a section heading takes
LANE = 0.2  # a medication's lane above the trend, as a share of the PLM index axis


@dataclass(frozen=True)
class Report:
    """Everything the page shows, gathered from the database for one patient and span."""

    pseudonym: str
    devices: list[str]
    first: date
    last: date
    nights: list[dict[str, Any]]
    verdict: Verdict
    medications: list[medications.Medication]
    notes: list[tuple[date, str]]
    changes: list[response.Change]
    prompts: list[response.Prompt]
    regularity: regularity.Regularity
    generated: datetime
    caveats: Sequence[str]
    sits: Sequence[SitRow] = ()


def span_of(db: Database, patient_id: int, today: date, nights: int = DEFAULT_NIGHTS
            ) -> tuple[date, date]:
    """The last ``nights`` calendar nights ending on the patient's latest night (or on the
    evening before ``today`` when there is none)."""
    latest = db.execute("SELECT max(n.night) FROM nights n JOIN devices d "
                        "ON d.device_id = n.device_id WHERE d.patient_id = ? AND n.night <= ?",
                        [patient_id, today.isoformat()]).fetchone()[0]
    last = date.fromisoformat(latest) if latest else today - timedelta(days=1)
    return last - timedelta(days=nights - 1), last


def gather(db: Database, patient: dict[str, Any], first: date, last: date, now: datetime,
           caveats: Sequence[str]) -> Report:
    """The report of ``patient`` (as ``queries.patient`` gives it) for the nights ``first`` to
    ``last`` inclusive. Medication changes and prompts are judged on all nights up to ``last``,
    since their windows may begin before the span."""
    every, notes, _ = load_trend(db, patient["id"])
    upto = [n for n in every if n["night"] <= last.isoformat()]
    nights = [n for n in upto if n["night"] >= first.isoformat()]
    meds = [m for m in medications.of_patient(db, patient["id"]) if m.started <= last]
    changes = [c for c in response.changes(meds, upto) if c.on <= last]
    return Report(
        pseudonym=patient["pseudonym"], devices=patient["devices"], first=first, last=last,
        nights=nights, verdict=verdict(nights), medications=meds,
        notes=[(date.fromisoformat(n["date"]), n["text"]) for n in notes
               if first.isoformat() <= n["date"] <= last.isoformat()],
        changes=changes, prompts=response.augmentation_prompts(meds, upto),
        regularity=regularity.load(db, patient["id"], last), generated=now, caveats=caveats,
        sits=sit_results(db, patient["devices"], first.isoformat(), last.isoformat()))


def _day(d: date) -> str:
    return f"{d.day} {d:%b %Y}"


class _Page:
    """A cursor down an A4 figure: text blocks and axes placed one under the other."""

    LEFT, RIGHT, WIDTH_CHARS = 0.07, 0.93, 118

    def __init__(self, figure: Any) -> None:
        self.figure = figure
        self.y = 0.965

    def text(self, text: str, size: float = 8.0, weight: str = "normal", gap: float = 0.004,
             indent: str = "", most_lines: int = 6) -> None:
        """A paragraph, wrapped to the page's width at this size, cut after ``most_lines``
        lines (with an ellipsis) so that no one item can push the page over."""
        line_h = self._line_h(size)
        for line in self._lines(text, size, indent, most_lines, weight):
            self.figure.text(self.LEFT, self.y, line, fontsize=size, weight=weight, va="top")
            self.y -= line_h
        self.y -= gap

    def _lines(self, text: str, size: float, indent: str, most_lines: int,
               weight: str = "normal") -> list[str]:
        # Bold glyphs of DejaVu Sans are about 10 % wider.
        width = int(self.WIDTH_CHARS * 8.0 / size * (0.9 if weight == "bold" else 1.0))
        return textwrap.wrap(text, width, subsequent_indent=indent, max_lines=most_lines,
                             placeholder=" …") or [""]

    @staticmethod
    def _line_h(size: float) -> float:
        return size * 1.35 / 72 / A4_IN[1]

    def height(self, text: str, size: float = 8.0, gap: float = 0.004, indent: str = "",
               most_lines: int = 6, weight: str = "normal") -> float:
        """The page fraction ``text`` takes (as ``text`` would write it)."""
        return (len(self._lines(text, size, indent, most_lines, weight)) * self._line_h(size)
                + gap)

    def fit(self, items: list[tuple[str, dict[str, Any]]], reserve: float, more: str) -> None:
        """Write ``items`` (text and ``text``'s options) while they leave ``reserve`` below;
        then one line ``more`` formatted with how many were left out."""
        last_line = self.height("x")
        for k, (text, options) in enumerate(items):
            room = reserve + (last_line if k < len(items) - 1 else 0.0)
            if self.y - self.height(text, **options) < room:
                self.text(more.format(len(items) - k))
                return
            self.text(text, **options)

    def heading(self, text: str) -> None:
        """A section heading with a rule under it."""
        self.y -= 0.006
        self.text(text, size=10, weight="bold", gap=0.0)
        self.figure.add_artist(_rule(self.figure, self.y + 0.002))
        self.y -= 0.006

    def axes(self, height: float) -> Any:
        """Axes the page's width and ``height`` (a fraction of the page) high, room for ticks."""
        self.y -= height
        ax = self.figure.add_axes((self.LEFT + 0.05, self.y, self.RIGHT - self.LEFT - 0.07, height))
        self.y -= 0.03
        return ax


def _rule(figure: Any, y: float) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([_Page.LEFT, _Page.RIGHT], [y, y], transform=figure.transFigure,
                  color="0.3", linewidth=0.6)


def _trend(ax: Any, r: Report) -> None:
    """PLM index per night (eligible filled, provisional hollow), 15/h, medications and notes."""
    eligible = [(date.fromisoformat(n["night"]), n["plm_index"]) for n in r.nights
                if n["quality"].label == quality.ELIGIBLE]
    provisional = [(date.fromisoformat(n["night"]), n["plm_index"]) for n in r.nights
                   if n["quality"].label == quality.PROVISIONAL]
    top = max([v for _, v in eligible + provisional] + [CLINICAL_PLMI_ADULT]) * 1.25
    # The latest medications, one lane each (the dashboard has them all).
    shown = r.medications[-MOST_LANES:]
    lanes = len(shown)
    _date_axis(ax, r)
    ax.set_ylim(-top * 0.04, top * (1.03 + LANE * lanes))
    if eligible:
        ax.plot(*zip(*eligible), "o-", color="black", markersize=4, linewidth=0.8,
                label="PLM index, eligible night")
    if provisional:
        ax.plot(*zip(*provisional), "o", markerfacecolor="white", markeredgecolor="black",
                markersize=4, linestyle="none", label="provisional night (not in the figures)")
    ax.axhline(CLINICAL_PLMI_ADULT, color="black", linestyle=(0, (2, 2)), linewidth=0.8,
               label="15/h (ICSD-3, adults)")
    for lane, m in enumerate(shown):
        # A lane per medication above the plot: its bar, and its label just above the bar.
        y = top * (1.03 + LANE * lane)
        left, right = _limits(r)
        start = max(_midnight(m.started), left)
        end = min(_midnight(m.stopped) if m.stopped else right, right)
        ax.broken_barh([(start, end - start)], (y, top * 0.06), facecolors="0.85",
                       edgecolors="black", linewidth=0.6, hatch="////")
        label = f"{m.label} ({m.class_name}) from {m.started:%d %b}" + (
            f" to {m.stopped:%d %b}" if m.stopped else "")
        ax.text(start, y + top * 0.075, label, fontsize=7, va="bottom", ha="left", clip_on=True)
    for on, text in r.notes:
        ax.axvline(_midnight(on), color="0.4", linestyle=":", linewidth=0.8)
        short = text if len(text) <= 40 else text[:39] + "…"
        ax.text(_midnight(on), -top * 0.02, f" note: {short}", fontsize=6.5, color="0.25",
                va="bottom", rotation=90, clip_on=True)
    ax.set_yticks([t for t in ax.get_yticks() if 0 <= t <= top])  # none beside the lanes
    ax.set_ylabel("PLMs per hour in bed", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.16), ncol=3, frameon=False)


def _midnight(d: date) -> datetime:
    return datetime.combine(d, time())


def _limits(r: Report) -> tuple[datetime, datetime]:
    """The x range: the span, with 14 h to spare on either side so that no mark sits on an edge."""
    return _midnight(r.first) - timedelta(hours=14), _midnight(r.last) + timedelta(hours=14)


def _date_axis(ax: Any, r: Report) -> None:
    """Whole dates on the x axis, at most about 10 ticks, over the span."""
    from matplotlib.dates import DateFormatter, DayLocator

    ax.set_xlim(*_limits(r))
    days = (r.last - r.first).days + 1
    ax.xaxis.set_major_locator(DayLocator(interval=max(1, days // 10)))
    ax.xaxis.set_major_formatter(DateFormatter("%d %b"))
    ax.tick_params(labelsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _bedtimes(ax: Any, r: Report) -> None:
    """Lights off (circle) and rising (square) per night of the span, the clock running down."""
    times = [t for t in r.regularity.times if r.first <= t.night <= r.last
             and t.label != quality.EXCLUDED]
    for t in times:
        fill = "black" if t.label == quality.ELIGIBLE else "white"
        ax.plot([t.night, t.night], [t.off_min, t.rise_min], color="0.6", linewidth=2.5)
        ax.plot([t.night], [t.off_min], "o", markerfacecolor=fill, markeredgecolor="black",
                markersize=4)
        ax.plot([t.night], [t.rise_min], "s", markerfacecolor=fill, markeredgecolor="black",
                markersize=4)
    if times:
        low = min(t.off_min for t in times) - 60
        high = max(t.rise_min for t in times) + 60
    else:
        low, high = 540, 1200
    ticks = list(range(int(low // 120) * 120, int(high) + 120, 120))
    ax.set_yticks(ticks, [f"{(m // 60 + 12) % 24:02d}:{m % 60:02d}" for m in ticks])
    ax.set_ylim(high, low)  # evening at the top, as a sleep diary reads
    ax.set_ylabel("clock time", fontsize=8)
    _date_axis(ax, r)


def _regularity_lines(r: Report) -> list[str]:
    reg = r.regularity
    lines = []
    for s in reg.spreads:
        if s.off_mean_min is None:
            lines.append(f"Last {s.nights} nights: {s.count} eligible, too few for a spread "
                         f"(at least {regularity.MIN_NIGHTS}).")
        else:
            lines.append(f"Last {s.nights} nights ({s.count} eligible): lights off "
                         f"{_clock(s.off_mean_min)} ± {s.off_sd_min:.0f} min, rising "
                         f"{_clock(s.rise_mean_min)} ± {s.rise_sd_min:.0f} min (circular mean ± SD).")
    if reg.sri.value is None:
        lines.append(f"Sleep Regularity Index: not enough pairs of consecutive eligible nights "
                     f"({reg.sri.pairs}; at least {regularity.MIN_SRI_PAIRS}).")
    else:
        lines.append(f"Sleep Regularity Index (in bed, last 28 nights, scale -100 to 100; "
                     f"Phillips et al. 2017): {reg.sri.value:.0f}, from {reg.sri.pairs} pairs "
                     f"of nights, over the minutes recorded on both nights only.")
    return lines


def _sit_line(r: Report) -> str:
    """What the evening tests of the span say, then each test, in one run of text."""
    taken = [t for t in r.sits if t.taken]
    scored = [t for t in taken if t.plm_index is not None]
    above = sum(bool(t.above_threshold) for t in scored)
    # Montplaisir et al., Mov Disord 1998: a SIT PLM index above 40/h separated RLS patients
    # from controls with about 81 % sensitivity and specificity.
    several = len({t.device_id for t in r.sits}) > 1
    return (f"{len(taken)} of {len(r.sits)} offered taken, {above} of {len(scored)} with an index "
            f"above {SIT_THRESHOLD_PER_H:g}/h (which separated RLS from controls with about 81 % "
            f"sensitivity and specificity, Montplaisir et al., Mov Disord 1998). "
            + "; ".join(_sit_item(t, several) for t in r.sits) + ".")


def _sit_item(t: SitRow, device: bool) -> str:
    evening = date.fromisoformat(t.evening)
    when = f"{evening.day} {evening:%b}" + (f" ({t.device_id})" if device else "")
    if not t.taken:
        return f"{when}: not taken"
    minutes = t.scored_s / 60
    if t.plm_index is None:
        return f"{when}: no index ({minutes:.0f} min scored)"
    above = f", above {SIT_THRESHOLD_PER_H:g}/h" if t.above_threshold else ""
    text = f"{when}: {t.plm_index:.1f}/h{above}"
    planned_min = t.result["planned_s"] / 60
    notes = (["ended early"] if t.ended_early else []) + (
        [f"{minutes:.0f} of {planned_min:.0f} min scored"] if minutes < planned_min - 1 else [])
    return text + (f" ({', '.join(notes)})" if notes else "")


def _clock(minutes: float | None) -> str:
    total = int(round(minutes or 0)) % 1440
    return f"{total // 60:02d}:{total % 60:02d}"


def render_pdf(r: Report) -> bytes:
    """The report as a one-page A4 PDF."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_pdf import FigureCanvasPdf
    from matplotlib.figure import Figure

    with rc_context({"pdf.fonttype": 42, "font.family": "DejaVu Sans",
                     "axes.edgecolor": "black", "axes.linewidth": 0.6}):
        figure = Figure(figsize=A4_IN)
        FigureCanvasPdf(figure)
        page = _Page(figure)
        page.text(f"rlsmon clinic report: {r.pseudonym}", size=14, weight="bold", gap=0.002)
        n = (r.last - r.first).days + 1
        page.text(f"Nights of {_day(r.first)} to {_day(r.last)} ({n} nights). Devices: "
                  f"{', '.join(r.devices) or 'none'}. Generated {r.generated:%d %b %Y %H:%M %Z}.",
                  size=8)

        v = r.verdict
        page.heading("Over the eligible nights")
        page.text(v.line, size=9, weight="bold")
        if v.mean_plmi is not None:
            page.text(f"PLM index mean {v.mean_plmi:.1f} ± {v.sd_plmi:.1f}/h (SD), median "
                      f"{v.median_plmi:.1f}/h (IQR {v.iqr_plmi[0]:.1f}–{v.iqr_plmi[1]:.1f}); above "
                      f"15/h on {v.above_15} of {v.eligible} nights; periodicity index "
                      f"{v.mean_periodicity:.2f} (≥ 0.6 read as periodic).")
        page.text(f"{v.eligible} eligible, {v.provisional} provisional and {v.excluded} excluded "
                  f"nights; only eligible nights are in the figures. This describes the recorded "
                  f"nights, it is not a diagnosis (PLMD also needs a sleep complaint not better "
                  f"explained otherwise, ICSD-3).")

        # The evening tests take their room from the two charts.
        trend_h, bedtimes_h = (0.14, 0.07) if r.sits else (0.17, 0.10)
        page.heading("PLM index per night, with the medications")
        _trend(page.axes(trend_h), r)
        page.y -= 0.02

        if r.sits:
            page.heading("Evening tests (SIT): PLM index per hour sitting in bed, against "
                         f"{SIT_THRESHOLD_PER_H:g}/h")
            page.text(_sit_line(r), most_lines=3)

        page.heading("Sleep regularity: lights off (circle) and rising (square)")
        for line in _regularity_lines(r):
            page.text(line)
        _bedtimes(page.axes(bedtimes_h), r)

        # The lists take the room that is left above the caveats; what does not fit is
        # counted and left to the dashboard.
        caveats = [("• " + c, {"indent": "  "}) for c in r.caveats]
        bottom = FOOTER + HEADING + sum(page.height(t, **kw) for t, kw in caveats)
        page.heading("Treatment response")
        items = [(p.line, {"weight": "bold", "most_lines": 4}) for p in r.prompts]
        if len(r.medications) > MOST_LANES:
            items.append((f"(The chart shows the latest {MOST_LANES} of {len(r.medications)} "
                          "medications.)", {}))
        items += [("• " + c.line, {"indent": "  ", "most_lines": 3}) for c in reversed(r.changes)]
        if not r.changes:
            items.append(("No medication recorded up to the end of this span.", {}))
        page.fit(items, bottom + HEADING + 3 * page.height("x"),
                 "({} more about the medications on the dashboard.)")

        page.heading("Quality of the nights")
        apart = [x for x in r.nights if x["quality"].label != quality.ELIGIBLE]
        page.text(f"{v.eligible} of {len(r.nights)} nights recorded in the span are eligible; "
                  f"{n - len(r.nights)} of its {n} nights have no recording.")
        page.fit([(f"• {x['night']}: {x['quality'].label}: {'; '.join(x['quality'].reasons)}.",
                   {"indent": "  ", "most_lines": 2}) for x in apart], bottom,
                 "(and {} more nights that are not eligible, on the dashboard)")

        page.heading("Caveats")
        for text, kw in caveats:
            page.text(text, **kw)
        figure.text(0.5, 0.02, "rlsmon is not a diagnostic device and not a certified medical "
                    "device; a diagnosis of PLMD needs polysomnography.", fontsize=7,
                    ha="center", color="0.25")
        assert page.y >= FOOTER - 0.001, f"the report ran off its page ({page.y:.3f})"
        out = io.BytesIO()
        figure.savefig(out, format="pdf", metadata={"Title": f"rlsmon report {r.pseudonym}",
                                                    "Creator": "rlsmon"})
    return out.getvalue()

"""What the charts show, read back from the SVG they write."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date, timedelta

from server.web import charts
from tests.web import seed

D0 = date(2026, 1, 1)
NS = {"s": "http://www.w3.org/2000/svg"}


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML, or this fails
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "width" not in root.attrib and "viewBox" in root.attrib  # scales with its container
    return root


def _all(root: ET.Element, cls: str) -> list[ET.Element]:
    return [e for e in root.iter() if cls in e.attrib.get("class", "").split()]


def _texts(root: ET.Element, cls: str) -> list[str]:
    return [e.text or "" for e in _all(root, cls)]


def _stems(root: ET.Element, cls: str) -> int:
    paths = _all(root, cls)
    return sum(len(re.findall(r"M", p.attrib["d"])) for p in paths)


def test_rolling_stats_use_a_calendar_window_of_seven_nights():
    nights = [(D0 + timedelta(days=i), float(i)) for i in range(10)]
    stats = charts.rolling_stats(nights)
    assert stats[0] is None and stats[1] is None  # fewer than 3 nights so far
    assert stats[2] == (D0 + timedelta(days=2), 1.0, 0.0, 2.0)
    assert stats[9] == (D0 + timedelta(days=9), 6.0, 3.0, 9.0)  # nights 3..9


def test_a_fortnight_without_recordings_is_not_averaged_across():
    nights = [(D0 + timedelta(days=i), 10.0) for i in range(5)]
    nights += [(D0 + timedelta(days=20 + i), 40.0) for i in range(3)]
    stats = charts.rolling_stats(nights)
    assert stats[5] is None and stats[6] is None
    assert stats[7][1] == 40.0


def test_the_timeline_shows_every_lm_series_in_bed_gap_and_button_press():
    summary = seed.make_night("dev-a", D0, 30.0, sporadic_per_h=6.0)
    root = _parse(charts.night_charts(summary)["timeline"])
    assert _stems(root, "plm") == summary["plm_count"] > 0
    assert _stems(root, "lm") == summary["lm_count"] - summary["plm_count"] > 0
    assert len(_all(root, "series")) == summary["plm_series_count"]
    assert len(_all(root, "in-bed")) == 1 and len(_all(root, "gap")) == 1
    assert len(_all(root, "marker")) == 2
    assert _texts(root, "marker-label") == ["lights off", "lights on"]
    # Clock hours of the night in its own zone (22:30 start in Berlin), one tick an hour.
    assert _texts(root, "xtick") == ["23:00", "00:00", "01:00", "02:00", "03:00", "04:00",
                                     "05:00", "06:00"]
    assert _texts(root, "ytick") == ["0", "5", "10"]


def test_a_series_is_shaded_from_its_first_onset_to_its_last_offset():
    lms = [{"onset_s": 100.0 + 20 * i, "duration_s": 2.0, "periodic": True, "series": 0}
           for i in range(4)]
    root = _parse(charts.night_timeline_svg(lms, [], [], [], 3600.0))
    (shade,) = _all(root, "series")
    x0, width = float(shade.attrib["x"]), float(shade.attrib["width"])
    frame_px = (868 - 62) / 1.0  # the plot's width in px for one hour
    assert abs(x0 - (62 + 100 / 3600 * frame_px)) < 0.2
    assert abs(width - (62 / 3600 * frame_px)) < 0.2  # 100 s → 162 s
    assert _texts(root, "xtick")[:2] == ["0 min", "10 min"]  # no clock: minutes from the start


def test_an_empty_night_has_a_scale_and_no_negative_counts():
    summary = seed.make_night("dev-a", D0, 0.0, sporadic_per_h=0.0, gap=False)
    summary.update(duration_s=240.0, in_bed=[], markers=[],
                   hourly=[dict(h, lm_count=0, plm_count=0) for h in summary["hourly"][:1]])
    drawn = charts.night_charts(summary)
    hist, hourly, timeline = (_parse(drawn[k]) for k in ("imi", "hourly", "timeline"))
    for root in (hist, hourly):
        ticks = [int(t) for t in _texts(root, "ytick")]  # whole numbers, or int() fails
        assert ticks == [0, 1]
    assert _texts(hist, "empty") == ["no intervals this night"]
    assert len(_texts(timeline, "xtick")) >= 3  # a 4-min night still has a time scale
    assert not _all(timeline, "lm") and not _all(timeline, "plm")


def test_the_histogram_shows_its_bins_and_the_10_s_and_90_s_bounds():
    summary = seed.make_night("dev-a", D0, 40.0)
    root = _parse(charts.night_charts(summary)["imi"])
    (bins,) = _all(root, "bins")
    assert bins.attrib["data-counts"] == ",".join(map(str, summary["imi_histogram"]["counts"]))
    assert _texts(root, "bound-label") == ["10 s", "90 s"]
    xs = [float(line.attrib["x1"]) for line in _all(root, "bound")]
    ticks = {t.text: float(t.attrib["x"]) for t in _all(root, "xtick")}
    assert [round(x) for x in xs] == [round(ticks["10"]), round(ticks["90"])]


def test_the_hourly_chart_has_a_pair_of_bars_per_hour():
    summary = seed.make_night("dev-a", D0, 25.0)
    root = _parse(charts.night_charts(summary)["hourly"])
    assert [int(b.attrib["data-count"]) for b in _all(root, "lm")] == \
        [h["lm_count"] for h in summary["hourly"]]
    assert [int(b.attrib["data-count"]) for b in _all(root, "plm")] == \
        [h["plm_count"] for h in summary["hourly"]]
    assert _texts(root, "xtick") == [f"{h['clock_hour']:02d}" for h in summary["hourly"]]


def test_a_trend_at_zero_is_drawn_above_the_axis_with_whole_dates():
    nights = [(D0 + timedelta(days=i), 0.0) for i in range(10)]
    root = _parse(charts.trend_svg(nights, []))
    axis_y = 285.0  # the plot's bottom edge, where the x axis is drawn
    points = _all(root, "night")
    assert len(points) == 10 and all(float(p.attrib["cy"]) < axis_y - 5 for p in points)
    (mean,) = _all(root, "mean")
    assert all(float(xy.split(",")[1]) < axis_y - 5 for xy in mean.attrib["points"].split())
    labels = _texts(root, "xtick")
    assert labels[0] == "1 Jan 2026" and all(":" not in t for t in labels)
    assert all(re.fullmatch(r"\d{1,2} [A-Z][a-z]{2}", t) for t in labels[1:])
    assert _texts(root, "ylabel") == ["PLMs per hour in bed"]


def test_the_trend_legend_names_only_what_is_drawn():
    two = _parse(charts.trend_svg([(D0, 3.0), (D0 + timedelta(days=1), 4.0)], []))
    assert not _all(two, "mean") and not _all(two, "range")
    assert _texts(two, "legend") == ["PLM index (night)"]
    week = _parse(charts.trend_svg([(D0 + timedelta(days=i), 4.0) for i in range(7)], []))
    assert len(_all(week, "mean")) == 1 and len(_all(week, "range")) == 1
    assert _texts(week, "legend") == ["PLM index (night)", "7-night mean", "7-night range"]


def test_a_trend_draws_notes_as_text_and_the_15_per_hour_line():
    nights = [(D0 + timedelta(days=i), float(20 + i)) for i in range(60)]
    note = "ropinirole <0.25 mg> & \"iron\""
    svg = charts.trend_svg(nights, [(D0 + timedelta(days=30), note)])
    root = _parse(svg)
    assert _texts(root, "note-label") == [note]  # escaped in the SVG, the same text when read
    assert len(_all(root, "threshold")) == 1 and _texts(root, "threshold-label") == ["15/h"]
    assert len(_texts(root, "xtick")) <= 10
    assert _parse(charts.trend_svg([], [])).find(".//s:text", NS).text == "no nights yet"


def test_the_dashboard_runs_without_a_plotting_library():
    # matplotlib is only for `rlsmon-device analyze --plot` (the "plot" extra), not the server's.
    import subprocess
    import sys

    code = "import sys, server.cli, server.web.app; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_trend_draws_each_medication_as_a_bar_in_its_own_lane():
    nights = [(D0 + timedelta(days=i), 10.0) for i in range(30)]
    meds = [(D0 + timedelta(days=5), D0 + timedelta(days=12), "iron 325 mg"),
            (D0 + timedelta(days=20), None, "ropinirole 0.25 mg")]
    root = _parse(charts.trend_svg(nights, [], meds))
    bars = root.findall(".//s:rect[@class='medication']", NS)
    assert [b.get("data-label") for b in bars] == ["iron 325 mg", "ropinirole 0.25 mg"]
    assert [b.get("data-stopped") for b in bars] == [str(D0 + timedelta(days=12)), ""]
    assert float(bars[0].get("y")) < float(bars[1].get("y"))  # one lane each
    # The still-taken one runs to the chart's end; a late bar's label ends where its bar starts.
    labels = root.findall(".//s:text[@class='medication-label']", NS)
    assert [t.get("text-anchor") for t in labels] == ["start", "end"]
    assert float(labels[1].get("x")) < float(bars[1].get("x"))

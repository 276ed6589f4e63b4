"""The night's chart and quality show the spans the sensor was not worn."""

from __future__ import annotations

from server import quality
from server.web import charts
from tests.web import seed
from tests.web.test_charts import D0, _all, _parse, _texts


def test_the_timeline_shades_and_labels_each_not_worn_span():
    summary = seed.make_night("dev-a", D0, 10.0)
    summary["wear"] = {"assessed": True, "not_worn": [{"start_s": 0.0, "end_s": 200.0},
                                                      {"start_s": 3600.0, "end_s": 7200.0}]}
    root = _parse(charts.night_charts(summary)["timeline"])
    shades = _all(root, "not-worn")
    assert len(shades) == 2
    frame_px = (868 - 62) / (summary["duration_s"] / 3600)  # px per hour
    assert abs(float(shades[1].attrib["width"]) - frame_px) < 0.2  # one hour wide
    assert _texts(root, "not-worn-label") == ["not worn"]  # only where the label fits


def test_a_night_without_wear_spans_draws_none():
    root = _parse(charts.night_charts(seed.make_night("dev-a", D0, 10.0))["timeline"])
    assert not _all(root, "not-worn")


def test_the_quality_of_a_summary_reads_its_wear_spans():
    summary = seed.make_night("dev-a", D0, 10.0)
    first, last = summary["in_bed"][0]["start_s"], summary["in_bed"][-1]["end_s"]
    summary["wear"] = {"assessed": True, "not_worn": [{"start_s": first, "end_s": first + 0.3 * (last - first)}]}
    q = quality.of_summary(summary)
    assert q.label == quality.PROVISIONAL and any(r.startswith("sensor not worn for") for r in q.reasons)

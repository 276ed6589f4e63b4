"""Sleep regularity (server/web/regularity.py) on hand-worked nights, and on the patient page."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from server.quality import ELIGIBLE, PROVISIONAL
from server.web import regularity
from server.web.regularity import bed_times, circular_mean_sd, sleep_regularity_index, spread

D0 = date(2026, 10, 5)  # a Monday


def _summary(night: date, bed: tuple[float, float], markers: list[dict] | None = None,
             gaps: list[dict] | None = None, start: str = "22:00") -> dict:
    """A night recorded from ``start`` (Berlin) for 10 h, in bed ``bed`` (seconds from then)."""
    return {"recording_start": f"{night}T{start}:00+02:00", "duration_s": 36000.0,
            "window": {"timezone": "Europe/Berlin"},
            "in_bed": [{"start_s": bed[0], "end_s": bed[1]}], "markers": markers or [],
            "coverage": {"gaps": gaps or []}}


def _times(night: date, bed: tuple[float, float], label: str = ELIGIBLE, **kw):
    return bed_times(night, _summary(night, bed, **kw), label)


def test_times_come_from_the_button_else_the_in_bed_span():
    # Lights off pressed at 22:30; no lights-on press: rising is the in-bed end, 06:40.
    t = _times(D0, (1200.0, 31200.0), markers=[{"t_s": 1800.0, "kind": "lights_off"}])
    assert (t.lights_off.strftime("%H:%M"), t.off_source) == ("22:30", "button")
    assert (t.rising.strftime("%H:%M"), t.rise_source) == ("06:40", "in bed")
    assert t.off_min == 630 and t.rise_min == 1120  # minutes after noon
    # Both pressed: the first lights off and the last lights on after it.
    t = _times(D0, (1200.0, 31200.0), markers=[
        {"t_s": 600.0, "kind": "lights_on"}, {"t_s": 1800.0, "kind": "lights_off"},
        {"t_s": 2400.0, "kind": "lights_off"}, {"t_s": 30000.0, "kind": "lights_on"},
        {"t_s": 32000.0, "kind": "lights_on"}])
    assert (t.lights_off.strftime("%H:%M"), t.rising.strftime("%H:%M")) == ("22:30", "06:53")
    assert t.rise_source == "button"
    # No time in bed, or no clock: no times.
    assert bed_times(D0, {**_summary(D0, (0, 1)), "in_bed": []}, ELIGIBLE) is None
    no_clock = {k: v for k, v in _summary(D0, (0, 1)).items() if k != "recording_start"}
    assert bed_times(D0, {**no_clock, "window": {}}, ELIGIBLE) is None


def test_clock_times_are_averaged_round_midnight():
    # 23:50 and 00:10: the circular mean is midnight (the arithmetic mean of 1430 and 10 minutes
    # would say noon), and the SD is 10 min: R = cos(10 min as an angle, 2*pi*10/1440),
    # sqrt(-2 ln R) = 0.04363 rad = 10.0 min.
    mean, sd = circular_mean_sd([23 * 60 + 50, 10])
    assert min(mean, 1440 - mean) == pytest.approx(0, abs=1e-9)
    assert sd == pytest.approx(10.0, abs=0.01)
    # The same times every night: no spread.
    assert circular_mean_sd([1380, 1380, 1380]) == (pytest.approx(1380), 0.0)


def test_the_spread_needs_3_eligible_nights_in_the_span():
    # Lights off 23:00, 23:20, 23:40 (eligible), and a provisional night at 01:00 that must not
    # count. Rising always 07:00.
    bed = [(3600.0, 32400.0), (4800.0, 32400.0), (6000.0, 32400.0), (10800.0, 32400.0)]
    labels = [ELIGIBLE, ELIGIBLE, ELIGIBLE, PROVISIONAL]
    times = [_times(D0 + timedelta(days=i), b, lab) for i, (b, lab) in enumerate(zip(bed, labels))]
    week = spread(times, D0 + timedelta(days=3), 7)
    assert week.count == 3
    assert week.off_mean_min == pytest.approx(23 * 60 + 20, abs=0.01)
    # Circular SD of -20, 0, +20 min: R = (1 + 2 cos(20 min)) / 3, sqrt(-2 ln R) = 16.33 min.
    assert week.off_sd_min == pytest.approx(16.33, abs=0.01)
    assert week.rise_mean_min == pytest.approx(7 * 60) and week.rise_sd_min == pytest.approx(0)
    # Only the last 2 nights in a 2-night span: too few.
    short = spread(times, D0 + timedelta(days=3), 2)
    assert short.count == 1 and short.off_mean_min is None


def test_sleep_regularity_index_on_hand_worked_nights():
    # Recorded 22:00-08:00 (600 min). Night A in bed 23:00-07:00, night B 00:00-07:00: a pair
    # differs in 60 of the 600 minutes compared, so SRI = -100 + 200 * 540/600 = 80.
    a, b = (3600.0, 32400.0), (7200.0, 32400.0)
    six = [_times(D0 + timedelta(days=i), a if i % 2 == 0 else b) for i in range(6)]
    sri = sleep_regularity_index(six, D0 + timedelta(days=5))
    assert (sri.pairs, sri.epochs) == (5, 5 * 600)
    assert sri.value == pytest.approx(80.0)
    # The same night every night: 100. Four pairs only: no index (at least 5).
    same = [_times(D0 + timedelta(days=i), a) for i in range(6)]
    assert sleep_regularity_index(same, D0 + timedelta(days=5)).value == pytest.approx(100.0)
    assert sleep_regularity_index(six[:5], D0 + timedelta(days=4)).value is None


def test_the_sri_skips_what_was_not_recorded_and_nights_that_are_not_eligible():
    a, b = (3600.0, 32400.0), (7200.0, 32400.0)
    # A 60-min gap from 23:00 on the B nights hides exactly the minutes that differ: 100.
    gap = [{"start_s": 3600.0, "end_s": 7200.0}]
    nights = [_times(D0 + timedelta(days=i), a) if i % 2 == 0 else
              _times(D0 + timedelta(days=i), b, gaps=gap) for i in range(6)]
    sri = sleep_regularity_index(nights, D0 + timedelta(days=5))
    assert sri.value == pytest.approx(100.0) and sri.epochs == 5 * 540
    # A provisional night breaks the pairs on either side of it: 6 nights, 3 pairs left.
    nights[2] = _times(D0 + timedelta(days=2), a, PROVISIONAL)
    assert sleep_regularity_index(nights, D0 + timedelta(days=5)).pairs == 3


def test_the_patient_page_shows_regularity(staff, seeded):
    html = staff.get(f"/patients/{seeded.flagged_patient}").text
    card = html.split('id="regularity-h"')[1].split("</section>")[0]
    # Seeded (tests/web/conftest.py): lights off 22:40, an hour later on Friday and Saturday;
    # rising 06:15, every night.
    assert "last 7 nights: 7" in card and "last 28 nights: 28" in card
    assert "06:15 ± 0 min" in card
    assert "on a scale of −100 to 100" in card
    chart = card.split("<svg")[1]
    assert chart.count('class="bedtime"') == 28 and chart.count('class="risetime"') == 28
    assert 'data-time="23:40"' in chart and 'data-time="22:40"' in chart


def test_the_regularity_of_a_patient_without_nights(tmp_path):
    from server.db import open_db

    db = open_db(tmp_path / "s.db")
    db.execute("INSERT INTO patients (pseudonym, created_at) VALUES ('P-9', 'x')")
    empty = regularity.load(db, 1, D0)
    assert empty.times == [] and empty.sri.value is None and empty.last is None

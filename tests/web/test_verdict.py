"""The verdict over nights (server/web/trend.py) on hand-worked nights, and on the pages."""

from __future__ import annotations

from datetime import timedelta

import pytest

from server.db import open_db
from server.quality import ELIGIBLE, EXCLUDED, PROVISIONAL, Quality
from server.web.trend import verdict
from tests.web import seed


def _n(plmi: float, pi: float = 0.8, label: str = ELIGIBLE) -> dict:
    return {"plm_index": plmi, "periodicity_index": pi, "quality": Quality(label, ())}


def test_under_3_eligible_nights_there_is_no_verdict():
    v = verdict([_n(30), _n(40), _n(50, label=PROVISIONAL), _n(0, label=EXCLUDED)])
    assert (v.eligible, v.provisional, v.excluded) == (2, 1, 1)
    assert v.mean_plmi is None and v.above_15 is None
    assert v.line == ("2 eligible nights: too few for a verdict (at least 3; more are better, "
                      "as the PLM index varies from night to night).")
    assert verdict([]).line.startswith("0 eligible nights: too few")


def test_the_figures_over_eligible_nights_only():
    # Eligible PLMI 10, 20, 30, 40 (the 90 is provisional and must not count).
    # Mean 25, median 25; inclusive quartiles 17.5 and 32.5; SD sqrt(500/3) = 12.91.
    nights = [_n(10, 0.7), _n(20, 0.8), _n(30, 0.8), _n(40, 0.9), _n(90, 0.1, PROVISIONAL)]
    v = verdict(nights)
    assert (v.eligible, v.provisional, v.excluded) == (4, 1, 0)
    assert v.mean_plmi == 25 and v.median_plmi == 25
    assert v.iqr_plmi == (17.5, 32.5)
    assert v.sd_plmi == pytest.approx(12.9099, abs=1e-4)
    assert v.above_15 == 3 and v.mean_periodicity == pytest.approx(0.8)
    assert v.line == "PLMI above 15/h on 3 of 4 eligible nights, periodicity 0.80: consistent with PLMD."


def test_the_line_says_what_the_data_shows():
    # Most nights above 15/h but weakly periodic (mean PI 0.3 < 0.6).
    assert verdict([_n(20, 0.3)] * 3).line == ("PLMI above 15/h on 3 of 3 eligible nights, "
                                               "periodicity 0.30: frequent but not clearly "
                                               "periodic leg movements.")
    # 15/h itself is not above 15/h; one of three is a minority.
    assert verdict([_n(15), _n(16), _n(2)]).line == ("PLMI above 15/h on 1 of 3 eligible nights, "
                                                      "periodicity 0.80: above 15/h on a minority "
                                                      "of nights.")
    assert verdict([_n(3, 0.2)] * 3).line.endswith("periodicity 0.20: not above 15/h on any night.")
    # Half is not a majority.
    assert verdict([_n(20), _n(20), _n(5), _n(5)]).line.endswith("minority of nights.")


def test_the_patient_page_leads_with_the_verdict_and_labels_every_night(staff, seeded):
    html = staff.get(f"/patients/{seeded.flagged_patient}").text
    # conftest: 30 eligible nights of P-0001, above 15/h on the 17 before ropinirole and the
    # last two (17 and 19/h); its series are CLMs 15-40 s apart, so periodic.
    assert html.index('id="verdict-h"') < html.index('id="trend-h"')
    assert "PLMI above 15/h on 19 of 30 eligible nights, periodicity 0." in html
    assert ": consistent with PLMD.</strong>" in html
    assert "0 provisional nights" in html and "0 excluded" in html
    assert html.count('class="quality quality-eligible"') == 30


def test_provisional_and_excluded_nights_are_shown_apart(staff, seeded):
    db = open_db(seeded.path)
    unsynced = seed.make_night("dev-b", seeded.last_night + timedelta(days=1), 40.0)
    unsynced["clock_synced"] = False
    seed.store(db, unsynced)
    db.conn.close()
    html = staff.get(f"/patients/{seeded.calm_patient}").text
    # P-0002: 5 eligible nights at 2/h; the unsynced night at 40/h is counted apart.
    assert "PLMI above 15/h on 0 of 5 eligible nights" in html
    assert "1 provisional night " in html
    assert "quality-provisional" in html and "clock not synchronised" in html
    night = staff.get(f"/devices/dev-b/nights/{seeded.last_night + timedelta(days=1)}").text
    assert "quality-provisional" in night and "clock not synchronised" in night


def test_a_night_page_shows_an_eligible_label(staff, seeded):
    html = staff.get(f"/devices/dev-a/nights/{seeded.last_night}").text
    assert 'Night quality: <span class="quality quality-eligible"' in html


def test_the_patients_list_labels_each_last_night_with_its_reasons_on_hover(staff, seeded):
    db = open_db(seeded.path)
    # 3 h in bed: provisional (under 4 h), and a consistent summary for the collector.
    short = seed.make_night("dev-b", seeded.last_night + timedelta(days=1), 2.0, gap=False,
                            in_bed_s=(600.0, 600.0 + 3 * 3600.0))
    seed.store(db, short)
    db.conn.close()
    html = staff.get("/").text
    row = [r for r in html.split("<tr") if "P-0002" in r][0]
    assert 'class="quality quality-provisional" title="only 3 h 00 min in bed, under 4 h"' in row
    assert "quality-eligible" in [r for r in html.split("<tr") if "P-0001" in r][0]


def test_a_night_with_sensor_faults_in_bed_is_excluded_off_the_verdict(staff, seeded):
    night = seeded.last_night + timedelta(days=1)
    # A 6 h gap inside the 7 h 35 min (27,300 s) in bed: 21,600 / 27,300 = 79% lost, excluded.
    faulty = seed.make_night("dev-a", night, 30.0,
                             gaps=[{"start_s": 3600.0, "end_s": 7 * 3600.0}])
    db = open_db(seeded.path)
    seed.store(db, faulty)
    db.conn.close()
    html = staff.get(f"/patients/{seeded.flagged_patient}").text
    assert "on 19 of 30 eligible nights" in html and "0 provisional nights" in html
    assert "1 excluded" in html
    assert "sensor faults: 79% of the time in bed missing" in html

"""What staff see: the patients list, a night, a trend, the forms and the exports."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from datetime import timedelta

from server.db import open_db
from tests.pgserver import BOTH_DATABASES
from tests.web import seed
from tests.web.conftest import NOW, USER, csrf_of, log_in
from tests.web.test_edf_legs import NIGHT as LEGS_NIGHT
from tests.web.test_edf_legs import two_leg_night

pytestmark = BOTH_DATABASES


def _row(html: str, text: str) -> str:
    """The table row of the patients list that mentions ``text``."""
    rows = re.findall(r"<tr[^>]*>.*?</tr>", html, re.S)
    hits = [r for r in rows if text in r]
    assert hits, f"no row with {text}"
    return hits[0]


def test_the_patients_list_shows_last_nights_flags_and_silence(staff, seeded):
    html = staff.get("/").text
    p1 = _row(html, "P-0001")
    assert "19.0" in p1 and "band-mild" in p1 and "&gt; 15/h" in p1
    assert "99 %" in p1  # 7 min gap in an 8 h recording
    assert "online" in p1
    p2 = _row(html, "P-0002")
    assert "band-normal" in p2 and "&gt; 15/h" not in p2
    # dev-c last reported 5 nights ago: listed as not reporting, and marked in its row.
    attention = html.split('class="card attention"')[1].split("</section>")[0]
    assert "P-0003" in attention and "5 missed" in attention
    assert "P-0001" not in attention
    assert "5 missed" in _row(html, "P-0003") and "offline" in _row(html, "P-0003")
    # The unassigned device has an assign form, and is not among the patients.
    unassigned = html.split('id="unassigned-h"')[1]
    assert "dev-new" in unassigned and 'action="/devices/dev-new/assign"' in unassigned


def test_a_device_silent_for_one_night_is_not_flagged(client, seeded, clock):
    clock.advance(timedelta(days=1))  # the morning after: last night's summary is missing
    log_in(client)
    html = client.get("/").text
    assert "P-0001" not in html.split('class="card attention"')[1].split("</section>")[0]
    clock.advance(timedelta(days=1))  # two nights missing now (and a new shift: log in again)
    log_in(client)
    html = client.get("/").text
    assert "P-0001" in html.split('class="card attention"')[1].split("</section>")[0]


def test_search_flag_filter_and_paging(staff):
    assert "P-0002" not in staff.get("/?q=0001").text.split("<tbody>")[1].split("</tbody>")[0]
    flagged = staff.get("/?flagged=true").text.split("<tbody>")[1].split("</tbody>")[0]
    assert "P-0001" in flagged and "P-0003" in flagged and "P-0002" not in flagged
    assert staff.get("/?q=%25").status_code == 200  # LIKE wildcards are literal
    assert "No patients match" in staff.get("/?q=%25").text
    assert staff.get("/?page=0").status_code == 422


def test_assigning_a_device_creates_the_patient(staff):
    token = csrf_of(staff.get("/").text)
    response = staff.post("/devices/dev-new/assign", data={"pseudonym": "P-0042", "csrf_token": token},
                          follow_redirects=False)
    assert response.status_code == 303
    trend = staff.get(response.headers["location"]).text
    assert "P-0042" in trend and "dev-new" in trend
    assert "dev-new" not in staff.get("/").text.split('id="unassigned-h"')[1]
    bad = staff.post("/devices/dev-new/assign", data={"pseudonym": "   ", "csrf_token": token})
    assert bad.status_code == 422
    missing = staff.post("/devices/dev-zzz/assign", data={"pseudonym": "P-1", "csrf_token": token})
    assert missing.status_code == 404


def test_a_night_page_has_its_charts_table_and_caveats(staff, seeded):
    summary = seed.make_night("dev-a", seeded.last_night, 19)
    html = staff.get(f"/devices/dev-a/nights/{seeded.last_night}").text
    assert html.count("<svg") == 3
    assert "Timeline of leg movements" in html
    assert "Leg movements and periodic leg movements per hour" in html
    assert "Histogram of inter-movement intervals" in html
    imi_chart = html.split('aria-label="Histogram of inter-movement intervals"')[1].split("</svg>")[0]
    for bound in ("10 s", "90 s"):
        assert bound in imi_chart
    assert "lights off" in html and "lights on" in html
    table = html.split('<table class="lms">')[1].split("</table>")[0]
    assert table.count("<tr") - 1 == summary["lm_count"]
    assert table.count('class="plm"') == summary["plm_count"]
    assert "Respiratory-related leg movements are not excluded" in html
    assert "per hour in bed" in html


def _lm_cells(html: str) -> tuple[list[str], list[list[str]]]:
    """The LM table's headers, and each row's cells."""
    table = html.split('<table class="lms">')[1].split("</table>")[0]
    rows = re.findall(r"<tr class=\"[^\"]*\">(.*?)</tr>", table, re.S)
    return (re.findall(r"<th[^>]*>(.*?)</th>", table),
            [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows])


def test_the_lm_table_shows_each_lms_leg_when_the_night_names_any(staff, seeded):
    # A night from two sensors names each LM's leg; one LM here has none (docs/summary.md: left
    # out when unknown).
    summary = two_leg_night()
    lone = max(summary["lm_events"], key=lambda lm: lm["onset_s"])
    del lone["leg"]
    _store(seeded, summary)
    headers, rows = _lm_cells(staff.get(f"/devices/dev-a/nights/{LEGS_NIGHT}").text)
    column = headers.index("Which leg")
    assert headers[column - 1] == "Legs" and len(rows) == len(summary["lm_events"])
    legs = [row[column] for row in rows]
    assert Counter(legs) == {"left": 6, "right": 7, "both": 4, '<span class="muted">–</span>': 1}
    assert legs[-1] == '<span class="muted">–</span>'
    assert all((leg == "both") == (row[column - 1] == "both") for leg, row in zip(legs, rows))
    # A night from one sensor without a side names no leg: no column.
    headers, rows = _lm_cells(staff.get(f"/devices/dev-a/nights/{seeded.last_night}").text)
    assert "Which leg" not in headers and rows and all(len(r) == len(headers) for r in rows)


def test_standing_caveats_are_added_when_the_device_omits_them(staff, seeded):
    night = seeded.last_night + timedelta(days=1)
    summary = seed.make_night("dev-b", night, 3)
    summary["caveats"] = []
    db = open_db(seeded.path)
    seed.store(db, summary)
    db.conn.close()
    html = staff.get(f"/devices/dev-b/nights/{night}").text
    assert "Respiratory-related leg movements are not excluded" in html
    assert "not per hour of sleep" in html


def test_a_replaced_night_is_redrawn(staff, seeded):
    night = seeded.last_night
    first = staff.get(f"/devices/dev-b/nights/{night}").text
    newer = seed.make_night("dev-b", night, 40.0, seed=1)
    newer["generated_at"] = (NOW + timedelta(hours=1)).isoformat()
    db = open_db(seeded.path)
    seed.store(db, newer)
    db.conn.close()
    second = staff.get(f"/devices/dev-b/nights/{night}").text
    assert first != second and "band-moderate" in second


def test_the_trend_has_the_chart_notes_and_nights(staff, seeded):
    html = staff.get(f"/patients/{seeded.flagged_patient}").text
    assert html.count("<svg") == 2  # the trend, then the bed and rising times
    chart = html.split("<svg")[1].split("</svg>")[0]
    assert 'class="medication" data-label="ropinirole 0.25 mg"' in chart
    assert "restless evenings after travel" in chart
    assert "7-night mean" in chart and "7-night range" in chart
    assert "Trotti" in html
    assert html.count('href="/devices/dev-a/nights/') == 30


def test_a_note_with_a_bad_date_or_no_text_is_refused(staff, seeded):
    token = csrf_of(staff.get("/").text)
    url = f"/patients/{seeded.flagged_patient}/notes"
    assert staff.post(url, data={"on": "2026-13-01", "text": "x", "csrf_token": token}).status_code == 422
    assert staff.post(url, data={"on": "2026-11-01", "text": "  ", "csrf_token": token}).status_code == 422
    assert staff.post("/patients/999/notes", data={"on": "2026-11-01", "text": "x",
                                                   "csrf_token": token}).status_code == 404


def test_csv_exports(staff, seeded):
    pid = seeded.flagged_patient
    nights = list(csv.DictReader(io.StringIO(staff.get(f"/patients/{pid}/nights.csv").text)))
    assert len(nights) == 30
    assert nights[-1]["night"] == str(seeded.last_night) and round(float(nights[-1]["plm_index"])) == 19
    response = staff.get(f"/patients/{pid}/lms.csv")
    assert response.headers["content-type"].startswith("text/csv")
    lms = list(csv.DictReader(io.StringIO(response.text)))
    assert len(lms) == sum(int(n["lm_count"]) for n in nights)
    last = [r for r in lms if r["night"] == str(seeded.last_night)]
    assert sum(r["periodic"] == "1" for r in last) == int(nights[-1]["plm_count"])
    assert staff.get(f"/patients/{pid}/other.csv").status_code == 422


def test_the_lm_export_names_each_lms_leg_when_known(staff, seeded):
    summary = two_leg_night()
    del max(summary["lm_events"], key=lambda lm: lm["onset_s"])["leg"]
    _store(seeded, summary)  # dev-a is the flagged patient's
    lms = list(csv.DictReader(io.StringIO(staff.get(f"/patients/{seeded.flagged_patient}/lms.csv").text)))
    assert list(lms[0])[-1] == "leg"  # added last: the columns before it keep their places
    legs = Counter(r["leg"] for r in lms if r["night"] == str(LEGS_NIGHT))
    assert legs == {"left": 6, "right": 7, "both": 4, "": 1}
    assert {r["leg"] for r in lms if r["night"] == str(seeded.last_night)} == {""}


def test_json_exports(staff, seeded):
    body = staff.get(f"/patients/{seeded.calm_patient}/nights.json").json()
    assert body["patient"]["pseudonym"] == "P-0002" and len(body["nights"]) == 5
    night = staff.get(f"/devices/dev-b/nights/{seeded.last_night}/summary.json").json()
    assert night["schema"] == "rlsmon.night/1" and night["device_id"] == "dev-b"


def test_unknown_things_are_404_pages(staff):
    response = staff.get("/patients/424242", headers={"accept": "text/html"})
    assert response.status_code == 404 and "Not found" in response.text
    assert staff.get("/devices/dev-a/nights/2001-01-01").status_code == 404
    assert staff.get("/devices/Bad_Id/nights/2001-01-01").status_code == 422


def test_pages_send_protective_headers(staff):
    response = staff.get("/")
    assert response.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_api_docs_are_served_locally(staff):
    html = staff.get("/docs").text
    assert "/api/devices/{device_id}/nights/{night}" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # no CDN, no third party


def test_a_night_with_insufficient_data_shows_no_index_and_stays_off_the_trend(staff, seeded):
    night = seeded.last_night + timedelta(days=1)
    short = seed.make_night("dev-a", night, 0.0, sporadic_per_h=0.0, gap=False)
    short.update(in_bed=[{"start_s": 600.0, "end_s": 2400.0}], time_in_bed_s=1800.0, lm_index=0.0,
                 plm_index=0.0, severity="insufficient_data", clinically_significant=False,
                 min_time_in_bed_s=2880.0)
    db = open_db(seeded.path)
    seed.store(db, short)
    db.conn.close()
    pid = seeded.flagged_patient
    html = staff.get(f"/devices/dev-a/nights/{night}").text
    assert "insufficient data" in html and "band-insufficient" in html and "0.0<small>/h" not in html
    row = _row(staff.get("/").text, "P-0001")
    assert "insufficient data" in row and "&gt; 15/h" not in row
    trend = staff.get(f"/patients/{pid}").text
    assert "insufficient data" in trend
    # The summary's last 7 nights are the 7 scored ones before it, not the 0.0 of this one.
    from server.web import queries

    db = open_db(seeded.path)
    scored = [n["plm_index"] for n in queries.patient_nights(db, pid)
              if n["severity"] != "insufficient_data"][-7:]
    db.conn.close()
    assert f"last 7 eligible nights: mean PLM index <strong>{sum(scored) / 7:.1f}</strong>/h" in trend
    assert f"range {min(scored):.1f}\u2013{max(scored):.1f}" in trend and min(scored) > 0
    # The chart draws the 30 nights before it, not this one: it has no index worth a point.
    from server.web.trend import load_trend

    db = open_db(seeded.path)
    _, _, (series, _, _) = load_trend(db, pid)
    db.conn.close()
    assert len(series) == 30 and night not in [d for d, _ in series]


def _store(seeded, summary) -> None:
    db = open_db(seeded.path)
    seed.store(db, summary)
    db.conn.close()


def test_coverage_agrees_with_the_gaps_beside_it(staff, seeded):
    night = seeded.last_night + timedelta(days=1)
    gaps = [{"start_s": 7200.0, "end_s": 7212.0}, {"start_s": 9000.0, "end_s": 9008.0}]
    _store(seeded, seed.make_night("dev-b", night, 3.0, gaps=gaps))
    stat = staff.get(f"/devices/dev-b/nights/{night}").text.split(">Coverage<")[1].split("</div>")[0]
    assert "99.9 %" in stat and "100 %" not in stat  # 20 s of 8 h: not all of it
    assert "2 gaps, 20 s not recorded" in stat
    full = staff.get(f"/devices/dev-b/nights/{night - timedelta(days=1)}").text
    assert "no gaps" not in full and "1 gap, 7 min not recorded" in full  # seed: one 7-min gap


def test_the_night_legend_names_the_button_only_when_it_was_pressed(staff, seeded):
    night = seeded.last_night + timedelta(days=1)
    summary = seed.make_night("dev-b", night, 3.0)
    summary["markers"] = []
    _store(seeded, summary)
    assert "the patient's button" not in staff.get(f"/devices/dev-b/nights/{night}").text
    assert "the patient's button" in staff.get(f"/devices/dev-b/nights/{seeded.last_night}").text


def test_severity_bands_and_the_15_per_hour_badge_are_explained(staff, seeded):
    for url in ("/", f"/devices/dev-a/nights/{seeded.last_night}",
                f"/patients/{seeded.flagged_patient}"):
        key = staff.get(url).text.split('class="muted small band-key"')[1].split("</p>")[0]
        assert "mild 5–24" in key and "clinical threshold in adults" in key, url


def test_times_carry_their_zone_and_indices_their_unit(staff, seeded):
    html = staff.get("/").text
    assert re.search(r"\d{2} \w{3} \d{4} \d{2}:\d{2} UTC", _row(html, "P-0001"))
    assert "PLM index (/h)" in html
    assert "PLM index (/h)" in staff.get(f"/patients/{seeded.flagged_patient}").text


def test_both_csv_exports_write_yes_no_as_1_0(staff, seeded):
    pid = seeded.flagged_patient
    nights = list(csv.DictReader(io.StringIO(staff.get(f"/patients/{pid}/nights.csv").text)))
    assert {n["clinically_significant"] for n in nights} == {"0", "1"}
    lms = list(csv.DictReader(io.StringIO(staff.get(f"/patients/{pid}/lms.csv").text)))
    assert {r["periodic"] for r in lms} == {"0", "1"} and {r["clm"] for r in lms} <= {"0", "1"}


def test_the_api_docs_show_code_not_backticks(staff):
    html = staff.get("/docs").text
    assert "`" not in html
    assert "<code>Authorization: Bearer &lt;token&gt;</code>" in html


def test_a_wrong_password_keeps_the_username(client):
    page = log_in(client, USER, "not-the-password").text
    assert f'name="username" autocomplete="username" required value="{USER}"' in page
    assert 'autocomplete="current-password" required autofocus' in page


def test_the_side_lists_show_their_first_devices_and_count_the_rest(staff, seeded, monkeypatch):
    from server.web import pages

    monkeypatch.setattr(pages, "SIDE_LIST_SIZE", 0)
    html = staff.get("/").text
    assert "<strong>1</strong> not reporting" in html
    attention = html.split('class="card attention"')[1].split("</section>")[0]
    assert "P-0003" not in attention and "and 1 more, the longest silent first" in attention
    unassigned = html.split('id="unassigned-h"')[1]
    assert "dev-new" not in unassigned and "and 1 more: assign these first" in unassigned


def test_the_list_pages_by_key_forwards_and_back(staff, seeded, monkeypatch):
    from server.web import pages

    monkeypatch.setattr(pages, "PAGE_SIZE", 1)
    first = staff.get("/").text
    assert "page 1 of 3 (3)" in first and "P-0001" in _row(first, "dev-a")
    assert "← previous" not in first
    nxt = re.search(r'href="([^"]*after=dev-a[^"]*)">next', first).group(1).replace("&amp;", "&")
    second = staff.get(nxt).text
    assert "page 2 of 3" in second and "dev-b" in second and "dev-a" not in _rows_of(second)
    prev = re.search(r'href="([^"]*before=dev-b[^"]*)">← previous', second).group(1)
    again = staff.get(prev.replace("&amp;", "&")).text
    assert "page 1 of 3" in again and "dev-a" in _rows_of(again) and "dev-b" not in _rows_of(again)
    # A key that is not in the list (unassigned, or never was), or that ends it, gives the
    # first page.
    for url in ("/?after=dev-new&page=7", "/?after=dev-c&page=4", "/?before=dev-a&page=2"):
        html = staff.get(url).text
        assert "page 1 of 3" in html and "dev-a" in _rows_of(html), url


def _rows_of(html: str) -> str:
    """The patients table alone."""
    return html.split('<table class="patients">')[1].split("</table>")[0]

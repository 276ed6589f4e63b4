"""A real browser against a real server: Debian's headless Chromium drives `rlsmon-server web`.

It logs in, opens the patients list, a night and a trend on a laptop (1280x800) and a phone
(390 px), checks what the charts show (read from their SVG, as drawn), that nothing is wider than
the screen and that chart text stays readable, and saves screenshots (set RLSMON_SCREENSHOTS=dir to
keep them, e.g. docs/screenshots).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from tests.web.conftest import ADMIN_PASSWORD, ADMIN_USER, PASSWORD, USER, seed_db

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_serving(url: str, server: subprocess.Popen, log: Path,
                        timeout_s: float = 60.0) -> None:
    """Poll until the server answers (bounded), failing early if it exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"server exited with {server.returncode}: {log.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)  # a poll interval, not a guess at how long startup takes
    raise AssertionError("server did not start")


@pytest.fixture
def server(tmp_path):
    """`rlsmon-server web` on a free loopback port, on a database seeded as of this morning."""
    seeded = seed_db(tmp_path / "server.db", now=datetime.now(timezone.utc))
    config = tmp_path / "server.toml"
    config.write_text(f'[database]\npath = "{seeded.path}"\n')
    port = _free_port()
    log = tmp_path / "web.log"  # a file, not a pipe: the access log must never fill and block it
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("rlsmon-server")), "web", "--config", str(config),
             "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=out, text=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base + "/login", proc, log)
        yield base, seeded
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def browser():
    """Headless Chromium from Debian (never a downloaded build)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make system-deps` installs it from apt")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync"])
        try:
            yield b
        finally:
            b.close()


def _shots_dir(tmp_path: Path) -> Path:
    keep = os.environ.get("RLSMON_SCREENSHOTS")
    path = Path(keep) if keep else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.timeout(240)
@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}, {"width": 390, "height": 844}],
                         ids=["laptop", "phone"])
def test_staff_log_in_and_read_patients_night_and_trend(server, browser, tmp_path, viewport):
    base, seeded = server
    shots = _shots_dir(tmp_path)
    name = "laptop" if viewport["width"] > 1000 else "phone"
    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(30_000)
    # Nothing may come from outside this server (no CDN): record every request's origin.
    origins: set[str] = set()
    page.on("request", lambda r: origins.add(r.url.split("/")[2]))

    page.goto(base + "/")
    assert page.url.startswith(base + "/login")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")

    # The patients list: flags, severity bands, the device that stopped reporting, unassigned.
    assert page.locator("table.patients tbody tr").count() == 3
    assert page.locator("text=P-0001").first.is_visible()
    assert page.locator(".flag").count() >= 1
    assert page.locator(".attention").get_by_text("P-0003").is_visible()
    assert page.locator("form.assign input[name=pseudonym]").count() == 1
    page.screenshot(path=str(shots / f"patients-{name}.png"), full_page=True)

    # A night, reached by clicking like a user would.
    page.locator("table.patients a", has_text=str(seeded.last_night)).first.click()
    page.wait_for_url(f"**/nights/{seeded.last_night}")
    charts = page.locator("figure.svg svg")
    assert charts.count() == 3
    for i in range(3):
        box = charts.nth(i).bounding_box()
        assert box and box["width"] > 200 and box["height"] > 80  # drawn, not empty
    timeline = page.locator("svg", has=page.locator("title", has_text="Timeline"))
    histogram = page.locator("svg", has=page.locator("title", has_text="inter-movement"))
    # The timeline has a stem per PLM in the table, shaded series, a time scale and the button.
    plms = page.locator("table.lms tbody tr.plm").count()
    assert plms > 0
    assert timeline.locator("path.plm").get_attribute("data-count") == str(plms)
    assert timeline.locator("rect.series").count() > 0
    assert timeline.locator("text.xtick").count() >= 6
    assert timeline.locator("line.marker").count() == 2
    assert histogram.locator("text.bound-label").all_text_contents() == ["10 s", "90 s"]
    # Readable on this screen: chart text at least 8 px tall, and the page no wider than it.
    assert timeline.locator("text.xtick").first.bounding_box()["height"] >= 8
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    assert page.get_by_text("Respiratory-related leg movements are not excluded").first.is_visible()
    page.screenshot(path=str(shots / f"night-{name}.png"), full_page=True)

    # The trend, with the medication and the note drawn on the chart.
    page.locator(".crumbs a", has_text="P-0001").click()
    page.wait_for_url(f"**/patients/{seeded.flagged_patient}")
    trend = page.locator("figure.trend svg")
    assert trend.count() == 1
    assert trend.locator("rect.medication").count() == 1
    assert trend.locator("text.medication-label", has_text="ropinirole 0.25 mg").count() == 1
    assert trend.locator("text.note-label", has_text="restless evenings").count() == 1
    assert trend.locator("circle.night").count() == 30
    assert trend.locator("polyline.mean").count() >= 1
    assert trend.locator("text.legend").all_text_contents() == [
        "PLM index (night)", "7-night mean", "7-night range"]
    assert all(":" not in t for t in trend.locator("text.xtick").all_text_contents())
    # The y label is drawn whole, inside the chart.
    label, chart = trend.locator("text.ylabel").bounding_box(), trend.bounding_box()
    assert label["x"] >= chart["x"] and label["y"] >= chart["y"]
    assert label["y"] + label["height"] <= chart["y"] + chart["height"]
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    page.screenshot(path=str(shots / f"trend-{name}.png"), full_page=True)

    # A note added through the form appears on the chart.
    page.fill("input[name=text]", "iron supplement started")
    page.click(".note-form button[type=submit]")
    page.wait_for_url(f"**/patients/{seeded.flagged_patient}#notes")
    assert page.locator("figure.trend svg text", has_text="iron supplement started").count() >= 1

    assert origins == {base.split("/")[2]}, origins
    page.close()


def _open_after_login(browser, url: str, user: str, password: str):
    """A laptop-sized page that asks for ``url``, is sent to the login and signs in."""
    page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page.set_default_timeout(30_000)
    page.goto(url)
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    return page


@pytest.mark.timeout(240)
def test_an_admin_reads_the_audit_trail_and_cannot_open_a_patient(server, browser, tmp_path):
    base, seeded = server
    page = _open_after_login(browser, base + f"/patients/{seeded.flagged_patient}", ADMIN_USER,
                             ADMIN_PASSWORD)
    # The page it asked for is a clinician's: an admin is refused it.
    page.wait_for_url(f"**/patients/{seeded.flagged_patient}")
    assert page.get_by_text("not open to the admin role").is_visible()
    assert page.locator("figure.svg svg").count() == 0
    page.locator("nav a", has_text="Audit trail").click()
    page.wait_for_url(base + "/admin/audit")
    rows = page.locator("table.audit tbody tr")
    assert rows.first.locator("td").nth(4).inner_text() == "login.success"
    assert rows.first.locator("td").nth(2).inner_text().startswith(ADMIN_USER)
    page.screenshot(path=str(_shots_dir(tmp_path) / "audit-laptop.png"), full_page=True)
    page.close()


@pytest.mark.timeout(240)
def test_a_clinician_reads_the_answer_over_nights_and_prints_the_report(server, browser, tmp_path):
    """The patient page: verdict, quality, medications (one added through the form), regularity;
    then the clinic report through its link, read back with pdftotext."""
    base, seeded = server
    shots = _shots_dir(tmp_path)
    page = _open_after_login(browser, base + f"/patients/{seeded.flagged_patient}", USER, PASSWORD)
    page.wait_for_url(f"**/patients/{seeded.flagged_patient}")

    # The verdict leads, over the 30 eligible nights; every night carries its quality label.
    assert page.locator("#verdict .verdict-line").inner_text().startswith(
        "PLMI above 15/h on 19 of 30 eligible nights")
    assert page.locator("table tbody td span.quality").count() == 30
    # Medications: the seeded ropinirole, its before/after comparison, and a new entry.
    meds = page.locator("#medications")
    assert meds.locator("table.medications tbody tr").first.inner_text().startswith("ropinirole")
    assert meds.locator(".changes li").first.inner_text().startswith(
        "ropinirole 0.25 mg (dopamine agonist) started")
    page.fill(".medication-form input[name=drug]", "ferrous sulfate")
    page.fill(".medication-form input[name=dose]", "325 mg")
    page.select_option(".medication-form select[name=drug_class]", "iron")
    started = seeded.last_night - timedelta(days=3)
    page.fill(".medication-form input[name=started]", started.isoformat())
    page.click(".medication-form button[type=submit]")
    page.wait_for_url(f"**/patients/{seeded.flagged_patient}#medications")
    assert page.locator("figure.trend svg rect.medication").count() == 2
    assert meds.locator("table.medications tbody tr").count() == 2
    # Regularity: the spreads, the SRI on its stated scale, a bed and rise mark per night.
    reg = page.locator("#regularity")
    assert "last 28 nights: 28" in reg.locator("table.regularity").inner_text()
    assert "on a scale of −100 to 100" in reg.locator(".sri").inner_text()
    assert reg.locator("figure.bedtimes svg circle.bedtime").count() == 28
    assert reg.locator("figure.bedtimes svg rect.risetime").count() == 28
    page.screenshot(path=str(shots / "patient-answer-laptop.png"), full_page=True)

    # The report, through its link: one A4 page with the new medication on it.
    with page.expect_download() as download:
        page.click("a.report-link")
    pdf = tmp_path / "report.pdf"
    download.value.save_as(pdf)
    text = subprocess.run(["pdftotext", str(pdf), "-"], check=True, capture_output=True,
                          text=True).stdout
    assert "rlsmon clinic report: P-0001" in text and "ferrous sulfate 325 mg" in text
    subprocess.run(["pdftoppm", "-r", "70", "-png", "-singlefile", str(pdf),
                    str(shots / "report-from-browser")], check=True)
    page.close()

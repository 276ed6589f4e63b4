"""The evening tests on the patient page in real headless Chromium, on a laptop and a phone."""

from __future__ import annotations

import pytest

from tests.web.conftest import PASSWORD, USER
from tests.web.test_browser import browser, server  # noqa: F401 (fixtures)
from tests.web.test_sit_page import seed_sits


@pytest.mark.timeout(240)
@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}, {"width": 390, "height": 844}],
                         ids=["laptop", "phone"])
def test_the_sit_chart_and_table_read_on_any_screen(server, browser, viewport):  # noqa: F811
    base, seeded = server
    seed_sits(seeded.path)
    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(30_000)
    page.goto(base + "/login")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    page.goto(base + f"/patients/{seeded.flagged_patient}")
    section = page.locator("section#sit")
    chart = section.locator("figure.svg svg")
    box = chart.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 40
    assert chart.locator("text.threshold-label").all_text_contents() == ["40/h"]
    assert chart.locator("circle.sit").count() == 1 and chart.locator("text.sit-missing").count() == 1
    assert section.locator("tr.sit-row").count() == 2
    assert section.get_by_text("Montplaisir").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    page.close()

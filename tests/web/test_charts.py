"""Chart helpers and the chart cache."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest

from server.web import charts, trend
from server.web.svg_cache import SvgCache
from server.web.queries import night_summary
from server.db import open_db

D0 = date(2026, 1, 1)


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


def test_charts_render_the_same_from_many_threads():
    nights = [(D0 + timedelta(days=i), float(i % 9)) for i in range(60)]
    notes = [(D0 + timedelta(days=30), "ropinirole 0.25 mg started")]
    with ThreadPoolExecutor(4) as pool:
        svgs = list(pool.map(lambda _: charts.trend_svg(nights, notes), range(8)))
    assert len(set(svgs)) == 1
    assert svgs[0].startswith("<svg") and "ropinirole 0.25 mg started" in svgs[0]
    assert 'width="' not in svgs[0].split(">", 1)[0]  # scales with its container


def test_the_cache_renders_a_key_once_however_many_ask():
    cache = SvgCache(size=2)
    calls = []
    gate = threading.Event()

    def slow_render():
        calls.append(1)
        gate.wait(timeout=10)
        return "svg"

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(cache.get, ("k",), slow_render) for _ in range(4)]
        gate.set()
        assert [f.result(timeout=10) for f in futures] == ["svg"] * 4
    assert len(calls) == 1
    cache.get(("a",), lambda: "a")
    cache.get(("b",), lambda: "b")
    assert not cache.cached(("k",))  # least recently used, evicted


def test_a_failed_render_is_not_cached():
    cache = SvgCache()

    def broken():
        raise ValueError("bad data")

    with pytest.raises(ValueError):
        cache.get(("x",), broken)
    assert cache.get(("x",), lambda: "ok") == "ok"


def test_opening_a_trend_prepares_its_latest_night(app, staff, seeded):
    db = open_db(seeded.path)
    latest = night_summary(db, "dev-a", str(seeded.last_night))
    db.conn.close()
    cache = app.state.web.svg_cache
    assert not cache.cached(("night", latest["summary_id"]))
    staff.get(f"/patients/{seeded.flagged_patient}")
    assert cache.cached(("night", latest["summary_id"]))


def test_new_nights_are_drawn_ahead_in_a_worker_process(seeded, clock):
    from server.web import create_app
    from server.web.warmer import ChartWarmer
    from tests.web import seed

    clock.advance(timedelta(days=2))  # the seeded nights are now older than the look-back
    night = seeded.last_night + timedelta(days=1)
    db = open_db(seeded.path)
    seed.store(db, seed.make_night("dev-b", night, 12.0), received_at=clock.now)
    fresh = night_summary(db, "dev-b", str(night))
    db.conn.close()
    app = create_app(seeded.path, now=clock)
    web = app.state.web
    warmer = ChartWarmer(web)
    try:
        assert warmer.run_once() == 1
        assert web.svg_cache.cached(("night", fresh["summary_id"]))
        # ... and the trend of its patient, which that night changed.
        db = open_db(seeded.path)
        chart_args = trend.load_trend(db, seeded.calm_patient)[2]
        db.conn.close()
        assert web.svg_cache.cached(trend.trend_key(seeded.calm_patient, chart_args))
        assert warmer.run_once() == 0  # nothing new since
        drawn = web.svg_cache.get(("night", fresh["summary_id"]), lambda: None)
        assert drawn == charts.night_charts(fresh["summary"])  # as the page would draw them
    finally:
        warmer.stop()


def test_a_nights_charts_are_drawn_once(staff, seeded):
    url = f"/devices/dev-b/nights/{seeded.last_night}"
    assert staff.get(url).headers["x-chart-cache"] == "miss"
    assert staff.get(url).headers["x-chart-cache"] == "hit"


def test_the_app_runs_the_warmer_for_its_lifetime(seeded, clock):
    import time

    from server.web import create_app
    from tests.web.conftest import TestClient

    db = open_db(seeded.path)
    latest = night_summary(db, "dev-a", str(seeded.last_night))
    db.conn.close()
    app = create_app(seeded.path, now=clock, warm_charts=True)
    key = ("night", latest["summary_id"])
    with TestClient(app):
        deadline = time.monotonic() + 120
        while not app.state.web.svg_cache.cached(key) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a condition, with a bound
        assert app.state.web.svg_cache.cached(key)
    # Leaving the client ran the shutdown: the warmer's thread is gone.
    import threading

    assert "chart-warmer" not in {t.name for t in threading.enumerate()}

"""Draw the charts of newly received nights before anyone opens them.

Nights arrive once a day per device and never change until replaced (a replaced night has a new
summary_id), so each night's charts are drawn once, here, in a separate low-priority process: the
dashboard's own threads stay free for requests and the first view of a night is a cache hit.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta, timezone
from typing import Callable

from server.db import open_db
from server.web import charts
from server.web.deps import WebState
from server.web.trend import load_trend, trend_key

log = logging.getLogger(__name__)
# Nights received this long before the dashboard starts are drawn too (last night's, mostly).
LOOKBACK = timedelta(hours=36)
DRAW_TIMEOUT_S = 120.0  # far above a night's ~0.2 s: only a stuck worker takes this long


def _lower_priority() -> None:
    # Requests in the dashboard's own process come first. Under systemd's
    # SystemCallFilter=~@resources, setpriority() is refused (EPERM): draw at normal priority then.
    try:
        os.nice(10)
    except OSError:
        pass


class ChartWarmer:
    """A thread that polls for new nights and has their charts drawn in a worker process."""

    def __init__(self, web: WebState, interval_s: float = 60.0, batch: int = 100) -> None:
        self._web = web
        self._interval_s = interval_s
        self._batch = batch
        self._since = (web.now() - LOOKBACK).astimezone(timezone.utc).isoformat()
        self._since_rowid = 0
        self._stop = threading.Event()
        self._more = False
        self._thread: threading.Thread | None = None
        # spawn, not fork: the dashboard has threads, and a forked copy of their locks can hang.
        self._pool = ProcessPoolExecutor(max_workers=1, initializer=_lower_priority,
                                         mp_context=multiprocessing.get_context("spawn"))

    def run_once(self) -> int:
        """Draw the charts of nights received since the last pass, and the trends of their
        patients; returns how many nights were drawn."""
        db = open_db(self._web.db_path)
        try:
            # Keyset paging on (received_at, rowid): nights received in the same instant are
            # neither skipped nor drawn twice across batches.
            rows = db.execute(
                "SELECT summary_id, summary_json, received_at, rowid, device_id FROM nights"
                " WHERE received_at > ? OR (received_at = ? AND rowid > ?)"
                " ORDER BY received_at, rowid LIMIT ?",
                [self._since, self._since, self._since_rowid, self._batch]).fetchall()
            patients = {r[0] for r in db.execute(
                "SELECT DISTINCT patient_id FROM devices WHERE patient_id IS NOT NULL AND device_id"
                " IN (SELECT value FROM json_each(?))", [json.dumps([r[4] for r in rows])])}
            trends = [(p, *load_trend(db, p)[2:]) for p in sorted(patients)]
        finally:
            db.conn.close()
        self._more = len(rows) == self._batch
        drawn = 0
        for patient_id, chart_args in trends:
            key = trend_key(patient_id, chart_args)
            if not self._stop.is_set() and not self._web.svg_cache.cached(key):
                self._draw(key, charts.trend_svg, *chart_args)
        for summary_id, summary_json, received_at, rowid, _ in rows:
            if self._stop.is_set():
                break
            key = ("night", summary_id)
            if not self._web.svg_cache.cached(key):
                drawn += self._draw(key, charts.night_charts_from_json, summary_json)
            self._since, self._since_rowid = received_at, rowid
        return drawn

    def _draw(self, key: tuple, chart: Callable[..., object], *args: object) -> bool:
        """Draw one chart in the worker process into the cache; False (logged) when it fails."""
        future = self._pool.submit(chart, *args)
        try:
            self._web.svg_cache.get(key, lambda: future.result(timeout=DRAW_TIMEOUT_S))
            return True
        except Exception as e:  # one bad night must not block the ones after it
            log.warning("could not draw a chart ahead: %s", type(e).__name__)
            return False

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as e:  # optional work: never take the dashboard down with it
                log.warning("drawing the charts of new nights failed: %s", type(e).__name__)
                self._more = False
            if not self._more:  # a full batch means more are waiting: go on at once
                self._stop.wait(self._interval_s)

    def start(self) -> None:
        """Start polling in a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="chart-warmer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and end the worker process."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._pool.shutdown(wait=True, cancel_futures=True)

"""The evening's Suggested Immobilization Test (SIT): offered by the LED, run by the button, scored
from the night's own recording (docs/sit.md).

The state machine of one evening, driven by the clock (`tick`) and the button (`press`):

    (none) ──offer time──▶ offered ──press──▶ running ──length over──▶ ended ──settled──▶ closed
                              │                  └──press (ended early)──┘
                              └──offer_min without a press──▶ not_taken ──▶ closed

offered: the LED pulses slowly and dimly (never bright), at most `[sit] offer_min` (≤ 30 min).
running: the LED is dark. ended: one brief flash. A test ends, then waits `SETTLE_S` for the
detector and the store to hold its last LMs, and its result, scored from the stored night, enters
the outbox in the transaction that closes it; a test not taken is reported as such at once. Every
transition is written to the store before it shows on the LED, so a restart resumes the state;
time the daemon was down is a gap in the test, as in the night.

The SIT lies inside the night window (device/config.py checks it), so the daemon is recording: the
test's LMs and postures are the night's, on the night's timeline.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from typing import Any

from device import __version__
from device.clock import Clock
from device.config import DeviceConfig
from device.detect.sit import not_taken, score_sit
from device.panel import SIT_STARTED as STARTED
from device.store import SitRow, Store, StoredNight
from device.summary import coverage_gaps
from device.uplink import sit_topic
from device.window import window_at

log = logging.getLogger(__name__)

# The detector holds completed events back for up to a 60-s frame and the daemon writes them every
# 60 s (device/daemon.py, HEARTBEAT_S): three minutes after the end, the test's LMs are all stored.
SETTLE_S = 180.0
ENDED = "sit_ended"  # what a press did (and STARTED), for the daemon's log and the panel


class SitRunner:
    """Offers and runs the SIT on the configured evenings. `tick()` is called from the daemon's loop
    (about once a second while recording), `press()` from the button's thread; both are cheap when
    no test is due. `panel` (or None) shows the invitation and the end."""

    def __init__(self, cfg: DeviceConfig, clock: Clock, store: Store, panel: Any = None) -> None:
        self.cfg, self.clock, self.store, self.panel = cfg, clock, store, panel
        self.evenings = set(cfg.sit.evening_dates())
        self.length_s = cfg.sit.length_min * 60.0
        self.offer_s = cfg.sit.offer_min * 60.0
        self.row: SitRow | None = None
        self._lock = threading.Lock()  # tick (the daemon's thread) and press (gpiozero's)

    def offer_at(self, evening: str) -> float:
        """The Unix time the test is offered on `evening`."""
        day = dt.date.fromisoformat(evening)
        if self.cfg.sit.start < self.cfg.night.start:  # after midnight, in the evening's window
            day += dt.timedelta(days=1)
        return dt.datetime.combine(day, dt.time.fromisoformat(self.cfg.sit.start), tzinfo=self.cfg.night.zone).timestamp()

    def _evening_now(self, now: float) -> str | None:
        """The configured evening whose offer-to-settled span holds `now`."""
        for evening in self.evenings:
            offer = self.offer_at(evening)
            if offer <= now < offer + self.offer_s + self.length_s + SETTLE_S:
                return evening
        return None

    def tick(self) -> None:
        """Move the state machine on by the clock: offer, give up on the offer, end the test, send the
        result."""
        with self._lock:
            now = self.clock.wall()
            if self.row is None or self.row.state == "closed":
                evening = self._evening_now(now)
                if evening is None or (self.row is not None and self.row.evening == evening):
                    return
                self.row = self.store.sit(evening)
                if self.row is None:
                    self._set(SitRow(evening, "offered", now))
                    log.info("sit: offered for evening %s", evening)
                elif self.row.state in ("offered", "running"):
                    log.info("sit: %s resumes after a restart", self.row.state)
                if self.row.state == "offered" and self.panel is not None:
                    self.panel.invite()
            row = self.row
            if row.state == "offered" and now >= row.offered_at + self.offer_s:
                self._set(SitRow(row.evening, "not_taken", row.offered_at))
                self._dark()
                log.info("sit: not taken")
            elif row.state == "running" and now >= row.started_at + self.length_s:
                self._set(SitRow(row.evening, "ended", row.offered_at, row.started_at, row.started_at + self.length_s))
                self._flash()
                log.info("sit: the test is over")
            row = self.row
            if row.state == "not_taken" or (row.state == "ended" and now >= row.ended_at + SETTLE_S):
                self._close(row)

    def press(self) -> str | None:
        """The button, pressed: starts an offered test or ends a running one early (returns what it
        did), or None when no test is offered or running (the press is the night's marker)."""
        with self._lock:
            row = self.row
            if row is None or row.state not in ("offered", "running"):
                return None
            now = self.clock.wall()
            if row.state == "offered":
                self._set(SitRow(row.evening, "running", row.offered_at, now))
                self._dark()
                log.info("sit: started")
                return STARTED
            self._set(SitRow(row.evening, "ended", row.offered_at, row.started_at, now, ended_early=True))
            log.info("sit: ended early by the button")
            return ENDED  # the panel answers a press with one flash: the end's flash

    def night_closed(self, night: str) -> None:
        """The night `night` is closing: its evening's test, if any is left, is sent now. One the
        daemon was down for ends as it would have: an offer not taken, a test at its full length."""
        with self._lock:
            row = self.row if self.row is not None and self.row.evening == night else self.store.sit(night)
            if row is None or row.state == "closed":
                return
            if row.state == "offered":
                row = SitRow(row.evening, "not_taken", row.offered_at)
            elif row.state == "running":
                row = SitRow(row.evening, "ended", row.offered_at, row.started_at, row.started_at + self.length_s)
            self.row = row
            self._close(row)

    # --- inside the lock ---------------------------------------------------------------------
    def _set(self, row: SitRow) -> None:
        self.store.put_sit(row)  # committed before the LED shows it
        self.row = row

    def _dark(self) -> None:
        if self.panel is not None:
            self.panel.end_invite()

    def _flash(self) -> None:
        if self.panel is not None:
            self.panel.flash()

    def _close(self, row: SitRow) -> None:
        window = window_at(row.offered_at, self.cfg.night)
        generated = dt.datetime.fromtimestamp(self.clock.wall(), dt.timezone.utc)

        def build(stored: StoredNight | None) -> tuple[str, dict]:
            return sit_topic(self.cfg.device_id), self.result(row, stored, window.start.timestamp(), generated)

        try:
            summary_id = self.store.close_sit(row, window.night, build, generated.isoformat())
        except Exception:
            log.exception("sit: the result could not be built; it is tried again")
            return
        self.row = SitRow(row.evening, "closed", row.offered_at, row.started_at, row.ended_at, row.ended_early)
        if summary_id is not None:
            log.info("sit: the result waits in the outbox")

    def result(self, row: SitRow, stored: StoredNight | None, night_start: float,
               generated: dt.datetime) -> dict[str, Any]:
        """The published `rlsmon.sit/1` result of `row`, scored from the stored night (docs/sit.md)."""
        if row.state == "not_taken":
            core = not_taken(self.length_s)
        else:
            start_s, end_s = row.started_at - night_start, row.ended_at - night_start
            if stored is None:  # nothing recorded: the whole test is a gap
                legs: list[list] = [[]]
                postures: list = []
                gaps = coverage_gaps([], [], end_s)
            else:
                legs_n = int(stored.info.sensor.get("legs", 1))
                legs = [[m for m in stored.movements if m.leg == k] for k in range(legs_n)]
                postures = stored.postures
                gaps = coverage_gaps(stored.segments, stored.gaps, max(end_s, stored.info.duration_s))
            core = score_sit(legs, postures, gaps, start_s, end_s, self.length_s, row.ended_early)

        def iso(t: float | None) -> str | None:
            return None if t is None else dt.datetime.fromtimestamp(t, self.cfg.night.zone).isoformat()

        return {
            **core,
            "device_id": self.cfg.device_id,
            "evening": row.evening,
            "summary_id": str(uuid.uuid4()),
            "generated_at": generated.astimezone(dt.timezone.utc).isoformat(),
            "offered_at": iso(row.offered_at),
            "started_at": iso(row.started_at),
            "ended_at": iso(row.ended_at),
            "timezone": self.cfg.night.timezone,
            "software_version": __version__,
        }


def sit_runner(cfg: DeviceConfig, clock: Clock, store: Store, panel: Any = None) -> SitRunner | None:
    """The SIT runner when `[sit]` offers a test on some evening, else None."""
    return SitRunner(cfg, clock, store, panel) if cfg.sit.evening_dates() else None

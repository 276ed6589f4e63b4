"""The daemon's pieces: the night window across midnight and DST, gaps from segments, axes, log lines,
and the button marking lights off/on during an emulated night (MockFactory pins)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

import numpy as np
import pytest

from device.clock import FastForwardClock, VirtualClock
from device.config import NightConfig, parse_config
from device.daemon import Daemon, JournalFormatter
from device.detect.events import Interval
from device.samples import SampleBlock
from device.sensor.emulated import EmulatedNights
from device.sensor.legs import remap_axes
from device.store import Segment
from device.summary import coverage_gaps
from device.window import window_at

BERLIN = NightConfig("20:00", "10:00", "Europe/Berlin")


def ts(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def test_window_across_midnight_is_named_for_the_evening():
    w = window_at(ts("2026-03-02T03:00:00+01:00"), BERLIN)
    assert w.night == "2026-03-01"
    assert w.start.isoformat() == "2026-03-01T20:00:00+01:00" and w.end.isoformat() == "2026-03-02T10:00:00+01:00"
    assert w.duration_s == 14 * 3600


def test_between_windows_the_next_one_is_returned():
    w = window_at(ts("2026-03-02T12:00:00+01:00"), BERLIN)
    assert w.night == "2026-03-02" and w.start.timestamp() > ts("2026-03-02T12:00:00+01:00")


def test_dst_spring_forward_night_is_an_hour_shorter():
    # Europe/Berlin moves from +01:00 to +02:00 at 02:00 on 2026-03-29
    w = window_at(ts("2026-03-28T23:00:00+01:00"), BERLIN)
    assert w.night == "2026-03-28" and w.duration_s == 13 * 3600
    assert w.end.isoformat() == "2026-03-29T10:00:00+02:00"


def test_same_day_window():
    w = window_at(ts("2026-03-02T13:30:00+00:00"), NightConfig("13:00", "14:00", "UTC"))
    assert w.night == "2026-03-02" and w.t_s(ts("2026-03-02T13:30:00+00:00")) == 1800


def test_coverage_gaps_are_the_complement_of_segments_plus_detector_gaps():
    segs = [Segment(10.0, 100.0, 1), Segment(160.0, 300.0, 1)]
    gaps = coverage_gaps(segs, [Interval(50.0, 55.0), Interval(95.0, 120.0)], 400.0)
    assert gaps == [Interval(0.0, 10.0), Interval(50.0, 55.0), Interval(95.0, 160.0), Interval(300.0, 400.0)]
    assert coverage_gaps([], [], 60.0) == [Interval(0.0, 60.0)]


def test_remap_axes_turns_a_mounting_into_the_shin_frame():
    a = np.array([[1.0, 2.0, 3.0]])
    block = SampleBlock(np.array([0.0]), a, a * 10, 52.0)
    out = remap_axes(block, ["-y", "+x", "+z"])
    assert out.accel_g.tolist() == [[-2.0, 1.0, 3.0]] and out.gyro_dps.tolist() == [[-20.0, 10.0, 30.0]]


def test_log_lines_carry_syslog_priorities():
    fmt = JournalFormatter("%(message)s")
    rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "one\ntwo", None, None)
    assert fmt.format(rec) == "<3>one\n<3>two"
    rec = logging.LogRecord("x", logging.WARNING, __file__, 1, "w", None, None)
    assert fmt.format(rec) == "<4>w"


def _offline_config(tmp_path, start: str, end: str):
    """A Berlin night window from `start` to `end`, with no broker to reach."""
    return parse_config(f"""device_id = "dev-a"
data_dir = "{tmp_path / 'data'}"
[night]
start = "{start}"
end = "{end}"
timezone = "Europe/Berlin"
[broker]
port = 1
ca_file = "{tmp_path / 'none.pem'}"
password_file = "{tmp_path / 'none'}"
""")


@pytest.mark.timeout(120)
def test_button_marks_lights_off_and_on_into_the_night(tmp_path, night_recording):
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    rec, _ = night_recording
    Device.pin_factory = MockFactory()
    cfg = _offline_config(tmp_path, "22:00", "22:20")
    clock = FastForwardClock(50.0, ts("2026-03-01T21:00:00+01:00"))
    daemon = Daemon(cfg, clock, EmulatedNights(cfg, clock, (str(rec),)), clock_synced=lambda: True)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while daemon.night is None:
            assert time.monotonic() < deadline and thread.is_alive(), "the night never started"
            time.sleep(0.02)
        button = Device.pin_factory.pin(cfg.gpio.button_pin)
        led = Device.pin_factory.pin(cfg.gpio.led_pin)
        kinds = []
        for _ in range(2):
            n_before = len(daemon.store.call(lambda db: list(db["markers"].rows)))
            button.drive_low()
            button.drive_high()
            while len(rows := daemon.store.call(lambda db: list(db["markers"].rows))) == n_before:
                assert time.monotonic() < deadline, "the press was not recorded"
                time.sleep(0.02)
            kinds.append(rows[-1]["kind"])
        assert kinds == ["lights_off", "lights_on"]
        assert rows[0]["night"] == "2026-03-01" and 0 <= rows[0]["t_s"] <= rows[1]["t_s"] <= 1200
        assert any(s.state for s in led.states)  # the confirmation flash
    finally:
        daemon.request_stop()
        thread.join(30)
        Device.pin_factory.reset()
        Device.pin_factory = None
    assert not thread.is_alive()


def test_the_detector_reports_its_unfinished_posture():
    from device.detect import LegDetector

    odr_hz, n = 52.0, int(52 * 180)
    t = np.arange(n) / odr_hz
    lying = SampleBlock(t, np.tile([0.0, 0.0, 1.0], (n, 1)), np.zeros((n, 3)), odr_hz)  # on the back, still
    det = LegDetector(odr_hz=odr_hz)
    det.feed(lying)
    posture = det.open_posture()
    assert posture is not None and posture.posture == "lying"
    assert posture.start_s <= 60.0 and posture.end_s >= 60.0


def test_a_night_with_no_data_still_gets_a_valid_summary():
    import json

    from device.summary import build_summary
    from device.store import NightInfo, StoredNight
    from server.model import NightSummary

    info = NightInfo("2026-03-01", "2026-03-01T22:00:00+01:00", "2026-03-01T22:20:00+01:00", "Europe/Berlin",
                     1200.0, False, "WASM2016", {"chip": "LSM6DSOX", "who_am_i": 0x6C, "driver": "fifo", "legs": 1,
                                                 "odr_hz": 52.0, "accel_fs_g": 4.0, "gyro_fs_dps": 500.0})
    summary = build_summary(StoredNight(info, [], [], [], [], []), "dev-a", dt.datetime.now(dt.timezone.utc))
    NightSummary.model_validate_json(json.dumps(summary))
    assert summary["coverage"]["gaps"] == [{"start_s": 0.0, "end_s": 1200.0}]
    assert summary["lm_count"] == 0 and summary["sensor"]["odr_measured_hz"] is None


@pytest.mark.parametrize("legs, sides, expected", [
    (2, ["left", "right"], ["left", "right", "both"]),
    (1, ["right"], ["right", "right"]),
    (1, [None], [None, None]),
    (1, None, [None, None]),  # a night stored before the side was kept: unknown
])
def test_each_lm_says_the_leg_the_config_named(legs, sides, expected):
    """The side (`[sensor] side`, or left then right for two sensors) is kept with the stored
    night, and each LM of its summary says its leg; the sensor metadata stays as it was."""
    import json

    from device.detect.events import LegMovement, PostureSegment
    from device.store import NightInfo, Segment, StoredNight
    from device.summary import build_summary
    from server.model import NightSummary

    sensor = {"chip": "LSM6DSOX", "who_am_i": 0x6C, "driver": "fifo", "legs": legs, "odr_hz": 52.0,
              "accel_fs_g": 4.0, "gyro_fs_dps": 500.0, **({"sides": sides} if sides else {})}
    info = NightInfo("2026-03-01", "2026-03-01T22:00:00+01:00", "2026-03-01T22:20:00+01:00", "Europe/Berlin",
                     1200.0, True, "WASM2016", sensor)
    moves = ([LegMovement(100, 102, 0), LegMovement(300, 302, 1), LegMovement(500, 502, 0),
              LegMovement(500.2, 502.5, 1)] if legs == 2 else [LegMovement(100, 102, 0), LegMovement(300, 302, 0)])
    stored = StoredNight(info, [Segment(0.0, 1200.0, 1200 * 52 * legs)], [], moves,
                         [PostureSegment(0.0, 1200.0, "lying")], [])
    summary = build_summary(stored, "dev-a", dt.datetime.now(dt.timezone.utc))
    NightSummary.model_validate_json(json.dumps(summary))
    assert [lm.get("leg") for lm in summary["lm_events"]] == expected
    assert "sides" not in summary["sensor"]


class _CountingClock(VirtualClock):
    """A virtual clock that counts the daemon loop's sleeps and stops it after `hours` of them."""

    def __init__(self, start_wall: float, hours: float) -> None:
        super().__init__(start_wall)
        self.loop_thread = threading.current_thread()
        self.stop: threading.Event | None = None
        self.until_s = hours * 3600.0
        self.sleeps: list[float] = []

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        if threading.current_thread() is not self.loop_thread:
            return super().wait(event, timeout_s)  # the start-up probe's reader
        self.sleeps.append(timeout_s)
        woke = super().wait(event, timeout_s)
        if self.monotonic() >= self.until_s and self.stop is not None:
            self.stop.set()
        return woke


@pytest.mark.parametrize("watchdog_usec, tick_s", [(None, 60.0), ("90000000", 45.0)])
def test_the_idle_daemon_wakes_for_deadlines_not_on_a_short_tick(tmp_path, night_recording, monkeypatch,
                                                                  watchdog_usec, tick_s):
    """Between nights, without a fault, the loop sleeps until the wall clock is worth another look
    (once a minute) or the systemd watchdog wants its ping (half of WatchdogSec), not every few
    seconds."""
    from device.notify import Notifier

    if watchdog_usec is None:
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_USEC", watchdog_usec)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    rec, _ = night_recording
    cfg = _offline_config(tmp_path, "22:00", "06:00")
    clock = _CountingClock(ts("2026-03-01T09:00:00+01:00"), hours=2.0)
    daemon = Daemon(cfg, clock, EmulatedNights(cfg, clock, (str(rec),)), notifier=Notifier(""),
                    clock_synced=lambda: True, panel=False)
    clock.stop = daemon.stop_requested
    assert daemon.run() == 0
    assert daemon.night is None and clock.wall() < ts("2026-03-01T22:00:00+01:00")
    assert len(clock.sleeps) <= 2 * 3600 / tick_s + 2  # a 5-s tick made 1440 of them
    assert all(s == tick_s for s in clock.sleeps[1:-1])

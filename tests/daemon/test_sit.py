"""The evening test (SIT) through the daemon's button routing, the panel on gpiozero's MockFactory
with PWM pins, the virtual clock and a real night store: offered, taken, ended, ended early, not
taken, stood up; and the LED's night behaviour left as it was."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from device.clock import VirtualClock
from device.config import parse_config
from device.daemon import Daemon
from device.detect.events import LegMovement, PostureSegment
from device.panel import INVITE_PEAK, Panel, PanelStatus
from device.sit import SETTLE_S
from device.store import LegEvents, NightInfo, Progress
from device.window import window_at
from tests.daemon.test_panel import led_on_count, settle, wait_for

EVENING = "2026-03-01"
SENSOR = {"chip": "LSM6DSOX", "who_am_i": 0x6C, "driver": "fifo", "legs": 1, "odr_hz": 52.0,
          "accel_fs_g": 4.0, "gyro_fs_dps": 500.0}
OFFER = dt.datetime(2026, 3, 1, 21, 0, tzinfo=dt.timezone.utc).timestamp()


@pytest.fixture
def pwm_factory():
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    Device.pin_factory = MockFactory(pin_class=MockPWMPin)
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = None


@pytest.fixture
def rig(pwm_factory, tmp_path):
    """A daemon (not running its loop) with its store started and a panel on mock pins, at 20:59."""
    cfg = parse_config(f'device_id = "dev-a"\ndata_dir = "{tmp_path}"\n[night]\nstart = "20:00"\nend = "08:00"\n'
                       f'[sit]\nfirst_evening = "{EVENING}"\nevenings = 2\nstart = "21:00"\n')
    clock = VirtualClock(start_wall=OFFER - 60.0)
    daemon = Daemon(cfg, clock, open_sensor=None, panel=False)
    daemon.store.start()
    panel = Panel(cfg.gpio, clock, daemon._on_button, lambda: PanelStatus(True, False, 0), hold_time_s=5.0)
    panel.start()
    daemon.sit.panel = panel
    yield daemon, clock, panel, pwm_factory.pin(cfg.gpio.button_pin), pwm_factory.pin(cfg.gpio.led_pin)
    panel.close()
    daemon.store.close()


def press(button) -> None:
    button.drive_low()
    button.drive_high()


def flashes(led) -> int:
    """Full-brightness flashes on the LED pin (the invitation never gets near 1)."""
    states = [s.state for s in led.states]
    return sum(1 for a, b in zip(states, states[1:]) if a < 0.5 <= b)


def results(daemon) -> list[tuple[str, dict]]:
    return daemon.store.call(lambda db: [(r["topic"], json.loads(r["payload"])) for r in db.query(
        "select topic, payload from outbox order by id")])


def start_test(daemon, clock, button) -> None:
    """21:00: the test is offered, and the patient presses to start it."""
    clock.advance(60.0)
    daemon.sit.tick()
    press(button)
    wait_for(lambda: daemon.sit.row.state == "running")


def record(daemon, clock, postures, movements) -> None:
    """Store a recorded segment of the night over the test, as the daemon's loop would."""
    window = window_at(clock.wall(), daemon.cfg.night)
    daemon.store.open_night(NightInfo(window.night, window.start.isoformat(), window.end.isoformat(), "UTC",
                                      window.duration_s, True, "WASM2016", SENSOR), "now")
    seg = daemon.store.begin_segment(window.night, 0.0)
    daemon.store.save_progress(Progress(window.night, seg, window.duration_s, 1000,
                                        [LegEvents(0, movements, postures)], final=True))
    daemon.store.flush()


def test_offered_taken_and_over(rig):
    daemon, clock, panel, button, led = rig
    daemon.sit.tick()
    assert daemon.sit.row is None and led.state == 0  # not yet 21:00
    clock.advance(60.0)
    daemon.sit.tick()
    assert daemon.store.sit(EVENING).state == "offered"
    wait_for(lambda: len({s.state for s in led.states}) > 5)  # it pulses …
    assert max(s.state for s in led.states) <= INVITE_PEAK  # … and is never bright
    press(button)
    wait_for(lambda: daemon.sit.row.state == "running")
    wait_for(lambda: led.state == 0 and panel.led.source is None)  # dark, no flash
    assert flashes(led) == 0
    clock.advance(3599.0)
    daemon.sit.tick()
    assert daemon.sit.row.state == "running" and flashes(led) == 0
    clock.advance(1.0)
    daemon.sit.tick()
    settle(panel)
    assert daemon.sit.row.state == "ended" and flashes(led) == 1  # one brief flash at the end
    assert results(daemon) == []  # it waits for its last LMs to be stored
    clock.advance(SETTLE_S)
    daemon.sit.tick()
    [(topic, result)] = results(daemon)
    assert topic == "rlsmon/v1/dev-a/sit"
    assert result["schema"] == "rlsmon.sit/1" and result["evening"] == EVENING
    assert result["taken"] and not result["ended_early"] and result["duration_s"] == 3600.0
    assert result["gap_s"] == 3600.0 and result["plm_index"] is None  # nothing was recorded here
    daemon.sit.tick()
    assert len(results(daemon)) == 1 and flashes(led) == 1


def test_a_press_during_the_test_ends_it_early(rig):
    daemon, clock, panel, button, led = rig
    start_test(daemon, clock, button)
    clock.advance(900.0)
    press(button)
    wait_for(lambda: daemon.sit.row.state == "ended")
    wait_for(lambda: flashes(led) == 1)
    settle(panel)
    clock.advance(SETTLE_S)
    daemon.sit.tick()
    [(_, result)] = results(daemon)
    assert result["ended_early"] and result["duration_s"] == 900.0
    assert len(result["blocks"]) == 2
    # The next press is the night's again (a marker; here, outside a recorded night, ignored).
    assert daemon._on_button() is None


def test_not_pressed_is_not_taken(rig):
    daemon, clock, panel, button, led = rig
    clock.advance(60.0)
    daemon.sit.tick()
    clock.advance(29 * 60.0)
    daemon.sit.tick()
    assert daemon.sit.row.state == "offered"
    clock.advance(60.0)
    daemon.sit.tick()
    wait_for(lambda: led.state == 0 and panel.led.source is None)
    [(_, result)] = results(daemon)
    assert result["taken"] is False and result["plm_index"] is None and result["started_at"] is None
    assert flashes(led) == 0


def test_time_stood_up_is_excluded(rig):
    daemon, clock, panel, button, led = rig
    start_test(daemon, clock, button)
    start_s = window_at(clock.wall(), daemon.cfg.night).t_s(clock.wall())
    # Lying through the test but for 10 min upright (he stood up) 20–30 min in; LMs every 15 s
    # for the first 10 min (40 of them: one series, 40 PLMs).
    postures = [PostureSegment(0.0, start_s + 1200.0, "lying"),
                PostureSegment(start_s + 1200.0, start_s + 1800.0, "upright"),
                PostureSegment(start_s + 1800.0, start_s + 7200.0, "lying")]
    moves = [LegMovement(start_s + 30.0 + 15 * k, start_s + 32.0 + 15 * k) for k in range(40)]
    moves += [LegMovement(start_s + 1300.0 + 15 * k, start_s + 1302.0 + 15 * k) for k in range(4)]  # while up
    record(daemon, clock, postures, moves)
    clock.advance(3600.0 + SETTLE_S)
    daemon.sit.tick()
    daemon.sit.tick()
    [(_, result)] = results(daemon)
    assert result["not_horizontal_s"] == 600.0 and result["scored_s"] == 3000.0
    assert result["excluded"] == [{"start_s": 1200.0, "end_s": 1800.0, "reason": "not_horizontal"}]
    assert result["lm_count"] == 40 and result["plm_count"] == 40
    assert result["plm_index"] == 48.0 and result["above_threshold"] is True  # 40 / (50/60) h
    assert [b["scored_s"] for b in result["blocks"]] == [600.0, 600.0, 0.0, 600.0, 600.0, 600.0]


def test_a_restart_resumes_the_running_test(rig, tmp_path):
    daemon, clock, panel, button, led = rig
    start_test(daemon, clock, button)
    from device.sit import SitRunner

    again = SitRunner(daemon.cfg, clock, daemon.store)  # a new process: only the store remembers
    clock.advance(600.0)
    again.tick()
    assert again.row.state == "running"
    clock.advance(3000.0 + SETTLE_S)
    again.tick()
    again.tick()
    [(_, result)] = results(daemon)
    assert result["duration_s"] == 3600.0


def test_a_test_left_open_is_sent_when_its_night_closes(rig):
    daemon, clock, panel, button, led = rig
    clock.advance(60.0)
    daemon.sit.tick()  # offered, then the daemon is down past the offer
    from device.sit import SitRunner

    clock.advance(12 * 3600.0)
    SitRunner(daemon.cfg, clock, daemon.store).night_closed(EVENING)
    [(_, result)] = results(daemon)
    assert result["taken"] is False


def test_the_night_led_is_unchanged_on_a_pwm_pin(rig):
    """Outside the test a press is the night's marker with its one full flash, as on a plain LED."""
    daemon, clock, panel, button, led = rig
    daemon.night = window_at(clock.wall(), daemon.cfg.night)
    w = daemon.night
    daemon.store.open_night(NightInfo(w.night, w.start.isoformat(), w.end.isoformat(), "UTC", w.duration_s,
                                      True, "WASM2016", {}), "now")
    press(button)
    wait_for(lambda: led_on_count(led) == 1)
    settle(panel)
    assert [s.state for s in led.states][-2:] == [1.0, 0.0]
    assert daemon.store.call(lambda db: [r["kind"] for r in db.query("select kind from markers")]) == ["lights_off"]


def test_the_test_hour_is_not_the_nights_time_in_bed(rig):
    """A PSG's SIT precedes lights off: the night's indices leave the evening test's hour out."""
    daemon, clock, panel, button, led = rig
    start_test(daemon, clock, button)
    window = window_at(clock.wall(), daemon.cfg.night)
    start_s = window.t_s(clock.wall())
    record(daemon, clock, [PostureSegment(0.0, window.duration_s, "lying")], [])
    clock.advance(3600.0 + SETTLE_S)
    daemon.sit.tick()
    daemon._close_night(window.night)
    [summary] = [payload for topic, payload in results(daemon) if topic.endswith("/summary")]
    assert summary["in_bed"] == [{"start_s": 0.0, "end_s": round(start_s, 3)},
                                 {"start_s": round(start_s + 3600.0, 3), "end_s": window.duration_s}]
    assert summary["time_in_bed_s"] == window.duration_s - 3600.0
    assert any("evening test" in c for c in summary["caveats"])
    from server.model import NightSummary

    NightSummary.model_validate_json(json.dumps(summary))  # and the collector accepts it

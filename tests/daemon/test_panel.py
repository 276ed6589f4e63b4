"""The panel with gpiozero's MockFactory pins: the button, the LED codes and quiet nights."""

from __future__ import annotations

import threading
import time

import pytest

from device.clock import VirtualClock
from device.config import GpioConfig
from device.panel import CODE_FAULT, CODE_WAITING, Panel, PanelStatus, int1_input, status_code

GPIO = GpioConfig(button_pin=17, led_pin=27)


@pytest.fixture
def factory():
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    Device.pin_factory = MockFactory()
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = None


def wait_for(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def led_on_count(pin) -> int:
    """How many times the LED was switched on, from the mock pin's state history."""
    states = [s.state for s in pin.states]
    return sum(1 for a, b in zip(states, states[1:]) if not a and b)


def make_panel(factory, clock, presses, status=PanelStatus(True, False, 0)):
    def on_press():
        presses.append("press")
        return "lights_off" if len(presses) % 2 else "lights_on"

    panel = Panel(GPIO, clock, on_press, lambda: status, hold_time_s=0.3)
    panel.start()
    return panel, factory.pin(GPIO.button_pin), factory.pin(GPIO.led_pin)


def settle(panel):
    """Wait for a background blink to finish."""
    wait_for(lambda: panel.led._blink_thread is None or not panel.led._blink_thread.is_alive())


def test_short_press_marks_and_flashes_once(factory):
    presses: list[str] = []
    panel, button, led = make_panel(factory, VirtualClock(), presses)
    button.drive_low()
    button.drive_high()
    wait_for(lambda: led_on_count(led) == 1)
    settle(panel)
    assert presses == ["press"] and not led.state
    assert led_on_count(led) == 1
    panel.close()


def test_long_press_shows_status_without_marking(factory):
    presses: list[str] = []
    panel, button, led = make_panel(factory, VirtualClock(), presses, PanelStatus(True, False, 2))
    button.drive_low()
    wait_for(lambda: led_on_count(led) >= 1, timeout_s=5)
    button.drive_high()
    settle(panel)
    assert presses == []
    assert led_on_count(led) == CODE_WAITING
    panel.close()


def test_the_panel_runs_no_thread_between_presses(factory):
    """Nothing wakes for the button until it is pressed: no polling thread (gpiozero's Button has
    one that wakes ten times a second), and the hold timer is gone once the press ends."""
    before = set(threading.enumerate())
    presses: list[str] = []
    panel, button, led = make_panel(factory, VirtualClock(), presses)
    assert set(threading.enumerate()) == before
    button.drive_low()
    assert len(set(threading.enumerate()) - before) == 1  # the one-shot hold timer
    button.drive_high()
    wait_for(lambda: led_on_count(led) == 1)
    settle(panel)
    wait_for(lambda: set(threading.enumerate()) == before)
    assert presses == ["press"]
    panel.close()


def test_led_stays_dark_unless_fault_and_at_most_once_a_minute(factory):
    clock = VirtualClock()
    panel, button, led = make_panel(factory, clock, [])
    assert not panel.fault_tick(False)
    assert panel.fault_tick(True)
    settle(panel)
    clock.advance(59.0)
    assert not panel.fault_tick(True)
    clock.advance(1.0)
    assert panel.fault_tick(True)
    settle(panel)
    assert led_on_count(led) == 2 * CODE_FAULT
    panel.close()


def test_status_code_priorities():
    assert status_code(PanelStatus(True, True, 3)) == CODE_FAULT
    assert status_code(PanelStatus(True, False, 3)) == CODE_WAITING


def test_int1_is_an_input_on_the_configured_pin(factory):
    line = int1_input(24)
    pin = factory.pin(24)
    pin.drive_high()
    assert line.wait_for_active(1)
    pin.drive_low()
    assert line.wait_for_inactive(1)
    line.close()

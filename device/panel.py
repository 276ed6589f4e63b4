"""The patient's panel through gpiozero: the button, the status LED and the sensor's INT1 line.

A short press marks lights-off, then lights-on; the LED answers with one brief flash. A long press
shows the status as a number of blinks. The LED is otherwise dark all night: a bedroom light keeps
people awake, so the only unprompted light is the fault code, at most once a minute.

On an evening with a Suggested Immobilization Test (device/sit.py) the LED also invites: a slow,
dim pulse (`invite()`, at most INVITE_PEAK of full brightness) until the patient presses or the
offer runs out; the press that starts the test leaves the LED dark, and the end is one flash. The
LED is a PWMLED where the pin can do PWM (lgpio on a Pi does, in software); on a pin that cannot,
it is a plain LED and the pulse is a brief blink every INVITE_PERIOD_S, dim by its short duty.

gpiozero is imported here only, inside functions: tests hand in `MockFactory` pins
(`Device.pin_factory = MockFactory()`), the Pi uses lgpio.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from device.clock import Clock
from device.config import GpioConfig

log = logging.getLogger(__name__)

FLASH_S = 0.08  # the press confirmation: brief enough not to dazzle dark-adapted eyes
FAULT_EVERY_S = 60.0  # the fault code repeats at most once a minute
# Status blink codes (count of blinks), most urgent first.
CODE_FAULT = 3
CODE_WAITING = 2
CODE_RECORDING = 1
CODE_IDLE = 4
# The SIT's invitation: a slow breath-like pulse that never gets bright (the patient may be resting
# in a dark room). The peak is a duty cycle; the source steps every INVITE_STEP_S.
INVITE_PEAK = 0.08
INVITE_PERIOD_S = 4.0
INVITE_STEP_S = 0.1
SIT_STARTED = "sit_started"  # a press that starts the SIT: the LED answers by going dark, not a flash


def invite_levels(pwm: bool) -> list[float]:
    """One period of the invitation: a raised-cosine pulse up to INVITE_PEAK on a PWM pin; on a
    plain pin, one step (INVITE_STEP_S) on in the period."""
    steps = round(INVITE_PERIOD_S / INVITE_STEP_S)
    if not pwm:
        return [1.0] + [0.0] * (steps - 1)
    return [round(INVITE_PEAK * (1 - math.cos(2 * math.pi * k / steps)) / 2, 4) for k in range(steps)]


@dataclass(frozen=True)
class PanelStatus:
    """What a long press reports."""

    recording: bool
    sensor_fault: bool
    summaries_waiting: int


def status_code(status: PanelStatus) -> int:
    """The blink count for `status`: fault 3, summaries waiting 2, recording 1, idle 4."""
    if status.sensor_fault:
        return CODE_FAULT
    if status.summaries_waiting:
        return CODE_WAITING
    return CODE_RECORDING if status.recording else CODE_IDLE


class Panel:
    """The button and the LED. `on_press()` records a marker and returns its kind (None if it could
    not be recorded); `status()` reports for a long press."""

    def __init__(self, gpio: GpioConfig, clock: Clock, on_press: Callable[[], str | None],
                 status: Callable[[], PanelStatus], hold_time_s: float = 2.0) -> None:
        self.gpio, self.clock = gpio, clock
        self.on_press, self.status = on_press, status
        self.hold_time_s = hold_time_s
        self.button: Any = None
        self.led: Any = None
        self._held = False
        self._hold_timer: threading.Timer | None = None
        self._press_lock = threading.Lock()  # the press edges and the hold timer
        self._last_fault_s: float | None = None
        self._lock = threading.Lock()
        self._pwm = False
        self._inviting = False

    def start(self) -> None:
        """Claim the pins."""
        from gpiozero import LED, PWMLED, DigitalInputDevice
        from gpiozero.exc import PinPWMUnsupported

        try:
            self.led = PWMLED(self.gpio.led_pin, initial_value=0.0)
            self._pwm = True
        except PinPWMUnsupported:
            self.led = LED(self.gpio.led_pin, initial_value=False)
            self._pwm = False
        # Not gpiozero's Button: its hold thread wakes ten times a second, all night, to watch for
        # a hold. The press's own edges start and cancel a one-shot timer instead.
        self.button = DigitalInputDevice(self.gpio.button_pin, pull_up=True, bounce_time=0.02)
        self.button.when_activated = self._on_pressed
        self.button.when_deactivated = self._on_released

    def close(self) -> None:
        """Release the pins, LED off."""
        with self._press_lock:
            if self._hold_timer is not None:
                self._hold_timer.cancel()
        for device in (self.button, self.led):
            if device is not None:
                device.close()

    def _blink(self, count: int, on_s: float, off_s: float) -> None:
        with self._lock:
            self.led.blink(on_time=on_s, off_time=off_s, n=count, background=True)

    def invite(self) -> None:
        """Start the SIT's invitation: the slow, dim pulse, until `end_invite()`."""
        with self._lock:
            self._inviting = True
            self.led.source_delay = INVITE_STEP_S
            self.led.source = itertools.cycle(invite_levels(self._pwm))

    def end_invite(self) -> None:
        """Stop the invitation: the LED dark."""
        with self._lock:
            self._inviting = False
            self.led.source = None
            self.led.off()

    def flash(self) -> None:
        """One brief flash: the SIT is over."""
        self._blink(1, FLASH_S, 0.0)

    def _on_pressed(self) -> None:
        with self._press_lock:
            self._held = False
            if self._hold_timer is not None:
                self._hold_timer.cancel()
            # Real time, as a finger holds the button: it wakes once, hold_time_s after the press.
            self._hold_timer = threading.Timer(self.hold_time_s, self._on_held)
            self._hold_timer.daemon = True
            self._hold_timer.start()

    def _on_held(self) -> None:
        with self._press_lock:
            if threading.current_thread() is not self._hold_timer or not self.button.is_active:
                return  # released just as the timer fired: a short press
            self._held = True
        try:
            self._blink(status_code(self.status()), 0.3, 0.4)
        except Exception:
            log.exception("panel: could not show the status")

    def _on_released(self) -> None:
        with self._press_lock:
            if self._hold_timer is not None:
                self._hold_timer.cancel()
                self._hold_timer = None
            held, self._held = self._held, False
        if held:  # the end of a long press, not a marker
            return
        try:
            kind = self.on_press()
        except Exception:
            log.exception("panel: could not record the button press")
            kind = None
        if kind is not None and kind != SIT_STARTED:
            self.flash()

    def fault_tick(self, fault: bool) -> bool:
        """Called by the daemon's loop: show the fault code when `fault`, at most once a minute.
        True when it blinked."""
        if not fault or self.led is None or self._inviting:  # the code waits for the invitation's end
            return False
        now = self.clock.monotonic()
        if self._last_fault_s is not None and now - self._last_fault_s < FAULT_EVERY_S:
            return False
        self._last_fault_s = now
        self._blink(CODE_FAULT, 0.15, 0.25)
        return True


def int1_input(pin: int) -> Any:
    """The sensor's INT1 (FIFO watermark) line as a gpiozero input, for the FIFO reader to wait on."""
    from gpiozero import DigitalInputDevice

    return DigitalInputDevice(pin, pull_up=False)

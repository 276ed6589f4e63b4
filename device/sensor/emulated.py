"""Emulated legs for `run --emulate` and `doctor --emulate`: register-level chips wired as the
hardware is (INT1 through a gpiozero mock pin), read by the real FIFO reader, and the nights they
play one after another."""

from __future__ import annotations

from typing import Any

import numpy as np

from device.clock import Clock
from device.config import DeviceConfig
from device.panel import int1_input
from device.sensor.emulator import (EmulatedBus, EmulatedChip, FaultSchedule, FunctionMotion, RecordingMotion,
                                    still_motion)
from device.sensor.legs import LegReaders, read_legs
from device.sensor.lsm6ds import variant
from device.window import Window


class _ShiftedMotion:
    """A recording played from the window time of the chip's first sample (a recording started
    late begins mid-way), so recording time and window time agree to the sample."""

    def __init__(self, inner: Any, window: Window) -> None:
        self.inner, self.window = inner, window
        self.shift_s = 0.0
        self.gaps: list[tuple[float, float]] = []
        if hasattr(inner, "temperature_c"):  # a recording with a temperature column
            self.temperature_c = self._temperature_c

    def started(self, wall_s: float) -> None:
        """The emulated chip took its first sample at Unix time `wall_s`."""
        self.shift_s = max(0.0, self.window.t_s(wall_s))
        self.gaps = [(a - self.shift_s, b - self.shift_s) for a, b in getattr(self.inner, "gaps", [])
                     if b > self.shift_s]

    def at(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.inner.at(t_s + self.shift_s)

    def _temperature_c(self, t_s: np.ndarray) -> np.ndarray:
        return self.inner.temperature_c(t_s + self.shift_s)


def emulated_legs(cfg: DeviceConfig, clock: Clock, motions: list[Any], *, chip: str = "LSM6DSOX",
                 faults: str = "") -> tuple[Any, Any]:
    """The register-level emulated chip(s), one per leg, leg k moving as `motions[k]` (each chip
    samples its own from its own thread), and the INT1 input: (bus, int1). INT1 goes through a
    gpiozero mock pin as it would through a real one. Close both when done."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    if not isinstance(Device.pin_factory, MockFactory):
        Device.pin_factory = MockFactory()
    schedule = FaultSchedule.parse(faults)
    int1 = int1_input(cfg.sensor.int1_pin)
    pin = Device.pin_factory.pin(cfg.sensor.int1_pin)

    def drive(level: bool) -> None:
        if level:
            pin.drive_high()
        else:
            pin.drive_low()

    chips = [EmulatedChip(variant(chip), motions[leg], clock, address=cfg.sensor.addresses[leg], faults=schedule,
                          on_int1=drive if leg == 0 else None) for leg in range(cfg.sensor.legs)]
    for c in chips:
        c.start()
    return EmulatedBus(*chips), int1


class EmulatedNights:
    """The sensor factory of `run --emulate`: night i plays recording i (the last one repeats) from
    the window's start, through the emulated chip and the real FIFO reader.

    Reading a recording's index takes a while, so `prepare(i)` does it ahead of the window: the
    recording then starts when the night does, even on a fast clock.
    """

    def __init__(self, cfg: DeviceConfig, clock: Clock, recordings: tuple[str, ...], *,
                 chip: str = "LSM6DSOX", faults: str = "") -> None:
        self.cfg, self.clock, self.recordings = cfg, clock, recordings
        self.chip, self.faults = chip, faults
        self._prepared: dict[int, Any] = {}

    def prepare(self, index: int) -> None:
        """Index night `index`'s recording now (once per leg: each chip plays its own copy)."""
        if index not in self._prepared:
            path = self.recordings[min(index, len(self.recordings) - 1)]
            self._prepared[index] = [RecordingMotion(path) for _ in range(self.cfg.sensor.legs)]

    def __call__(self, index: int, window: Window | None) -> LegReaders:
        if window is None:  # the start-up probe: any motion will do
            motions: list[Any] = [FunctionMotion(still_motion) for _ in range(self.cfg.sensor.legs)]
        else:
            self.prepare(index)
            # Each session takes fresh motions: a recording plays forward only.
            motions = [_ShiftedMotion(m, window) for m in self._prepared.pop(index)]
        bus, int1 = emulated_legs(self.cfg, self.clock, motions, chip=self.chip, faults=self.faults)
        return read_legs(self.cfg, self.clock, bus, int1, "fifo (emulated)", self.chip)


def press_button_at(cfg: DeviceConfig, clock: Clock, times_s: list[float], stop: Any) -> Any:
    """The emulated patient: press the panel's button (its gpiozero mock pin) at each Unix time in
    `times_s` on `clock`, e.g. to take the evening test (`run --emulate --press`). Returns the
    started daemon thread; it ends after the last press or when `stop` (an Event) is set."""
    import threading

    def run() -> None:
        from gpiozero import Device

        for t in sorted(times_s):
            while not stop.is_set() and clock.wall() < t:
                clock.wait(stop, min(t - clock.wall(), 30.0))  # short waits: the clock may skip ahead
            if stop.is_set():
                return
            pin = Device.pin_factory.pin(cfg.gpio.button_pin)
            pin.drive_low()
            pin.drive_high()

    thread = threading.Thread(target=run, name="emulated-patient", daemon=True)
    thread.start()
    return thread

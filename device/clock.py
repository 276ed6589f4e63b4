"""Clocks. Everything on the device that needs time is handed one of these, never `time` itself.

The same sensor, emulator and daemon code then runs in real time on a Pi, faster than real time for
the demo (`ScaledClock`), and as fast as the machine allows in tests and `capture --emulate`
(`VirtualClock`).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What device code may ask of time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps; only differences mean anything."""

    def wall(self) -> float:
        """Seconds since the Unix epoch, as the (scaled or virtual) wall clock reads."""

    def sleep(self, seconds: float) -> None:
        """Let `seconds` of this clock's time pass."""

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        """Wait for `event` at most `timeout_s` of this clock's time; True when it was set."""


def wall_at(clock: Clock, monotonic_s: float, tries: int = 5) -> float:
    """The wall-clock time at `monotonic_s` on `clock`.

    Reading the two clocks one after the other counts whatever ran in between (on a demo clock
    sped up 200x, a 5-ms thread switch is a second): take the tightest of a few bracketed reads.
    """
    best = (float("inf"), 0.0)
    for _ in range(tries):
        before = clock.monotonic()
        wall = clock.wall()
        spread = clock.monotonic() - before
        if spread < best[0]:
            best = (spread, wall - (before + spread / 2))
    return best[1] + monotonic_s


class SystemClock:
    """Real time."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        return event.wait(max(0.0, timeout_s))


class ScaledClock:
    """Real time sped up `speed` times, starting from `start_wall` (default: now).

    Threads that share it see one consistent timeline, so the real daemon, paho's thread and the
    emulated chip all run `speed` times faster.
    """

    def __init__(self, speed: float, start_wall: float | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self.speed = speed
        self._real0 = time.monotonic()
        self._wall0 = time.time() if start_wall is None else start_wall

    def monotonic(self) -> float:
        return (time.monotonic() - self._real0) * self.speed

    def wall(self) -> float:
        return self._wall0 + self.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds) / self.speed)

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        return event.wait(max(0.0, timeout_s) / self.speed)


class VirtualClock:
    """Time that moves only when someone sleeps or `advance`s it: a fake clock for tests and batch runs.

    `sleep` returns at once, having moved time on. It suits one thread driving everything; threads
    that `wait` on an event see time jump past the timeout unless the event is already set.
    """

    def __init__(self, start_wall: float = 1_700_000_000.0) -> None:
        self._now = 0.0
        self._wall0 = start_wall
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._wall0 + self._now

    def advance(self, seconds: float) -> None:
        """Move time on by `seconds`."""
        with self._lock:
            self._now += max(0.0, seconds)

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        if event.is_set():
            return True
        self.advance(timeout_s)
        return event.is_set()

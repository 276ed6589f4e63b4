"""Clocks. Everything on the device that needs time is handed one of these, never `time` itself.

The same sensor, emulator and daemon code then runs in real time on a Pi, faster than real time for
the demo (`ScaledClock`; `FastForwardClock` for `run --emulate`, which also skips the idle day
between nights), and as fast as the machine allows in tests and `capture --emulate` (`VirtualClock`).
`ntp_synchronized` says whether the system clock itself can be trusted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
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


class FastForwardClock(ScaledClock):
    """A `ScaledClock` that can also skip idle time, so an emulated device plays night after night
    without waiting out the days between them."""

    def __init__(self, speed: float, start_wall: float | None = None, real_origin: float | None = None) -> None:
        super().__init__(speed, start_wall)
        # With `real_origin` (a Unix time), the clock read `start_wall` at that real instant, so a
        # restarted process continues the same timeline, the downtime included.
        self._real_origin = real_origin
        self._skipped_s = 0.0 if real_origin is None else max(0.0, time.time() - real_origin) * speed

    def start(self) -> None:
        """Without a `real_origin`, read `start_wall` now: the daemon's start-up takes no clock time."""
        if self._real_origin is None:
            self._real0 = time.monotonic()
            self._skipped_s = 0.0

    def monotonic(self) -> float:
        return super().monotonic() + self._skipped_s

    def skip_to(self, wall_s: float) -> None:
        """Jump forward to Unix time `wall_s` (never backward)."""
        ahead = wall_s - self.wall()
        if ahead > 0:
            self._skipped_s += ahead


def ntp_synchronized() -> bool | None:
    """Whether the system clock is NTP-synchronised (the Pi has no RTC); None when unknown."""
    try:
        out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip() in ("yes", "no"):
            return out.stdout.strip() == "yes"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return _adjtimex_synchronized()


def _adjtimex_synchronized() -> bool | None:
    # adjtimex(2) with modes 0 only reads; it returns TIME_ERROR (5) while the clock is unsynchronised.
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return None
    buf = ctypes.create_string_buffer(512)  # larger than struct timex on every architecture
    try:
        state = ctypes.CDLL(libc_name, use_errno=True).adjtimex(buf)
    except (OSError, AttributeError):
        return None
    return None if state < 0 else state != 5

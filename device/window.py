"""The night window: which evening's recording window a moment falls in, across midnight and DST."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from device.config import NightConfig


@dataclass(frozen=True)
class Window:
    """One night's recording window; `night` is the evening's date."""

    night: str
    start: dt.datetime
    end: dt.datetime
    timezone: str

    @property
    def duration_s(self) -> float:
        """Length of the window in seconds, DST changes included (subtracting two datetimes of one
        zone would give the wall-clock difference)."""
        return self.end.timestamp() - self.start.timestamp()

    def t_s(self, wall_s: float) -> float:
        """Seconds from the window's start of the Unix time `wall_s`."""
        return wall_s - self.start.timestamp()


def window_at(wall_s: float, night: NightConfig) -> Window:
    """The window containing Unix time `wall_s`, or else the next one to begin."""
    zone = night.zone
    now = dt.datetime.fromtimestamp(wall_s, dt.timezone.utc)
    today = now.astimezone(zone).date()
    for days in (-1, 0, 1):
        evening = today + dt.timedelta(days=days)
        start = dt.datetime.combine(evening, night.start_time, tzinfo=zone)
        end_day = evening if night.end_time > night.start_time else evening + dt.timedelta(days=1)
        end = dt.datetime.combine(end_day, night.end_time, tzinfo=zone)
        if now < end:
            return Window(evening.isoformat(), start, end, night.timezone)
    raise AssertionError("unreachable: tomorrow's window always ends after now")

"""The replay reader: a recording CSV played back as the stream a live reader would give.

Blocks come straight from `device.recording.read_recording`, so a malformed line raises
`RecordingFormatError` naming it. With a clock, blocks are released no faster than their time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import numpy as np

from device.clock import Clock
from device.detect.events import Interval
from device.samples import SampleBlock


class ReplayReader:
    """Yields the recording's `SampleBlock`s; gaps (jumps in `t`) are collected in `gaps`."""

    chip_name = None
    who_am_i = None

    def __init__(self, path: str | os.PathLike, *, clock: Clock | None = None,
                 block_rows: int = 4096) -> None:
        self.path, self.clock, self.block_rows = path, clock, block_rows
        self.gaps: list[Interval] = []
        self.nominal_odr_hz: float | None = None
        self.measured_odr_hz: float | None = None
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def __iter__(self) -> Iterator[SampleBlock]:
        from device.recording import read_recording

        start = self.clock.monotonic() if self.clock is not None else 0.0
        last_t = None
        for block in read_recording(self.path, self.block_rows):
            if self._stop.is_set():
                return
            self.nominal_odr_hz = self.measured_odr_hz = block.odr_hz
            t = block.t_s if last_t is None else np.concatenate([[last_t], block.t_s])
            jumps = np.flatnonzero(np.diff(t) > 1.5 / block.odr_hz)
            self.gaps += [Interval(float(t[i]), float(t[i + 1])) for i in jumps]
            last_t = float(block.t_s[-1])
            if self.clock is not None:
                self.clock.sleep(start + last_t - self.clock.monotonic())
            yield block

"""The detector's memory does not grow with the night: ten hours fed in blocks, generated on the fly
and never stored, peak no higher than the first hour."""

from __future__ import annotations

import tracemalloc

import numpy as np

from device.detect import LegDetector
from device.samples import SampleBlock
from tests.detect.test_detector import ODR_HZ, flex, readings, times

BLOCK_S = 60.0


def one_minute() -> tuple[np.ndarray, np.ndarray]:
    """A minute of lying with two PLM-like flexions, one held."""
    t = times(BLOCK_S)
    return readings(flex(t, 5.0, 10.0, 1.0, 0.0, 1.0) + flex(t, 32.0, 8.0, 0.8, 2.0, 0.8))


def night_blocks(hours: float):
    """Blocks of a night: the minute repeated, with a 5-s gap each half hour; made lazily."""
    accel, gyro = one_minute()
    base = times(BLOCK_S)
    offset = 0.0
    for k in range(round(hours * 3600 / BLOCK_S)):
        if k and k % 30 == 0:
            offset += 5.0
        yield SampleBlock(base + k * BLOCK_S + offset, accel, gyro, ODR_HZ)


def test_memory_stays_flat_over_ten_hours():
    det = LegDetector(odr_hz=ODR_HZ)
    blocks = night_blocks(10.0)
    per_hour = round(3600 / BLOCK_S)
    tracemalloc.start()
    try:
        lms = 0
        for _ in range(per_hour):
            lms += len(det.feed(next(blocks)).movements)
        first_hour_peak = tracemalloc.get_traced_memory()[1]
        after_first_hour = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for block in blocks:
            lms += len(det.feed(block).movements)
        later_peak = tracemalloc.get_traced_memory()[1]
        after_ten_hours = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert lms >= 2 * 600 - 30  # it really detected the night's LMs (bar those cut by the gaps)
    assert later_peak <= first_hour_peak * 1.05 + 16_384
    assert after_ten_hours <= after_first_hour + 16_384

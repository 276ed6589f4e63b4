"""The time base alone: counted samples placed by a robust fit, whatever the reads' lateness.

Each test plays a chip sampling at exactly 52 Hz from t = 0 and reads that run late by a scheduler's
whims (on the demo's 200x clock, a 5-ms wait is a second), and checks that every stamp is the
sample's true time: lateness never moves a stamp, lost samples are a gap (issue 11).
"""

from __future__ import annotations

import numpy as np

from device.clock import VirtualClock
from device.sensor.timebase import Timebase

RATE_HZ = 52.0


def play(reads: list[tuple[int, float, bool]], rate_hz: float = RATE_HZ) -> tuple[Timebase, np.ndarray, np.ndarray]:
    """Feed (samples in hand, how late the read ran in s, whether older ones were lost first);
    return the time base, every stamp and every true time."""
    tb = Timebase(VirtualClock(), RATE_HZ)
    tb.start_segment(0.0, rate_hz)
    newest, stamps, truth = 0, [], []
    for n, late_s, lost in reads:
        if lost:
            newest += 3 * n  # overwritten before the read
        ks = np.arange(newest + 1, newest + n + 1)
        newest += n
        now = newest / rate_hz + late_s
        if lost:
            tb.resync(n, now, lost_at_least=1)
        stamps.append(tb.stamp(n, now))
        truth.append(ks / rate_hz)
    origin = 1.0 / RATE_HZ  # t_s = 0 is the first sample
    return tb, np.concatenate(stamps), np.concatenate(truth) - origin


def test_late_reads_do_not_move_the_stamps():
    """An hour of reads once a second, most a little late, a tenth held up by seconds, and a load
    growing through the hour that delays more and more of them (a fit through every read would
    take that for a slow chip)."""
    rng = np.random.default_rng(7)
    reads = []
    for i in range(3600):
        late = rng.exponential(0.02)
        if rng.random() < 0.5 * i / 3600:
            late += rng.uniform(0.05, 1.0)
        if rng.random() < 0.1:
            late += rng.uniform(1.0, 5.0)
        reads.append((52, late, False))
    tb, stamps, truth = play(reads)
    np.testing.assert_allclose(stamps, truth, atol=1e-6)
    assert tb.gaps == []
    assert tb.rate_hz == RATE_HZ


def test_samples_lost_in_an_overrun_are_a_gap_and_the_rest_keeps_its_time():
    rng = np.random.default_rng(3)
    reads = [(52, rng.exponential(0.02), i in (600, 1800)) for i in range(2400)]
    tb, stamps, truth = play(reads)
    assert len(tb.gaps) == 2
    # Counted back from a read that ran late by ~20 ms: the samples after a gap are that late at
    # most, until a read on time brings them back.
    err = stamps - truth
    assert err.min() > -1e-6 and err.max() < 0.2
    assert abs(err[-52:]).max() < 1e-3


def test_a_chip_off_its_stated_rate_is_fitted():
    """A chip 0.5 % slow with no FREQ_FINE: after a minute the stamps follow its real rate."""
    real_hz = RATE_HZ * 0.995
    rng = np.random.default_rng(5)
    tb = Timebase(VirtualClock(), RATE_HZ)
    tb.start_segment(0.0, RATE_HZ)
    k, stamps, truth = 0, [], []
    for _ in range(600):
        truth.append(np.arange(k + 1, k + 53) / real_hz - 1 / RATE_HZ)
        k += 52
        stamps.append(tb.stamp(52, k / real_hz + rng.exponential(0.01)))
    stamps, truth = np.concatenate(stamps), np.concatenate(truth)
    assert tb.measured_hz is not None and abs(tb.measured_hz / real_hz - 1) < 1e-4
    assert abs(stamps - truth)[-52:].max() < 0.05
    assert np.all(np.diff(stamps) > 0)

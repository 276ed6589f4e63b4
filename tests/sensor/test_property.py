"""Whatever the burst size and watermark, the FIFO reader gives the same samples."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.sensor import open_emulated
from tests.sensor.conftest import collect, load, make_recording


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chip=st.sampled_from(["LSM6DSOX", "LSM6DS3TR-C"]),
       burst_bytes=st.integers(min_value=1, max_value=3000),
       watermark_s=st.floats(min_value=0.02, max_value=5.0),
       int1_wired=st.booleans())
def test_same_samples_whatever_the_burst_and_watermark(tmp_path_factory, chip, burst_bytes, watermark_s,
                                                       int1_wired):
    path = tmp_path_factory.getbasetemp() / "property.csv"
    if not path.exists():
        make_recording(path, seconds=4.0, seed=3)
    expected = load(path)
    reader = open_emulated(path, chip=chip, burst_bytes=burst_bytes, watermark_s=watermark_s,
                           int1_wired=int1_wired)
    out = collect(reader, expected[-1, 0])
    assert reader.gaps == []
    np.testing.assert_allclose(out[:, 0], np.arange(len(expected)) / 52.0, rtol=0, atol=1e-9)
    assert np.abs(out[:, 1:4] - expected[:, 1:4]).max() <= 0.000122 + 1e-5
    assert np.abs(out[:, 4:7] - expected[:, 4:7]).max() <= 0.0175 + 1e-4

"""The `SampleBlock` record: what every sensor reader yields and the detection code consumes.

A leaf module: it imports only numpy, so the sensor layer and the pure detection code can both use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SampleBlock:
    """A run of consecutive IMU samples from one leg.

    `t_s` is seconds from the start of the recording (or night), one per sample. `accel_g` and
    `gyro_dps` are (n, 3) arrays in the sensor frame: x along the shin toward the knee, y lateral,
    z out of the shin's front (see docs/architecture.md). A jump in `t_s` larger than 1.5 sample periods,
    inside a block or between blocks, is a gap in recording: it is never interpolated.

    `temp_c` is the chip's temperature (°C) near the block's end, when one was read: readers read
    it every few seconds (a register read, never per sample), so most blocks carry None. It tells
    a sensor on the skin from one off the leg (device/wear.py).
    """

    t_s: np.ndarray
    accel_g: np.ndarray
    gyro_dps: np.ndarray
    odr_hz: float
    temp_c: float | None = None

    def __post_init__(self) -> None:
        n = len(self.t_s)
        if self.accel_g.shape != (n, 3) or self.gyro_dps.shape != (n, 3):
            raise ValueError(
                f"SampleBlock shapes disagree: t_s {self.t_s.shape}, accel_g {self.accel_g.shape}, "
                f"gyro_dps {self.gyro_dps.shape}"
            )

    def __len__(self) -> int:
        return len(self.t_s)

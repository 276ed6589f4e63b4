"""`rlsmon-device capture`: a reader's stream written to a recording CSV.

Live, it is the installer's wiring check. Emulated, a recording goes into the register-level chip
and comes back out through a reader, which is the end-to-end check of the readers: the output
must match the input to one LSB, with the same timestamps, and faults may only add gaps.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from device.samples import SampleBlock


def _until(reader, end_s: float) -> Iterator[SampleBlock]:
    """The reader's blocks up to `t_s = end_s` (half a period of slack), then stop it."""
    for block in reader:
        keep = block.t_s <= end_s + 0.5 / block.odr_hz
        if keep.all():
            yield block
        else:
            if keep.any():
                yield SampleBlock(block.t_s[keep], block.accel_g[keep], block.gyro_dps[keep], block.odr_hz,
                                  block.temp_c)
            reader.stop()
            return
        if block.t_s[-1] >= end_s - 0.5 / block.odr_hz:
            reader.stop()
            return


def summarize(reader, n_samples: int) -> str:
    """One line for the operator: chip, rates, gaps and errors (no sensor values)."""
    measured = reader.measured_odr_hz
    chip = f"{reader.chip_name} (WHO_AM_I 0x{reader.who_am_i:02X}) at 0x{reader.address:02X}"
    return (f"{chip}: {n_samples} samples at {reader.nominal_odr_hz:g} Hz nominal"
            + (f", {measured:.3f} Hz measured" if measured else "")
            + f", {len(reader.gaps)} gaps, {reader.errors} I2C errors retried, {reader.wakeups} wake-ups")


def _write_counting(path: str | os.PathLike, blocks: Iterator[SampleBlock]) -> int:
    from device.recording import write_recording

    count = [0]

    def counted() -> Iterator[SampleBlock]:
        for block in blocks:
            count[0] += len(block)
            yield block

    write_recording(path, counted())
    return count[0]


def capture_emulated(recording: str | os.PathLike, out: str | os.PathLike, *, driver: str = "fifo",
                     chip: str | None = None, odr_hz: float | None = None, accel_fs_g: float = 4.0,
                     gyro_fs_dps: float = 500.0, faults: str | None = None) -> str:
    """Play `recording` through the emulated chip into `out`; return the summary line."""
    from device.sensor import open_emulated

    reader = open_emulated(recording, driver=driver, chip=chip or "LSM6DSOX", odr_hz=odr_hz,
                           accel_fs_g=accel_fs_g, gyro_fs_dps=gyro_fs_dps, faults=faults)
    try:
        n = _write_counting(out, _until(reader, reader.motion.duration_s))
    finally:
        reader.bus.close()
    return summarize(reader, n)


def capture_live(out: str | os.PathLike, seconds: float, *, bus_number: int = 1, driver: str = "fifo",
                 chip: str | None = None, odr_hz: float = 52.0, accel_fs_g: float = 4.0,
                 gyro_fs_dps: float = 500.0) -> str:
    """Record `seconds` of the real sensor on I2C bus `bus_number` into `out` (INT1 not used)."""
    from device.sensor import open_bus, open_reader

    with open_bus(bus_number) as bus:
        reader = open_reader(driver, bus=bus, chip=chip, odr_hz=odr_hz, accel_fs_g=accel_fs_g,
                             gyro_fs_dps=gyro_fs_dps)
        n = _write_counting(out, _until(reader, seconds))
    return summarize(reader, n)

"""Bus cost of the sensor readers against the emulated chip.

For the FIFO reader (INT1 wired, 1 s watermark) and the polled adafruit reader, at 52 and 104 Hz:
I2C transactions, bytes and wake-ups per second of data, and CPU time per hour of data, split into
the reader's own share and the emulator's (the time spent inside bus calls). The physical floor for
the FIFO reader on a tagged-FIFO chip is 7 bytes per sensor word (a tag and three int16) and one
wake-up per watermark.

    .venv/bin/python benchmarks/sensor_bus.py [--fifo-minutes 60] [--polled-minutes 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from device.sensor import open_emulated


def _motion(t):
    return (np.column_stack([np.sin(t), 0.1 * np.cos(3 * t), np.cos(t)]),
            np.column_stack([50 * np.sin(2 * t), 5 * np.cos(t), 0 * t]))


class TimedBus:
    """Wraps a bus to add up the CPU time spent inside it (the emulated chip's share)."""

    def __init__(self, bus) -> None:
        self._bus, self.cpu_s = bus, 0.0

    def __getattr__(self, name):
        attr = getattr(self._bus, name)
        if not callable(attr):
            return attr

        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return attr(*args, **kwargs)
            finally:
                self.cpu_s += time.process_time() - start
        return timed


def measure(driver: str, chip: str, odr_hz: float, minutes: float) -> dict:
    from device.sensor.emulator import FunctionMotion

    reader = open_emulated(None, driver=driver, chip=chip, odr_hz=odr_hz)
    reader.bus.chips[0x6A].motion = FunctionMotion(_motion)
    timed = TimedBus(reader.bus)
    reader.bus = timed
    if driver == "polled":
        reader.sensor.i2c_device.i2c.bus = timed
    stats = reader.bus.stats
    before = (stats.transactions, stats.bytes, reader.wakeups)
    end_s, samples = minutes * 60.0, 0
    cpu0 = time.process_time()
    for block in reader:
        samples += len(block)
        if block.t_s[-1] >= end_s:
            reader.stop()
    cpu_s = time.process_time() - cpu0
    seconds = samples / odr_hz
    transactions, nbytes = stats.transactions - before[0], stats.bytes - before[1]
    words = samples * reader.variant.fifo.words_per_sample
    return {
        "reader": driver, "chip": chip, "odr_hz": odr_hz,
        "tx_per_s": transactions / seconds, "bytes_per_s": nbytes / seconds,
        "wakeups_per_s": (reader.wakeups - before[2]) / seconds,
        "bytes_per_sample": nbytes / samples, "bytes_per_word": nbytes / words,
        "cpu_s_per_h": cpu_s * 3600 / seconds, "emulator_cpu_s_per_h": timed.cpu_s * 3600 / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fifo-minutes", type=float, default=60.0, help="data per FIFO run")
    parser.add_argument("--polled-minutes", type=float, default=5.0, help="data per polled run")
    args = parser.parse_args()
    print(f"{'reader':7} {'chip':12} {'ODR':>5} {'tx/s':>7} {'bytes/s':>8} {'B/sample':>8} {'B/word':>6} "
          f"{'wake/s':>7} {'CPU s/h total':>13} {'of it emulator':>14}")
    for driver, minutes in (("fifo", args.fifo_minutes), ("polled", args.polled_minutes)):
        for chip in ("LSM6DSOX", "LSM6DS3TR-C"):
            for odr_hz in (52.0, 104.0):
                r = measure(driver, chip, odr_hz, minutes)
                per_word = f"{r['bytes_per_word']:6.2f}" if driver == "fifo" else f"{'-':>6}"
                print(f"{r['reader']:7} {r['chip']:12} {r['odr_hz']:5.0f} {r['tx_per_s']:7.2f} "
                      f"{r['bytes_per_s']:8.1f} {r['bytes_per_sample']:8.2f} {per_word} "
                      f"{r['wakeups_per_s']:7.2f} {r['cpu_s_per_h']:13.2f} {r['emulator_cpu_s_per_h']:14.2f}")
    print("B/word: bytes per FIFO word (tagged: 7-byte words, 2 a sample; pattern: 2-byte words, 6 a sample).")
    print("A 1 s watermark means one wake-up per second is the floor for the FIFO reader.")


if __name__ == "__main__":
    main()

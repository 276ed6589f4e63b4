"""The sensor as the daemon sees it: one FIFO reader per leg, each drained by its own thread, and
the mounting turned into the shin frame."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from device.clock import Clock
from device.config import DeviceConfig
from device.errors import SensorError
from device.panel import int1_input
from device.samples import SampleBlock
from device.sensor.fifo import FifoReader

log = logging.getLogger(__name__)

STALL_S = 10.0  # a reader that neither delivers nor retries for this long is hung: stop the watchdog
FAULT_AFTER_S = 2.0  # a reader that retries errors or has not delivered for this long is faulty


class LegReaders:
    """The FIFO reader(s), one per leg, each drained by its own thread into one queue.

    `blocks(wait_s)` yields (leg, block) as they come and, when nothing came for `wait_s()` of the
    clock's time, (-1, None) so the caller can act on a deadline: it wakes for data and deadlines
    only. A reader keeps retrying I2C errors itself (the gap shows in `t_s`); an
    exception it raises ends the session with `SensorError`.
    """

    def __init__(self, readers: list[Any], clock: Clock, info: dict[str, Any],
                 cleanup: Callable[[], None] = lambda: None) -> None:
        self.readers, self.clock, self.info = readers, clock, info
        self._cleanup = cleanup
        self._items: deque[tuple[int, SampleBlock | Exception]] = deque()
        self._ready = threading.Event()  # set when _items gained something
        self._progress = [clock.monotonic()] * len(readers)
        self._errors = [0] * len(readers)
        self._threads = [threading.Thread(target=self._pump, args=(leg,), name=f"imu-leg{leg}", daemon=True)
                         for leg in range(len(readers))]
        for t in self._threads:
            t.start()

    def _pump(self, leg: int) -> None:
        try:
            for block in self.readers[leg]:
                self._progress[leg] = self.clock.monotonic()
                self._put(leg, block)
        except Exception as exc:
            self._put(leg, exc)

    def _put(self, leg: int, item: SampleBlock | Exception) -> None:
        self._items.append((leg, item))
        self._ready.set()

    def wall_of_origin(self, leg: int) -> float | None:
        """Unix time of the leg's `t_s = 0`."""
        return self.readers[leg].timebase.wall_of_origin()

    def _note_retries(self) -> None:
        now = self.clock.monotonic()
        for leg, reader in enumerate(self.readers):
            if reader.errors != self._errors[leg]:
                self._errors[leg] = reader.errors
                self._progress[leg] = now

    def alive(self) -> bool:
        """Every reader thread runs and has delivered or retried recently."""
        self._note_retries()
        now = self.clock.monotonic()
        return all(t.is_alive() for t in self._threads) and all(now - p < STALL_S for p in self._progress)

    def faulty(self) -> bool:
        """A reader is retrying errors and has not delivered for a while."""
        before = list(self._errors)
        self._note_retries()
        return self._errors != before or any(self.clock.monotonic() - p > FAULT_AFTER_S for p in self._progress)

    def blocks(self, wait_s: Callable[[], float]) -> Iterator[tuple[int, SampleBlock | None]]:
        """(leg, block) as they come; (-1, None) when nothing came for `wait_s()` (clock seconds,
        asked afresh before each wait)."""
        while True:
            if not self._items:
                self._ready.clear()
                # Looked at again after the clear: a block put in between has set it anew.
                if not self._items and not self.clock.wait(self._ready, wait_s()):
                    yield -1, None
                    continue
            try:
                leg, item = self._items.popleft()
            except IndexError:  # the event was set, its block already taken
                continue
            if isinstance(item, Exception):
                raise SensorError(f"the IMU reader for leg {leg} stopped: {item}") from item
            yield leg, item

    def close(self) -> None:
        """Stop the readers and release the bus."""
        for reader in self.readers:
            reader.stop()
        for t in self._threads:
            t.join(5.0)
        self._cleanup()


def open_hardware(cfg: DeviceConfig, clock: Clock) -> LegReaders:
    """The real sensor(s): smbus2 on the configured bus, INT1 through gpiozero for the first leg."""
    from device.sensor import open_bus

    bus = open_bus(cfg.sensor.bus)
    try:
        int1 = int1_input(cfg.sensor.int1_pin)
    except Exception as exc:  # GPIO busy or absent: the FIFO reader then polls once a second
        log.warning("sensor: cannot claim INT1 on GPIO %d (%s); polling the FIFO instead", cfg.sensor.int1_pin, exc)
        int1 = None
    return read_legs(cfg, clock, bus, int1, "fifo", cfg.sensor.chip or None)


def read_legs(cfg: DeviceConfig, clock: Clock, bus: Any, int1: Any, driver: str, chip: str | None) -> LegReaders:
    """A FIFO reader per leg on `bus` (INT1 wired for the first); closes bus and int1 on failure."""
    def cleanup() -> None:
        if int1 is not None:
            int1.close()
        bus.close()

    try:
        readers = [FifoReader(bus, addresses=(cfg.sensor.addresses[leg],), chip=chip, odr_hz=cfg.sensor.odr_hz,
                              int1=int1 if leg == 0 else None, clock=clock)
                   for leg in range(cfg.sensor.legs)]
    except BaseException:
        cleanup()
        raise
    return LegReaders(readers, clock, _sensor_info(readers[0], driver, cfg), cleanup)


def _sensor_info(reader: Any, driver: str, cfg: DeviceConfig) -> dict[str, Any]:
    return {"chip": reader.chip_name, "who_am_i": reader.who_am_i, "driver": driver,
            "legs": cfg.sensor.legs, "odr_hz": reader.nominal_odr_hz,
            "accel_fs_g": reader.accel_scale.full_scale, "gyro_fs_dps": reader.gyro_scale.full_scale}


def remap_axes(block: SampleBlock, axes: list[str]) -> SampleBlock:
    """Turn the sensor frame into the shin frame of the design, per the configured mounting."""
    if axes == ["+x", "+y", "+z"]:
        return block
    idx = ["xyz".index(a[1]) for a in axes]
    sign = np.array([-1.0 if a[0] == "-" else 1.0 for a in axes])
    return SampleBlock(block.t_s, block.accel_g[:, idx] * sign, block.gyro_dps[:, idx] * sign, block.odr_hz,
                       block.temp_c)

"""The sensor layer: sources of `SampleBlock`s (t_s, accel_g, gyro_dps, odr_hz).

Every source is an iterable of `SampleBlock`s with the same few attributes, so the daemon never
knows which one it has::

    reader = open_reader(bus=1, int1=DigitalInputDevice(4))        # the real chip, FIFO + INT1
    reader = open_emulated("night.csv", clock=ScaledClock(60))     # the emulated chip, for demos
    for block in reader:          # never ends on I2C trouble; call reader.stop() from elsewhere
        ...
    reader.chip_name, reader.who_am_i        # e.g. "LSM6DSOX", 0x6C (None for a CSV replay)
    reader.nominal_odr_hz, reader.measured_odr_hz   # the latter None until ~10 s of data
    reader.gaps                              # list[Interval] of t_s spans with no samples
    reader.errors, reader.wakeups            # I2C errors retried, wake-ups so far
    address, variant = probe(bus=1)          # for doctor: who answers (SensorNotFound if none)

For `doctor`'s INT1 check, open a FIFO reader with `int1=` a gpiozero device and watch `wakeups`
grow by about one per `watermark_s` (1 s); with `open_emulated(..., int1_gpio=N)` under a
`MockFactory` the chip drives pin N itself.

`t_s` counts from the stream's first sample; `reader.timebase.wall_of_origin()` gives its wall time.

Modules: `lsm6ds` (register map, chip table), `fifo` (FIFO reader), `polled` (adafruit_lsm6ds
reader), `replay` (CSV), `emulator` (register-level chip, fault schedule), `busio_adapter`, `legs`
(a reader per leg, as the daemon reads them), `emulated` (emulated legs and nights for
`run --emulate` and `doctor --emulate`).
Nothing here imports smbus2, gpiozero or adafruit at import time.
"""

from __future__ import annotations

import errno
import os
from typing import Literal

from device.clock import Clock, SystemClock

Driver = Literal["fifo", "polled"]


def bus_problem(bus_number: int, exc: OSError) -> tuple[str, str]:
    """What is wrong with I2C bus `bus_number`, given the error opening it, and how to fix it."""
    dev = f"/dev/i2c-{bus_number}"
    if exc.errno == errno.ENOENT:
        return (f"{dev} does not exist: is I2C enabled?",
                "turn I2C on (dtparam=i2c_arm=on in /boot/firmware/config.txt, as systemd/install-device.sh "
                "does) and reboot, or check the bus number")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"no permission to open {dev}", "add the user to the i2c group (sudo usermod -aG i2c USER), "
                "then log in again")
    return f"cannot open {dev} ({exc.strerror or exc})", "check the I2C bus number and the wiring"


def open_bus(bus_number: int):
    """smbus2's `SMBus(bus_number)`; raises `SensorError` saying what is wrong and what to do."""
    from smbus2 import SMBus

    from device.errors import SensorError

    try:
        return SMBus(bus_number)
    except OSError as exc:
        problem, fix = bus_problem(bus_number, exc)
        raise SensorError(f"{problem} Fix: {fix}.") from exc


def open_reader(driver: Driver = "fifo", *, bus=1, addresses: tuple[int, ...] = (0x6A, 0x6B),
                chip: str | None = None, odr_hz: float = 52.0, accel_fs_g: float = 4.0,
                gyro_fs_dps: float = 500.0, int1=None, clock: Clock | None = None):
    """Open the IMU and return a reader (a `FifoReader` or `PolledReader`).

    `bus` is an I2C bus number (opened with smbus2) or an smbus2-compatible object such as an
    `EmulatedBus`. `int1` is a gpiozero input device on the INT1 line, or None to poll once a
    second (FIFO reader only). `chip` names the variant when WHO_AM_I is shared (LSM6DSO32 vs
    LSM6DSOX). Raises `SensorNotFound` when no chip answers, `ValueError` for a rate or full scale
    the chip lacks.
    """
    if isinstance(bus, int):
        bus = open_bus(bus)
    clock = clock or SystemClock()
    common = dict(addresses=addresses, chip=chip, odr_hz=odr_hz, accel_fs_g=accel_fs_g,
                  gyro_fs_dps=gyro_fs_dps, clock=clock)
    if driver == "fifo":
        from device.sensor.fifo import FifoReader

        return FifoReader(bus, int1=int1, **common)
    if driver == "polled":
        from device.sensor.polled import PolledReader

        return PolledReader(bus, **common)
    raise ValueError(f"unknown driver {driver!r}; choose fifo or polled")


def probe(bus=1, addresses: tuple[int, ...] = (0x6A, 0x6B), chip: str | None = None,
          clock: Clock | None = None):
    """Which chip answers, for `doctor`: (address, `lsm6ds.ChipVariant`); its `.name`, `.who_am_i`.

    Raises `SensorNotFound` naming the addresses tried (and any unknown WHO_AM_I seen), or
    `SensorError` when `chip` is given and another one answers.
    """
    from device.sensor.fifo import identify

    if isinstance(bus, int):
        with open_bus(bus) as smbus:
            return identify(smbus, addresses, chip, clock or SystemClock())
    return identify(bus, addresses, chip, clock or SystemClock())


def open_emulated(recording: str | os.PathLike | None = None, *, driver: Driver = "fifo",
                  chip: str = "LSM6DSOX", odr_hz: float | None = None, accel_fs_g: float = 4.0,
                  gyro_fs_dps: float = 500.0, faults: str | None = None, clock: Clock | None = None,
                  int1_gpio: int | None = None, odr_error: float = 0.0, address: int = 0x6A,
                  **reader_options):
    """A reader on an emulated chip playing `recording` (a CSV; None: a leg lying still).

    `clock` defaults to an `EventClock`, which runs as fast as the machine allows; pass a
    `ScaledClock` for a demo in accelerated real time (the chip then runs a timer thread, stopped
    by `reader.bus.close()`). `odr_hz` defaults to the recording's rate. INT1 reaches a FIFO reader
    directly, or with `int1_gpio` through a gpiozero `DigitalInputDevice` on that pin, whose mock
    pin the chip drives: that needs `Device.pin_factory` to be a `MockFactory`. `faults` is a
    `FaultSchedule` spec such as "eio=0.01,disconnect=600+60,reset=1200". `reader_options` go to
    the reader (e.g. `watermark_s`, `burst_bytes`). `reader.bus` is the `EmulatedBus` (its `stats`
    count transactions and bytes), `reader.motion` the motion source.
    """
    from device.sensor.emulator import EventClock, FunctionMotion, RecordingMotion, emulated_bus, still_motion

    clock = clock or EventClock()
    motion = RecordingMotion(recording) if recording is not None else FunctionMotion(still_motion)
    if odr_hz is None:  # the recording's rate, estimated, is a hair off the chip's nominal one
        odr_hz = _nearest_rate(chip, motion.odr_hz) if recording is not None else 52.0
    int1_device, on_int1 = None, None
    if int1_gpio is not None:
        from gpiozero import DigitalInputDevice

        int1_device = DigitalInputDevice(int1_gpio, pull_up=False)
        pin = int1_device.pin
        on_int1 = lambda level: pin.drive_high() if level else pin.drive_low()  # noqa: E731
    relay: list = []
    if driver == "fifo" and on_int1 is None:
        on_int1 = lambda level: relay and relay[0].on_int1(level)  # noqa: E731
    bus = emulated_bus(chip, motion, clock, address=address, faults=faults, odr_error=odr_error,
                       on_int1=on_int1)
    common = dict(addresses=(address,), chip=chip, odr_hz=odr_hz,
                  accel_fs_g=accel_fs_g, gyro_fs_dps=gyro_fs_dps, clock=clock)
    if driver == "fifo":
        from device.sensor.fifo import FifoReader

        reader = FifoReader(bus, int1=int1_device, **common, **{"int1_wired": True, **reader_options})
        relay.append(reader)
    elif driver == "polled":
        from device.sensor.polled import PolledReader

        reader = PolledReader(bus, **common, **reader_options)
    else:
        raise ValueError(f"unknown driver {driver!r}; choose fifo or polled")
    reader.bus, reader.motion = bus, motion
    return reader


def _nearest_rate(chip: str, odr_hz: float) -> float:
    """The chip's rate closest to `odr_hz`."""
    from device.sensor.lsm6ds import variant

    return min(variant(chip).odr_codes_hz.values(), key=lambda hz: abs(hz - odr_hz))

"""A busio-style I2C object over an smbus2 `SMBus` (or our `EmulatedBus`), for adafruit_lsm6ds.

adafruit_lsm6ds only needs an object with `try_lock`, `unlock`, `writeto`, `readfrom_into` and
`writeto_then_readfrom` (through adafruit_bus_device's I2CDevice). Giving it this one means we never
import `board`, which on x86 fails and on a Pi drags in Blinka's platform detection and `gpiod`.
Each call is one `i2c_rdwr` transaction, so a register read keeps its repeated start.
"""

from __future__ import annotations

import ctypes
import threading


class SMBusI2C:
    """busio.I2C's interface on top of an smbus2-compatible bus."""

    def __init__(self, bus) -> None:
        self.bus = bus
        self._lock = threading.Lock()

    def try_lock(self) -> bool:
        return self._lock.acquire(blocking=False)

    def unlock(self) -> None:
        self._lock.release()

    def scan(self) -> list[int]:
        """Addresses that acknowledge, as busio.I2C.scan()."""
        found = []
        for addr in range(0x08, 0x78):
            try:
                self.bus.write_quick(addr)
            except OSError:
                continue
            found.append(addr)
        return found

    def probe(self, address: int) -> bool:
        """True when a device acknowledges `address`."""
        try:
            self.bus.write_quick(address)
        except OSError:
            return False
        return True

    def writeto(self, address: int, buffer, *, start: int = 0, end: int | None = None) -> None:
        from smbus2 import i2c_msg

        data = bytes(buffer[start:end])
        if not data:
            self.bus.write_quick(address)  # adafruit_bus_device probes with an empty write
            return
        self.bus.i2c_rdwr(i2c_msg.write(address, data))

    def readfrom_into(self, address: int, buffer, *, start: int = 0, end: int | None = None) -> None:
        from smbus2 import i2c_msg

        end = len(buffer) if end is None else end
        msg = i2c_msg.read(address, end - start)
        self.bus.i2c_rdwr(msg)
        buffer[start:end] = ctypes.string_at(msg.buf, end - start)

    def writeto_then_readfrom(self, address: int, buffer_out, buffer_in, *, out_start: int = 0,
                              out_end: int | None = None, in_start: int = 0,
                              in_end: int | None = None) -> None:
        from smbus2 import i2c_msg

        in_end = len(buffer_in) if in_end is None else in_end
        write = i2c_msg.write(address, bytes(buffer_out[out_start:out_end]))
        read = i2c_msg.read(address, in_end - in_start)
        self.bus.i2c_rdwr(write, read)
        buffer_in[in_start:in_end] = ctypes.string_at(read.buf, in_end - in_start)

    def deinit(self) -> None:
        """Nothing to release: the bus belongs to whoever opened it."""

    def __enter__(self) -> SMBusI2C:
        return self

    def __exit__(self, *exc) -> None:
        self.deinit()

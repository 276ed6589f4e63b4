"""INT1 through gpiozero: the emulated chip drives a MockFactory pin, the FIFO reader wakes on it."""

from __future__ import annotations

import threading

import pytest

from device.clock import ScaledClock
from device.sensor import open_emulated
from tests.sensor.conftest import collect, load


@pytest.fixture
def mock_pins():
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    previous = Device.pin_factory
    Device.pin_factory = MockFactory()
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = previous


def test_int1_on_a_mock_pin_wakes_the_reader_once_per_watermark(recording, mock_pins):
    expected = load(recording)
    reader = open_emulated(recording, int1_gpio=4, watermark_s=0.5)
    pin = mock_pins.pin(4)
    out = collect(reader, expected[-1, 0])
    assert len(out) == len(expected)
    states = [state for _, state in pin.states]
    rises = sum(1 for a, b in zip(states, states[1:]) if b and not a)
    assert rises == len(expected) // 26  # a watermark every 26 samples, each one rising edge
    assert reader.wakeups <= rises + 1  # woken by the pin, not by a timeout


def test_scaled_clock_fires_int1_from_the_chip_timer(recording, mock_pins):
    """On a ScaledClock nobody advances time for the chip: its timer thread raises INT1."""
    reader = open_emulated(recording, clock=ScaledClock(40.0), int1_gpio=17, watermark_s=0.5)
    blocks = []
    done = threading.Event()

    def consume():
        for block in reader:
            blocks.append(block)
            if block.t_s[-1] >= 2.0:
                reader.stop()
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    try:
        assert done.wait(timeout=30), "the reader never got 2 s of data"
    finally:
        reader.stop()
        reader.bus.close()
    assert sum(len(b) for b in blocks) >= 2 * 52
    assert len(mock_pins.pin(17).states) > 2  # the line toggled


def test_no_timer_thread_on_a_virtual_clock():
    """On a VirtualClock a timer thread would push time on by itself; the EventClock wakes the chip."""
    from device.sensor.emulator import EventClock, FunctionMotion, emulated_bus, still_motion

    clock = EventClock()
    bus = emulated_bus("LSM6DSOX", FunctionMotion(still_motion), clock)
    bus.chips[0x6A].start()
    assert bus.chips[0x6A]._thread is None and clock.monotonic() == 0.0

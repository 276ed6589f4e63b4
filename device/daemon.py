"""The daemon's wiring: the night window, the recording loop, sd_notify and signals.

Data flows one way: sensor blocks → `LegDetector` per leg → night store (each minute, with the
recording's progress; button presses at once) → at the end of the window the summary, built from
what is stored, goes into the outbox in the same transaction that closes the night → the uplink
drains it. A restart mid-night resumes the same
night: the time the daemon was down is simply not covered by any recording segment, so it becomes
a gap. A night whose window ended while the daemon was down is closed at the next start.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import queue
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device import __version__
from device.clock import Clock, ScaledClock
from device.config import DeviceConfig, NightConfig
from device.detect.events import Interval, PostureSegment
from device.errors import SensorError
from device.notify import Notifier
from device.samples import SampleBlock
from device.store import LegEvents, NightInfo, Progress, Segment, Store, StoredNight

log = logging.getLogger("device.daemon")

# How often the recording's progress (segment end, completed events, open posture) is written, in
# one transaction. A kill -9 loses at most this much; the detector already holds events back for up
# to a 60-s frame, and fewer, larger transactions keep SD-card writes far under 5 MB a night.
HEARTBEAT_S = 60.0
IDLE_POLL_S = 5.0  # the loop's tick outside the window (watchdog, fault LED, stop requests)
SENSOR_RETRY_MAX_S = 60.0
STALE_RETRY_S = 3600.0  # a night whose summary could not be built is tried again this often
SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


# --- logging for journald --------------------------------------------------------------------
class JournalFormatter(logging.Formatter):
    """Prefix each line with its syslog priority (`<3>` for errors …), which journald understands."""

    def format(self, record: logging.LogRecord) -> str:
        prio = SYSLOG_PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        return "\n".join(f"<{prio}>{line}" for line in super().format(record).splitlines())


def setup_logging(level: int = logging.INFO) -> None:
    """Log to stderr with syslog priority prefixes (journald adds its own timestamps)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("paho").setLevel(logging.WARNING)


# --- the night window ------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """One night's recording window; `night` is the evening's date."""

    night: str
    start: dt.datetime
    end: dt.datetime
    timezone: str

    @property
    def duration_s(self) -> float:
        """Length of the window in seconds, DST changes included (subtracting two datetimes of one
        zone would give the wall-clock difference)."""
        return self.end.timestamp() - self.start.timestamp()

    def t_s(self, wall_s: float) -> float:
        """Seconds from the window's start of the Unix time `wall_s`."""
        return wall_s - self.start.timestamp()


def window_at(wall_s: float, night: NightConfig) -> Window:
    """The window containing Unix time `wall_s`, or else the next one to begin."""
    zone = night.zone
    now = dt.datetime.fromtimestamp(wall_s, dt.timezone.utc)
    today = now.astimezone(zone).date()
    for days in (-1, 0, 1):
        evening = today + dt.timedelta(days=days)
        start = dt.datetime.combine(evening, night.start_time, tzinfo=zone)
        end_day = evening if night.end_time > night.start_time else evening + dt.timedelta(days=1)
        end = dt.datetime.combine(end_day, night.end_time, tzinfo=zone)
        if now < end:
            return Window(evening.isoformat(), start, end, night.timezone)
    raise AssertionError("unreachable: tomorrow's window always ends after now")


# --- the sensor, as the daemon sees it --------------------------------------------------------
STALL_S = 10.0  # a reader that neither delivers nor retries for this long is hung: stop the watchdog


class LegReaders:
    """The FIFO reader(s), one per leg, each drained by its own thread into one queue.

    `blocks()` yields (leg, block) and, when nothing came for a moment, (-1, None) so the caller
    can look at the time. A reader keeps retrying I2C errors itself (the gap shows in `t_s`); an
    exception it raises ends the session with `SensorError`.
    """

    def __init__(self, readers: list[Any], clock: Clock, info: dict[str, Any],
                 cleanup: Callable[[], None] = lambda: None) -> None:
        self.readers, self.clock, self.info = readers, clock, info
        self._cleanup = cleanup
        self._queue: queue.Queue = queue.Queue()
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
                self._queue.put((leg, block))
        except Exception as exc:
            self._queue.put((leg, exc))

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
        return self._errors != before or any(self.clock.monotonic() - p > 2.0 for p in self._progress)

    def blocks(self) -> Iterator[tuple[int, SampleBlock | None]]:
        """(leg, block) as they come; (-1, None) after a quiet half second (real time)."""
        while True:
            try:
                leg, item = self._queue.get(timeout=0.5)
            except queue.Empty:
                yield -1, None
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
    from smbus2 import SMBus

    from device.panel import int1_input

    try:
        bus = SMBus(cfg.sensor.bus)
    except OSError as exc:
        raise SensorError(f"cannot open /dev/i2c-{cfg.sensor.bus} ({exc.strerror or exc}): "
                          "is I2C enabled (dtparam=i2c_arm=on)?") from exc
    try:
        int1 = int1_input(cfg.sensor.int1_pin)
    except Exception as exc:  # GPIO busy or absent: the FIFO reader then polls once a second
        log.warning("sensor: cannot claim INT1 on GPIO %d (%s); polling the FIFO instead", cfg.sensor.int1_pin, exc)
        int1 = None
    return _read_legs(cfg, clock, bus, int1, "fifo", cfg.sensor.chip or None)


def _read_legs(cfg: DeviceConfig, clock: Clock, bus: Any, int1: Any, driver: str, chip: str | None) -> LegReaders:
    """A FIFO reader per leg on `bus` (INT1 wired for the first); closes bus and int1 on failure."""
    from device.sensor.fifo import FifoReader

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


class _ShiftedMotion:
    """A recording played from the window time of the chip's first sample (a recording started
    late begins mid-way), so recording time and window time agree to the sample."""

    def __init__(self, inner: Any, window: Window) -> None:
        self.inner, self.window = inner, window
        self.shift_s = 0.0
        self.gaps: list[tuple[float, float]] = []

    def started(self, wall_s: float) -> None:
        self.shift_s = max(0.0, self.window.t_s(wall_s))
        self.gaps = [(a - self.shift_s, b - self.shift_s) for a, b in getattr(self.inner, "gaps", [])
                     if b > self.shift_s]

    def at(self, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.inner.at(t_s + self.shift_s)


def emulated_bus(cfg: DeviceConfig, clock: Clock, motions: list[Any], *, chip: str = "LSM6DSOX",
                 faults: str = "") -> tuple[Any, Any]:
    """The register-level emulated chip(s), one per leg, leg k moving as `motions[k]` (each chip
    samples its own from its own thread), and the INT1 input: (bus, int1). INT1 goes through a
    gpiozero mock pin as it would through a real one. Close both when done."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    from device.panel import int1_input
    from device.sensor.emulator import EmulatedBus, EmulatedChip, FaultSchedule
    from device.sensor.lsm6ds import variant

    if not isinstance(Device.pin_factory, MockFactory):
        Device.pin_factory = MockFactory()
    schedule = FaultSchedule.parse(faults)
    int1 = int1_input(cfg.sensor.int1_pin)
    pin = Device.pin_factory.pin(cfg.sensor.int1_pin)

    def drive(level: bool) -> None:
        if level:
            pin.drive_high()
        else:
            pin.drive_low()

    chips = [EmulatedChip(variant(chip), motions[leg], clock, address=cfg.sensor.addresses[leg], faults=schedule,
                          on_int1=drive if leg == 0 else None) for leg in range(cfg.sensor.legs)]
    for c in chips:
        c.start()
    return EmulatedBus(*chips), int1


class EmulatedNights:
    """The sensor factory of `run --emulate`: night i plays recording i (the last one repeats) from
    the window's start, through the emulated chip and the real FIFO reader.

    Reading a recording's index takes a while, so `prepare(i)` does it ahead of the window: the
    recording then starts when the night does, even on a fast clock.
    """

    def __init__(self, cfg: DeviceConfig, clock: Clock, recordings: tuple[str, ...], *,
                 chip: str = "LSM6DSOX", faults: str = "") -> None:
        self.cfg, self.clock, self.recordings = cfg, clock, recordings
        self.chip, self.faults = chip, faults
        self._prepared: dict[int, Any] = {}

    def prepare(self, index: int) -> None:
        """Index night `index`'s recording now (once per leg: each chip plays its own copy)."""
        from device.sensor.emulator import RecordingMotion

        if index not in self._prepared:
            path = self.recordings[min(index, len(self.recordings) - 1)]
            self._prepared[index] = [RecordingMotion(path) for _ in range(self.cfg.sensor.legs)]

    def __call__(self, index: int, window: Window | None) -> LegReaders:
        from device.sensor.emulator import FunctionMotion, still_motion

        if window is None:  # the start-up probe: any motion will do
            motions: list[Any] = [FunctionMotion(still_motion) for _ in range(self.cfg.sensor.legs)]
        else:
            self.prepare(index)
            # Each session takes fresh motions: a recording plays forward only.
            motions = [_ShiftedMotion(m, window) for m in self._prepared.pop(index)]
        bus, int1 = emulated_bus(self.cfg, self.clock, motions, chip=self.chip, faults=self.faults)
        return _read_legs(self.cfg, self.clock, bus, int1, "fifo (emulated)", self.chip)


SensorFactory = Callable[[int, "Window | None"], LegReaders]  # (night index, window) → open sensor


def remap_axes(block: SampleBlock, axes: list[str]) -> SampleBlock:
    """Turn the sensor frame into the shin frame of the design, per the configured mounting."""
    if axes == ["+x", "+y", "+z"]:
        return block
    idx = ["xyz".index(a[1]) for a in axes]
    sign = np.array([-1.0 if a[0] == "-" else 1.0 for a in axes])
    return SampleBlock(block.t_s, block.accel_g[:, idx] * sign, block.gyro_dps[:, idx] * sign, block.odr_hz)


# --- the summary, from what is stored ---------------------------------------------------------
def coverage_gaps(segments: list[Segment], detector_gaps: list[Interval], duration_s: float) -> list[Interval]:
    """The window's gaps: everything no segment covers, plus gaps the detector saw, merged."""
    holes: list[Interval] = list(detector_gaps)
    cursor = 0.0
    for seg in sorted(segments, key=lambda s: s.start_s):
        if seg.start_s > cursor:
            holes.append(Interval(cursor, seg.start_s))
        cursor = max(cursor, seg.end_s)
    if cursor < duration_s:
        holes.append(Interval(cursor, duration_s))
    merged: list[Interval] = []
    for h in sorted(holes, key=lambda i: i.start_s):
        start, end = max(0.0, h.start_s), min(duration_s, h.end_s)
        if end - start <= 0:
            continue
        if merged and start <= merged[-1].end_s:
            merged[-1] = Interval(merged[-1].start_s, max(merged[-1].end_s, end))
        else:
            merged.append(Interval(start, end))
    return merged


def build_summary(stored: StoredNight, device_id: str, generated_at: dt.datetime) -> dict[str, Any]:
    """The published summary: `score_night`'s core from the stored night plus the device metadata
    of docs/summary.md."""
    from device.detect.bed import in_bed_intervals
    from device.detect.scoring import score_night

    info = stored.info
    legs_n = int(info.sensor.get("legs", 1))
    gaps = coverage_gaps(stored.segments, stored.gaps, info.duration_s)
    legs = [[m for m in stored.movements if m.leg == k] for k in range(legs_n)]
    in_bed = in_bed_intervals(stored.postures, stored.markers, info.duration_s)
    core = score_night(legs, in_bed, gaps, info.duration_s, rules=info.rules,
                       recording_start=dt.datetime.fromisoformat(info.window_start))
    recorded_s = sum(s.end_s - s.start_s for s in stored.segments)
    samples = sum(s.samples for s in stored.segments)
    sensor = dict(info.sensor)
    sensor["odr_measured_hz"] = round(samples / legs_n / recorded_s, 3) if recorded_s > 0 else None
    return {
        **core,
        "device_id": device_id,
        "night": info.night,
        "summary_id": str(uuid.uuid4()),
        "generated_at": generated_at.astimezone(dt.timezone.utc).isoformat(),
        "window": {"start": info.window_start, "end": info.window_end, "timezone": info.timezone},
        "software_version": __version__,
        "sensor": sensor,
        "clock_synced": info.clock_synced,
        "markers": [{"t_s": t, "kind": kind} for t, kind in stored.markers],
    }


# --- the daemon ---------------------------------------------------------------------------------
@dataclass
class _Recording:
    """The state of one recording session inside a night (until the sensor fails or the night ends)."""

    window: Window
    segment_id: int | None = None
    offsets_s: dict[int, float] = field(default_factory=dict)  # per leg: night time = t_s + offset
    start_s: float = 0.0
    end_s: float = 0.0
    samples: int = 0
    last_beat: float = 0.0
    detectors: dict[int, Any] = field(default_factory=dict)
    pending: list[LegEvents] = field(default_factory=list)  # detector outputs not yet written
    open_written: dict[int, tuple[float, str] | None] = field(default_factory=dict)  # by leg


class Daemon:
    """Records every night and forwards each summary. `run()` returns the exit status."""

    def __init__(self, cfg: DeviceConfig, clock: Clock, open_sensor: SensorFactory, *,
                 notifier: Notifier | None = None, nights: int | None = None,
                 clock_synced: Callable[[], bool] | None = None, panel: bool = True,
                 retry_scale: float = 1.0) -> None:
        self.cfg, self.clock, self.open_sensor = cfg, clock, open_sensor
        self.notifier = notifier or Notifier()
        self.max_nights = nights
        self.clock_synced = clock_synced or _ntp_synchronized
        self.use_panel = panel
        self.retry_scale = retry_scale
        self.stop_requested = threading.Event()
        self.store = Store(f"{cfg.data_dir}/night.db")
        self.uplink: Any = None
        self.panel: Any = None
        self.sensor_fault = False
        self.recording: _Recording | None = None
        self.night: Window | None = None  # the window being recorded (sensor working or not)
        self.nights_closed = 0
        self.sensor_info: dict[str, Any] = {}
        self._stale_checked = -math.inf
        self._night_index = 0

    # --- lifecycle ------------------------------------------------------------------------------
    def request_stop(self, *_: Any) -> None:
        """Ask the loop to stop (SIGTERM, SIGINT)."""
        self.stop_requested.set()

    def run(self) -> int:
        """Open the store and the sensor, signal READY, then record night after night."""
        from device.uplink import Uplink

        self.store.start()
        self._close_stale_nights()
        if not self._probe_sensor():
            self._shutdown()
            return 0
        self.uplink = Uplink(self.cfg.broker, self.cfg.device_id, self.store,
                             min_retry_s=max(0.05, 1.0 * self.retry_scale),
                             max_retry_s=max(0.5, 300.0 * self.retry_scale))
        if self.use_panel:
            self._start_panel()
        prepare = getattr(self.open_sensor, "prepare", None)
        if prepare is not None:  # an emulated night: index its recording before the clock runs
            prepare(self._night_index)
        start = getattr(self.clock, "start", None)
        if start is not None:
            start()
        self.notifier.ready(f"sensor {self.sensor_info.get('chip')} ready; waiting for the night window")
        log.info("ready: %s, device %s", self.sensor_info.get("chip"), self.cfg.device_id)
        self.uplink.start()
        try:
            while not self.stop_requested.is_set():
                if self.max_nights is not None and self.nights_closed >= self.max_nights:
                    if self._all_acknowledged():
                        break
                    self._idle(None)
                    continue
                window = window_at(self.clock.wall(), self.cfg.night)
                if self.clock.wall() < window.start.timestamp():
                    self._idle(window)
                    continue
                self._record_night(window)
        finally:
            self._shutdown()
        return 0

    def _probe_sensor(self) -> bool:
        """Open and close the sensor once: it must answer before READY. Retries until it does."""
        retry_s = 1.0
        while not self.stop_requested.is_set():
            try:
                probe = self.open_sensor(self._night_index, None)
            except SensorError as exc:
                log.error("sensor: %s; retrying in %.0f s", exc, retry_s)
                self.notifier.status(f"waiting for the sensor: {exc}")
                self.clock.wait(self.stop_requested, retry_s)
                retry_s = min(retry_s * 2, SENSOR_RETRY_MAX_S)
                continue
            self.sensor_info = dict(probe.info)
            probe.close()
            return True
        return False

    def _shutdown(self) -> None:
        self.store.flush()
        self.notifier.stopping()
        log.info("stopping: night store flushed")
        if self.uplink is not None:
            self.uplink.stop()
        if self.panel is not None:
            self.panel.close()
        self.store.close()

    def _start_panel(self) -> None:
        from device.panel import Panel, PanelStatus

        def status() -> PanelStatus:
            return PanelStatus(self.night is not None, self.sensor_fault, self.store.outbox_count())

        self.panel = Panel(self.cfg.gpio, self.clock, self._on_button, status)
        try:
            self.panel.start()
        except Exception as exc:  # no GPIO (a desk, a container): record anyway, without the panel
            log.warning("panel: GPIO unavailable (%s); the button and LED are disabled", exc)
            self.panel = None

    def _on_button(self) -> str | None:
        window = self.night
        if window is None:
            log.info("button: pressed outside the night window; ignored")
            return None
        kind = self.store.add_marker(window.night, window.t_s(self.clock.wall()))
        log.info("button: %s marked", kind)
        return kind

    def _all_acknowledged(self) -> bool:
        return self.store.outbox_count() == 0

    def _idle(self, window: Window | None) -> None:
        """Wait for the window (or for acknowledgements), ticking the watchdog and fault LED."""
        self.notifier.watchdog()
        if window is not None:
            self.notifier.status(f"idle; next night {window.night} starts {window.start.isoformat()}")
            wait_s = min(IDLE_POLL_S, window.start.timestamp() - self.clock.wall())
            self._skip_idle(window)
        else:
            wait_s = IDLE_POLL_S
        if self.panel is not None:
            self.panel.fault_tick(self.sensor_fault)
        if self.clock.monotonic() - self._stale_checked >= STALE_RETRY_S:
            self._stale_checked = self.clock.monotonic()
            self._close_stale_nights()
        self.clock.wait(self.stop_requested, max(0.0, wait_s))

    def _skip_idle(self, window: Window) -> None:
        """Get the sensor ready for the window; on an emulated clock that can skip, then jump to just
        before it."""
        prepare = getattr(self.open_sensor, "prepare", None)
        if prepare is not None:
            prepare(self._night_index)
        skip = getattr(self.clock, "skip_to", None)
        if skip is not None:
            skip(window.start.timestamp() - 2.0)

    def _close_stale_nights(self) -> None:
        """Close nights whose window ended while the daemon was down."""
        now = self.clock.wall()
        rows = self.store.call(lambda db: list(db.query(
            "select night, window_end from nights where closed_at is null")))
        for row in rows:
            if dt.datetime.fromisoformat(row["window_end"]).timestamp() <= now:
                log.info("closing night %s, which ended while the daemon was down", row["night"])
                self._close_night(row["night"])

    # --- a night --------------------------------------------------------------------------------
    def _night_info(self, window: Window) -> NightInfo:
        return NightInfo(night=window.night, window_start=window.start.isoformat(),
                         window_end=window.end.isoformat(), timezone=window.timezone,
                         duration_s=window.duration_s, clock_synced=bool(self.clock_synced()),
                         rules=self.cfg.rules,
                         sensor={**self.sensor_info, "legs": self.cfg.sensor.legs})

    def _record_night(self, window: Window) -> None:
        if self.store.is_closed(window.night):
            self._idle_until_end(window)
            return
        fresh = self.store.open_night(self._night_info(window), _now_iso(self.clock))
        log.info("night %s %s", window.night, "begins" if fresh else "resumes after a restart")
        self.night = window
        try:
            self._record_window(window)
        finally:
            self.night = None
        if self.clock.wall() >= window.end.timestamp():
            self._close_night(window.night)
            self._night_index += 1

    def _record_window(self, window: Window) -> None:
        """Record sessions until the window ends, reopening the sensor after a failure."""
        retry_s = 1.0
        while not self.stop_requested.is_set() and self.clock.wall() < window.end.timestamp():
            try:
                sensor = self.open_sensor(self._night_index, window)
            except SensorError as exc:
                self._sensor_failed(exc, retry_s)
                retry_s = min(retry_s * 2, SENSOR_RETRY_MAX_S)
                continue
            retry_s = 1.0
            self.sensor_fault = False
            try:
                self._record(window, sensor)
            except SensorError as exc:
                self._sensor_failed(exc, retry_s)
            finally:
                self._end_recording()
                sensor.close()

    def _idle_until_end(self, window: Window) -> None:
        while not self.stop_requested.is_set() and self.clock.wall() < window.end.timestamp():
            self.notifier.watchdog()
            self.clock.wait(self.stop_requested, min(IDLE_POLL_S, window.end.timestamp() - self.clock.wall()))

    def _sensor_failed(self, exc: Exception, retry_s: float) -> None:
        self.sensor_fault = True
        log.error("sensor: %s; retrying in %.0f s (the time without data is reported as a gap)", exc, retry_s)
        self.notifier.status(f"sensor fault: {exc}")
        # The loop is alive and retrying, not hung: keep the watchdog fed while it waits.
        until = self.clock.monotonic() + retry_s
        while not self.stop_requested.is_set() and self.clock.monotonic() < until:
            self.notifier.watchdog()
            if self.panel is not None:
                self.panel.fault_tick(True)
            self.clock.wait(self.stop_requested, min(IDLE_POLL_S, until - self.clock.monotonic()))

    def _record(self, window: Window, sensor: LegReaders) -> None:
        """The sampling loop: runs until the window ends, a stop is asked or the sensor fails."""
        from device.detect import LegDetector

        rec = _Recording(window)
        self.recording = rec
        self.notifier.status(f"recording night {window.night}")
        end_wall = window.end.timestamp()
        for leg, block in sensor.blocks():
            if sensor.alive():
                self.notifier.watchdog()  # only a live sampling loop pings the watchdog
            fault = sensor.faulty()
            if fault != self.sensor_fault:
                self.sensor_fault = fault
                self.notifier.status(f"{'sensor fault (retrying)' if fault else 'recording'} night {window.night}")
            if self.panel is not None:
                self.panel.fault_tick(fault)
            if block is not None and len(block):
                self._take_block(rec, sensor, leg, block, LegDetector)
            if self.stop_requested.is_set() or self.clock.wall() >= end_wall:
                return

    def _take_block(self, rec: _Recording, sensor: LegReaders, leg: int, block: SampleBlock,
                    detector_cls: Any) -> None:
        window = rec.window
        if leg not in rec.offsets_s:
            origin = sensor.wall_of_origin(leg)
            if origin is None:  # cannot happen once a block arrived; anchor on now to be safe
                origin = self.clock.wall() - float(block.t_s[-1])
            rec.offsets_s[leg] = window.t_s(origin)
        t = block.t_s + rec.offsets_s[leg]
        keep = (t >= 0) & (t < window.duration_s)
        if not keep.any():
            return
        if rec.segment_id is None:
            rec.start_s = float(t[keep][0])
            rec.segment_id = self.store.begin_segment(window.night, rec.start_s)
            rec.last_beat = self.clock.monotonic()
        det = rec.detectors.get(leg)
        if det is None:
            det = rec.detectors[leg] = detector_cls(odr_hz=block.odr_hz, leg=leg)
        # The reader may refine its rate estimate mid-night (t_s stays exact); the detector keeps
        # its own, which differs by at most a few percent.
        shifted = remap_axes(SampleBlock(t[keep], block.accel_g[keep], block.gyro_dps[keep], det.odr_hz),
                             self.cfg.sensor.axes)
        self._keep(rec, leg, det.feed(shifted))
        rec.samples += int(keep.sum())
        rec.end_s = max(rec.end_s, float(t[keep][-1]) + 1.0 / block.odr_hz)
        if self.clock.monotonic() - rec.last_beat >= HEARTBEAT_S:
            rec.last_beat = self.clock.monotonic()
            self._save(rec, final=False)

    @staticmethod
    def _keep(rec: _Recording, leg: int, out: Any) -> None:
        if out.movements or out.postures or out.gaps:
            rec.pending.append(LegEvents(leg, out.movements, out.postures, out.gaps))

    def _save(self, rec: _Recording, final: bool) -> None:
        """Write the segment's progress: one transaction per heartbeat."""
        changed: dict[int, PostureSegment] = {}
        for leg, det in rec.detectors.items():
            posture = None if final else det.open_posture()
            key = None if posture is None else (posture.start_s, posture.posture)
            if posture is not None and rec.open_written.get(leg) != key:
                changed[leg] = posture
                rec.open_written[leg] = key
        self.store.save_progress(Progress(rec.window.night, rec.segment_id, rec.end_s, rec.samples,
                                          list(rec.pending), changed, final))
        rec.pending.clear()

    def _end_recording(self) -> None:
        """Flush the detectors and write the segment's end: what was recorded is kept."""
        rec, self.recording = self.recording, None
        if rec is None or rec.segment_id is None:
            return
        for leg, det in rec.detectors.items():
            self._keep(rec, leg, det.finish())
        self._save(rec, final=True)
        self.store.flush()

    def _close_night(self, night: str) -> None:
        generated = dt.datetime.fromtimestamp(self.clock.wall(), dt.timezone.utc)

        def build(stored: StoredNight) -> tuple[str, dict[str, Any]]:
            from device.uplink import summary_topic

            return summary_topic(self.cfg.device_id), build_summary(stored, self.cfg.device_id, generated)

        try:
            summary_id = self.store.close_night(night, build, generated.isoformat())
        except Exception:
            log.exception("night %s: the summary could not be built; the night stays open", night)
            return
        self.nights_closed += 1
        if summary_id is not None:
            log.info("night %s closed; its summary waits in the outbox", night)
            self.notifier.status(f"night {night} closed; summary queued")
        if self.uplink is not None:
            self.uplink.kick()


def _now_iso(clock: Clock) -> str:
    return dt.datetime.fromtimestamp(clock.wall(), dt.timezone.utc).isoformat()


def _ntp_synchronized() -> bool:
    from device.doctor import ntp_synchronized

    return bool(ntp_synchronized())


class FastForwardClock(ScaledClock):
    """A `ScaledClock` that can also skip idle time, so an emulated device plays night after night
    without waiting out the days between them."""

    def __init__(self, speed: float, start_wall: float | None = None, real_origin: float | None = None) -> None:
        super().__init__(speed, start_wall)
        # With `real_origin` (a Unix time), the clock read `start_wall` at that real instant, so a
        # restarted process continues the same timeline, the downtime included.
        self._real_origin = real_origin
        self._skipped_s = 0.0 if real_origin is None else max(0.0, time.time() - real_origin) * speed

    def start(self) -> None:
        """Without a `real_origin`, read `start_wall` now: the daemon's start-up takes no clock time."""
        if self._real_origin is None:
            self._real0 = time.monotonic()
            self._skipped_s = 0.0

    def monotonic(self) -> float:
        return super().monotonic() + self._skipped_s

    def skip_to(self, wall_s: float) -> None:
        """Jump forward to Unix time `wall_s` (never backward)."""
        ahead = wall_s - self.wall()
        if ahead > 0:
            self._skipped_s += ahead


def install_signal_handlers(daemon: Daemon) -> None:
    """SIGTERM and SIGINT stop the daemon cleanly."""
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)


def run_command(config_path: str | None, recordings: tuple[str, ...] = (), speed: float = 1.0,
                start_at: str | None = None, origin: float | None = None, nights: int | None = None,
                faults: str = "", chip: str = "LSM6DSOX") -> int:
    """`rlsmon-device run`: returns the exit status (78 for a bad config)."""
    import functools
    import time

    from device.config import EX_CONFIG, load_config
    from device.errors import ConfigError

    setup_logging()
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        log.error("%s", exc)
        return EX_CONFIG
    if recordings:
        start_wall = (dt.datetime.fromisoformat(start_at).timestamp() if start_at else
                      window_at(time.time(), cfg.night).start.timestamp() - 3600.0)
        clock: Clock = FastForwardClock(speed, start_wall, real_origin=origin)

        daemon = Daemon(cfg, clock, EmulatedNights(cfg, clock, recordings, chip=chip, faults=faults), nights=nights, retry_scale=1.0 / speed,
                        clock_synced=lambda: True)
    else:
        from device.clock import SystemClock

        clock = SystemClock()
        daemon = Daemon(cfg, clock, functools.partial(_open_hardware_for_night, cfg, clock), nights=nights)
    install_signal_handlers(daemon)
    return daemon.run()


def _open_hardware_for_night(cfg: DeviceConfig, clock: Clock, index: int, window: Window | None) -> LegReaders:
    return open_hardware(cfg, clock)

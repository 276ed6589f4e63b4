"""The daemon: the recording loop, night after night, with sd_notify and signals.

Data flows one way: sensor blocks → `LegDetector` per leg → night store (each minute, with the
recording's progress; button presses at once) → at the end of the window the summary, built from
what is stored, goes into the outbox in the same transaction that closes the night → the uplink
sends it until the collector's receipt comes. A receipted night is pruned from the store once it
is older than `[store] retention_days`. On a `[sit]` evening the loop also ticks the evening test
(device/sit.py), and a press goes to it while it is offered or running. A restart mid-night resumes the same
night: the time the daemon was down is simply not covered by any recording segment, so it becomes
a gap. A night whose window ended while the daemon was down is closed at the next start.

What the loop uses lives beside it: the night window in `device.window`, the legs' readers in
`device.sensor.legs`, the summary in `device.summary`; for `run --emulate`, the emulated nights in
`device.sensor.emulated` and the `FastForwardClock` in `device.clock`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from device.clock import Clock, FastForwardClock, SystemClock, ntp_synchronized
from device.config import DeviceConfig
from device.detect.events import PostureSegment
from device.errors import SensorError
from device.notify import Notifier
from device.panel import FAULT_EVERY_S
from device.samples import SampleBlock
from device.sensor.legs import LegReaders, open_hardware, remap_axes
from device.sit import sit_runner
from device.store import LegEvents, NightInfo, Progress, Store, StoredNight
from device.summary import build_summary
from device.wear import WearEpoch, WearEpochs
from device.window import Window, window_at

log = logging.getLogger("device.daemon")

# How often the recording's progress (segment end, completed events, open posture) is written, in
# one transaction. A kill -9 loses at most this much; the detector already holds events back for up
# to a 60-s frame, and fewer, larger transactions keep SD-card writes far under 5 MB a night.
HEARTBEAT_S = 60.0
# Outside recording the loop sleeps until its next deadline: the window's start or end, half the
# systemd watchdog's interval (WATCHDOG_USEC), the fault LED's minute while the sensor is faulty,
# the hourly retry of stale nights, and at most WALL_RECHECK_S, because the wall clock may step
# (the Pi has no RTC: NTP sets it after boot) and move the window's start. RECEIPT_POLL_S is only
# for `--nights`, whose end waits for the collector's receipts.
WALL_RECHECK_S = 60.0
RECEIPT_POLL_S = 5.0
# While recording, the loop wakes for each block (about once a second per leg) and otherwise only
# when the sensor has been quiet this long: a little over `legs.FAULT_AFTER_S`, so that one quiet
# wake-up already sees the fault (LED, status, watchdog), or at the window's end.
QUIET_S = 2.5
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


SensorFactory = Callable[[int, Window | None], LegReaders]  # (night index, window) → open sensor


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
    wear: dict[int, WearEpochs] = field(default_factory=dict)  # by leg: minutes of temperature, stillness
    pending_wear: list[tuple[int, WearEpoch]] = field(default_factory=list)  # not yet written, by leg
    open_written: dict[int, tuple[float, str] | None] = field(default_factory=dict)  # by leg


class Daemon:
    """Records every night and forwards each summary. `run()` returns the exit status."""

    def __init__(self, cfg: DeviceConfig, clock: Clock, open_sensor: SensorFactory, *,
                 notifier: Notifier | None = None, nights: int | None = None, stay: bool = False,
                 clock_synced: Callable[[], bool] | None = None, panel: bool = True,
                 retry_scale: float = 1.0) -> None:
        self.cfg, self.clock, self.open_sensor = cfg, clock, open_sensor
        self.notifier = notifier or Notifier()
        self.max_nights = nights
        self.stay = stay  # after `nights`: stay connected and idle until stopped, instead of exiting
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
        self._watchdog_s = self.notifier.watchdog_interval_s()
        self._night_index = 0
        self.sit = sit_runner(cfg, clock, self.store)  # the evening test (device/sit.py), or None

    # --- lifecycle ------------------------------------------------------------------------------
    def request_stop(self, *_: Any) -> None:
        """Ask the loop to stop (SIGTERM, SIGINT)."""
        self.stop_requested.set()

    def run(self) -> int:
        """Open the store and the sensor, signal READY, then record night after night."""
        from device.uplink import MAX_RESEND_S, RESEND_S, Uplink

        self.store.start()
        self._close_stale_nights()
        self._prune()
        if not self._probe_sensor():
            self._shutdown()
            return 0
        self.uplink = Uplink(self.cfg.broker, self.cfg.device_id, self.store,
                             min_retry_s=max(0.05, 1.0 * self.retry_scale),
                             max_retry_s=max(0.5, 300.0 * self.retry_scale),
                             resend_s=RESEND_S * self.retry_scale, max_resend_s=MAX_RESEND_S * self.retry_scale)
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
                    if self._all_receipted() and not self.stay:
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
        if self.sit is not None:
            self.sit.panel = self.panel

    def _on_button(self) -> str | None:
        did = self.sit.press() if self.sit is not None else None
        if did is not None:  # the press started or ended the evening test, not a marker
            log.info("button: %s", did)
            return did
        window = self.night
        if window is None:
            log.info("button: pressed outside the night window; ignored")
            return None
        kind = self.store.add_marker(window.night, window.t_s(self.clock.wall()))
        log.info("button: %s marked", kind)
        return kind

    def _all_receipted(self) -> bool:
        return self.store.outbox_count() == 0

    def _tick_s(self) -> float:
        """The longest the loop may sleep outside recording before a deadline of its own: the
        watchdog's ping, the fault LED's next minute, a look at the wall clock."""
        ticks = [WALL_RECHECK_S]
        if self._watchdog_s is not None:
            ticks.append(self._watchdog_s)
        if self.sensor_fault and self.panel is not None:
            ticks.append(FAULT_EVERY_S)
        return max(0.0, min(ticks))

    def _idle(self, window: Window | None) -> None:
        """Wait for the window (or for receipts), ticking the watchdog and fault LED."""
        self.notifier.watchdog()
        if window is not None:
            waiting = self.store.outbox_count()
            self.notifier.status(f"idle; next night {window.night} starts {window.start.isoformat()}"
                                 + (f"; {waiting} summaries await the collector's receipt" if waiting else ""))
            self._skip_idle(window)
            until_s = window.start.timestamp() - self.clock.wall()
        else:
            until_s = RECEIPT_POLL_S
        if self.panel is not None:
            self.panel.fault_tick(self.sensor_fault)
        if self.clock.monotonic() - self._stale_checked >= STALE_RETRY_S:
            self._stale_checked = self.clock.monotonic()
            self._close_stale_nights()
            self._prune()
        stale_s = self._stale_checked + STALE_RETRY_S - self.clock.monotonic()
        self.clock.wait(self.stop_requested, max(0.0, min(until_s, stale_s, self._tick_s())))

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

    def _prune(self) -> None:
        """Delete receipted nights older than the retention (about 4 MB each on the SD card)."""
        today = dt.datetime.fromtimestamp(self.clock.wall(), self.cfg.night.zone).date()
        cutoff = today - dt.timedelta(days=self.cfg.store.retention_days)
        pruned = self.store.prune(cutoff.isoformat())
        if pruned:
            log.info("store: pruned %d receipted night(s) before %s (retention %d days)",
                     len(pruned), cutoff.isoformat(), self.cfg.store.retention_days)

    # --- a night --------------------------------------------------------------------------------
    def _night_info(self, window: Window) -> NightInfo:
        return NightInfo(night=window.night, window_start=window.start.isoformat(),
                         window_end=window.end.isoformat(), timezone=window.timezone,
                         duration_s=window.duration_s, clock_synced=bool(self.clock_synced()),
                         rules=self.cfg.rules,
                         sensor={**self.sensor_info, "legs": self.cfg.sensor.legs,
                                 "sides": self.cfg.sensor.sides})

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
            self.clock.wait(self.stop_requested, max(0.0, min(self._tick_s(), window.end.timestamp() - self.clock.wall())))

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
            if self.sit is not None:
                self.sit.tick()
            self.clock.wait(self.stop_requested, max(0.0, min(self._tick_s(), until - self.clock.monotonic())))

    def _record(self, window: Window, sensor: LegReaders) -> None:
        """The sampling loop: runs until the window ends, a stop is asked or the sensor fails."""
        from device.detect import LegDetector

        rec = _Recording(window)
        self.recording = rec
        self.notifier.status(f"recording night {window.night}")
        end_wall = window.end.timestamp()
        for leg, block in sensor.blocks(lambda: max(0.0, min(QUIET_S, end_wall - self.clock.wall()))):
            if sensor.alive():
                self.notifier.watchdog()  # only a live sampling loop pings the watchdog
            fault = sensor.faulty()
            if fault != self.sensor_fault:
                self.sensor_fault = fault
                self.notifier.status(f"{'sensor fault (retrying)' if fault else 'recording'} night {window.night}")
            if self.panel is not None:
                self.panel.fault_tick(fault)
            if self.sit is not None:
                self.sit.tick()
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
        shifted = remap_axes(SampleBlock(t[keep], block.accel_g[keep], block.gyro_dps[keep], det.odr_hz,
                                         block.temp_c),
                             self.cfg.sensor.axes)
        self._keep(rec, leg, det.feed(shifted))
        rec.pending_wear += [(leg, e) for e in rec.wear.setdefault(leg, WearEpochs()).feed(shifted)]
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
                                          list(rec.pending), changed, final, list(rec.pending_wear)))
        rec.pending.clear()
        rec.pending_wear.clear()

    def _end_recording(self) -> None:
        """Flush the detectors and write the segment's end: what was recorded is kept."""
        rec, self.recording = self.recording, None
        if rec is None or rec.segment_id is None:
            return
        for leg, det in rec.detectors.items():
            self._keep(rec, leg, det.finish())
        rec.pending_wear += [(leg, e) for leg, acc in rec.wear.items() for e in acc.finish()]
        self._save(rec, final=True)
        self.store.flush()

    def _close_night(self, night: str) -> None:
        generated = dt.datetime.fromtimestamp(self.clock.wall(), dt.timezone.utc)

        def build(stored: StoredNight) -> tuple[str, dict[str, Any]]:
            from device.uplink import summary_topic

            return summary_topic(self.cfg.device_id), build_summary(stored, self.cfg.device_id, generated)

        if self.sit is not None:
            self.sit.night_closed(night)
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
    return bool(ntp_synchronized())


def install_signal_handlers(daemon: Daemon) -> None:
    """SIGTERM and SIGINT stop the daemon cleanly."""
    signal.signal(signal.SIGTERM, daemon.request_stop)
    signal.signal(signal.SIGINT, daemon.request_stop)


def run_command(config_path: str | None, recordings: tuple[str, ...] = (), speed: float = 1.0,
                start_at: str | None = None, origin: float | None = None, nights: int | None = None,
                faults: str = "", chip: str = "LSM6DSOX", stay: bool = False, presses: tuple[str, ...] = ()) -> int:
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
        from device.sensor.emulated import EmulatedNights

        start_wall = (dt.datetime.fromisoformat(start_at).timestamp() if start_at else
                      window_at(time.time(), cfg.night).start.timestamp() - 3600.0)
        clock: Clock = FastForwardClock(speed, start_wall, real_origin=origin)
        daemon = Daemon(cfg, clock, EmulatedNights(cfg, clock, recordings, chip=chip, faults=faults),
                        nights=nights, stay=stay, retry_scale=1.0 / speed, clock_synced=lambda: True)
        if presses:  # the emulated patient presses the button (e.g. to take the evening test)
            from device.sensor.emulated import press_button_at

            press_button_at(cfg, clock, [dt.datetime.fromisoformat(p).timestamp() for p in presses],
                            daemon.stop_requested)
    else:
        clock = SystemClock()
        daemon = Daemon(cfg, clock, functools.partial(_open_hardware_for_night, cfg, clock), nights=nights,
                        stay=stay)
    install_signal_handlers(daemon)
    return daemon.run()


def _open_hardware_for_night(cfg: DeviceConfig, clock: Clock, index: int, window: Window | None) -> LegReaders:
    return open_hardware(cfg, clock)

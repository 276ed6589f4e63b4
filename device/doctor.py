"""`rlsmon-device doctor`: check an installation, one line per check: pass, warn or fail, and the fix.

With `--emulate` the sensor checks run against the register-level emulated chip (INT1 through a
gpiozero mock pin); the clock, broker, outbox, disk and config checks are the real ones either way.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import queue
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.clock import ntp_synchronized
from device.config import DeviceConfig
from device.errors import ConfigError

FREE_FAIL_MB = 50  # below this a night's store (< 5 MB) and the logs are at risk
FREE_WARN_MB = 500
RECEIPT_WARN_DAYS = 2  # a summary unreceipted for longer means the clinic has not had that night


@dataclass(frozen=True)
class Check:
    """One check's outcome."""

    status: str  # "pass" | "warn" | "fail"
    name: str
    message: str
    fix: str = ""

    def line(self) -> str:
        """The one-line report."""
        text = f"{self.status.upper():4}  {self.name:8}  {self.message}"
        return text + (f" -- fix: {self.fix}" if self.fix and self.status != "pass" else "")


def check_clock() -> Check:
    """The clock must be NTP-synchronised, or the night window and the summary times are wrong."""
    synced = ntp_synchronized()
    if synced:
        return Check("pass", "clock", "NTP-synchronised")
    fix = "connect the network and enable NTP: sudo timedatectl set-ntp true"
    if synced is None:
        return Check("warn", "clock", "cannot tell whether the clock is synchronised", fix)
    return Check("fail", "clock", "not NTP-synchronised (the Pi has no RTC)", fix)


def check_disk(cfg: DeviceConfig) -> Check:
    """Free space where the night store lives."""
    path = Path(cfg.data_dir)
    while not path.exists():
        path = path.parent
    free_mb = shutil.disk_usage(path).free / 1e6
    fix = f"free space on the filesystem holding {cfg.data_dir}"
    if not os.access(path, os.W_OK):
        return Check("fail", "disk", f"{path} is not writable", f"make {cfg.data_dir} writable by the daemon")
    if free_mb < FREE_FAIL_MB:
        return Check("fail", "disk", f"{free_mb:.0f} MB free at {path}", fix)
    if free_mb < FREE_WARN_MB:
        return Check("warn", "disk", f"{free_mb:.0f} MB free at {path}", fix)
    return Check("pass", "disk", f"{free_mb:.0f} MB free at {path}")


def check_broker(cfg: DeviceConfig, timeout_s: float = 10.0) -> Check:
    """Connect to the broker with our TLS CA and credentials, as the uplink does.

    The broker binds the client id to the username, so this connection takes over the running
    daemon's (it reconnects within seconds). It resumes the daemon's persistent session rather than
    wiping it, and never acknowledges a receipt queued there, so the daemon still gets it."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from device.uplink import SESSION_EXPIRY_S, probe_tls

    b = cfg.broker
    problem = probe_tls(b.host, b.port, b.ca_file, timeout_s)
    if problem is not None:
        return Check("fail", "broker", problem, "check broker.host, broker.port and broker.ca_file")
    try:
        password = Path(b.password_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        return Check("fail", "broker", f"cannot read {b.password_file} ({exc.strerror or exc})",
                     "install the password file from the clinic, mode 0640 root:rlsmon-device "
                     "(sudo systemd/install-device.sh sets it)")
    result: queue.Queue = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=b.username or cfg.device_id,
                         protocol=mqtt.MQTTv5, manual_ack=True)
    client.tls_set(ca_certs=b.ca_file)
    client.username_pw_set(b.username or cfg.device_id, password)
    client.on_connect = lambda c, u, f, rc, p: result.put(rc)
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = SESSION_EXPIRY_S
    try:
        client.connect(b.host, b.port, keepalive=b.keepalive_s, clean_start=False, properties=properties)
    except OSError as exc:
        return Check("fail", "broker", f"cannot connect to {b.host}:{b.port} ({exc})", "check the network")
    client.loop_start()
    try:
        code = result.get(timeout=timeout_s)
    except queue.Empty:
        return Check("fail", "broker", f"no answer from {b.host}:{b.port}", "check the broker is running")
    finally:
        client.disconnect()
        client.loop_stop()
    if code.is_failure:
        return Check("fail", "broker", f"{b.host}:{b.port} refused user {b.username or cfg.device_id}: "
                     f"{code.getName()}", "check broker.username and broker.password_file with the clinic")
    return Check("pass", "broker", f"{b.host}:{b.port} accepts user {b.username or cfg.device_id} over TLS")


def _leg_addresses(cfg: DeviceConfig) -> list[tuple[int, ...]]:
    """The I2C addresses to try for each leg: the configured one, or without a config (`cfg.path`
    empty) one leg at any of the default addresses."""
    if not cfg.path:
        return [tuple(cfg.sensor.addresses)]
    return [(cfg.sensor.addresses[leg],) for leg in range(cfg.sensor.legs)]


def _sensor_checks(cfg: DeviceConfig, bus: Any, int1: Any, clock: Any, bus_name: str) -> Iterator[Check]:
    from device.errors import SensorError
    from device.sensor.fifo import FifoReader

    yield Check("pass", "i2c", f"{bus_name} is open")
    readers = []
    for leg, addresses in enumerate(_leg_addresses(cfg)):
        at = " or ".join(f"0x{a:02X}" for a in addresses)
        try:
            reader = FifoReader(bus, addresses=addresses, chip=cfg.sensor.chip or None, odr_hz=cfg.sensor.odr_hz,
                                int1=int1 if leg == 0 else None, clock=clock, watermark_s=0.25)
        except SensorError as exc:
            yield Check("fail", "sensor", f"leg {leg + 1}: {exc}",
                        f"check the cable and solder joints of the sensor at {at} (SDA, SCL, 3V3, GND)")
            continue
        readers.append(reader)
        yield Check("pass", "sensor", f"leg {leg + 1}: {reader.chip_name} (WHO_AM_I 0x{reader.who_am_i:02X}) "
                    f"at {at}")
    if not readers:
        yield Check("fail", "int1", "not checked: no sensor answered", "fix the sensor first")
        return
    fix = f"wire the sensor's INT1 to GPIO {cfg.sensor.int1_pin} (sensor.int1_pin)"
    rose = int1.wait_for_active(timeout=3.0)
    if rose:
        next(iter(readers[0]))  # drains the FIFO, which must drop INT1
    fell = rose and int1.wait_for_inactive(timeout=3.0)
    for reader in readers:
        reader.stop()
    if rose and fell:
        yield Check("pass", "int1", f"INT1 on GPIO {cfg.sensor.int1_pin} rises at the FIFO watermark and clears")
    else:
        yield Check("fail", "int1", f"INT1 on GPIO {cfg.sensor.int1_pin} "
                    f"{'never rose' if not rose else 'stayed high after the FIFO was read'}", fix)


def check_sensor(cfg: DeviceConfig, emulate: str | None = None) -> Iterator[Check]:
    """I2C bus, WHO_AM_I for each leg, and the INT1 line (on the emulated chip with `emulate`)."""
    from device.clock import SystemClock
    from device.panel import int1_input

    clock = SystemClock()
    if emulate is not None:
        from device.sensor.emulated import emulated_legs
        from device.sensor.emulator import RecordingMotion

        bus, int1 = emulated_legs(cfg, clock, [RecordingMotion(emulate) for _ in range(cfg.sensor.legs)],
                                  chip=cfg.sensor.chip or "LSM6DSOX")
        try:
            yield from _sensor_checks(cfg, bus, int1, clock, "emulated I2C bus")
        finally:
            int1.close()
            bus.close()
        return
    from smbus2 import SMBus

    from device.sensor import bus_problem

    try:
        bus = SMBus(cfg.sensor.bus)
    except OSError as exc:
        yield Check("fail", "i2c", *bus_problem(cfg.sensor.bus, exc))
        return
    try:
        int1 = int1_input(cfg.sensor.int1_pin)
    except Exception as exc:
        bus.close()
        yield Check("fail", "int1", f"cannot claim GPIO {cfg.sensor.int1_pin} ({exc})",
                    "check sensor.int1_pin and that nothing else uses it")
        return
    try:
        yield from _sensor_checks(cfg, bus, int1, clock, dev)
    finally:
        int1.close()
        bus.close()


def check_outbox(cfg: DeviceConfig, now_s: float) -> Check:
    """How many summaries wait for the collector's receipt, and since when (read-only)."""
    import datetime as dt
    import sqlite3

    path = Path(cfg.data_dir) / "night.db"
    if not path.exists():
        return Check("pass", "outbox", "no night recorded yet")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            count, oldest = conn.execute("select count(*), min(night) from outbox").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Check("fail", "outbox", f"cannot read {path} ({exc})", f"check {cfg.data_dir} and its permissions")
    if not count:
        return Check("pass", "outbox", "every summary is receipted by the collector")
    message = f"{count} summary(ies) waiting for the collector's receipt, the oldest for night {oldest}"
    age_days = (dt.date.fromtimestamp(now_s) - dt.date.fromisoformat(oldest)).days
    if age_days > RECEIPT_WARN_DAYS:
        return Check("warn", "outbox", message, "the daemon keeps them and re-sends them: check the broker line "
                     "above and ask the clinic whether its collector (rlsmon-collector) is running")
    return Check("pass", "outbox", message)


def _config_fix(exc: ConfigError) -> str:
    """How to mend the config error `exc`: make the file, or correct the key."""
    if exc.key != "-":
        return f"correct [{exc.key}] in {exc.path}; see firmware_config/device.example.toml"
    if not os.path.exists(exc.path):
        return (f"make it: sudo systemd/install-device.sh installs firmware_config/device.example.toml as "
                f"{exc.path}; then set device_id and [broker] (rlsmon-server add-device prints them)")
    return f"make {exc.path} a TOML file like firmware_config/device.example.toml"


def run_doctor(config_path: str | None, emulate: str | None, echo: Callable[[str], None]) -> int:
    """Run every check, printing one line each; 0 when nothing failed, 1 otherwise.

    Without a valid config the checks that need none still run, on the defaults (the I2C bus, a
    sensor at either default address, INT1, the clock, the disk of the default data directory);
    only the broker check needs the config's broker and credentials.
    """
    from device.config import DEFAULT_PATH, load_config, parse_config

    try:
        cfg = load_config(config_path)
        checks = [Check("pass", "config", f"{config_path or DEFAULT_PATH} is valid")]
    except ConfigError as exc:
        cfg = dataclasses.replace(parse_config('device_id = "doctor"'), path="")
        checks = [Check("fail", "config", str(exc), _config_fix(exc))]
    echo(checks[0].line())
    broker = (lambda: check_broker(cfg)) if cfg.path else lambda: Check(
        "warn", "broker", "not checked: it needs the config's [broker] and password file", "fix the config first")
    later: list[Callable[[], Check]] = [check_clock, broker, lambda: check_outbox(cfg, time.time()),
                                        lambda: check_disk(cfg)]
    for check in itertools.chain(check_sensor(cfg, emulate), (f() for f in later)):
        checks.append(check)
        echo(check.line())
    return 1 if any(c.status == "fail" for c in checks) else 0

"""The device config: a TOML file validated into dataclasses.

Every key the daemon reads is a dataclass field below; a nested dataclass is a TOML table. The
loader walks the dataclasses, so the set of valid keys (`config_keys()`) is derived from them and
the commented example `firmware_config/device.example.toml` is tested against it. Any problem
raises `ConfigError` naming the file, the key and what was expected; the CLI exits 78 (EX_CONFIG)
so that systemd does not restart a misconfigured daemon in a loop.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from device.errors import ConfigError
from device.sensor.lsm6ds import VARIANTS

DEFAULT_PATH = Path("/etc/rlsmon/device.toml")
EX_CONFIG = 78  # sysexits.h: configuration error; systemd's RestartPreventExitStatus uses it

_DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # docs/summary.md: the id in the MQTT topic
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_AXES = {"+x", "-x", "+y", "-y", "+z", "-z"}
# LSM6DS output data rates (Hz) the sensor layer can set; see the LSM6DSOX datasheet, CTRL1_XL.
_ODRS_HZ = (12.5, 26.0, 52.0, 104.0, 208.0, 416.0)


def _check(ok: bool, expected: str) -> str | None:
    return None if ok else expected


@dataclass(frozen=True)
class NightConfig:
    """The nightly recording window, in local time."""

    start: str = field(default="20:00", metadata={"check": lambda v: _check(
        bool(_HHMM.fullmatch(v)), "a local time as HH:MM, e.g. \"20:00\"")})
    end: str = field(default="10:00", metadata={"check": lambda v: _check(
        bool(_HHMM.fullmatch(v)), "a local time as HH:MM, e.g. \"10:00\"")})
    timezone: str = field(default="UTC", metadata={"check": lambda v: _check(
        _is_zone(v), "an IANA time zone name, e.g. \"Europe/Berlin\"")})

    @property
    def zone(self) -> ZoneInfo:
        """The window's time zone."""
        return ZoneInfo(self.timezone)

    @property
    def start_time(self) -> dt.time:
        """`start` as a time of day."""
        return dt.time.fromisoformat(self.start)

    @property
    def end_time(self) -> dt.time:
        """`end` as a time of day."""
        return dt.time.fromisoformat(self.end)


@dataclass(frozen=True)
class SensorConfig:
    """The ankle IMU(s) on the I2C bus."""

    bus: int = field(default=1, metadata={"check": lambda v: _check(v >= 0, "a bus number ≥ 0")})
    addresses: list[int] = field(default_factory=lambda: [0x6A, 0x6B], metadata={
        "check": lambda v: _check(len(v) >= 1 and all(0x03 <= a <= 0x77 for a in v),
                                  "a list of 7-bit I2C addresses (0x03–0x77), one per leg")})
    legs: int = field(default=1, metadata={"check": lambda v: _check(v in (1, 2), "1 or 2")})
    # The leg one sensor is strapped to, so each LM can say it (docs/summary.md `leg`); "" is unknown.
    # Two sensors need none: the first of `addresses` is the left leg, the second the right.
    side: str = field(default="", metadata={"check": lambda v: _check(
        v in ("", "left", "right"), '"" (not said), "left" or "right"')})
    odr_hz: float = field(default=52.0, metadata={"check": lambda v: _check(
        v in _ODRS_HZ, "one of " + ", ".join(f"{o:g}" for o in _ODRS_HZ))})
    axes: list[str] = field(default_factory=lambda: ["+x", "+y", "+z"], metadata={
        "check": lambda v: _check(
            len(v) == 3 and all(a in _AXES for a in v) and len({a[1] for a in v}) == 3 and _right_handed(v),
            "three distinct signed sensor axes for shin-long, lateral and out-of-shin, forming a "
            "right-handed frame (a board cannot be mounted mirrored), e.g. [\"+x\", \"+y\", \"+z\"] "
            "or [\"-y\", \"+x\", \"+z\"]")})
    int1_pin: int = field(default=24, metadata={"check": lambda v: _check(
        0 <= v <= 27, "a BCM GPIO number 0–27")})
    # LSM6DSOX and LSM6DSO32 share WHO_AM_I 0x6C but not their accelerometer scales, so WHO_AM_I
    # alone can misread an LSM6DSO32 by a factor of 2: the installer names the chip.
    chip: str = field(default="", metadata={"check": lambda v: _check(
        v == "" or v in VARIANTS, '"" (identify by WHO_AM_I) or one of ' + ", ".join(VARIANTS))})

    @property
    def sides(self) -> list[str | None]:
        """Each leg's side, by position: left then right for two sensors; `side` (None if "") for one."""
        return ["left", "right"] if self.legs == 2 else [self.side or None]


@dataclass(frozen=True)
class BrokerConfig:
    """The clinic's MQTT broker: TLS, with a username and a password kept in its own file."""

    host: str = field(default="localhost", metadata={"check": lambda v: _check(bool(v), "a host name")})
    port: int = field(default=8883, metadata={"check": lambda v: _check(0 < v < 65536, "a TCP port 1–65535")})
    ca_file: str = "/etc/rlsmon/ca.crt"
    username: str = ""
    password_file: str = "/etc/rlsmon/mqtt-password"
    keepalive_s: int = field(default=60, metadata={"check": lambda v: _check(
        5 <= v <= 3600, "seconds between 5 and 3600")})


@dataclass(frozen=True)
class GpioConfig:
    """The patient's button and the status LED (BCM numbers)."""

    button_pin: int = field(default=17, metadata={"check": lambda v: _check(0 <= v <= 27, "a BCM GPIO number 0–27")})
    led_pin: int = field(default=27, metadata={"check": lambda v: _check(0 <= v <= 27, "a BCM GPIO number 0–27")})


@dataclass(frozen=True)
class StoreConfig:
    """How long the night store keeps what it recorded."""

    # A night takes about 4 MB on the SD card. It is pruned only once the collector has receipted
    # its summary and it is older than this, so a clinic can ask for a night's raw events again
    # for a while; an unreceipted night is never pruned.
    retention_days: int = field(default=30, metadata={"check": lambda v: _check(
        1 <= v <= 3650, "a whole number of days, 1–3650")})


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _is_date(v: str) -> bool:
    try:
        dt.date.fromisoformat(v)
    except ValueError:
        return False
    return bool(_DATE.fullmatch(v))


@dataclass(frozen=True)
class SitConfig:
    """The Suggested Immobilization Test the device offers on some evenings (docs/sit.md)."""

    # "" offers none; otherwise the first evening (its local date) of `evenings` in a row.
    first_evening: str = field(default="", metadata={"check": lambda v: _check(
        v == "" or _is_date(v), '"" (no test) or a date as YYYY-MM-DD, e.g. "2026-03-01"')})
    evenings: int = field(default=3, metadata={"check": lambda v: _check(
        1 <= v <= 14, "a number of evenings, 1–14")})
    start: str = field(default="21:00", metadata={"check": lambda v: _check(
        bool(_HHMM.fullmatch(v)), "a local time as HH:MM, e.g. \"21:00\"")})
    # Montplaisir et al. 1998 ran the SIT for 60 min; the m-SIT of shorter studies reports by
    # 10-min block, so a shorter test is whole blocks.
    length_min: int = field(default=60, metadata={"check": lambda v: _check(
        10 <= v <= 60 and v % 10 == 0, "minutes, a multiple of 10 from 10 to 60")})
    # The limit: the LED invites for at most 30 min, then the test counts as not taken.
    offer_min: int = field(default=30, metadata={"check": lambda v: _check(
        1 <= v <= 30, "minutes, 1–30")})

    def evening_dates(self) -> list[str]:
        """The evenings (YYYY-MM-DD) the test is offered on; none when `first_evening` is ""."""
        if not self.first_evening:
            return []
        first = dt.date.fromisoformat(self.first_evening)
        return [(first + dt.timedelta(days=k)).isoformat() for k in range(self.evenings)]


@dataclass(frozen=True)
class DeviceConfig:
    """The whole device config file."""

    device_id: str = field(metadata={"check": lambda v: _check(
        bool(_DEVICE_ID.fullmatch(v)), "1–63 of a-z, 0-9 and '-', starting with a letter or digit")})
    rules: Literal["WASM2016", "AASM2012"] = "WASM2016"
    data_dir: str = "/var/lib/rlsmon"
    night: NightConfig = field(default_factory=NightConfig)
    sensor: SensorConfig = field(default_factory=SensorConfig)
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    sit: SitConfig = field(default_factory=SitConfig)
    path: str = field(default="", metadata={"internal": True})  # where it was loaded from


def _right_handed(axes: list[str]) -> bool:
    """Whether the signed axis permutation is a rotation (determinant +1), not a reflection."""
    perm = ["xyz".index(a[1]) for a in axes]
    inversions = sum(1 for i in range(3) for j in range(i + 1, 3) if perm[i] > perm[j])
    negatives = sum(1 for a in axes if a[0] == "-")
    return (inversions + negatives) % 2 == 0


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(f'"{a}"' for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """Whether `value` (from TOML) fits type `tp`, and the value converted to it."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value in typing.get_args(tp), value
    if origin is list:
        if not isinstance(value, list):
            return False, value
        items = [_coerce(v, typing.get_args(tp)[0]) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    return isinstance(value, tp), value


def _build(cls: type, table: dict[str, Any], prefix: str, path: str) -> Any:
    hints = typing.get_type_hints(cls)
    public = [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]
    known = {f.name for f in public}
    for key in table:
        if key not in known:
            raise ConfigError(path, prefix + key, "is not a known setting (expected one of: "
                              + ", ".join(sorted(known)) + ")")
    values: dict[str, Any] = {}
    for f in public:
        key, tp = prefix + f.name, hints[f.name]
        if f.name not in table:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(path, key, f"is missing (expected {_describe(tp)})")
            continue
        raw = table[f.name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(raw, dict):
                raise ConfigError(path, key, "should be a table, e.g. [" + key + "]")
            values[f.name] = _build(tp, raw, key + ".", path)
            continue
        ok, value = _coerce(raw, tp)
        if not ok:
            raise ConfigError(path, key, f"is {raw!r}; expected {_describe(tp)}")
        check = f.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise ConfigError(path, key, f"is {raw!r}; expected {problem}")
        values[f.name] = value
    return cls(**values)


def parse_config(text: str, path: str = "<string>") -> DeviceConfig:
    """Validate TOML `text` into a `DeviceConfig`; `path` names it in errors."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "-", f"is not valid TOML: {exc}") from exc
    cfg = _build(DeviceConfig, table, "", path)
    if len(cfg.sensor.addresses) < cfg.sensor.legs:
        raise ConfigError(path, "sensor.addresses", f"lists {len(cfg.sensor.addresses)} address(es); "
                          f"expected at least one per leg (sensor.legs = {cfg.sensor.legs})")
    if cfg.sensor.legs == 2 and cfg.sensor.side:
        raise ConfigError(path, "sensor.side", f"is {cfg.sensor.side!r}; expected \"\" with two sensors "
                          "(sensor.legs = 2): the first of sensor.addresses is the left leg, the second the right")
    if cfg.night.start == cfg.night.end:
        raise ConfigError(path, "night.end", "equals night.start; expected a window of some length")
    _check_sit_in_window(cfg, path)
    return dataclasses.replace(cfg, path=path)


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


def _check_sit_in_window(cfg: DeviceConfig, path: str) -> None:
    """The SIT is scored from the night's recording, so its offer and its hour must lie inside the
    night window."""
    if not cfg.sit.first_evening:
        return
    night_min = (_minutes(cfg.night.end) - _minutes(cfg.night.start)) % 1440
    into_min = (_minutes(cfg.sit.start) - _minutes(cfg.night.start)) % 1440
    if into_min + cfg.sit.offer_min + cfg.sit.length_min > night_min:
        raise ConfigError(path, "sit.start", f"is {cfg.sit.start!r}; expected a time at which the offer "
                          f"({cfg.sit.offer_min} min) and the test ({cfg.sit.length_min} min) fit inside the "
                          f"night window {cfg.night.start}–{cfg.night.end}, which records it")


def load_config(path: str | Path | None = None) -> DeviceConfig:
    """Read and validate the config file (default `/etc/rlsmon/device.toml`)."""
    p = Path(path) if path is not None else DEFAULT_PATH
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), "-", f"cannot be read ({exc.strerror or exc}); expected a TOML file, "
                          "see firmware_config/device.example.toml") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(str(p), "-", "is not UTF-8 text; expected a TOML file") from exc
    return parse_config(text, str(p))


def config_keys(cls: type = DeviceConfig, prefix: str = "") -> set[str]:
    """Every dotted key the config file may hold, derived from the dataclasses."""
    keys: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            keys |= config_keys(hints[f.name], prefix + f.name + ".")
        else:
            keys.add(prefix + f.name)
    return keys

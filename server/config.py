"""The server config: `/etc/rlsmon/server.toml` validated into dataclasses.

Each TOML table is a dataclass below and each key a field, so the valid keys are exactly the fields
(`firmware_config/server.example.toml` is tested against them). A missing file, an unknown key, a
wrong type or a bad value raises `ConfigError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.rejected import DEFAULT_PREFIX_BYTES, DEFAULT_RETENTION_DAYS, DEFAULT_ROWS_PER_DEVICE_DAY, RejectLimits

DEFAULT_PATH = Path("/etc/rlsmon/server.toml")
# MQTT v5 session expiry: the broker keeps the collector's subscriptions and queued QoS 1 nights
# while it is down for this long. At least 7 days, so a week-long outage loses nothing.
MIN_SESSION_EXPIRY_S = 7 * 24 * 3600


# MQTT v5 §4.8.2: a share name is any UTF-8 without '/', '+' or '#'; we keep to a plain word.
SHARE_GROUP = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ConfigError(ValueError):
    """The server config is missing or wrong; the message names the file and the key."""


@dataclass(frozen=True)
class DatabaseConfig:
    """Where the clinic database lives: a SQLite file (`path`), or a PostgreSQL database (`url`),
    for a health system whose fleet outgrows one file (README, "PostgreSQL")."""

    path: str = "/var/lib/rlsmon/server.db"
    # postgresql://user@host:5432/dbname (libpq URL; ?passfile=/etc/rlsmon/pgpass keeps the
    # password out of this file). Set: `path` is not used.
    url: str = field(default="", metadata={
        "check": lambda v: v == "" or v.startswith(("postgresql://", "postgres://")),
        "expected": "a postgresql://user@host/dbname URL"})

    @property
    def target(self) -> str:
        """What `server.db.open_db` opens: the URL when set, else the SQLite path."""
        return self.url or self.path

    @property
    def key(self) -> str:
        """The config key that names the database, for messages."""
        return "[database] url" if self.url else "[database] path"


@dataclass(frozen=True)
class MqttConfig:
    """How the collector reaches the broker (TLS only)."""

    host: str = "localhost"
    port: int = field(default=8883, metadata={"check": lambda v: 0 < v < 65536, "expected": "a TCP port 1–65535"})
    ca_file: str = "/etc/rlsmon/ca.crt"
    # The collector's own broker account. It is also its MQTT client id (the broker sets
    # use_username_as_clientid), so the persistent session is found again after a restart and no
    # device credential can take it over; no device may be named this (rlsmon-server add-device).
    username: str = "collector"
    # A file holding only the password (0640 root:rlsmon-server, as the installer sets it), so the
    # TOML holds no secret.
    password_file: str = "/etc/rlsmon/collector-password"
    session_expiry_s: int = field(default=14 * 24 * 3600, metadata={
        "check": lambda v: v >= MIN_SESSION_EXPIRY_S, "expected": f"at least {MIN_SESSION_EXPIRY_S} (7 days)"})
    keepalive_s: int = field(default=60, metadata={"check": lambda v: 5 <= v <= 3600, "expected": "5–3600"})
    # Empty: this collector alone takes every message. Set (the same on every collector, each with
    # its own username): the collectors share `$share/<group>/rlsmon/v1/+/summary` and `…/status`,
    # and the broker gives each message to one of them.
    share_group: str = field(default="", metadata={
        "check": lambda v: v == "" or SHARE_GROUP.fullmatch(v) is not None,
        "expected": "empty, or 1–64 of A-Z, a-z, 0-9, '_' and '-' (no '/', '+' or '#')"})

    def password(self, config_path: Path | str = DEFAULT_PATH) -> str:
        """Read the password from `password_file`; a ConfigError names the file and the key."""
        try:
            return Path(self.password_file).read_text().strip()
        except OSError as e:
            raise ConfigError(f"{config_path}: [mqtt] password_file: cannot read {self.password_file}: {e.strerror}") from e


@dataclass(frozen=True)
class CollectorConfig:
    """How the collector spends the machine's cores."""

    # Worker processes that parse and validate summaries; 0 validates on the writer thread. Handing
    # a night to a worker and its verdict back costs about 0.4 ms of CPU, as much as validating
    # it (0.45 ms), so on 2 cores 0 carries as many nights for less CPU (benchmarks/server_load.py,
    # docs/architecture.md); try more on a machine with cores to spare.
    validators: int = field(default=0, metadata={"check": lambda v: 0 <= v <= 64, "expected": "0–64"})
    # Messages received but not yet stored, in MiB. Past it, paho's thread waits for the writer
    # (QoS 1: the broker holds the rest, unacknowledged) or drops and counts a QoS 0 message.
    inbox_mib: int = field(default=16, metadata={"check": lambda v: 1 <= v <= 1024, "expected": "1–1024"})
    # What is kept of a refused message (server/rejected.py): its first bytes, at most this many
    # rows per device and day (the rest are only counted), for this many days.
    rejected_prefix_bytes: int = field(default=DEFAULT_PREFIX_BYTES, metadata={
        "check": lambda v: 0 <= v <= 1024 * 1024, "expected": "0–1048576 bytes"})
    rejected_rows_per_device_day: int = field(default=DEFAULT_ROWS_PER_DEVICE_DAY, metadata={
        "check": lambda v: 0 <= v <= 1_000_000, "expected": "0–1000000"})
    rejected_retention_days: int = field(default=DEFAULT_RETENTION_DAYS, metadata={
        "check": lambda v: 1 <= v <= 3650, "expected": "1–3650 days"})

    def reject_limits(self) -> RejectLimits:
        """The `rejected_*` settings as the collector uses them."""
        return RejectLimits(self.rejected_prefix_bytes, self.rejected_rows_per_device_day, self.rejected_retention_days)


@dataclass(frozen=True)
class ProvisionConfig:
    """Where `add-device` writes broker credentials, and what it tells the device's installer."""

    password_file: str = "/etc/mosquitto/rlsmon.passwd"
    acl_file: str = "/etc/mosquitto/rlsmon.acl"
    # The broker as devices see it (printed in the device config snippet).
    device_broker_host: str = "mqtt.clinic.example"
    device_broker_port: int = field(default=8883, metadata={"check": lambda v: 0 < v < 65536, "expected": "a TCP port 1–65535"})
    # Where the CA certificate lives on the device.
    device_ca_file: str = "/etc/rlsmon/ca.crt"


@dataclass(frozen=True)
class WebConfig:
    """The dashboard's listener and login policy."""

    host: str = "127.0.0.1"
    port: int = field(default=8000, metadata={"check": lambda v: 0 < v < 65536, "expected": "a TCP port 1–65535"})
    session_hours: float = field(default=12.0, metadata={"check": lambda v: v > 0, "expected": "a positive number of hours"})
    # An API token lasts this long unless its maker chooses otherwise (1–365 days).
    token_days: int = field(default=90, metadata={"check": lambda v: 1 <= v <= 365, "expected": "1–365 days"})


@dataclass(frozen=True)
class ServerConfig:
    """The whole server config; each field is a TOML table."""

    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    provision: ProvisionConfig = field(default_factory=ProvisionConfig)
    web: WebConfig = field(default_factory=WebConfig)


# Keys that older configs have and this version no longer reads: the error says what to do.
_LOCKOUT_GONE = ("no longer used: failed logins are throttled with growing delays instead of a "
                 "lock-out (docs/dashboard.md); delete this line")
REMOVED_KEYS = {"[web] max_failed_logins": _LOCKOUT_GONE, "[web] lockout_minutes": _LOCKOUT_GONE}


def _type_ok(value: Any, hint: Any) -> bool:
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint) and not (hint is int and isinstance(value, bool))


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number"}


def _build(cls: type, table: dict[str, Any], where: str, file: Path) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in table:
        if f"{where}{key}" in REMOVED_KEYS:
            raise ConfigError(f"{file}: {where}{key}: {REMOVED_KEYS[where + key]}")
        if key not in known:
            raise ConfigError(f"{file}: {where}{key}: unknown key (known: {', '.join(known)})")
    values: dict[str, Any] = {}
    for name, f in known.items():
        if name not in table:
            continue
        value, hint = table[name], hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{file}: [{name}]: expected a table")
            values[name] = _build(hint, value, f"[{name}] ", file)
            continue
        if not _type_ok(value, hint):
            raise ConfigError(f"{file}: {where}{name}: expected {_TYPE_NAMES[hint]}, got {value!r}")
        check = f.metadata.get("check")
        if check is not None and not check(value):
            raise ConfigError(f"{file}: {where}{name}: expected {f.metadata['expected']}, got {value!r}")
        values[name] = float(value) if hint is float else value
    return cls(**values)


def load_config(path: str | Path = DEFAULT_PATH) -> ServerConfig:
    """Read and validate the server config; every key is optional and has a default.

    Example:
        cfg = load_config("/etc/rlsmon/server.toml")
        cfg.mqtt.host
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such file (copy firmware_config/server.example.toml)") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    return _build(ServerConfig, raw, "", path)

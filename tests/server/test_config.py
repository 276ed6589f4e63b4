"""The server config: the example is complete and valid; mistakes name the file and the key."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from server.config import ConfigError, ServerConfig, load_config

EXAMPLE = Path(__file__).parents[2] / "firmware_config" / "server.example.toml"


def test_example_is_valid_and_names_every_key():
    config = load_config(EXAMPLE)
    raw = tomllib.loads(EXAMPLE.read_text())
    for table in dataclasses.fields(ServerConfig):
        keys = {f.name for f in dataclasses.fields(getattr(config, table.name))}
        assert set(raw[table.name]) == keys, f"[{table.name}] in the example"
    assert config == ServerConfig()  # the example shows the defaults


@pytest.mark.parametrize(
    "text, where",
    [
        ("[mqtt]\nport = \"8883\"\n", "[mqtt] port: expected an integer"),
        ("[mqtt]\nport = 70000\n", "[mqtt] port: expected a TCP port"),
        ("[mqtt]\nsession_expiry_s = 3600\n", "[mqtt] session_expiry_s: expected at least 604800"),
        ("[mqtt]\nhots = \"x\"\n", "[mqtt] hots: unknown key"),
        ("[databse]\npath = \"x\"\n", "databse: unknown key"),
        ("[database]\nurl = \"mysql://db/rlsmon\"\n", "[database] url: expected a postgresql://user@host/dbname URL"),
        ("mqtt = 3\n", "[mqtt]: expected a table"),
        ("[web]\nport = true\n", "[web] port: expected an integer"),
        ("[web]\ntoken_days = 0\n", "[web] token_days: expected 1–365 days"),
        # An older config's lock-out keys: the error says they are gone and what to do.
        ("[web]\nmax_failed_logins = 5\n", "[web] max_failed_logins: no longer used"),
        ("[web]\nlockout_minutes = 15.0\n", "[web] lockout_minutes: no longer used"),
        ("[mqtt\n", "not valid TOML"),
        ("[collector]\nrejected_prefix_bytes = -1\n", "[collector] rejected_prefix_bytes: expected 0–1048576 bytes"),
        ("[collector]\nrejected_rows_per_device_day = 2.5\n", "[collector] rejected_rows_per_device_day: expected an integer"),
        ("[collector]\nrejected_retention_days = 0\n", "[collector] rejected_retention_days: expected 1–3650 days"),
        ("[collector]\ninbox_mib = 0\n", "[collector] inbox_mib: expected 1–1024"),
        ("[mqtt]\nshare_group = \"a/b\"\n", "[mqtt] share_group: expected empty, or 1–64 of"),
        ("[mqtt]\nshare_group = \"#\"\n", "[mqtt] share_group: expected empty, or 1–64 of"),
        ("[mqtt]\nshare_group = 2\n", "[mqtt] share_group: expected a string"),
    ],
)
def test_mistakes_name_file_and_key(tmp_path, text, where):
    path = tmp_path / "server.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: ") and where in str(e.value)


def test_missing_file_and_password_file_are_named(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")
    path = tmp_path / "server.toml"
    path.write_text(f'[mqtt]\npassword_file = "{tmp_path}/nope"\n')
    with pytest.raises(ConfigError, match=r"\[mqtt\] password_file: cannot read"):
        load_config(path).mqtt.password(path)


def test_share_group_makes_the_subscriptions_shared(tmp_path):
    from server.collector import subscription_filters

    path = tmp_path / "server.toml"
    path.write_text('[mqtt]\nshare_group = "rlsmon-collectors"\n')
    group = load_config(path).mqtt.share_group
    assert subscription_filters(group) == ("$share/rlsmon-collectors/rlsmon/v1/+/summary",
                                           "$share/rlsmon-collectors/rlsmon/v1/+/status")
    assert subscription_filters("") == ("rlsmon/v1/+/summary", "rlsmon/v1/+/status")

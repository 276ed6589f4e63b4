"""The device config: the example is complete, and each kind of mistake names file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from device.config import DeviceConfig, config_keys, load_config, parse_config
from device.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "firmware_config" / "device.example.toml"


def _flatten(table: dict, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for k, v in table.items():
        keys |= _flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
    return keys


def test_example_holds_every_key_the_code_reads_and_no_other():
    example_keys = _flatten(tomllib.loads(EXAMPLE.read_text()))
    assert example_keys == config_keys()


def test_example_is_valid():
    cfg = load_config(EXAMPLE)
    assert isinstance(cfg, DeviceConfig)
    assert cfg.path == str(EXAMPLE)


def test_defaults_fill_everything_but_device_id():
    cfg = parse_config('device_id = "dev-a"')
    assert cfg.night.start == "20:00" and cfg.sensor.legs == 1 and cfg.rules == "WASM2016"


BAD = [
    ("", "device_id", "is missing"),
    ('device_id = "Dev_A"', "device_id", "a-z, 0-9"),
    ('device_id = "a"\nrules = "AASM2007"', "rules", '"WASM2016", "AASM2012"'),
    ('device_id = "a"\ncolour = "red"', "colour", "not a known setting"),
    ('device_id = "a"\n[night]\nstart = "8pm"', "night.start", "HH:MM"),
    ('device_id = "a"\n[night]\ntimezone = "Mars/Olympus"', "night.timezone", "IANA"),
    ('device_id = "a"\n[night]\nstart = "20:00"\nend = "20:00"', "night.end", "window"),
    ('device_id = "a"\n[sensor]\nlegs = 3', "sensor.legs", "1 or 2"),
    ('device_id = "a"\n[sensor]\nlegs = 2\naddresses = [0x6a]', "sensor.addresses", "one per leg"),
    ('device_id = "a"\n[sensor]\naddresses = [0x6a, 300]', "sensor.addresses", "7-bit"),
    ('device_id = "a"\n[sensor]\nside = "west"', "sensor.side", '"left" or "right"'),
    ('device_id = "a"\n[sensor]\nlegs = 2\nside = "left"', "sensor.side",
     "the first of sensor.addresses is the left leg"),
    ('device_id = "a"\n[sensor]\nodr_hz = 50', "sensor.odr_hz", "52"),
    ('device_id = "a"\n[sensor]\nodr_hz = "fast"', "sensor.odr_hz", "a number"),
    ('device_id = "a"\n[sensor]\naxes = ["+x", "+x", "+z"]', "sensor.axes", "distinct"),
    ('device_id = "a"\n[sensor]\naxes = ["+y", "+x", "+z"]', "sensor.axes", "right-handed"),
    ('device_id = "a"\n[broker]\nport = 0', "broker.port", "1–65535"),
    ('device_id = "a"\n[broker]\nport = "8883"', "broker.port", "an integer"),
    ('device_id = "a"\nbroker = 5', "broker", "table"),
    ('device_id = "a"\n[gpio]\nled_pin = 40', "gpio.led_pin", "0–27"),
    ('device_id = "a"\n[store]\nretention_days = 0', "store.retention_days", "1–3650"),
    ('device_id = "a"\n[store]\nretention_days = 7.5', "store.retention_days", "an integer"),
    ('device_id = "a"\n[gpio]\nbutton = 17', "gpio.button", "button_pin"),
    ('device_id = "a"\n[night\n', "-", "not valid TOML"),
    ('device_id = "a"\n[sit]\nfirst_evening = "3 March"', "sit.first_evening", "YYYY-MM-DD"),
    ('device_id = "a"\n[sit]\nlength_min = 45', "sit.length_min", "multiple of 10"),
    ('device_id = "a"\n[sit]\noffer_min = 45', "sit.offer_min", "1–30"),
    ('device_id = "a"\n[night]\nstart = "22:00"\n[sit]\nfirst_evening = "2026-03-01"\nstart = "21:00"',
     "sit.start", "inside the night window"),
]


@pytest.mark.parametrize("text,key,expected", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_config_names_file_key_and_expectation(tmp_path, text, key, expected):
    path = tmp_path / "device.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == key
    message = str(err.value)
    assert str(path) in message and f"[{key}]" in message and expected in message


def test_each_leg_has_its_side_when_the_config_says_it():
    """One sensor: `side`, unknown when unset; two: the first address is the left leg."""
    def sides(sensor: str) -> list:
        return parse_config(f'device_id = "a"\n[sensor]\n{sensor}').sensor.sides

    assert sides("") == [None]
    assert sides('side = "right"') == ["right"]
    assert sides("legs = 2") == ["left", "right"]


def test_rotated_mountings_are_accepted():
    for axes in (["-y", "+x", "+z"], ["-x", "-y", "+z"], ["+z", "+x", "+y"], ["-x", "+y", "-z"]):
        assert parse_config(f'device_id = "a"\n[sensor]\naxes = {axes!r}'.replace("'", '"')).sensor.axes == axes


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nope.toml")
    assert "nope.toml" in str(err.value) and "cannot be read" in str(err.value)


def test_the_chip_can_be_named_where_who_am_i_is_ambiguous(tmp_path):
    path = tmp_path / "device.toml"
    path.write_text('device_id = "bed-1"\n[sensor]\nchip = "LSM6DSO32"\n')
    assert load_config(path).sensor.chip == "LSM6DSO32"
    path.write_text('device_id = "bed-1"\n[sensor]\nchip = "LSM6DSO64"\n')
    with pytest.raises(ConfigError, match=r"sensor\.chip.*LSM6DSO32"):
        load_config(path)


def test_sit_evenings_follow_the_first():
    cfg = parse_config('device_id = "a"\n[sit]\nfirst_evening = "2026-02-27"\nevenings = 3\nstart = "21:30"')
    assert cfg.sit.evening_dates() == ["2026-02-27", "2026-02-28", "2026-03-01"]
    assert parse_config('device_id = "a"').sit.evening_dates() == []

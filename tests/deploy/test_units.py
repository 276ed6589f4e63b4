"""The systemd units: `systemd-analyze verify` is silent and the hardening scores ≤ 2.0.

`systemd-analyze verify` exits 0 on unknown keys and bad values, so the checks fail on ANY output.
It also insists that the ExecStart binary exists, and /opt/rlsmon/venv exists only on an installed
machine. `--root` does not help: it needs a whole OS tree (sysinit.target etc.). So each test verifies
a copy of the unit in which only the program path of ExecStart is replaced by a stub executable in
tmp_path; every other line, arguments included, is verified verbatim, and a separate test pins the
real ExecStart lines.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS_DIR = Path(__file__).resolve().parents[2] / "systemd"
EXEC_START = {
    "rlsmon-device.service": "/opt/rlsmon/venv/bin/rlsmon-device run --config /etc/rlsmon/device.toml",
    "rlsmon-collector.service": "/opt/rlsmon/venv/bin/rlsmon-server collect --config /etc/rlsmon/server.toml",
    "rlsmon-web.service": "/opt/rlsmon/venv/bin/rlsmon-server web --config /etc/rlsmon/server.toml",
}
MAX_EXPOSURE = 2.0

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")


def directives(unit: Path) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file, values in order, comments skipped."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize("name", sorted(EXEC_START))
def test_exec_start_runs_the_installed_venv(name):
    assert directives(UNITS_DIR / name)["ExecStart"] == [EXEC_START[name]]


@pytest.mark.parametrize("name", sorted(EXEC_START))
def test_verify_prints_nothing(name, tmp_path):
    program = EXEC_START[name].split()[0]
    stub = tmp_path / "bin" / Path(program).name
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = (UNITS_DIR / name).read_text()
    assert text.count(f"ExecStart={program} ") == 1
    copy = tmp_path / name  # verify wants the unit's own file name
    copy.write_text(text.replace(f"ExecStart={program} ", f"ExecStart={stub} "))

    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=false", str(copy)], capture_output=True, text=True, timeout=60
    )

    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_would_catch_a_typo(tmp_path):
    """The check above is only worth something if verify does complain about a bad key."""
    unit = tmp_path / "typo.service"
    unit.write_text("[Service]\nExecStart=/bin/true\nProtectSytem=strict\n")
    result = subprocess.run(["systemd-analyze", "verify", "--man=false", str(unit)], capture_output=True, text=True)
    assert "ProtectSytem" in result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(EXEC_START))
def test_security_exposure_at_most_two(name):
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNITS_DIR / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


@pytest.mark.parametrize("name", sorted(EXEC_START))
def test_restarts_on_failure_but_not_on_bad_config(name):
    d = directives(UNITS_DIR / name)
    assert d["Restart"] == ["on-failure"]
    assert d["RestartPreventExitStatus"] == ["78"]  # EX_CONFIG
    assert "StartLimitBurst" in d and "StartLimitIntervalSec" in d
    assert d["User"][0].startswith("rlsmon-")


def test_device_unit_reaches_i2c_and_gpio_without_private_devices():
    d = directives(UNITS_DIR / "rlsmon-device.service")
    assert "PrivateDevices" not in d  # it would hide /dev/i2c-1 and /dev/gpiochip*
    assert "ProcSubset" not in d  # it would hide /proc/device-tree and /proc/cpuinfo from gpiozero
    assert d["DevicePolicy"] == ["closed"]
    assert sorted(d["DeviceAllow"]) == ["char-gpiochip rw", "char-i2c rw"]
    assert d["SupplementaryGroups"] == ["i2c gpio"]
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"] and "WatchdogSec" in d
    assert "LG_WD=%t/rlsmon-device" in d["Environment"]
    assert d["RuntimeDirectory"] == ["rlsmon-device"]
    families = d["RestrictAddressFamilies"][0].split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)


def seconds(value: str) -> float:
    """A systemd time span such as "90s", "5min" or "300" in seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min|m)?", value)
    assert match, value
    return float(match.group(1)) * (60 if match.group(2) in ("min", "m") else 1)


def test_restarts_for_a_missing_sensor_never_exhaust_the_start_limit():
    from device.daemon import SENSOR_RETRY_MAX_S

    unit = directives(UNITS_DIR / "rlsmon-device.service")
    start_s, restart_s = seconds(unit["TimeoutStartSec"][0]), seconds(unit["RestartSec"][0])
    interval_s, burst = seconds(unit["StartLimitIntervalSec"][0]), int(unit["StartLimitBurst"][0])

    assert start_s > SENSOR_RETRY_MAX_S  # a sensor that answers on the next try is not cut short
    assert seconds(unit["WatchdogSec"][0]) > SENSOR_RETRY_MAX_S
    assert interval_s / (start_s + restart_s) < burst  # no sensor at boot: restarts all night
    assert interval_s / (restart_s + 2.0) > burst  # a crash loop (~2 s to crash): stopped


@pytest.mark.parametrize(("name", "example", "key"), [
    ("rlsmon-device.service", "device.example.toml", ("data_dir",)),
    ("rlsmon-collector.service", "server.example.toml", ("database", "path")),
    ("rlsmon-web.service", "server.example.toml", ("database", "path")),
])
def test_the_example_config_writes_inside_the_units_state_directory(name, example, key):
    """ProtectSystem=strict leaves only the StateDirectory writable: the data must live there."""
    import tomllib

    value = tomllib.loads((UNITS_DIR.parent / "firmware_config" / example).read_text())
    for part in key:
        value = value[part]
    state_dir = Path("/var/lib") / directives(UNITS_DIR / name)["StateDirectory"][0]
    assert Path(value) == state_dir or state_dir in Path(value).parents, (value, state_dir)
    assert directives(UNITS_DIR / name)["ProtectSystem"] == ["strict"]


@pytest.mark.parametrize("name", [
    "rlsmon-device.service",
    "rlsmon-collector.service",
    "rlsmon-web.service",
])
def test_a_bad_config_exits_with_the_status_the_unit_does_not_restart_on(name, tmp_path):
    """RestartPreventExitStatus=78 only helps if the program really exits 78 on a bad config."""
    import sys

    config = tmp_path / "bad.toml"
    config.write_text("no_such_key = 1\n")
    program, *args = EXEC_START[name].split()
    argv = [str(Path(sys.executable).parent / Path(program).name), *args[:-1], str(config)]

    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)

    assert result.returncode == int(directives(UNITS_DIR / name)["RestartPreventExitStatus"][0]), result.stderr
    assert "no_such_key" in result.stderr and str(config) in result.stderr

"""`rlsmon-device run` and `doctor` as a user and systemd see them: exit codes, sd_notify, one-line checks."""

from __future__ import annotations

import signal
import socket
import subprocess

import pytest

from tests.daemon.conftest import RLSMON_DEVICE, start_daemon, wait_for, write_config

pytestmark = pytest.mark.timeout(120)

BAD_CONFIGS = [
    ('device_id = "Bad_Id"', "device_id"),
    ('device_id = "a"\n[night]\ntimezone = "Nowhere/Town"', "night.timezone"),
    ('device_id = "a"\n[sensor]\nlegs = 3', "sensor.legs"),
    ('device_id = "a"\n[broker]\nport = "x"', "broker.port"),
    ('device_id = "a"\n[gpio]\nled = 4', "gpio.led"),
]


@pytest.mark.parametrize("text,key", BAD_CONFIGS, ids=[k for _, k in BAD_CONFIGS])
def test_bad_config_exits_78_naming_file_and_key(tmp_path, text, key):
    path = tmp_path / "device.toml"
    path.write_text(text)
    out = subprocess.run([RLSMON_DEVICE, "run", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 78
    assert out.stderr.startswith("<3>") and str(path) in out.stderr and f"[{key}]" in out.stderr


def test_missing_config_exits_78(tmp_path):
    out = subprocess.run([RLSMON_DEVICE, "run", "--config", str(tmp_path / "absent.toml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 78 and "absent.toml" in out.stderr


def test_sd_notify_ready_without_broker_watchdog_while_sampling_stopping_on_sigterm(tmp_path, night_recording,
                                                                                   daemons):
    rec, _ = night_recording
    sock_path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(sock_path)
    server.settimeout(30)
    # no broker at all: READY must not wait for MQTT
    run = start_daemon(write_config(tmp_path, None), [rec], nights=None, env={"NOTIFY_SOCKET": sock_path})
    daemons.append(run)
    messages: list[str] = []

    def until(predicate) -> None:
        while not predicate():
            messages.append(server.recv(4096).decode())

    until(lambda: any(m.startswith("READY=1") for m in messages))
    ready = next(m for m in messages if m.startswith("READY=1"))
    assert "STATUS=" in ready
    until(lambda: any("STATUS=recording" in m for m in messages))
    # Samples are in (a quiet first wait also pings, as a live loop should): then the pings.
    wait_for(lambda: (run.query("select count(*) from segments") or [(0,)])[0][0] >= 1, what="the first segment",
             proc=run.proc)
    n_before = len(messages)
    until(lambda: "WATCHDOG=1" in messages[n_before:])
    run.proc.send_signal(signal.SIGTERM)
    until(lambda: "STOPPING=1" in messages)
    assert run.proc.wait(30) == 0
    assert "flushed" in run.log()
    # the recording so far was kept
    assert run.query("select count(*) from segments")[0][0] >= 1
    server.close()


def test_doctor_against_the_emulator_runs_every_check(mqtt_broker, tmp_path, night_recording):
    rec, _ = night_recording
    password = mqtt_broker.add_device("dev-a")
    config = write_config(tmp_path, mqtt_broker, password=password)
    out = subprocess.run([RLSMON_DEVICE, "doctor", "--config", str(config), "--emulate", str(rec)],
                         capture_output=True, text=True, timeout=60)
    lines = out.stdout.splitlines()
    names = [line.split()[1] for line in lines]
    assert names == ["config", "i2c", "sensor", "int1", "clock", "broker", "outbox", "disk"], out.stdout
    status = {line.split()[1]: line.split()[0] for line in lines}
    for name in ("config", "i2c", "sensor", "int1", "broker", "outbox", "disk"):
        assert status[name] == "PASS", out.stdout
    assert "LSM6DSOX" in out.stdout and password not in out.stdout


def test_doctor_names_the_fix_for_a_wrong_password(mqtt_broker, tmp_path, night_recording):
    rec, _ = night_recording
    mqtt_broker.add_device("dev-a")
    config = write_config(tmp_path, mqtt_broker, password="wrong")
    out = subprocess.run([RLSMON_DEVICE, "doctor", "--config", str(config), "--emulate", str(rec)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    broker_line = next(line for line in out.stdout.splitlines() if line.split()[1] == "broker")
    assert broker_line.startswith("FAIL") and "fix:" in broker_line and "password_file" in broker_line


def _doctor(*args: str) -> tuple[int, dict[str, str]]:
    """Run `rlsmon-device doctor`; its exit code and {check name: line}."""
    out = subprocess.run([RLSMON_DEVICE, "doctor", *args], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in out.stdout + out.stderr
    return out.returncode, {line.split()[1]: line for line in out.stdout.splitlines()}


def test_doctor_without_a_config_runs_every_check_it_can_and_says_how_to_make_it(tmp_path, night_recording):
    rec, _ = night_recording
    absent = tmp_path / "device.toml"

    code, lines = _doctor("--config", str(absent), "--emulate", str(rec))

    assert code == 1
    assert list(lines) == ["config", "i2c", "sensor", "int1", "clock", "broker", "outbox", "disk"]
    assert lines["config"].startswith("FAIL") and "install-device.sh" in lines["config"]
    assert str(absent) in lines["config"]
    for name in ("i2c", "sensor", "int1"):
        assert lines[name].startswith("PASS"), lines[name]
    assert "0x6A or 0x6B" in lines["sensor"]  # either default address
    assert lines["broker"].startswith("WARN") and "not checked" in lines["broker"]
    assert all("fix:" in line for line in lines.values() if not line.startswith("PASS"))


def test_doctor_with_a_bad_config_names_the_key_and_still_checks_the_rest(tmp_path, night_recording):
    rec, _ = night_recording
    path = tmp_path / "device.toml"
    path.write_text('device_id = "a"\n[sensor]\nodr_hz = 50')

    code, lines = _doctor("--config", str(path), "--emulate", str(rec))

    assert code == 1
    assert lines["config"].startswith("FAIL  config") and "[sensor.odr_hz]" in lines["config"]
    assert "fix: correct [sensor.odr_hz]" in lines["config"]
    assert lines["sensor"].startswith("PASS") and "disk" in lines


def test_doctor_without_the_i2c_bus_says_how_to_turn_it_on(tmp_path):
    config = write_config(tmp_path, None)
    config.write_text(config.read_text() + "[sensor]\nbus = 99\n")  # no /dev/i2c-99 here

    code, lines = _doctor("--config", str(config))

    assert code == 1
    assert lines["i2c"].startswith("FAIL") and "/dev/i2c-99 does not exist" in lines["i2c"]
    assert "fix: turn I2C on" in lines["i2c"]
    assert {"clock", "broker", "disk"} <= set(lines)


def test_without_a_sensor_it_retries_and_never_says_ready(tmp_path, daemons):
    import os

    from tests.daemon.conftest import DaemonRun

    config = write_config(tmp_path, None)
    config.write_text(config.read_text() + "[sensor]\nbus = 99\n")  # no /dev/i2c-99 here
    sock_path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(sock_path)
    server.settimeout(0.2)
    log_path = tmp_path / "daemon.log"
    proc = subprocess.Popen([RLSMON_DEVICE, "run", "--config", str(config)], stderr=open(log_path, "w"),
                            env={**os.environ, "NOTIFY_SOCKET": sock_path})
    run = DaemonRun(proc, log_path, tmp_path / "data" / "night.db")
    daemons.append(run)
    wait_for(lambda: run.log().count("/dev/i2c-99") >= 2, 30, "two attempts to open the bus", proc)
    assert "<3>" in run.log() and "is I2C enabled" in run.log()
    messages = []
    try:
        while True:
            messages.append(server.recv(4096).decode())
    except TimeoutError:
        pass
    assert not any(m.startswith("READY=1") for m in messages)
    assert run.stop() == 0
    server.close()


@pytest.mark.parametrize("args,expected", [
    (["--start-at", "2026-01-01T10:00"], "needs a UTC offset"),
    (["--start-at", "tonight"], "not an ISO datetime"),
    (["--faults", "eio=2"], "must be in [0, 1)"),
])
def test_bad_emulation_options_are_usage_errors(tmp_path, night_recording, args, expected):
    rec, _ = night_recording
    out = subprocess.run([RLSMON_DEVICE, "run", "--config", str(write_config(tmp_path, None)), "--emulate", str(rec),
                          *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and expected in out.stderr


def test_run_prunes_receipted_nights_past_the_retention_at_start(tmp_path, night_recording):
    """The clock starts on 2026-03-01; with the default 30 days, a receipted night of 2026-01-01 goes
    and one of 2026-02-20 stays. `--nights 0` exits once nothing waits for a receipt."""
    from device.store import NightInfo, Store

    rec, _ = night_recording
    config = write_config(tmp_path, None)
    store = Store(tmp_path / "data" / "night.db")
    store.start()
    for night in ("2026-01-01", "2026-02-20"):
        store.open_night(NightInfo(night, f"{night}T22:00:00+01:00", f"{night}T22:20:00+01:00", "Europe/Berlin",
                                   1200.0, True, "WASM2016"), "t0")
        store.close_night(night, lambda stored, night=night: ("t", {"summary_id": f"id-{night}"}), "t1")
        assert store.receipt(f"id-{night}", "t2") == night
    store.close()
    run = start_daemon(config, [rec], nights=0)
    assert run.proc.wait(60) == 0, run.log()
    assert run.query("select night from nights") == [("2026-02-20",)]
    assert "pruned 1 receipted night(s) before 2026-01-30" in run.log()

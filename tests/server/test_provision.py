"""Provisioning: password hashes and ACL that the real mosquitto accepts and enforces, the broker
config that it starts with, and the add-device / assign commands."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from device.config import parse_config
from server import provision
from server.cli import cli
from server.db import open_db

FIRMWARE = Path(__file__).parents[2] / "firmware_config"


def connect_result(broker, username: str, password: str, port: int | None = None):
    """The CONNACK reason code the broker gives these credentials."""
    result: queue.Queue = queue.Queue()
    c = broker.client(username, password)
    c.on_connect = lambda client, userdata, flags, rc, props: result.put(rc)
    c.connect(broker.host, port or broker.port)
    c.loop_start()
    try:
        return result.get(timeout=10)
    finally:
        c.disconnect()
        c.loop_stop()


def reload_until_accepted(broker, username: str, password: str) -> None:
    broker.process.send_signal(signal.SIGHUP)
    for _ in range(200):  # bounded: each try is one real connect
        if not connect_result(broker, username, password).is_failure:
            return
    pytest.fail(f"mosquitto never accepted {username}")


def test_hash_is_mosquitto_format_and_checks_mosquitto_passwd_output(tmp_path):
    hashed = provision.hash_password("s3cret", salt=b"\x01" * 12)
    assert hashed.startswith("$7$101$") and len(hashed.split("$")) == 5
    assert provision.check_password("s3cret", hashed) and not provision.check_password("s3cre", hashed)
    passwd = tmp_path / "passwd"
    passwd.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "alice", "pa55"], check=True)
    theirs = passwd.read_text().strip().split(":", 1)[1]
    assert provision.check_password("pa55", theirs) and not provision.check_password("pa56", theirs)


def test_set_password_keeps_others_and_refuses_silent_overwrite(tmp_path):
    passwd = tmp_path / "passwd"
    provision.set_password(passwd, "dev-a", "one")
    provision.set_password(passwd, "dev-b", "two")
    with pytest.raises(provision.ProvisionError, match="already has a password"):
        provision.set_password(passwd, "dev-a", "three")
    provision.set_password(passwd, "dev-a", "three", replace=True)
    entries = dict(line.split(":", 1) for line in passwd.read_text().splitlines())
    assert set(entries) == {"dev-a", "dev-b"}
    assert provision.check_password("three", entries["dev-a"])
    assert passwd.stat().st_mode & 0o777 == 0o600


def test_real_mosquitto_accepts_our_password_and_enforces_our_acl(mqtt_broker, device):
    mqtt_broker.acl_file.write_text((FIRMWARE / "mosquitto.acl").read_text())
    password = provision.generate_password()
    provision.set_password(mqtt_broker.password_file, "dev-x", password)
    reload_until_accepted(mqtt_broker, "dev-x", password)
    assert connect_result(mqtt_broker, "dev-x", password + "x").is_failure
    dev = device("dev-x", password)
    assert not dev.publish("rlsmon/v1/dev-x/status", b"online").is_failure
    assert dev.publish("rlsmon/v1/dev-y/status", b"online").getName() == "Not authorized"


def test_ensure_acl_creates_the_template_and_adds_the_pattern_once(tmp_path):
    acl = tmp_path / "acl"
    assert provision.ensure_acl(acl, "collector")
    assert acl.read_text() == provision.ACL_TEMPLATE.format(collector="collector")
    assert not provision.ensure_acl(acl, "collector")
    acl.write_text("user collector\ntopic read rlsmon/v1/#\n")  # an ACL from before receipts
    assert provision.ensure_acl(acl, "collector")
    text = acl.read_text()
    for line in (provision.DEVICE_PATTERN, provision.RECEIPT_PATTERN, provision.COLLECTOR_RECEIPTS):
        assert text.count(line) == 1
    assert text.rstrip().endswith(f"user collector\n{provision.COLLECTOR_RECEIPTS}")
    assert not provision.ensure_acl(acl, "collector")


def test_the_example_acl_is_what_ensure_acl_requires():
    lines = {line.strip() for line in (FIRMWARE / "mosquitto.acl").read_text().splitlines()}
    assert {provision.DEVICE_PATTERN, provision.RECEIPT_PATTERN, provision.COLLECTOR_RECEIPTS} <= lines


def test_no_device_may_take_the_collectors_name(server_toml):
    result = CliRunner().invoke(cli, ["add-device", "--config", str(server_toml), "collector"])
    assert result.exit_code == 1 and "collector's broker username" in result.output


def test_broker_config_starts_real_mosquitto_with_tls_and_passwords(mqtt_broker):
    """The fixture's broker runs firmware_config/mosquitto.conf with only paths and port changed."""
    running = (mqtt_broker.workdir / "mosquitto.conf").read_text()
    for line in (FIRMWARE / "mosquitto.conf").read_text().splitlines():
        key = line.split(" ", 1)[0]
        if line and not line.startswith("#") and key not in (
                "password_file", "acl_file", "cafile", "certfile", "keyfile", "listener"):
            assert line in running.splitlines()
    port = mqtt_broker.port
    assert not connect_result(mqtt_broker, mqtt_broker.collector_user, mqtt_broker.collector_password, port).is_failure
    assert connect_result(mqtt_broker, mqtt_broker.collector_user, "wrong", port).is_failure


@pytest.fixture
def server_toml(tmp_path):
    path = tmp_path / "server.toml"
    path.write_text(
        f'[database]\npath = "{tmp_path}/server.db"\n'
        f'[provision]\npassword_file = "{tmp_path}/passwd"\nacl_file = "{tmp_path}/acl"\n'
        'device_broker_host = "mqtt.clinic.test"\n'
    )
    return path


def test_add_device_writes_credentials_and_prints_a_device_config(server_toml, tmp_path):
    result = CliRunner().invoke(cli, ["add-device", "--config", str(server_toml), "bed-7"])
    assert result.exit_code == 0, result.output
    snippet, password = result.stdout.split("# /etc/rlsmon/mqtt-password")
    password = password.splitlines()[1]
    config = parse_config(snippet, "snippet")  # the daemon's own parser
    assert (config.device_id, config.broker.host, config.broker.port) == ("bed-7", "mqtt.clinic.test", 8883)
    [entry] = (tmp_path / "passwd").read_text().splitlines()
    user, hashed = entry.split(":", 1)
    assert user == "bed-7" and provision.check_password(password, hashed)
    assert provision.DEVICE_PATTERN in (tmp_path / "acl").read_text()
    assert open_db(tmp_path / "server.db")["devices"].get("bed-7")["patient_id"] is None
    again = CliRunner().invoke(cli, ["add-device", "--config", str(server_toml), "bed-7"])
    assert again.exit_code == 1 and "--rotate" in again.output


def test_add_device_refuses_a_bad_id(server_toml, tmp_path):
    result = CliRunner().invoke(cli, ["add-device", "--config", str(server_toml), "Bed_7"])
    assert result.exit_code == 1 and "device id" in result.output
    assert not (tmp_path / "passwd").exists()


def test_assign_links_device_to_pseudonym(server_toml, tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["add-device", "--config", str(server_toml), "bed-7"]).exit_code == 0
    unknown = runner.invoke(cli, ["assign", "--config", str(server_toml), "bed-8", "P-1"])
    assert unknown.exit_code == 1 and "unknown device" in unknown.output
    assert runner.invoke(cli, ["assign", "--config", str(server_toml), "bed-7", "P-1"]).exit_code == 0
    db = open_db(tmp_path / "server.db")
    [patient] = db["patients"].rows
    assert patient["pseudonym"] == "P-1"
    assert db["devices"].get("bed-7")["patient_id"] == patient["id"]


def test_example_device_snippet_matches_the_daemon_example():
    example = tomllib.loads((FIRMWARE / "device.example.toml").read_text())
    snippet = tomllib.loads(provision.device_config_snippet("x", "h", 1, "/c"))
    assert set(snippet["broker"]) <= set(example["broker"])


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_rewritten_password_file_keeps_owner_group_and_mode(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    os.chown(passwd, 4321, 4322)  # as mosquitto's user would own it (the tests run as root)
    os.chmod(passwd, 0o640)
    provision.set_password(passwd, "dev-a", "one")
    st = passwd.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (4321, 4322, 0o640)

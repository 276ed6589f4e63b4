"""The installers, run for real against a staging root (`--root`), never against this machine.

`--no-venv` skips creating /opt/rlsmon/venv and `pip install`: that step needs the network and
minutes, and what it installs is the package the rest of the suite already tests. Everything else
the installers do is exercised: users, groups and owners are checked through the manifest they
write (staging never runs useradd or chown), modes and contents on the files themselves.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "systemd"


def install(script: str, root: Path, *args: str) -> str:
    """Run an installer into `root` (with `args`, e.g. --uninstall) and return what it printed; fail
    on a non-zero exit."""
    result = subprocess.run(
        ["bash", str(SYSTEMD / script), "--root", str(root), "--no-venv", *args],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def manifest(root: Path, name: str) -> dict[str, tuple[str, str, str]]:
    """path -> (kind, mode, owner:group) from the installer's manifest."""
    entries = {}
    for line in (root / f"opt/rlsmon/install-manifest-{name}.txt").read_text().splitlines():
        if not line.startswith("#"):
            kind, mode, owner, path = line.split(" ", 3)
            entries[path] = (kind, mode, owner)
    return entries


def snapshot(root: Path) -> dict[str, tuple[int, str, int]]:
    """Every path under root with its mode, content hash and modification time."""
    state = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "-"
        state[str(path.relative_to(root))] = (st.st_mode, digest, st.st_mtime_ns)
    return state


DEVICE_FILES = {
    "/etc/rlsmon/device.toml": ("file", "0640", "root:rlsmon-device"),
    "/etc/systemd/system/rlsmon-device.service": ("file", "0644", "root:root"),
    "/etc/udev/rules.d/60-rlsmon-i2c-gpio.rules": ("file", "0644", "root:root"),
    "/etc/modules-load.d/rlsmon-i2c.conf": ("file", "0644", "root:root"),
    "/var/lib/rlsmon": ("dir", "0750", "rlsmon-device:rlsmon-device"),
    "/etc/rlsmon": ("dir", "0755", "root:root"),
}


def test_device_install_turns_i2c_on_once_and_keeps_the_rest_of_config_txt(tmp_path):
    config_txt = tmp_path / "boot/firmware/config.txt"
    config_txt.parent.mkdir(parents=True)
    config_txt.write_text("# existing\ndtparam=audio=on\n")

    install("install-device.sh", tmp_path)
    install("install-device.sh", tmp_path)

    text = config_txt.read_text()
    assert text.startswith("# existing\ndtparam=audio=on\n")
    assert text.count("# BEGIN rlsmon") == 1
    assert "dtparam=i2c_arm=on" in text and "dtparam=i2c_arm_baudrate=100000" in text


@pytest.mark.parametrize("component", ["device", "server"])
def test_install_is_idempotent(component, tmp_path):
    install(f"install-{component}.sh", tmp_path)
    before = snapshot(tmp_path)

    out = install(f"install-{component}.sh", tmp_path)

    assert snapshot(tmp_path) == before
    assert "(changes: 0)" in out


@pytest.mark.parametrize("component", ["device", "server"])
def test_every_manifest_entry_is_on_disk_with_its_mode(component, tmp_path):
    install(f"install-{component}.sh", tmp_path)
    for path, (kind, mode, _owner) in manifest(tmp_path, component).items():
        if kind in ("file", "dir"):
            target = tmp_path / path.lstrip("/")
            assert target.is_dir() if kind == "dir" else target.is_file(), path
            assert target.stat().st_mode & 0o7777 == int(mode, 8), path


def test_device_install_keeps_an_existing_config_and_fixes_its_mode(tmp_path):
    config = tmp_path / "etc/rlsmon/device.toml"
    config.parent.mkdir(parents=True)
    config.write_text('device_id = "kept-1"\n')
    config.chmod(0o600)  # unreadable by the service user: the installer corrects it
    password = tmp_path / "etc/rlsmon/mqtt-password"
    password.write_text("s3cret\n")
    password.chmod(0o644)  # world-readable secret: the installer corrects it

    install("install-device.sh", tmp_path)

    assert config.read_text() == 'device_id = "kept-1"\n'
    assert config.stat().st_mode & 0o777 == 0o640
    assert password.read_text() == "s3cret\n"
    assert password.stat().st_mode & 0o777 == 0o640
    assert manifest(tmp_path, "device")["/etc/rlsmon/mqtt-password"] == ("file", "0640", "root:rlsmon-device")


def test_installer_scripts_are_executable_in_git():
    listed = subprocess.run(
        ["git", "ls-files", "-s", "systemd/"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    modes = {line.split("\t")[1]: line.split()[0] for line in listed.splitlines()}
    for script in ("systemd/install-device.sh", "systemd/install-server.sh"):
        if script in modes:  # committed: git must carry the executable bit
            assert modes[script] == "100755", script
        assert os.access(REPO / script, os.X_OK), script


@pytest.mark.parametrize("component", ["device", "server"])
def test_real_install_needs_root(component):
    # As root here, drop to nobody: the refusal is what a non-root user sees. Nobody may not be able
    # to read the checkout (a fresh clone under pytest's 0700 tmp), so it runs a copy in /tmp.
    as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    with tempfile.TemporaryDirectory() as scratch:
        os.chmod(scratch, 0o755)
        scripts = shutil.copytree(SYSTEMD, Path(scratch) / "systemd")
        result = subprocess.run([*as_user, "bash", str(scripts / f"install-{component}.sh")],
                                capture_output=True, text=True)
    assert result.returncode == 1 and "run as root" in result.stderr


SERVER_FILES = {
    "/etc/rlsmon/server.toml": ("file", "0640", "root:rlsmon-server"),
    "/etc/rlsmon/collector-password": ("file", "0640", "root:rlsmon-server"),
    "/etc/rlsmon/ca.key": ("file", "0600", "root:root"),
    "/etc/rlsmon/ca.crt": ("file", "0644", "root:root"),
    "/etc/mosquitto/certs/server.key": ("file", "0640", "root:mosquitto"),
    "/etc/mosquitto/certs/server.crt": ("file", "0644", "root:root"),
    "/etc/mosquitto/conf.d/rlsmon.conf": ("file", "0644", "root:root"),
    "/etc/mosquitto/rlsmon.acl": ("file", "0640", "root:mosquitto"),
    "/etc/mosquitto/rlsmon.passwd": ("file", "0640", "root:mosquitto"),
    "/etc/systemd/system/rlsmon-collector.service": ("file", "0644", "root:root"),
    "/etc/systemd/system/rlsmon-web.service": ("file", "0644", "root:root"),
    "/var/lib/rlsmon": ("dir", "0750", "rlsmon-server:rlsmon-server"),
}


COPIES = {  # installed path -> the file in this repository it must equal
    "device": {"/etc/rlsmon/device.toml": "firmware_config/device.example.toml",
               "/etc/systemd/system/rlsmon-device.service": "systemd/rlsmon-device.service"},
    "server": {"/etc/rlsmon/server.toml": "firmware_config/server.example.toml",
               "/etc/mosquitto/conf.d/rlsmon.conf": "firmware_config/mosquitto.conf",
               "/etc/mosquitto/rlsmon.acl": "firmware_config/mosquitto.acl",
               "/etc/systemd/system/rlsmon-collector.service": "systemd/rlsmon-collector.service",
               "/etc/systemd/system/rlsmon-web.service": "systemd/rlsmon-web.service"},
}


@pytest.mark.parametrize(("component", "expected", "accounts"), [
    ("device", DEVICE_FILES, ["rlsmon-device home=/var/lib/rlsmon groups=i2c,gpio", "i2c", "gpio"]),
    ("server", SERVER_FILES, ["rlsmon-server home=/var/lib/rlsmon groups=", "mosquitto"]),
])
def test_install_lays_down_every_file_with_its_mode_and_owner(component, expected, accounts, tmp_path):
    install(f"install-{component}.sh", tmp_path)
    entries = manifest(tmp_path, component)

    for path, entry in expected.items():
        assert entries[path] == entry, path
    assert all(entries[name][0] in ("user", "group") for name in accounts)
    for installed, source in COPIES[component].items():
        assert (tmp_path / installed.lstrip("/")).read_bytes() == (REPO / source).read_bytes(), installed


def test_server_install_gives_the_collector_a_broker_password(tmp_path):
    from server.provision import check_password

    install("install-server.sh", tmp_path)

    password = (tmp_path / "etc/rlsmon/collector-password").read_text().strip()
    assert len(password) >= 24
    users = dict(line.split(":", 1) for line in (tmp_path / "etc/mosquitto/rlsmon.passwd").read_text().split())
    assert check_password(password, users["collector"])


def test_server_install_makes_a_ca_and_a_broker_certificate_it_signed(tmp_path):
    install_args = ["bash", str(SYSTEMD / "install-server.sh"), "--root", str(tmp_path), "--no-venv",
                    "--broker-host", "mqtt.clinic.test"]
    subprocess.run(install_args, check=True, capture_output=True, timeout=120)
    ca, cert = tmp_path / "etc/rlsmon/ca.crt", tmp_path / "etc/mosquitto/certs/server.crt"

    verify = subprocess.run(["openssl", "verify", "-CAfile", str(ca), str(cert)], capture_output=True, text=True)
    san = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-ext", "subjectAltName"],
                         capture_output=True, text=True, check=True).stdout

    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "DNS:mqtt.clinic.test" in san and "IP Address:127.0.0.1" in san


def test_server_install_keeps_existing_certificates_config_and_password(tmp_path):
    install("install-server.sh", tmp_path)
    kept = {p: (tmp_path / p).read_bytes() for p in (
        "etc/rlsmon/ca.crt", "etc/mosquitto/certs/server.crt", "etc/mosquitto/certs/server.key",
        "etc/rlsmon/collector-password", "etc/mosquitto/rlsmon.passwd")}
    (tmp_path / "etc/rlsmon/server.toml").write_text("[web]\nport = 8111\n")

    install("install-server.sh", tmp_path)

    assert {p: (tmp_path / p).read_bytes() for p in kept} == kept
    assert (tmp_path / "etc/rlsmon/server.toml").read_text() == "[web]\nport = 8111\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another group needs root")
def test_add_device_keeps_the_password_file_readable_by_mosquitto(tmp_path):
    """mosquitto 2 reads its password file as the mosquitto user (at start and on every reload),
    so the installer makes it root:mosquitto 0640; add-device must keep that owner and group."""
    import sys

    install("install-server.sh", tmp_path)
    passwd = tmp_path / "etc/mosquitto/rlsmon.passwd"
    os.chown(passwd, 0, 65534)  # the group mosquitto would have; nogroup stands in for it here
    config = tmp_path / "server.toml"
    config.write_text(f'[database]\npath = "{tmp_path}/server.db"\n\n[provision]\n'
                      f'password_file = "{passwd}"\nacl_file = "{tmp_path}/etc/mosquitto/rlsmon.acl"\n')

    subprocess.run([Path(sys.executable).parent / "rlsmon-server", "add-device", "--config", config, "bed-1"],
                   check=True, capture_output=True)

    assert "bed-1:" in passwd.read_text()
    assert (passwd.stat().st_gid, passwd.stat().st_mode & 0o777) == (65534, 0o640)


def test_staged_server_install_makes_a_broker_the_collector_can_use(tmp_path):
    """The installed mosquitto.conf, ACL, password file, CA and certificate work together: mosquitto
    starts on them, and the collector's account logs in over TLS with the password made for it."""
    import getpass
    import socket
    import ssl

    import paho.mqtt.client as mqtt

    from tests.broker import _wait_until, free_port, mosquitto_binary

    root = tmp_path / "root"
    subprocess.run(["bash", str(SYSTEMD / "install-server.sh"), "--root", str(root), "--no-venv",
                    "--broker-host", "localhost"], check=True, capture_output=True, timeout=120)
    port = free_port()
    lines = []
    for line in (root / "etc/mosquitto/conf.d/rlsmon.conf").read_text().splitlines():
        key, _, value = line.partition(" ")
        if key in ("password_file", "acl_file", "cafile", "certfile", "keyfile"):
            line = f"{key} {root}{value}"  # the staged files, where the real ones would be
        elif key == "listener":
            line = "\n".join([f"persistence_location {tmp_path}/", f"log_dest file {tmp_path}/mosquitto.log",
                              f"user {getpass.getuser()}", f"listener {port} 127.0.0.1"])
        lines.append(line)
    (tmp_path / "mosquitto.conf").write_text("\n".join(lines) + "\n")
    broker = subprocess.Popen([mosquitto_binary(), "-c", str(tmp_path / "mosquitto.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    results: list[bool] = []

    def connect(password: str) -> bool:
        """Whether the broker refuses `collector` with `password` (its CONNACK is a failure)."""
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.tls_set_context(ssl.create_default_context(cafile=str(root / "etc/rlsmon/ca.crt")))
        client.username_pw_set("collector", password)
        client.on_connect = lambda c, u, f, reason, p: results.append(reason.is_failure)
        before = len(results)
        client.connect("localhost", port)
        client.loop_start()
        try:
            _wait_until(lambda: len(results) > before, 10, "the broker's CONNACK")
        finally:
            client.disconnect()
            client.loop_stop()
        return results[-1]

    def listening() -> bool:
        assert broker.poll() is None, broker.stderr.read()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    try:
        _wait_until(listening, 10, "mosquitto to listen")
        refused_right = connect((root / "etc/rlsmon/collector-password").read_text().strip())
        refused_wrong = connect("not-the-password")
    finally:
        broker.terminate()
        broker.wait(10)

    assert (refused_right, refused_wrong) == (False, True)


def test_the_device_password_file_mode_is_one_truth(tmp_path):
    """add-device's snippet, the README and the example config all say the mode install-device.sh
    gives /etc/rlsmon/mqtt-password."""
    from click.testing import CliRunner

    from server import provision
    from server.cli import cli

    password = tmp_path / "etc/rlsmon/mqtt-password"
    password.parent.mkdir(parents=True)
    password.write_text("s3cret\n")
    install("install-device.sh", tmp_path)
    kind, mode, owner = manifest(tmp_path, "device")[provision.DEVICE_PASSWORD_FILE]
    truth = f"{mode} {owner}"
    config = tmp_path / "server.toml"
    config.write_text(f'[database]\npath = "{tmp_path}/server.db"\n[provision]\n'
                      f'password_file = "{tmp_path}/passwd"\nacl_file = "{tmp_path}/acl"\n')

    snippet = CliRunner().invoke(cli, ["add-device", "--config", str(config), "bed-1"]).stdout

    assert truth == provision.DEVICE_PASSWORD_MODE == "0640 root:rlsmon-device"
    [note] = [line for line in snippet.splitlines() if line.startswith(f"# {provision.DEVICE_PASSWORD_FILE}")]
    assert f"mode {truth}" in note
    for name, text in [("README.md", (REPO / "README.md").read_text()),
                       ("device.example.toml", (REPO / "firmware_config/device.example.toml").read_text())]:
        assert truth in text, name


KEPT = ("/etc/rlsmon", "/etc/mosquitto", "/var/lib/rlsmon")  # config, credentials, data


def _kept(path: str) -> bool:
    return any(path == k or path.startswith(k + "/") for k in KEPT)


def _installed_with_data(component: str, root: Path) -> dict[str, bytes]:
    """Install `component` into root as a machine in use has it (a config edited, a night store, the
    device's password), and return those files' contents."""
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/config.txt").write_text("# existing\ndtparam=audio=on\n")
    (root / "etc/rlsmon").mkdir(parents=True)
    (root / "etc/rlsmon/mqtt-password").write_text("s3cret\n")
    install(f"install-{component}.sh", root)
    (root / f"etc/rlsmon/{component}.toml").write_text('device_id = "bed-1"\n')
    (root / "var/lib/rlsmon/night.db").write_bytes(b"SQLite format 3\0 a night")
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and _kept("/" + str(p.relative_to(root)))}


@pytest.mark.parametrize("component", ["device", "server"])
def test_upgrade_replaces_code_and_units_keeps_config_data_credentials_and_drops_what_is_gone(component,
                                                                                             tmp_path):
    kept = _installed_with_data(component, tmp_path)
    entries = manifest(tmp_path, component)
    units = [p for p in entries if p.startswith("/etc/systemd/system/")]
    # What an older version left: other unit text and README, and a unit this version no longer has.
    for path in [*units, "/opt/rlsmon/README.md"]:
        (tmp_path / path.lstrip("/")).write_text("# the previous version\n")
    stale = tmp_path / "etc/systemd/system/rlsmon-retired.service"
    stale.write_text("[Unit]\n")
    old_config = tmp_path / "etc/rlsmon/retired.toml"  # config is never dropped, listed or not
    old_config.write_text("kept = true\n")
    with open(tmp_path / f"opt/rlsmon/install-manifest-{component}.txt", "a") as f:
        f.write("file 0644 root:root /etc/systemd/system/rlsmon-retired.service\n"
                "file 0640 root:root /etc/rlsmon/retired.toml\n")

    out = install(f"install-{component}.sh", tmp_path)

    for path in units:
        assert (tmp_path / path.lstrip("/")).read_bytes() == (REPO / "systemd" / Path(path).name).read_bytes()
    assert (tmp_path / "opt/rlsmon/README.md").read_bytes() == (REPO / "README.md").read_bytes()
    assert not stale.exists() and "removed /etc/systemd/system/rlsmon-retired.service" in out
    assert old_config.read_text() == "kept = true\n"
    assert {p: (tmp_path / p).read_bytes() for p in kept} == kept
    assert "/etc/systemd/system/rlsmon-retired.service" not in manifest(tmp_path, component)


@pytest.mark.parametrize("component", ["device", "server"])
def test_uninstall_removes_units_and_code_keeps_config_data_credentials_and_is_idempotent(component,
                                                                                          tmp_path):
    kept = _installed_with_data(component, tmp_path)
    entries = manifest(tmp_path, component)

    out = install(f"install-{component}.sh", tmp_path, "--uninstall")
    after = snapshot(tmp_path)
    again = install(f"install-{component}.sh", tmp_path, "--uninstall")

    assert "systemctl disable --now" in out
    for path, (kind, _mode, _owner) in entries.items():
        if kind == "file" and not _kept(path):
            assert not (tmp_path / path.lstrip("/")).exists(), path
    assert {p: (tmp_path / p).read_bytes() for p in kept} == kept
    assert (tmp_path / "boot/firmware/config.txt").read_text() == "# existing\ndtparam=audio=on\n"
    assert "(changes: 0)" in again and snapshot(tmp_path) == after


@pytest.mark.parametrize("component", ["device", "server"])
def test_uninstall_purge_removes_config_data_and_credentials_too(component, tmp_path):
    _installed_with_data(component, tmp_path)
    entries = manifest(tmp_path, component)
    install(f"install-{component}.sh", tmp_path, "--uninstall")  # first without, then --purge

    install(f"install-{component}.sh", tmp_path, "--uninstall", "--purge")
    again = install(f"install-{component}.sh", tmp_path, "--uninstall", "--purge")

    for path, (kind, _mode, _owner) in entries.items():
        if kind in ("file", "dir", "venv"):
            assert not (tmp_path / path.lstrip("/")).exists(), path
    assert not (tmp_path / "var/lib/rlsmon").exists() and not (tmp_path / "etc/rlsmon").exists()
    assert not (tmp_path / "opt/rlsmon").exists()
    assert (tmp_path / "boot/firmware/config.txt").read_text() == "# existing\ndtparam=audio=on\n"
    assert "nothing to uninstall" in again


def test_purge_alone_is_refused(tmp_path):
    result = subprocess.run(["bash", str(SYSTEMD / "install-device.sh"), "--root", str(tmp_path), "--purge"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--purge goes with --uninstall" in result.stderr
    assert not (tmp_path / "opt").exists()

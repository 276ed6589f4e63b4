"""Device credentials: the mosquitto password file and ACL, and the config snippet for the installer.

A device's MQTT username is its device id, and the broker makes the username the client id
(`use_username_as_clientid`), so no device can be named as the collector's username. ACL patterns
let every device write only under its own id and read only its own receipts, so adding a device adds
a password line and never an ACL line; `ensure_acl()` only makes sure the file says so (and upgrades
an older one). mosquitto rereads both files on SIGHUP (`systemctl reload mosquitto`).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import secrets
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

DEVICE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # docs/summary.md: the id in the MQTT topic
# mosquitto 2's password format `$7$`: PBKDF2-HMAC-SHA512 with a 12-byte salt and a 64-byte key
# (mosquitto's src/password_mosq.c). 101 iterations is mosquitto_passwd's default; the passwords
# are 192-bit random strings, so stretching adds nothing but connect latency.
PBKDF2_ITERATIONS = 101
_SALT_BYTES = 12
_KEY_BYTES = 64

DEVICE_PATTERN = "pattern write rlsmon/v1/%u/#"
RECEIPT_PATTERN = "pattern read rlsmon/v1/%u/receipt"
COLLECTOR_RECEIPTS = "topic write rlsmon/v1/+/receipt"


def collector_acl(user: str) -> str:
    """The ACL block of one collector's broker user: it reads every device's topics and writes
    each device's receipts. Collectors that share the load ([mqtt] share_group) each need their own
    user (the broker binds the client id to it), hence each its own block."""
    return f"user {user}\ntopic read rlsmon/v1/#\n{COLLECTOR_RECEIPTS}\n"


ACL_TEMPLATE = f"""\
# rlsmon broker ACL (firmware_config/mosquitto.acl). mosquitto rereads it on SIGHUP.
# The collector reads every device's topics and writes each device's receipts.
{collector_acl("{collector}")}
# Each device writes only its own topics (its username is its device id) and reads its receipts.
{DEVICE_PATTERN}
{RECEIPT_PATTERN}
"""

# The device's password file, as systemd/install-device.sh installs it: the daemon runs as
# rlsmon-device and reads it through its group; nobody else can.
DEVICE_PASSWORD_FILE = "/etc/rlsmon/mqtt-password"
DEVICE_PASSWORD_MODE = "0640 root:rlsmon-device"


class ProvisionError(ValueError):
    """A device cannot be provisioned as asked; the message says why."""


def generate_password() -> str:
    """A new device password: 24 random bytes, URL-safe base64 (32 characters, no `:`)."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """The mosquitto 2 password-file hash of `password`: `$7$<iterations>$<salt b64>$<key b64>`."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, _KEY_BYTES)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def check_password(password: str, hashed: str) -> bool:
    """Whether `password` matches a `$7$` hash from a mosquitto password file."""
    try:
        _, seven, iterations, salt_b64, key_b64 = hashed.split("$")
        salt, key = base64.b64decode(salt_b64), base64.b64decode(key_b64)
    except ValueError:
        return False
    if seven != "7":
        return False
    candidate = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(iterations), len(key))
    return secrets.compare_digest(candidate, key)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Two admins running add-device at once must not lose each other's line.
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _replace_file(path: Path, text: str, new_mode: int) -> None:
    # Written beside the original and renamed over it, so mosquitto never reads half a file. The
    # new file keeps the old one's mode, owner and group: mosquitto rereads it on SIGHUP as its own
    # user, so a root-owned 0600 copy would lock every device out.
    old = path.stat() if path.exists() else None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, old.st_mode & 0o777 if old else new_mode)
        if old and (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
            os.chown(tmp, old.st_uid, old.st_gid)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def set_password(password_file: str | Path, username: str, password: str, *, replace: bool = False) -> None:
    """Add (or with `replace`, change) `username`'s entry in a mosquitto password file.

    Raises ProvisionError if the user exists and `replace` is false. The file keeps its mode, owner
    and group (a new one is 0600: give it to the mosquitto user).
    """
    path = Path(password_file)
    with _locked(path):
        lines = path.read_text().splitlines() if path.exists() else []
        exists = any(line.split(":", 1)[0] == username for line in lines)
        if exists and not replace:
            raise ProvisionError(f"{username} already has a password in {path}; use --rotate to replace it")
        kept = [line for line in lines if line.strip() and line.split(":", 1)[0] != username]
        _replace_file(path, "\n".join([*kept, f"{username}:{hash_password(password)}"]) + "\n", 0o600)


def ensure_acl(acl_file: str | Path, collector_user: str) -> bool:
    """Make sure the ACL lets each device write its own topics and read its receipts, and the
    collector write receipts; create it from the template if missing, add what an older one lacks.
    Returns True when the file was written."""
    path = Path(acl_file)
    with _locked(path):
        if path.exists():
            text = path.read_text()
            lines = {line.strip() for line in text.splitlines()}
            missing = [p for p in (DEVICE_PATTERN, RECEIPT_PATTERN) if p not in lines]
            if COLLECTOR_RECEIPTS not in lines:  # mosquitto adds a repeated `user` block's lines to that user
                missing += [f"user {collector_user}", COLLECTOR_RECEIPTS]
            if not missing:
                return False
            _replace_file(path, text.rstrip("\n") + "\n\n" + "\n".join(missing) + "\n", 0o644)
        else:
            _replace_file(path, ACL_TEMPLATE.format(collector=collector_user), 0o644)
        return True


def device_config_snippet(device_id: str, host: str, port: int, ca_file: str) -> str:
    """The keys of `/etc/rlsmon/device.toml` (firmware_config/device.example.toml) that connect the
    device to this broker. The password goes in the file named by `password_file`, never in the TOML."""
    return (
        f'device_id = "{device_id}"\n'
        "\n"
        "[broker]\n"
        f'host = "{host}"\n'
        f"port = {port}\n"
        f'ca_file = "{ca_file}"\n'
        'username = ""\n'
        f'password_file = "{DEVICE_PASSWORD_FILE}"\n'
    )


def validate_device_id(device_id: str, collector_user: str) -> str:
    """Return `device_id` if it is a valid id (the MQTT username, client id and topic level), else
    raise. The collector's username is refused: as a device it would be the collector's client id."""
    if not DEVICE_ID.fullmatch(device_id):
        raise ProvisionError(f"device id {device_id!r} must be 1–63 of a-z, 0-9 and '-', starting with a letter or digit")
    if device_id == collector_user:
        raise ProvisionError(f"device id {device_id!r} is the collector's broker username ([mqtt] username); "
                             "choose another")
    return device_id

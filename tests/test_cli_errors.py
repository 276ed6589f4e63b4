"""A user's mistakes, run through the real console scripts: each gets one sentence that says what is
wrong and what to do, never a Python traceback (issue 15, item 1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
MISSING = "/nonexistent-rlsmon-dir"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A directory with a short recording, configs good and bad, and an existing backup file."""
    from device.sim import simulate_night, write_night

    d = tmp_path_factory.mktemp("mistakes")
    write_night(simulate_night("plmd", 1, 0.05, 52.0), d / "rec.csv", d / "truth.json")
    (d / "server.toml").write_text(f'[database]\npath = "{d}/server.db"\n')
    (d / "server-bad-db.toml").write_text(f'[database]\npath = "{MISSING}/server.db"\n')
    # Nothing listens on port 1; the password must not reach the message.
    (d / "server-bad-pg.toml").write_text(
        '[database]\nurl = "postgresql://rlsmon:s3cret@127.0.0.1:1/rlsmon?connect_timeout=5"\n')
    (d / "server-bad-provision.toml").write_text(
        f'[database]\npath = "{d}/server.db"\n[provision]\npassword_file = "{MISSING}/passwd"\n'
        f'acl_file = "{MISSING}/acl"\n')
    (d / "device-not-toml.toml").write_text("device_id: bed-1\n")
    (d / "device-bad-data-dir.toml").write_text('device_id = "bed-1"\ndata_dir = "/proc/rlsmon"\n')
    (d / "exists.db").write_text("")
    return d


# (script, arguments with {d} for the work directory, expected exit code, words the message holds)
MISTAKES = [
    ("rlsmon-device", "analyze {d}/rec.csv --plot " + MISSING + "/x.png", 2, ["--plot", "no directory", "create it"]),
    ("rlsmon-device", "analyze {d}/rec.csv --plot {d}", 2, ["is a directory", "file name"]),
    ("rlsmon-device", "analyze {d}/absent.csv", 2, ["absent.csv", "does not exist"]),
    ("rlsmon-device", "analyze {d}/truth.json", 1, ["truth.json, line 1", "header must be"]),
    ("rlsmon-device", "analyze {d}/rec.csv --start tonight", 2, ["--start", "ISO 8601"]),
    ("rlsmon-device", "score {d}/rec.csv --plot " + MISSING + "/x.png", 2, ["--plot", "no directory"]),
    ("rlsmon-device", "score {d}/rec.csv", 1, ["rec.csv, line 1", "onset_s,offset_s,leg"]),
    ("rlsmon-device", "simulate --scenario plmd --out " + MISSING + "/n.csv --truth {d}/n.json", 2,
     ["--out", "no directory"]),
    ("rlsmon-device", "simulate --scenario insomnia --out {d}/n.csv --truth {d}/n.json", 2, ["choose one of"]),
    ("rlsmon-device", "capture --seconds 1 --out {d}/c.csv --bus 99", 1,
     ["/dev/i2c-99 does not exist", "turn I2C on"]),
    ("rlsmon-device", "capture --out {d}/c.csv", 2, ["--seconds", "--emulate"]),
    ("rlsmon-device", "capture --emulate {d}/rec.csv --out " + MISSING + "/c.csv", 2, ["--out", "no directory"]),
    ("rlsmon-device", "capture --emulate {d}/rec.csv --out {d}/c.csv --chip LSM9", 1, ["unknown chip", "LSM6DSOX"]),
    ("rlsmon-device", "capture --emulate {d}/rec.csv --out {d}/c.csv --faults often", 1, ["often", "key=value"]),
    ("rlsmon-device", "run --config {d}/absent.toml", 78, ["absent.toml", "cannot be read", "device.example.toml"]),
    ("rlsmon-device", "run --config {d}/device-not-toml.toml", 78, ["device-not-toml.toml", "not valid TOML"]),
    ("rlsmon-device", "run --config {d}/device-bad-data-dir.toml --emulate {d}/rec.csv --nights 1", 78,
     ["/proc/rlsmon", "data_dir must be a directory"]),
    ("rlsmon-device", "doctor --config {d}/absent.toml --emulate {d}/rec.csv", 1, ["absent.toml", "fix: make it"]),
    ("rlsmon-device", "analyse {d}/rec.csv", 2, ["No such command", "analyze"]),
    ("rlsmon-server", "collect --config {d}/absent.toml", 78, ["absent.toml", "server.example.toml"]),
    ("rlsmon-server", "web --config {d}/absent.toml", 78, ["absent.toml", "server.example.toml"]),
    ("rlsmon-server", "collect --config {d}/server.toml", 78, ["[mqtt] password_file", "collector-password"]),
    ("rlsmon-server", "collect --config {d}/server-bad-db.toml", 1, ["cannot open the database", "[database] path"]),
    ("rlsmon-server", "web --config {d}/server-bad-db.toml", 1, ["cannot open the database", "[database] path"]),
    ("rlsmon-server", "add-user nurse.kim --password-file /dev/null --config {d}/server-bad-db.toml", 1,
     ["cannot open the database", "[database] path"]),
    ("rlsmon-server", "add-user nurse.kim --password-file {d}/absent --config {d}/server.toml", 2,
     ["--password-file", "No such file"]),
    ("rlsmon-server", "add-user nurse.kim --password-file /dev/null --config {d}/server.toml", 1,
     ["at least 10 characters"]),
    ("rlsmon-server", "add-device bed-1 --config {d}/server-bad-provision.toml", 1,
     ["cannot write", "[provision] password_file"]),
    ("rlsmon-server", "add-device Bed_1 --config {d}/server.toml", 1, ["Bed_1", "a-z, 0-9"]),
    ("rlsmon-server", "assign bed-9 P-0042 --config {d}/server.toml", 1, ["unknown device", "add-device"]),
    ("rlsmon-server", "assign bed-9 P-0042 --config {d}/server-bad-db.toml", 1, ["cannot open the database"]),
    ("rlsmon-server", "backup " + MISSING + "/b.db --config {d}/server.toml", 1, ["no directory", "create it"]),
    ("rlsmon-server", "backup {d}/exists.db --config {d}/server.toml", 1, ["exists", "new file name"]),
    ("rlsmon-server", "backup {d}/b.db --config {d}/server-bad-db.toml", 1, ["cannot open the database"]),
    ("rlsmon-server", "forget P-0042 --yes --config {d}/server.toml", 1, ["no patient", "P-0042"]),
    ("rlsmon-server", "forget P-0042 --yes --config {d}/server-bad-db.toml", 1, ["cannot open the database"]),
    ("rlsmon-server", "rejected --days 0 --config {d}/server.toml", 2, ["--days", "0"]),
    ("rlsmon-server", "rejected --config {d}/server-bad-db.toml", 1, ["cannot open the database"]),
    ("rlsmon-server", "migrate --config {d}/server-bad-pg.toml", 1,
     ["cannot open the database postgresql://rlsmon:***@127.0.0.1:1/rlsmon", "[database] url"]),
    ("rlsmon-server", "collect --config {d}/server-bad-pg.toml", 1, ["cannot open the database", "[database] url"]),
]


@pytest.mark.parametrize(("script", "args", "code", "words"), MISTAKES,
                         ids=[f"{s.split('-')[1]} {a.split(' --config')[0]}" for s, a, _, _ in MISTAKES])
def test_a_mistake_gets_a_sentence_not_a_traceback(work, script, args, code, words):
    result = subprocess.run([str(BIN / script), *args.format(d=work).split()],
                            capture_output=True, text=True, timeout=120, cwd=work)
    said = result.stdout + result.stderr

    assert "Traceback" not in said, said
    assert result.returncode == code, said
    for word in words:
        assert word in said, said

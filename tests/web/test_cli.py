"""`rlsmon-server add-user` and the config handling of `rlsmon-server web`."""

from __future__ import annotations

from datetime import datetime, timezone

from click.testing import CliRunner

from server.cli import cli
from server.db import open_db
from server.web import auth


def _config(tmp_path, extra: str = "") -> str:
    path = tmp_path / "server.toml"
    path.write_text(f'[database]\npath = "{tmp_path / "server.db"}"\n{extra}')
    return str(path)


def _can_log_in(tmp_path, username: str, password: str) -> bool:
    db = open_db(tmp_path / "server.db")
    try:
        return auth.login(db, username, password, datetime.now(timezone.utc),
                          "127.0.0.1").token is not None
    finally:
        db.conn.close()


def test_add_user_asks_for_the_password_twice(tmp_path):
    config = _config(tmp_path)
    result = CliRunner().invoke(cli, ["add-user", "nurse.kim", "--config", config],
                                input="a long password\na long password\n")
    assert result.exit_code == 0, result.output
    assert "created user nurse.kim" in result.output
    assert "a long password" not in result.output  # never echoed
    assert _can_log_in(tmp_path, "nurse.kim", "a long password")


def test_add_user_refuses_two_different_entries(tmp_path):
    result = CliRunner().invoke(cli, ["add-user", "nurse.kim", "--config", _config(tmp_path)],
                                input="a long password\nanother one!!\n")
    assert result.exit_code != 0
    assert "do not match" in result.output
    assert not _can_log_in(tmp_path, "nurse.kim", "a long password")


def test_add_user_from_a_file_and_replace(tmp_path):
    config = _config(tmp_path)
    secret = tmp_path / "pw"
    secret.write_text("first password\n")
    runner = CliRunner()
    assert runner.invoke(cli, ["add-user", "dr.o", "--config", config,
                               "--password-file", str(secret)]).exit_code == 0
    again = runner.invoke(cli, ["add-user", "dr.o", "--config", config,
                                "--password-file", str(secret)])
    assert again.exit_code == 1 and "already exists" in again.output
    secret.write_text("second password\n")
    replaced = runner.invoke(cli, ["add-user", "dr.o", "--config", config, "--replace",
                                   "--password-file", str(secret)])
    assert replaced.exit_code == 0
    assert _can_log_in(tmp_path, "dr.o", "second password")
    assert not _can_log_in(tmp_path, "dr.o", "first password")


def _role(tmp_path, username: str) -> str:
    db = open_db(tmp_path / "server.db")
    try:
        return db.execute("SELECT role FROM users WHERE username = ?", [username]).fetchone()[0]
    finally:
        db.conn.close()


def test_add_user_roles_default_to_clinician_and_replace_keeps_the_role(tmp_path):
    config = _config(tmp_path)
    secret = tmp_path / "pw"
    secret.write_text("a long password\n")
    runner = CliRunner()
    for args in (["nurse.kim"], ["it.ops", "--role", "admin"]):
        result = runner.invoke(cli, ["add-user", *args, "--config", config,
                                     "--password-file", str(secret)])
        assert result.exit_code == 0, result.output
    assert (_role(tmp_path, "nurse.kim"), _role(tmp_path, "it.ops")) == ("clinician", "admin")
    assert runner.invoke(cli, ["add-user", "it.ops", "--replace", "--config", config,
                               "--password-file", str(secret)]).exit_code == 0
    assert _role(tmp_path, "it.ops") == "admin"
    assert runner.invoke(cli, ["add-user", "it.ops", "--replace", "--role", "clinician",
                               "--config", config, "--password-file", str(secret)]).exit_code == 0
    assert _role(tmp_path, "it.ops") == "clinician"
    bad = runner.invoke(cli, ["add-user", "x.y", "--role", "root", "--config", config,
                              "--password-file", str(secret)])
    assert bad.exit_code == 2 and "root" in bad.output
    db = open_db(tmp_path / "server.db")
    actions = [r[0] for r in db.execute("SELECT action FROM audit ORDER BY id")]
    db.conn.close()
    assert actions == ["user.create", "user.create", "user.replace", "user.replace"]


def test_add_user_refuses_a_short_password(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("short\n")
    result = CliRunner().invoke(cli, ["add-user", "x", "--config", _config(tmp_path),
                                      "--password-file", str(secret)])
    assert result.exit_code == 1 and "at least 10 characters" in result.output


def test_web_names_the_file_and_key_of_a_bad_config(tmp_path):
    config = _config(tmp_path, '[web]\nport = "eighty"\n')
    result = CliRunner().invoke(cli, ["web", "--config", config])
    assert result.exit_code == 78  # EX_CONFIG: systemd does not restart it
    assert config in result.output and "port" in result.output


def test_rejected_lists_reasons_per_device_and_never_the_payload(tmp_path):
    from datetime import timedelta

    from server.collector import ingest

    config = _config(tmp_path)
    today = datetime.now(timezone.utc)
    db = open_db(tmp_path / "server.db")
    secret = b'{"plm_index": 41.5, "note": "SECRET-HEALTH-DATA"'  # cut short: not JSON
    ingest(db, "rlsmon/v1/bed-1/summary", secret)
    ingest(db, "rlsmon/v1/bed-2/summary", b"SECRET-HEALTH-DATA, not json either")
    ingest(db, "rlsmon/v1/bed-1/summary", b"old SECRET-HEALTH-DATA",
           received_at=(today - timedelta(days=30)).isoformat(timespec="seconds"))
    ingest(db, "rlsmon/v1/bed-1/summary", b"x" * 10)  # counted, like every refusal, in rejected_daily
    reasons = dict(db.execute("SELECT topic, reason FROM rejected WHERE received_at >= ?",
                              [today.date().isoformat()]).fetchall())
    db.conn.close()
    runner = CliRunner()

    everyone = runner.invoke(cli, ["rejected", "--config", config])
    one = runner.invoke(cli, ["rejected", "--config", config, "--device", "bed-1"])
    month = runner.invoke(cli, ["rejected", "--config", config, "--device", "bed-1", "--days", "31"])

    assert everyone.exit_code == one.exit_code == month.exit_code == 0, everyone.output
    for result in (everyone, one, month):
        assert "SECRET-HEALTH-DATA" not in result.output
    assert reasons["rlsmon/v1/bed-1/summary"] in everyone.output
    assert reasons["rlsmon/v1/bed-2/summary"] in everyone.output
    assert f"{len(secret)} bytes" in everyone.output
    assert "bed-2" not in one.output and "rlsmon/v1/bed-1/summary" in one.output
    assert "2 refused" in one.output and "3 refused" in month.output
    assert one.output.count("rlsmon/v1/bed-1/summary") == 2  # the old one is outside the 7 days
    assert month.output.count("rlsmon/v1/bed-1/summary") == 3

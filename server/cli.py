"""`rlsmon-server`: the clinic side's command line."""

from __future__ import annotations

import click

from server import __version__


@click.group()
@click.version_option(__version__, prog_name="rlsmon-server")
def cli() -> None:
    """rlsmon clinic server: collect nightly summaries over MQTT and serve the dashboard."""


_CONFIG_OPTION = click.option(
    "--config", "config_path", default="/etc/rlsmon/server.toml", show_default=True,
    type=click.Path(dir_okay=False), help="The server config (TOML).",
)


class BadConfig(click.ClickException):
    """A bad config file. Exit 78 (EX_CONFIG, sysexits.h): the units' RestartPreventExitStatus=78
    then stops systemd restarting a service that can only fail the same way again."""

    exit_code = 78


def _load_config(config_path: str):
    from server.config import ConfigError, load_config

    try:
        return load_config(config_path)
    except ConfigError as e:
        raise BadConfig(str(e)) from None


@cli.command()
@_CONFIG_OPTION
def collect(config_path: str) -> None:
    """Receive nightly summaries over MQTT into the database, until SIGTERM.

    \b
    Example:
        rlsmon-server collect --config /etc/rlsmon/server.toml
    """
    import logging

    from server.collector import run_collector
    from server.config import ConfigError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = run_collector(config_path)
    except ConfigError as e:
        raise BadConfig(str(e)) from None
    raise SystemExit(code)


@cli.command("add-device")
@_CONFIG_OPTION
@click.argument("device_id")
@click.option("--rotate", is_flag=True, help="Replace the password of an existing device.")
def add_device(config_path: str, device_id: str, rotate: bool) -> None:
    """Give DEVICE_ID a broker password and print its config snippet.

    Writes the mosquitto password file and makes sure the ACL lets each device write only
    rlsmon/v1/<its id>/# and read only its receipts. Reload mosquitto afterwards
    (`systemctl reload mosquitto`).

    \b
    Example:
        rlsmon-server add-device bedroom-1
    """
    from server import provision
    from server.db import open_db, utc_now

    config = _load_config(config_path)
    try:
        provision.validate_device_id(device_id, config.mqtt.username)
        password = provision.generate_password()
        provision.set_password(config.provision.password_file, device_id, password, replace=rotate)
        provision.ensure_acl(config.provision.acl_file, config.mqtt.username)
    except (provision.ProvisionError, OSError) as e:
        raise click.ClickException(str(e)) from None
    with open_db(config.database.path) as db, db.atomic():
        db.execute("INSERT OR IGNORE INTO devices (device_id, created_at) VALUES (?, ?)", [device_id, utc_now()])
    p = config.provision
    click.echo(f"# /etc/rlsmon/device.toml on {device_id} (with the rest of device.example.toml):")
    click.echo(provision.device_config_snippet(device_id, p.device_broker_host, p.device_broker_port, p.device_ca_file))
    click.echo("# /etc/rlsmon/mqtt-password on the device (mode 0600), this line only:")
    click.echo(password)
    click.echo("# Then reload the broker: systemctl reload mosquitto", err=True)


@cli.command()
@_CONFIG_OPTION
@click.argument("device_id")
@click.argument("pseudonym")
def assign(config_path: str, device_id: str, pseudonym: str) -> None:
    """Assign DEVICE_ID to the patient PSEUDONYM (created if new). Names stay out of rlsmon.

    \b
    Example:
        rlsmon-server assign bedroom-1 P-0042
    """
    from server.db import assign_device, open_db, utc_now

    config = _load_config(config_path)
    with open_db(config.database.path) as db:
        try:
            assign_device(db, device_id, pseudonym, utc_now())
        except LookupError:
            raise click.ClickException(
                f"unknown device {device_id!r}: add it first with `rlsmon-server add-device`"
            ) from None
        except ValueError as e:
            raise click.ClickException(str(e)) from None
    click.echo(f"{device_id} → {pseudonym.strip()}")


@cli.command()
@_CONFIG_OPTION
@click.option("--host", default=None, help="Listen address (default: [web] host in the config).")
@click.option("--port", type=int, default=None, help="Listen port (default: [web] port).")
@click.option("--secure-cookies", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True, help="Secure flag on cookies: auto sets it on HTTPS requests "
              "(behind a TLS proxy that sends X-Forwarded-Proto).")
def web(config_path: str, host: str | None, port: int | None, secure_cookies: str) -> None:
    """Serve the clinic dashboard and its JSON API with uvicorn.

    \b
    Example:
        rlsmon-server web --config /etc/rlsmon/server.toml --port 8000
    """
    from datetime import timedelta

    import uvicorn

    from server.web import auth, create_app

    config = _load_config(config_path)
    w = config.web
    policy = auth.LoginPolicy(session_ttl=timedelta(hours=w.session_hours),
                              max_failed_logins=w.max_failed_logins,
                              lockout=timedelta(minutes=w.lockout_minutes))
    app = create_app(config.database.path, policy=policy, warm_charts=True,
                     secure_cookies={"auto": None, "always": True, "never": False}[secure_cookies])
    # proxy_headers: behind the clinic's TLS proxy, the scheme (and so the Secure flag) is https.
    uvicorn.run(app, host=host or w.host, port=port or w.port, proxy_headers=True,
                server_header=False, log_level="info")


@cli.command("add-user")
@_CONFIG_OPTION
@click.argument("username")
@click.option("--password-file", type=click.File("r"), default=None,
              help="Read the password from this file's first line instead of prompting.")
@click.option("--replace", is_flag=True, help="Set a new password for an existing user (and unlock it).")
def add_user(config_path: str, username: str, password_file, replace: bool) -> None:
    """Create a dashboard login for USERNAME; the password is asked for twice.

    \b
    Example:
        rlsmon-server add-user nurse.kim
        rlsmon-server add-user nurse.kim --password-file /root/pw --replace
    """
    from datetime import datetime, timezone

    from server.db import open_db
    from server.web import auth

    config = _load_config(config_path)
    if password_file is not None:
        password = password_file.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    db = open_db(config.database.path)
    try:
        auth.set_password(db, username, password, datetime.now(timezone.utc), replace=replace)
    except auth.AuthError as e:
        raise click.ClickException(str(e)) from None
    finally:
        db.conn.close()
    click.echo(f"{'updated' if replace else 'created'} user {username}")


def main() -> None:
    """Console-script entry point."""
    cli()

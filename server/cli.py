"""`rlsmon-server`: the clinic side's command line."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import click

from server import __version__, audit


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


def _open_db(config, config_path: str):
    """The configured database, or an error naming it and the key that sets it."""
    import sqlite3

    from server.db import is_url, open_db, redacted

    database = config.database
    errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
    if is_url(database.target):
        try:
            import psycopg
        except ImportError:
            raise click.ClickException(
                f"{database.key} in {config_path} is a PostgreSQL database, and psycopg is not installed: "
                "pip install 'rlsmon[server,postgres]'") from None
        errors += (psycopg.Error,)
        hint = "the server must be reachable and the role must own the database (README, \"PostgreSQL\")"
    else:
        hint = "its directory must exist and be writable by you"
    try:
        return open_db(database.target)
    except errors as e:
        raise click.ClickException(
            f"cannot open the database {redacted(database.target)} ({str(e).strip()}): {hint}; "
            f"it is {database.key} in {config_path}") from None


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

    _open_db(_load_config(config_path), config_path).conn.close()  # a wrong [database] path: one sentence
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
    from server.db import utc_now

    config = _load_config(config_path)
    try:
        provision.validate_device_id(device_id, config.mqtt.username)
        password = provision.generate_password()
        provision.set_password(config.provision.password_file, device_id, password, replace=rotate)
        provision.ensure_acl(config.provision.acl_file, config.mqtt.username)
    except provision.ProvisionError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(
            f"cannot write {e.filename} ({e.strerror}): check [provision] password_file and acl_file in "
            f"{config_path}, and run as root (sudo)") from None
    with _open_db(config, config_path) as db, db.atomic():
        db.execute("INSERT INTO devices (device_id, created_at) VALUES (?, ?) ON CONFLICT (device_id) DO NOTHING",
                   [device_id, utc_now()])
    p = config.provision
    click.echo(f"# /etc/rlsmon/device.toml on {device_id} (with the rest of device.example.toml):")
    click.echo(provision.device_config_snippet(device_id, p.device_broker_host, p.device_broker_port, p.device_ca_file))
    click.echo(f"# {provision.DEVICE_PASSWORD_FILE} on the device (mode {provision.DEVICE_PASSWORD_MODE}, "
               "as install-device.sh sets it), this line only:")
    click.echo(password)
    click.echo("# Then reload the broker: systemctl reload mosquitto", err=True)


@cli.command()
@_CONFIG_OPTION
def migrate(config_path: str) -> None:
    """Create the database's schema, or bring it to this version's (the collector and the dashboard
    also do this when they start); prints the migrations applied. For PostgreSQL, run it once as
    the role that owns the database before starting the services.

    \b
    Example:
        rlsmon-server migrate --config /etc/rlsmon/server.toml
    """
    from server.db import redacted, schema_version

    config = _load_config(config_path)
    with _open_db(config, config_path) as db:
        applied = schema_version(db)
    click.echo(f"{redacted(config.database.target)}: schema at {applied[-1]} ({len(applied)} migrations)")


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
    from server.db import assign_device, utc_now

    config = _load_config(config_path)
    with _open_db(config, config_path) as db:
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
    import logging

    import uvicorn

    from server.web import auth, create_app

    config = _load_config(config_path)
    _open_db(config, config_path).conn.close()  # a wrong [database] path: one sentence, not a traceback
    w = config.web
    policy = auth.LoginPolicy(session_ttl=timedelta(hours=w.session_hours),
                              token_ttl=timedelta(days=w.token_days))
    app = create_app(config.database.target, policy=policy,
                     secure_cookies={"auto": None, "always": True, "never": False}[secure_cookies])
    # proxy_headers: behind the clinic's TLS proxy, the scheme (and so the Secure flag) is https.
    # The app keeps its own access log (server.web.access), without query strings: uvicorn's would
    # log a pseudonym searched for.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(app, host=host or w.host, port=port or w.port, proxy_headers=True,
                server_header=False, log_level="info", access_log=False)


@cli.command("add-user")
@_CONFIG_OPTION
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "clinician"]), default=None,
              help="What the account may do (default for a new account: clinician; with "
              "--replace, the account keeps its role unless this is given).")
@click.option("--password-file", type=click.File("r"), default=None,
              help="Read the password from this file's first line instead of prompting.")
@click.option("--replace", is_flag=True,
              help="Set a new password (and role, with --role) for an existing user.")
def add_user(config_path: str, username: str, role: str | None, password_file,
             replace: bool) -> None:
    """Create a dashboard login for USERNAME; the password is asked for twice.

    An admin manages staff, devices, API tokens, refused payloads and the audit trail; a
    clinician sees patients, nights, notes and exports. New accounts are clinicians unless
    --role admin says otherwise: most staff are clinicians, and an admin is made on purpose.

    \b
    Example:
        rlsmon-server add-user nurse.kim
        rlsmon-server add-user it.ops --role admin
        rlsmon-server add-user nurse.kim --password-file /root/pw --replace
    """
    from server.web import auth

    config = _load_config(config_path)
    db = _open_db(config, config_path)  # before the password is asked for, not after
    if password_file is not None:
        password = password_file.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        auth.set_password(db, username, password, _now(), replace=replace, role=role)
        audit.record(db, _now(), _cli_actor(), "user.replace" if replace else "user.create",
                     target_kind="user", target=username, detail=f"role={role}" if role else None)
    except auth.AuthError as e:
        raise click.ClickException(str(e)) from None
    finally:
        db.conn.close()
    click.echo(f"{'updated' if replace else 'created'} user {username}")


@cli.command()
@_CONFIG_OPTION
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
def backup(config_path: str, file: str) -> None:
    """Copy the clinic database to FILE (a new file), consistent while the collector writes.

    Uses SQLite's online backup API: the copy is one snapshot of committed data, checked, and
    readable only by its owner. Restore it as the README says (stop, copy in place, start).

    \b
    Example:
        rlsmon-server backup /var/backups/rlsmon/server-$(date +%F).db
    """
    import os
    import sqlite3

    from server.lifecycle import backup as backup_db

    config = _load_config(config_path)
    if config.database.url:
        raise click.ClickException(
            f"the database is PostgreSQL ([database] url in {config_path}): back it up with pg_dump, "
            "e.g. pg_dump --format=custom --file FILE URL, and restore with pg_restore (README, \"PostgreSQL\")")
    directory = os.path.dirname(os.path.abspath(file))
    if not os.path.isdir(directory):
        raise click.ClickException(f"there is no directory {directory} for the backup; create it first")
    db = _open_db(config, config_path)
    db.conn.close()
    try:
        backup_db(config.database.path, file)
    except (OSError, sqlite3.DatabaseError) as e:
        raise click.ClickException(f"backup to {file} failed: {e}") from None
    db = _open_db(config, config_path)
    try:
        audit.record(db, _now(), _cli_actor(), "backup", detail=f"file={file}")
    finally:
        db.conn.close()
    click.echo(f"backed up {config.database.path} to {file}")


@cli.command("copy-to")
@_CONFIG_OPTION
@click.argument("target")
def copy_to(config_path: str, target: str) -> None:
    """Copy the whole configured database into TARGET, a new empty database: a postgresql:// URL
    (a clinic outgrowing SQLite) or a SQLite file (back from PostgreSQL). The configured one is
    only read; then point [database] in server.toml at TARGET.

    Stop rlsmon-collector and rlsmon-web first: what they write during the copy would not be
    copied. The copy refuses to start while another process has a SQLite database open, or
    while other sessions are connected to a PostgreSQL one. TARGET is migrated, must hold no
    data, and is written in one transaction (a failure leaves it empty); the row counts are
    checked and an audit entry on TARGET records the copy. Login sessions are not copied.

    \b
    Example:
        systemctl stop rlsmon-collector rlsmon-web
        rlsmon-server copy-to 'postgresql://rlsmon@db.example.org/rlsmon?passfile=/etc/rlsmon/pgpass'
    """
    from server import copydb
    from server.db import is_url, redacted

    config = _load_config(config_path)
    source_name = config.database.target
    try:
        copydb.check_source(source_name, target)  # before this process opens it (see in_use)
        source = _open_db(config, config_path)
        try:
            with copydb.open_target(target) as dest:
                done = copydb.copy_database(
                    source, dest, _now(), _cli_actor(), source_name,
                    progress=lambda table, rows: click.echo(f"  {table:18} {rows:>12,} rows", err=True))
        finally:
            source.conn.close()
    except copydb.CopyError as e:
        raise click.ClickException(str(e)) from None
    rate = done.copied_rows / max(done.seconds, 1e-6)
    click.echo(f"copied {redacted(source_name)} to {redacted(target)}: {len(done.rows) - len(copydb.DERIVED)} "
               f"tables, {done.copied_rows:,} rows in {done.seconds:.1f} s ({rate:,.0f} rows/s); "
               f"{' and '.join(copydb.DERIVED)} recomputed and checked against the source")
    for table, why in copydb.SKIPPED.items():
        click.echo(f"not copied: {table} ({why})")
    setting = "url" if is_url(target) else "path (and no url)"
    click.echo(f"Next: in {config_path}, set [database] {setting} to {redacted(target)}, then start "
               "rlsmon-collector and rlsmon-web.", err=True)


@cli.command()
@_CONFIG_OPTION
@click.argument("pseudonym")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def forget(config_path: str, pseudonym: str, yes: bool) -> None:
    """Erase the patient PSEUDONYM's data (GDPR art. 17): nights, notes, refused payloads from
    their devices and their device assignments. The devices stay, unassigned. An audit entry
    records the erasure (who, when, counts), with no health data.

    \b
    Example:
        rlsmon-server forget P-0042
    """
    from server.lifecycle import forget as forget_patient

    config = _load_config(config_path)
    db = _open_db(config, config_path)
    if not yes:
        click.confirm(f"Erase every night and note of {pseudonym}? This cannot be undone",
                      abort=True)
    try:
        done = forget_patient(db, pseudonym, _now(), _cli_actor())
    except LookupError as e:
        raise click.ClickException(str(e)) from None
    finally:
        db.conn.close()
    click.echo(f"erased {pseudonym}: {done.nights} nights, {done.notes} notes, "
               f"{done.rejected} refused payloads; devices {', '.join(done.devices) or 'none'} "
               "are unassigned")
    click.echo("Restart the dashboard (systemctl restart rlsmon-web) to drop the charts it holds "
               "in memory; backups keep the data until they are rotated away.", err=True)


@cli.command()
@_CONFIG_OPTION
@click.option("--device", "device_id", default=None, help="Only this device's refused payloads.")
@click.option("--days", type=click.IntRange(min=1), default=7, show_default=True,
              help="How many UTC days back, today included.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many refused payloads listed, newest first.")
def rejected(config_path: str, device_id: str | None, days: int, limit: int) -> None:
    """List the payloads the collector refused, with their reasons: per device, how many and how
    many bytes (from the collector's daily counts), then the newest ones, each with its size and
    SHA-256. Never the payloads themselves: they may hold health data. The admins' web page
    /admin/rejected shows the same.

    \b
    Example:
        rlsmon-server rejected
        rlsmon-server rejected --device bedroom-1 --days 30
    """
    from server.rejected import device_topics

    config = _load_config(config_path)
    since = (_now().date() - timedelta(days=days - 1)).isoformat()
    db = _open_db(config, config_path)
    try:
        per_device = db.execute(
            "SELECT device_id, sum(count), sum(bytes), max(day) FROM rejected_daily "
            "WHERE day >= ? AND (? IS NULL OR device_id = ?) GROUP BY device_id "
            "ORDER BY sum(count) DESC, device_id", [since, device_id, device_id]).fetchall()
        prefix = device_topics(device_id) if device_id else None
        latest = db.execute(
            "SELECT id, received_at, topic, coalesce(size_bytes, length(payload)), sha256, reason "
            "FROM rejected WHERE received_at >= ? AND (? IS NULL OR substr(topic, 1, length(?)) = ?) "
            "ORDER BY id DESC LIMIT ?", [since, prefix, prefix, prefix, limit]).fetchall()
    finally:
        db.conn.close()
    scope = f" from {device_id}" if device_id else ""
    click.echo(f"Refused payloads{scope} since {since} (UTC), per device:")
    for dev, count, size, last_day in per_device:
        click.echo(f"  {dev:24} {count:6} refused  {size:10} bytes  last on {last_day}")
    if not per_device:
        click.echo("  none counted")
    click.echo(f"Newest {len(latest)} kept (payload bytes not shown):")
    for row_id, received_at, topic, size, sha256, reason in latest:
        click.echo(f"  #{row_id} {received_at} {topic} {size} bytes sha256 {(sha256 or '-')[:16]}: {reason}")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _cli_actor() -> audit.Actor:
    """The command line's entries in the audit trail name the operating-system user."""
    import getpass

    return audit.Actor(f"cli:{getpass.getuser()}", client="local")


def main() -> None:
    """Console-script entry point."""
    cli()

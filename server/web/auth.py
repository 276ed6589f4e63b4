"""Staff accounts and their roles, login throttling, sessions, CSRF tokens and API tokens, on the
tables of `server/db.py`.

Secrets never reach the database in the clear: passwords are argon2id hashes, and session and API
tokens are stored as their SHA-256 (a random 256-bit token needs no slow hash). Nothing here logs
a username's password, a token or a patient's data.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterator

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlite_utils import Database

MIN_PASSWORD_CHARS = 10
ADMIN, CLINICIAN = "admin", "clinician"
# admin: users, devices, tokens, rejected payloads, the audit trail. clinician: patients, nights,
# notes, exports. Neither includes the other: whoever runs the accounts does not read the nights.
ROLES = (ADMIN, CLINICIAN)
# Most accounts are for clinical staff; an admin is made on purpose (`add-user --role admin`).
DEFAULT_ROLE = CLINICIAN

_HASHER = PasswordHasher()
# Verified against when the username is unknown, so that a miss costs as long as a wrong password
# (made by the same hasher, so with the same argon2 parameters as every stored hash).
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))


class AuthError(ValueError):
    """A user-facing problem with credentials, e.g. a password that is too short."""


@dataclass(frozen=True)
class Backoff:
    """Growing delays after failed logins: none for the first ``free_failures``, then
    ``first_delay`` doubling with each further failure, up to ``max_delay`` (OWASP Authentication
    Cheat Sheet: throttle with increasing delays rather than a lock an attacker can trigger)."""

    free_failures: int
    first_delay: timedelta
    max_delay: timedelta

    def delay(self, failures: int) -> timedelta:
        """How long to refuse logins after ``failures`` failures in a row."""
        if failures < self.free_failures:
            return timedelta(0)
        return min(self.first_delay * 2 ** min(failures - self.free_failures, 40), self.max_delay)


@dataclass(frozen=True)
class LoginPolicy:
    """How long sessions and API tokens last, and how failed logins are throttled.

    Per client address: 10 free failures (a clinic's staff may share one NAT address), then 1 s
    doubling up to 15 min. Per account name typed (known or not): 3 free, then 1 s doubling up to
    60 s, so an outsider can delay a staff member by at most a minute, while guessing one account
    is held to about one try a minute. Failures are forgotten an hour after the last one.
    """

    session_ttl: timedelta = timedelta(hours=12)  # one clinic shift
    token_ttl: timedelta = timedelta(days=90)
    per_address: Backoff = field(default_factory=lambda: Backoff(
        10, timedelta(seconds=1), timedelta(minutes=15)))
    per_account: Backoff = field(default_factory=lambda: Backoff(
        3, timedelta(seconds=1), timedelta(seconds=60)))
    forget_after: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class Session:
    """A logged-in staff member: their name, role, and the CSRF token that their forms carry."""

    username: str
    role: str
    csrf_token: str


@dataclass(frozen=True)
class LoginResult:
    """The outcome of a login attempt: a new session token, or none (``retry_after_s`` set when
    the attempt was refused unchecked, because of earlier failures). ``account`` and ``role``
    name the account when it exists, for the audit trail only: the person logging in is told
    the same whether it exists or not."""

    token: str | None = None
    retry_after_s: int | None = None
    account: str | None = None
    role: str | None = None


@dataclass(frozen=True)
class ApiToken:
    """A live API token: its name, the staff member who owns it, and the role it acts with."""

    name: str
    owner: str
    role: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _iso(t: datetime) -> str:
    return t.isoformat()


@contextmanager
def _write_locked(db: Database) -> Iterator[None]:
    # BEGIN IMMEDIATE takes the write lock before reading, so two requests cannot both read the
    # same count and both pass (a read-then-write deferred transaction would race).
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.conn.rollback()
        raise
    db.conn.commit()


def _check_username(username: str) -> None:
    if not username or len(username) > 64 or not username.isprintable() or " " in username:
        raise AuthError("a username is 1–64 printable characters without spaces")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AuthError(f"a role is one of {', '.join(ROLES)}, not {role!r}")


def set_password(db: Database, username: str, password: str, now: datetime, *, replace: bool,
                 role: str | None = None) -> None:
    """Create the staff account ``username`` with ``role`` (default ``DEFAULT_ROLE``), or, with
    ``replace``, set its password (and its role, when given) and end its sessions."""
    _check_username(username)
    if role is not None:
        _check_role(role)
    if len(password) < MIN_PASSWORD_CHARS:
        raise AuthError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    exists = db.execute("SELECT 1 FROM users WHERE username = ?", [username]).fetchone()
    if exists and not replace:
        raise AuthError(f"user {username!r} already exists (use --replace to set a new password)")
    password_hash = _HASHER.hash(password)
    with db.atomic():
        if exists:
            db.execute("UPDATE users SET password_hash = ?, role = coalesce(?, role) "
                       "WHERE username = ?", [password_hash, role, username])
            db.execute("DELETE FROM sessions WHERE username = ?", [username])
        else:
            db["users"].insert({"username": username, "password_hash": password_hash,
                                "created_at": _iso(now), "role": role or DEFAULT_ROLE})


def set_role(db: Database, username: str, role: str) -> bool:
    """Give ``username`` the role ``role``; False when there is no such user. Their tokens made
    with the old role stop working (a token never acts above its owner)."""
    _check_role(role)
    with db.atomic():
        return db.execute("UPDATE users SET role = ? WHERE username = ?",
                          [role, username]).rowcount > 0


def delete_user(db: Database, username: str) -> bool:
    """Remove an account with its sessions and API tokens; False when there was none."""
    with db.atomic():
        return db.execute("DELETE FROM users WHERE username = ?", [username]).rowcount > 0


def users(db: Database) -> list[dict]:
    """Every account's name, role and creation time (never a hash)."""
    return [{"username": r[0], "role": r[1], "created_at": r[2]} for r in db.execute(
        "SELECT username, role, created_at FROM users ORDER BY username")]


def _throttle_keys(policy: LoginPolicy, client: str, username: str) -> list[tuple[str, Backoff]]:
    # The name typed is stored only as a hash: people type passwords into the username box.
    account = hashlib.sha256(username.casefold().encode()).hexdigest()
    return [(f"address:{client}", policy.per_address), (f"account:{account}", policy.per_account)]


@dataclass(frozen=True)
class _Charge:
    key: str
    retry_before: str | None  # the row's retry_at before this attempt (None: no row)
    retry_charged: str


def _charge(db: Database, keys: list[tuple[str, Backoff]], now: datetime,
            forget_after: timedelta) -> tuple[float, list[_Charge]]:
    """Refuse (returning the seconds to wait) while any key is in its delay; otherwise count this
    attempt as a failure of every key up front, so that a burst of parallel attempts is throttled
    too. A successful login refunds it (`_refund`)."""
    now_iso = _iso(now)
    with _write_locked(db):
        db.execute("DELETE FROM login_throttle WHERE last_failure_at < ?",
                   [_iso(now - forget_after)])
        rows = {key: db.execute("SELECT failures, retry_at FROM login_throttle WHERE key = ?",
                                [key]).fetchone() for key, _ in keys}
        wait_s = max([(datetime.fromisoformat(r[1]) - now).total_seconds()
                      for r in rows.values() if r is not None] + [0.0])
        if wait_s > 0:
            return wait_s, []
        charges = []
        for key, backoff in keys:
            failures = (rows[key][0] if rows[key] else 0) + 1
            retry = _iso(now + backoff.delay(failures))
            db.execute("INSERT INTO login_throttle (key, failures, last_failure_at, retry_at) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET failures = excluded."
                       "failures, last_failure_at = excluded.last_failure_at, retry_at = "
                       "excluded.retry_at", [key, failures, now_iso, retry])
            charges.append(_Charge(key, rows[key][1] if rows[key] else None, retry))
    return 0.0, charges


def _refund(db: Database, charges: list[_Charge]) -> None:
    """Undo a successful attempt's charge: the account starts afresh, and the address gets back
    the failure (and the delay) it was charged, unless a later attempt has charged it since."""
    for c in charges:
        if c.key.startswith("account:"):
            db.execute("DELETE FROM login_throttle WHERE key = ?", [c.key])
            continue
        db.execute("UPDATE login_throttle SET failures = failures - 1, retry_at = CASE "
                   "WHEN retry_at = ? THEN coalesce(?, retry_at) ELSE retry_at END WHERE key = ?",
                   [c.retry_charged, c.retry_before, c.key])
        db.execute("DELETE FROM login_throttle WHERE key = ? AND failures <= 0", [c.key])


def login(db: Database, username: str, password: str, now: datetime, client: str,
          policy: LoginPolicy = LoginPolicy()) -> LoginResult:
    """Check a password from ``client`` (its address); on success open a session and return its
    token (given to the browser once).

    While the address or the name typed is in its delay after earlier failures, the attempt is
    refused without checking the password (``retry_after_s``). An unknown name and a wrong
    password take the same path at the same cost (an argon2 check against a dummy hash, the same
    throttle writes) and get the same answer, so a login reveals no usernames.
    """
    wait_s, charges = _charge(db, _throttle_keys(policy, client, username), now,
                              policy.forget_after)
    if wait_s > 0:
        return LoginResult(retry_after_s=math.ceil(wait_s))
    user = db.execute("SELECT password_hash, role FROM users WHERE username = ?",
                      [username]).fetchone()
    verified = _verify(user[0] if user else _DUMMY_HASH, password)
    if user is None or not verified:
        return LoginResult(account=username if user else None)
    password_hash, role = user
    token = secrets.token_urlsafe(32)
    with db.atomic():
        _refund(db, charges)
        if _HASHER.check_needs_rehash(password_hash):
            db.execute("UPDATE users SET password_hash = ? WHERE username = ?",
                       [_HASHER.hash(password), username])
        db.execute("DELETE FROM sessions WHERE expires_at <= ?", [_iso(now)])
        db["sessions"].insert({"token": _digest(token), "username": username,
                               "csrf_token": secrets.token_urlsafe(32), "created_at": _iso(now),
                               "expires_at": _iso(now + policy.session_ttl)})
    return LoginResult(token=token, account=username, role=role)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def session_for(db: Database, token: str | None, now: datetime) -> Session | None:
    """The live session that ``token`` (the cookie's value) opens, with the user's current role."""
    if not token:
        return None
    row = db.execute("SELECT s.username, u.role, s.csrf_token FROM sessions s JOIN users u "
                     "ON u.username = s.username WHERE s.token = ? AND s.expires_at > ?",
                     [_digest(token), _iso(now)]).fetchone()
    return Session(*row) if row else None


def logout(db: Database, token: str) -> None:
    """End the session that ``token`` opened."""
    with db.atomic():
        db.execute("DELETE FROM sessions WHERE token = ?", [_digest(token)])


def csrf_ok(expected: str, given: str | None) -> bool:
    """Compare a form's CSRF token with the session's, in constant time."""
    return bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())


def create_api_token(db: Database, name: str, owner: str, role: str, now: datetime,
                     ttl: timedelta) -> str:
    """Create an API token owned by ``owner`` acting as ``role`` until ``now + ttl``; the token is
    shown once and stored hashed. A token never acts above its owner: ``role`` must be theirs."""
    name = name.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise AuthError("a token's name is 1–64 printable characters")
    if not timedelta(days=1) <= ttl <= timedelta(days=365):
        raise AuthError("a token lasts 1–365 days")
    owner_role = db.execute("SELECT role FROM users WHERE username = ?", [owner]).fetchone()
    if owner_role is None or owner_role[0] != role:
        raise AuthError(f"a token's role cannot be more than its owner's ({owner_role and owner_role[0]})")
    if db.execute("SELECT 1 FROM api_tokens WHERE name = ?", [name]).fetchone():
        raise AuthError(f"a token named {name!r} already exists")
    token = "rlsmon_" + secrets.token_urlsafe(32)
    with db.atomic():
        db["api_tokens"].insert({"token_hash": _digest(token), "name": name, "owner": owner,
                                 "role": role, "created_at": _iso(now),
                                 "expires_at": _iso(now + ttl)})
    return token


def api_token(db: Database, token: str | None, now: datetime) -> ApiToken | None:
    """The API token ``token`` when it is live: known, unexpired, and its owner still holds its
    role. None otherwise (unknown, revoked, expired, or its owner gone or moved to another role)."""
    if not token:
        return None
    row = db.execute("SELECT t.name, t.owner, t.role FROM api_tokens t JOIN users u "
                     "ON u.username = t.owner AND u.role = t.role "
                     "WHERE t.token_hash = ? AND t.expires_at > ?",
                     [_digest(token), _iso(now)]).fetchone()
    return ApiToken(*row) if row else None


def api_tokens(db: Database, owner: str | None = None) -> list[dict]:
    """The API tokens (all, or ``owner``'s): name, owner, role, created and expiry, never the token."""
    where, params = ("WHERE owner = ?", [owner]) if owner is not None else ("", [])
    return [dict(zip(("name", "owner", "role", "created_at", "expires_at"), r)) for r in db.execute(
        f"SELECT name, owner, role, created_at, expires_at FROM api_tokens {where} ORDER BY name",
        params)]


def revoke_api_token(db: Database, name: str, owner: str | None = None) -> bool:
    """Revoke the token called ``name`` (only if ``owner`` owns it, when given); False when there
    was none."""
    with db.atomic():
        if owner is None:
            return db.execute("DELETE FROM api_tokens WHERE name = ?", [name]).rowcount > 0
        return db.execute("DELETE FROM api_tokens WHERE name = ? AND owner = ?",
                          [name, owner]).rowcount > 0

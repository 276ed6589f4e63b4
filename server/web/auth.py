"""Staff accounts, login sessions, CSRF tokens and API tokens, on the tables of `server/db.py`.

Secrets never reach the database in the clear: passwords are argon2id hashes, and session and API
tokens are stored as their SHA-256 (a random 256-bit token needs no slow hash). Nothing here logs
a username's password, a token or a patient's data.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlite_utils import Database

MIN_PASSWORD_CHARS = 10

_HASHER = PasswordHasher()
# Verified against when the username is unknown, so that a miss costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))


class AuthError(ValueError):
    """A user-facing problem with credentials, e.g. a password that is too short."""


@dataclass(frozen=True)
class LoginPolicy:
    """How long a session lasts, and the lock-out: ``max_failed_logins`` failures in a row lock the
    account for ``lockout`` (defaults 5 and 15 min, after OWASP's authentication cheat sheet:
    a small threshold with a time-limited lock)."""

    session_ttl: timedelta = timedelta(hours=12)  # one clinic shift
    max_failed_logins: int = 5
    lockout: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class Session:
    """A logged-in staff member: their name and the CSRF token that their forms must carry."""

    username: str
    csrf_token: str


@dataclass(frozen=True)
class LoginResult:
    """The outcome of a login attempt: a new session token, or why there is none."""

    token: str | None = None
    locked_until: datetime | None = None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _iso(t: datetime) -> str:
    return t.isoformat()


def set_password(db: Database, username: str, password: str, now: datetime, *, replace: bool) -> None:
    """Create the staff account ``username`` (or, with ``replace``, set its password and unlock it)."""
    if not username or len(username) > 64 or not username.isprintable() or " " in username:
        raise AuthError("a username is 1–64 printable characters without spaces")
    if len(password) < MIN_PASSWORD_CHARS:
        raise AuthError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    exists = db.execute("SELECT 1 FROM users WHERE username = ?", [username]).fetchone()
    if exists and not replace:
        raise AuthError(f"user {username!r} already exists (use --replace to set a new password)")
    row = {"username": username, "password_hash": _HASHER.hash(password), "created_at": _iso(now),
           "failed_logins": 0, "locked_until": None}
    with db.atomic():
        if exists:
            db.execute("UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = NULL "
                       "WHERE username = ?", [row["password_hash"], username])
            db.execute("DELETE FROM sessions WHERE username = ?", [username])
        else:
            db["users"].insert(row)


def login(db: Database, username: str, password: str, now: datetime,
          policy: LoginPolicy = LoginPolicy()) -> LoginResult:
    """Check a password; on success open a session and return its token (given to the browser once).

    Each failure counts; the ``policy.max_failed_logins``-th locks the account for
    ``policy.lockout``. While locked, even the right password is refused, so guessing gains nothing.
    """
    user = db.execute("SELECT password_hash, failed_logins, locked_until FROM users "
                      "WHERE username = ?", [username]).fetchone()
    if user is None:
        _verify(_DUMMY_HASH, password)
        return LoginResult()
    password_hash, failed, locked_until = user
    if locked_until and datetime.fromisoformat(locked_until) > now:
        return LoginResult(locked_until=datetime.fromisoformat(locked_until))
    if not _verify(password_hash, password):
        failed += 1
        lock = _iso(now + policy.lockout) if failed >= policy.max_failed_logins else None
        with db.atomic():
            db.execute("UPDATE users SET failed_logins = ?, locked_until = ? WHERE username = ?",
                       [0 if lock else failed, lock, username])
        return LoginResult(locked_until=now + policy.lockout if lock else None)
    token = secrets.token_urlsafe(32)
    with db.atomic():
        db.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE username = ?",
                   [username])
        if _HASHER.check_needs_rehash(password_hash):
            db.execute("UPDATE users SET password_hash = ? WHERE username = ?",
                       [_HASHER.hash(password), username])
        db.execute("DELETE FROM sessions WHERE expires_at <= ?", [_iso(now)])
        db["sessions"].insert({"token": _digest(token), "username": username,
                               "csrf_token": secrets.token_urlsafe(32), "created_at": _iso(now),
                               "expires_at": _iso(now + policy.session_ttl)})
    return LoginResult(token=token)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def session_for(db: Database, token: str | None, now: datetime) -> Session | None:
    """The live session that ``token`` (the cookie's value) opens, or None."""
    if not token:
        return None
    row = db.execute("SELECT username, csrf_token FROM sessions WHERE token = ? AND expires_at > ?",
                     [_digest(token), _iso(now)]).fetchone()
    return Session(username=row[0], csrf_token=row[1]) if row else None


def logout(db: Database, token: str) -> None:
    """End the session that ``token`` opened."""
    with db.atomic():
        db.execute("DELETE FROM sessions WHERE token = ?", [_digest(token)])


def csrf_ok(expected: str, given: str | None) -> bool:
    """Compare a form's CSRF token with the session's, in constant time."""
    return bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())


def create_api_token(db: Database, name: str, now: datetime) -> str:
    """Create an API token for the clinic's own systems; the token is shown once and stored hashed."""
    name = name.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise AuthError("a token's name is 1–64 printable characters")
    if db.execute("SELECT 1 FROM api_tokens WHERE name = ?", [name]).fetchone():
        raise AuthError(f"a token named {name!r} already exists")
    token = "rlsmon_" + secrets.token_urlsafe(32)
    with db.atomic():
        db["api_tokens"].insert({"token_hash": _digest(token), "name": name, "created_at": _iso(now)})
    return token


def api_token_name(db: Database, token: str | None) -> str | None:
    """The name of the API token ``token``, or None when it is unknown or revoked."""
    if not token:
        return None
    row = db.execute("SELECT name FROM api_tokens WHERE token_hash = ?", [_digest(token)]).fetchone()
    return row[0] if row else None


def revoke_api_token(db: Database, name: str) -> bool:
    """Revoke the token called ``name``; False when there was none."""
    with db.atomic():
        return db.execute("DELETE FROM api_tokens WHERE name = ?", [name]).rowcount > 0

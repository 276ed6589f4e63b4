"""Login throttling: growing delays per client address and per name typed, on the app's clock
(never a sleep), and no way to tell an unknown username from a wrong password."""

from __future__ import annotations

import re
from datetime import timedelta

from argon2 import extract_parameters

from server.db import open_db
from server.web import auth
from tests.pgserver import BOTH_DATABASES
from tests.web.conftest import NOW, PASSWORD, USER, TestClient, log_in

pytestmark = BOTH_DATABASES

WRONG = "not the password"


def _attempt(client, username: str = USER, password: str = WRONG):
    response = log_in(client, username, password)
    retry = response.headers.get("retry-after")
    return response.status_code, int(retry) if retry else None


def test_unknown_users_and_wrong_passwords_get_the_same_answer(client):
    unknown = log_in(client, "nobody.here", WRONG)
    wrong = log_in(client, USER, WRONG)
    assert unknown.status_code == wrong.status_code == 401
    # The same page, but for the fresh CSRF token each login form carries and the name typed,
    # which the form keeps either way.
    token = re.compile(r'value="[A-Za-z0-9_-]{40,}"')
    unknown_page = token.sub("", unknown.text).replace('value="nobody.here"', 'value="NAME"')
    assert unknown_page == token.sub("", wrong.text).replace(f'value="{USER}"', 'value="NAME"')
    assert "Wrong username or password." in unknown.text


def test_an_unknown_user_costs_an_argon2_check_with_the_real_parameters(seeded):
    db = open_db(seeded.path)
    (stored,) = db.execute("SELECT password_hash FROM users WHERE username = ?", [USER]).fetchone()
    db.conn.close()
    assert extract_parameters(auth._DUMMY_HASH) == extract_parameters(stored)


def test_the_delay_grows_per_account_and_is_capped(client, clock):
    policy = auth.LoginPolicy().per_account
    for _ in range(policy.free_failures - 1):
        assert _attempt(client) == (401, None)
    seen = []
    for _ in range(12):
        assert _attempt(client)[0] == 401  # allowed, checked, wrong
        status, retry = _attempt(client)  # refused unchecked until the delay has passed
        assert status == 429
        seen.append(retry)
        clock.advance(timedelta(seconds=retry))
    assert seen[:4] == [1, 2, 4, 8]
    assert max(seen) == seen[-1] == policy.max_delay.total_seconds() == 60


def test_the_right_password_waits_out_the_delay_too_then_works(client, clock):
    for _ in range(3):
        log_in(client, password=WRONG)
    refused = log_in(client)
    assert refused.status_code == 429 and "Try again in 1 s" in refused.text
    assert "rlsmon_session" not in client.cookies
    clock.advance(timedelta(seconds=1))
    assert log_in(client).status_code == 303


def test_an_unknown_name_is_throttled_exactly_like_a_real_one(app, clock):
    def sequence(username: str, address: str) -> list[tuple[int, int | None]]:
        with TestClient(app, client=(address, 1234)) as c:
            out = []
            for _ in range(6):
                out.append(_attempt(c, username))
                if out[-1][1]:
                    clock.advance(timedelta(seconds=out[-1][1]))
            return out

    assert sequence(USER, "10.0.0.1") == sequence("no.such.user", "10.0.0.2")


def test_an_outsider_delays_a_staff_member_by_a_minute_at_most(app, clock):
    with TestClient(app, client=("203.0.113.9", 4321)) as outsider:
        for _ in range(15):  # wrong passwords, each as soon as the delay allows
            status, retry = _attempt(outsider)
            if status == 429:
                clock.advance(timedelta(seconds=retry))
                status, retry = _attempt(outsider)
            assert status == 401
    with TestClient(app, client=("10.1.2.3", 5555)) as nurse:
        status, retry = _attempt(nurse, password=PASSWORD)
        assert status == 429 and retry <= 60
        clock.advance(timedelta(seconds=retry))
        assert log_in(nurse).status_code == 303


def test_one_address_guessing_many_names_is_throttled(app, clock):
    with TestClient(app, client=("198.51.100.7", 1)) as guesser:
        statuses = [_attempt(guesser, f"user{i}")[0] for i in range(auth.LoginPolicy().per_address
                                                                    .free_failures + 1)]
        assert statuses[-1] == 429 and set(statuses[:-1]) == {401}
    with TestClient(app, client=("10.9.9.9", 1)) as someone_else:
        assert log_in(someone_else).status_code == 303


def test_successful_logins_from_a_shared_address_are_never_throttled(app):
    # A clinic behind one NAT address: a morning of logins must not add up.
    with TestClient(app, client=("192.0.2.1", 1)) as c:
        for _ in range(auth.LoginPolicy().per_address.free_failures + 2):
            assert log_in(c).status_code == 303


def test_failures_are_forgotten_after_an_hour(client, clock):
    for _ in range(3):
        log_in(client, password=WRONG)
    assert _attempt(client, password=PASSWORD)[0] == 429
    clock.advance(timedelta(hours=1, seconds=1))
    assert log_in(client).status_code == 303


def test_the_throttle_stores_no_name_typed(seeded, client):
    log_in(client, "my secret password typed as a name", WRONG)
    db = open_db(seeded.path)
    keys = [r[0] for r in db.execute("SELECT key FROM login_throttle")]
    db.conn.close()
    assert keys and not any("secret" in k for k in keys)


def test_a_parallel_burst_is_throttled_like_a_sequence(seeded, clock):
    from concurrent.futures import ThreadPoolExecutor

    def attempt(_: int) -> bool:
        db = open_db(seeded.path, check_same_thread=False)
        try:
            result = auth.login(db, USER, WRONG, NOW, "10.7.7.7")
            return result.retry_after_s is None  # checked (not refused unchecked)
        finally:
            db.conn.close()

    with ThreadPoolExecutor(8) as pool:
        checked = sum(pool.map(attempt, range(16)))
    # Every attempt is charged before its check: once the free failures are spent, the rest of
    # the burst is refused unchecked, whatever the interleaving.
    assert checked == auth.LoginPolicy().per_account.free_failures

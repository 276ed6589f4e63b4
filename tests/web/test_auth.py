"""Login, sessions, throttling, CSRF and API tokens: the dashboard's access rules."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from server.db import open_db
from tests.pgserver import BOTH_DATABASES
from tests.web.conftest import PASSWORD, USER, app_routes, csrf_of, log_in

pytestmark = BOTH_DATABASES


def _routes(app, methods: set[str]) -> list[tuple[str, str]]:
    """Every (method, concrete path) of the app."""
    return [(method, path) for method, _, path in app_routes(app, methods)]


def test_the_app_has_the_routes_the_tests_enumerate(app):
    paths = {p for _, p in _routes(app, {"GET", "POST"})}
    # A sanity check that enumeration sees pages, exports, API and schema alike.
    for expected in ("/", "/patients/1", "/devices/dev-a/nights/2026-11-23", "/api/devices",
                     "/openapi.json", "/docs", "/patients/1/nights.csv"):
        assert expected in paths


def test_every_route_without_a_session_is_refused(app, client):
    checked = 0
    for method, path in _routes(app, {"GET", "POST", "PUT", "PATCH", "DELETE"}):
        if path == "/login":
            continue
        response = client.request(method, path, follow_redirects=False)
        if path.startswith("/api/") or path == "/openapi.json":
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.headers["www-authenticate"] == "Bearer"
        else:
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith("/login?next=")
        checked += 1
    assert checked >= 15


def test_a_wrong_bearer_token_or_cookie_is_refused(app, client):
    client.cookies.set("rlsmon_session", "forged")
    for method, path in _routes(app, {"GET"}):
        if path == "/login":
            continue
        response = client.get(path, headers={"Authorization": "Bearer rlsmon_nope"},
                              follow_redirects=False)
        assert response.status_code == 401, path


def test_static_assets_and_the_login_page_are_public(client):
    assert client.get("/static/style.css").status_code == 200
    page = client.get("/login")
    assert page.status_code == 200 and 'type="password"' in page.text


def test_login_sets_a_hardened_session_cookie_and_redirects_to_next(client):
    response = log_in(client, next_path="/patients/1")
    assert response.status_code == 303 and response.headers["location"] == "/patients/1"
    cookie = response.headers["set-cookie"]
    assert "rlsmon_session=" in cookie and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http in this test; see the https test below
    assert client.get("/").status_code == 200


def test_cookie_is_secure_over_https(app):
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="https://clinic.test") as c:
        response = log_in(c)
        assert response.status_code == 303
        assert "Secure" in response.headers["set-cookie"]


def test_next_never_leaves_the_site(client):
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = log_in(client, next_path=target)
        assert response.headers["location"] == "/"


def test_secrets_are_stored_hashed(seeded, client):
    response = log_in(client)
    token = client.cookies.get("rlsmon_session")
    assert response.status_code == 303 and token
    db = open_db(seeded.path)
    (password_hash,) = db.execute("SELECT password_hash FROM users").fetchone()
    assert password_hash.startswith("$argon2id$") and PASSWORD not in password_hash
    stored = [r[0] for r in db.execute("SELECT token FROM sessions")]
    assert stored and token not in stored


def test_wrong_password_is_refused_without_a_session(client):
    response = log_in(client, password="wrong password!")
    assert response.status_code == 401
    assert "Wrong username or password" in response.text
    assert "rlsmon_session" not in client.cookies
    assert log_in(client, username="nobody").status_code == 401


def test_sessions_expire(staff, clock):
    clock.advance(timedelta(hours=12, seconds=1))
    assert staff.get("/", follow_redirects=False).status_code == 303


def test_logout_ends_the_session_on_the_server(staff):
    token = staff.cookies.get("rlsmon_session")
    response = staff.post("/logout", data={"csrf_token": csrf_of(staff.get("/").text)},
                          follow_redirects=False)
    assert response.status_code == 303
    staff.cookies.set("rlsmon_session", token)  # a stolen copy of the cookie is now worthless
    assert staff.get("/", follow_redirects=False).status_code == 303


def test_login_form_needs_its_csrf_token(client):
    client.get("/login")
    response = client.post("/login", data={"username": USER, "password": PASSWORD,
                                           "csrf_token": "guess"}, follow_redirects=False)
    assert response.status_code == 403
    assert "rlsmon_session" not in client.cookies


FORM_FIELDS = {
    "/devices/dev-a/assign": {"pseudonym": "P-0009"},
    "/patients/1/notes": {"on": "2026-11-01", "text": "pramipexole stopped"},
    "/patients/1/medications": {"drug": "pramipexole", "dose": "0.125 mg",
                                "drug_class": "dopamine_agonist", "started": "2026-11-01"},
    "/patients/1/medications/1/stop": {"on": "2026-11-23"},
    "/tokens": {"name": "reports"},
    "/tokens/revoke": {"name": "reports"},
    "/admin/users/role": {"username": USER, "role": "admin"},
    "/admin/users/delete": {"username": USER},
    "/logout": {},
}


def test_every_form_post_needs_the_session_csrf_token(app, staff):
    posts = [p for _, p in _routes(app, {"POST"}) if p != "/login"]
    assert set(posts) == set(FORM_FIELDS), "a new form: add its fields to FORM_FIELDS"
    good = csrf_of(staff.get("/").text)
    forged = ("y" if good[0] == "x" else "x") + good[1:]  # one character off, never the token itself
    for path in posts:
        for token in (None, "", forged):
            data = dict(FORM_FIELDS[path])
            if token is not None:
                data["csrf_token"] = token
            response = staff.post(path, data=data, follow_redirects=False)
            assert response.status_code == 403, (path, token, response.status_code)
    # Nothing changed, and the session still works (as a clinician: the role did not change).
    assert "P-0009" not in staff.get("/").text
    assert staff.get("/").status_code == 200


def test_the_same_forms_pass_with_the_token(staff):
    good = csrf_of(staff.get("/").text)
    response = staff.post("/patients/1/notes", data={**FORM_FIELDS["/patients/1/notes"],
                                                     "csrf_token": good}, follow_redirects=False)
    assert response.status_code == 303
    assert "pramipexole stopped" in staff.get("/patients/1").text


def _create_token(staff, name: str, days: int | None = None) -> str:
    form = {"name": name, "csrf_token": csrf_of(staff.get("/tokens").text)}
    page = staff.post("/tokens", data=form if days is None else {**form, "days": str(days)})
    assert page.status_code == 201, page.text
    return re.search(r'<code class="token">([^<]+)</code>', page.text).group(1)


def _revoke(client, name: str) -> None:
    client.post("/tokens/revoke", data={"name": name,
                                        "csrf_token": csrf_of(client.get("/tokens").text)})


def test_api_tokens_read_the_api_and_can_be_revoked(app, staff):
    from fastapi.testclient import TestClient

    token = _create_token(staff, "reporting")
    with TestClient(app) as machine:
        auth_header = {"Authorization": f"Bearer {token}"}
        listed = machine.get("/api/devices", headers=auth_header)
        assert listed.status_code == 200
        assert {d["device_id"] for d in listed.json()} >= {"dev-a", "dev-new"}
        assert machine.get("/openapi.json", headers=auth_header).status_code == 200
        # Read-only: a token cannot post a form (and needs no CSRF token since it cannot).
        refused = machine.post("/patients/1/notes", headers=auth_header,
                               data=FORM_FIELDS["/patients/1/notes"], follow_redirects=False)
        assert refused.status_code == 401
        _revoke(staff, "reporting")
        assert machine.get("/api/devices", headers=auth_header).status_code == 401


def _api_status(app, token: str, path: str = "/api/devices") -> int:
    from fastapi.testclient import TestClient

    with TestClient(app) as machine:
        return machine.get(path, headers={"Authorization": f"Bearer {token}"}).status_code


def test_tokens_expire_after_ninety_days_by_default_or_as_chosen(app, staff, clock):
    default, short = _create_token(staff, "default"), _create_token(staff, "short", days=7)
    page = staff.get("/tokens").text
    assert "nurse.kim" in page and "clinician" in page
    assert "22 Feb 2027" in page  # NOW + 90 days, shown as the expiry
    too_long = staff.post("/tokens", data={"name": "forever", "days": "3650",
                                           "csrf_token": csrf_of(staff.get("/tokens").text)})
    assert too_long.status_code == 422 and "1–365 days" in too_long.text
    clock.advance(timedelta(days=7, seconds=1))
    assert (_api_status(app, short), _api_status(app, default)) == (401, 200)
    log_in(staff)  # a week on, the session has long expired
    assert "<strong>expired</strong>" in staff.get("/tokens").text
    clock.advance(timedelta(days=83))
    assert _api_status(app, default) == 401


def test_a_token_acts_with_its_owners_role_and_dies_with_it(app, seeded, staff, admin):
    clinician_token = _create_token(staff, "reports")
    admin_token = _create_token(admin, "siem")
    assert _api_status(app, clinician_token) == 200
    assert _api_status(app, admin_token) == 403  # an admin's token reads no patient data
    assert _api_status(app, admin_token, "/admin/audit.csv") == 200
    # The owner moves to another role: the token (made with the old one) stops working.
    from server.web import auth

    db = open_db(seeded.path)
    auth.set_role(db, USER, "admin")
    db.conn.close()
    assert _api_status(app, clinician_token) == 401


def test_admins_see_and_revoke_every_token_clinicians_only_their_own(app, staff, admin):
    mine = _create_token(staff, "mine")
    _create_token(admin, "ops")
    assert "ops" not in staff.get("/tokens").text.split("<tbody>")[1]
    _revoke(staff, "ops")  # not theirs: nothing happens
    assert "ops" in admin.get("/tokens").text.split("<tbody>")[1]
    assert _api_status(app, mine) == 200
    _revoke(admin, "mine")
    assert _api_status(app, mine) == 401


def test_token_names_are_unique_and_tokens_are_shown_once(staff):
    _create_token(staff, "reporting")
    again = staff.post("/tokens", data={"name": "reporting",
                                        "csrf_token": csrf_of(staff.get("/tokens").text)})
    assert again.status_code == 422 and "already exists" in again.text
    assert 'class="token"' not in staff.get("/tokens").text


@pytest.mark.parametrize("bad", ["short", ""])
def test_weak_passwords_are_refused(seeded, bad):
    from datetime import datetime, timezone

    from server.web import auth

    db = open_db(seeded.path)
    with pytest.raises(auth.AuthError):
        auth.set_password(db, "someone", bad, datetime.now(timezone.utc), replace=False)

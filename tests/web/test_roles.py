"""Every route, for every kind of caller, allowed or forbidden, from one table.

The table is the policy: a route the app has and the table lacks (or the other way round) fails
the first test, so a new route cannot ship without someone deciding who may use it. The app
itself refuses a route that declares no roles (`server/web/access.py`).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from server.db import open_db
from server.web import auth
from tests.pgserver import BOTH_DATABASES
from tests.web.conftest import (ADMIN_PASSWORD, ADMIN_USER, NOW, USER, TestClient, app_routes,
                                csrf_of, log_in)

pytestmark = BOTH_DATABASES

PUBLIC, ADMIN, CLINICIAN = "public", frozenset({"admin"}), frozenset({"clinician"})
BOTH = ADMIN | CLINICIAN

ROUTES: dict[tuple[str, str], str | frozenset[str]] = {
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/logout"): BOTH,
    ("GET", "/"): CLINICIAN,
    ("POST", "/devices/{device_id}/assign"): CLINICIAN,
    ("GET", "/devices/{device_id}/nights/{night}"): CLINICIAN,
    ("GET", "/devices/{device_id}/nights/{night}/annotations.edf"): CLINICIAN,
    ("GET", "/devices/{device_id}/nights/{night}/summary.json"): CLINICIAN,
    ("GET", "/patients/{patient_id}"): CLINICIAN,
    ("POST", "/patients/{patient_id}/notes"): CLINICIAN,
    ("POST", "/patients/{patient_id}/medications"): CLINICIAN,
    ("POST", "/patients/{patient_id}/medications/{medication_id}/stop"): CLINICIAN,
    ("GET", "/patients/{patient_id}/{kind}.csv"): CLINICIAN,
    ("GET", "/patients/{patient_id}/nights.json"): CLINICIAN,
    ("GET", "/patients/{patient_id}/report.pdf"): CLINICIAN,
    ("GET", "/patients/{patient_id}/fhir.json"): CLINICIAN,
    ("GET", "/tokens"): BOTH,
    ("POST", "/tokens"): BOTH,
    ("POST", "/tokens/revoke"): BOTH,
    ("GET", "/docs"): BOTH,
    ("GET", "/openapi.json"): BOTH,
    ("GET", "/api/devices"): CLINICIAN,
    ("GET", "/api/devices/{device_id}/nights"): CLINICIAN,
    ("GET", "/api/devices/{device_id}/nights/{night}"): CLINICIAN,
    ("GET", "/api/devices/{device_id}/sits"): CLINICIAN,
    ("GET", "/api/patients"): CLINICIAN,
    ("GET", "/api/patients/{patient_id}"): CLINICIAN,
    ("GET", "/api/patients/{patient_id}/nights"): CLINICIAN,
    ("GET", "/api/patients/{patient_id}/notes"): CLINICIAN,
    ("GET", "/admin/users"): ADMIN,
    ("POST", "/admin/users/role"): ADMIN,
    ("POST", "/admin/users/delete"): ADMIN,
    ("GET", "/admin/devices"): ADMIN,
    ("GET", "/admin/rejected"): ADMIN,
    ("GET", "/admin/audit"): ADMIN,
    ("GET", "/admin/audit.csv"): ADMIN,
}

# What each form needs to pass validation, so that an allowed POST shows as allowed.
FORMS = {
    "/logout": {},
    "/devices/dev-a/assign": {"pseudonym": "P-0001"},
    "/patients/1/notes": {"on": "2026-11-01", "text": "iron supplement started"},
    "/patients/1/medications": {"drug": "ferrous sulfate", "dose": "325 mg",
                                "drug_class": "iron", "started": "2026-11-01"},
    "/patients/1/medications/1/stop": {"on": "2026-11-23"},
    "/tokens": {"name": "made-by-the-role-test"},
    "/tokens/revoke": {"name": "no-such-token"},
    "/admin/users/role": {"username": "temp.user", "role": "clinician"},
    "/admin/users/delete": {"username": "temp.user"},
}


def test_the_table_covers_every_route_and_nothing_else(app):
    enumerated = {(method, template) for method, template, _ in
                  app_routes(app, {"GET", "POST", "PUT", "PATCH", "DELETE"})}
    assert enumerated - set(ROUTES) == set(), "a new route: declare its roles here and in the app"
    assert set(ROUTES) - enumerated == set(), "a route in the table that the app no longer has"


def _allowed(response) -> bool:
    if response.status_code in (401, 403):
        return False
    return not (response.status_code == 303
                and response.headers["location"].startswith("/login?next="))


def _callers(app, seeded):
    """The kinds of caller: none, a session and an API token of each role."""
    db = open_db(seeded.path)
    auth.set_password(db, "temp.user", "a temporary password", NOW, replace=False)
    tokens = {role: auth.create_api_token(db, f"role-test-{role}", owner, role, NOW,
                                          timedelta(days=1))
              for role, owner in (("admin", ADMIN_USER), ("clinician", USER))}
    db.conn.close()
    yield "nobody", None, TestClient(app)
    for role, (user, password) in (("admin", (ADMIN_USER, ADMIN_PASSWORD)),
                                   ("clinician", (USER, "correct horse battery"))):
        client = TestClient(app)
        assert log_in(client, user, password).status_code == 303
        yield f"{role} session", role, client
        yield f"{role} token", role, TestClient(
            app, headers={"Authorization": f"Bearer {tokens[role]}"})


@pytest.mark.timeout(240)
def test_every_route_for_every_role(app, seeded):
    routes = app_routes(app, {"GET", "POST"})
    # Logging out ends the session that the later requests use: do it last.
    routes.sort(key=lambda r: r[2] == "/logout")
    checked = 0
    for caller, role, client in _callers(app, seeded):
        with client:
            is_session = caller.endswith("session")
            csrf = csrf_of(client.get("/tokens").text) if is_session else None
            for method, template, path in routes:
                declared = ROUTES[(method, template)]
                if declared == PUBLIC:
                    continue
                # A token is read-only: it never passes a POST, whatever its role.
                expected = role in declared and (method == "GET" or is_session)
                data = dict(FORMS.get(path, {}), **({"csrf_token": csrf} if csrf else {}))
                response = client.request(method, path, data=data if method == "POST" else None,
                                          follow_redirects=False)
                assert _allowed(response) == expected, (caller, method, path,
                                                        response.status_code)
                if not expected and role is not None:
                    # Known but not allowed: 403 for a session, 401 for a token's POST.
                    assert response.status_code in ((403,) if is_session or method == "GET"
                                                     else (401,)), (caller, method, path)
                checked += 1
    assert checked >= 5 * (len(ROUTES) - 2) - 20


def test_a_route_that_declares_no_role_is_closed_to_everyone(app, staff):
    @app.get("/undeclared")
    def undeclared() -> dict:
        return {}

    response = staff.get("/undeclared", follow_redirects=False)
    assert response.status_code == 403

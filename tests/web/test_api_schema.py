"""The JSON API against its own OpenAPI schema: schemathesis generates requests (valid and not),
and every response must match the schema and none may be a 500."""

from __future__ import annotations

from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from server.db import open_db
from server.web import auth, create_app
from tests.web.conftest import CLINIC_TZ, NOW, USER


@pytest.fixture
def api_token(seeded) -> str:
    """A read-only API token in the seeded database."""
    db = open_db(seeded.path)
    token = auth.create_api_token(db, "schemathesis", USER, auth.CLINICIAN, NOW,
                                  timedelta(days=90))
    db.conn.close()
    return token


@pytest.fixture
def api_schema(seeded, api_token, clock):
    """The app's schema, fetched from /openapi.json with the token (the schema needs it too)."""
    app = create_app(seeded.path, now=clock, clinic_tz=CLINIC_TZ)
    return schemathesis.openapi.from_asgi(
        "/openapi.json", app, headers={"Authorization": f"Bearer {api_token}"})


# Bounded: a few dozen requests per operation keep this well under a minute on a shared machine.
BOUNDED = settings(max_examples=30, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_api_conforms_to_its_schema(api_schema, api_token):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 7
    for operation in operations:
        @BOUNDED
        @given(case=operation.as_strategy())
        def check(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {api_token}"})

        check()


def test_real_records_conform_to_the_schema(api_schema, api_token, seeded):
    # Generated ids almost never exist; these do, so every 200 body is checked against the schema.
    known = {"device_id": "dev-a", "night": str(seeded.last_night),
             "patient_id": seeded.flagged_patient}
    for result in api_schema.get_all_operations():
        operation = result.ok()
        names = {p.name for p in operation.path_parameters}
        case = operation.Case(path_parameters={n: known[n] for n in names})
        response = case.call_and_validate(headers={"Authorization": f"Bearer {api_token}"})
        assert response.status_code == 200, operation.label


def test_the_schema_needs_authentication(client):
    assert client.get("/openapi.json").status_code == 401


def test_the_schema_declares_bearer_auth(staff):
    spec = staff.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["security"] == [{"bearer": []}]
    assert all(p.startswith("/api/") for p in spec["paths"])  # pages stay out of the API

"""The FHIR R4 export (server/web/fhir.py), validated by two FHIR libraries: fhirclient's R4
(4.0.1) models, strict, and fhir.resources' pydantic models (R4B, whose Observation, Patient,
CodeSystem and Bundle are R4's)."""

from __future__ import annotations

from datetime import date, datetime, timezone

from fhir.resources.R4B.bundle import Bundle as PydanticBundle
from fhirclient.models.bundle import Bundle as R4Bundle

from server import audit
from server.db import open_db
from server.web import fhir
from tests.web import seed
from tests.pgserver import BOTH_DATABASES

pytestmark = BOTH_DATABASES  # the tests that use the database run on SQLite and PostgreSQL

NOW = datetime(2026, 11, 24, 7, tzinfo=timezone.utc)


def _validate(body: dict) -> None:
    R4Bundle(body, strict=True)          # raises FHIRValidationError on any R4 violation
    PydanticBundle.model_validate(body)  # raises ValidationError (types, patterns, cardinality)


def _observations(body: dict) -> dict[tuple[str, str], dict]:
    """(night start, code) -> Observation."""
    out = {}
    for entry in body["entry"]:
        r = entry["resource"]
        if r["resourceType"] == "Observation":
            out[(r["effectivePeriod"]["start"][:10], r["code"]["coding"][0]["code"])] = r
    return out


def test_a_hand_worked_night_as_five_observations():
    # In bed 10 min to 7 h 45 min after 22:30 with a 7-min gap: 7 h 35 min - 7 min = 448 min.
    night = seed.make_night("dev-a", date(2026, 11, 2), 20.0)
    body = fhir.bundle({"pseudonym": "P-0001"}, [night], NOW)
    _validate(body)
    obs = _observations(body)
    assert len(obs) == 5
    tib = obs[("2026-11-02", "time-in-bed")]["valueQuantity"]
    assert tib == {"value": 448.0, "unit": "min", "system": "http://unitsofmeasure.org",
                   "code": "min"}
    plmi = obs[("2026-11-02", "plm-index")]
    assert plmi["valueQuantity"]["value"] == round(night["plm_index"], 2)
    assert plmi["valueQuantity"]["code"] == "/h" and plmi["method"] == {"text": "WASM2016"}
    assert plmi["effectivePeriod"] == {"start": "2026-11-02T22:30:00+01:00",
                                       "end": "2026-11-03T06:30:00+01:00"}
    assert obs[("2026-11-02", "periodicity-index")]["valueQuantity"]["code"] == "1"
    assert obs[("2026-11-02", "night-quality")]["valueCodeableConcept"]["coding"][0] == {
        "system": fhir.QUALITY_SYSTEM, "code": "eligible", "display": "eligible"}
    # Every code is rlsmon's own, defined in the Bundle's CodeSystem; no LOINC anywhere.
    (cs,) = [e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "CodeSystem"]
    defined = {c["code"] for c in cs["concept"]}
    assert {o["code"]["coding"][0]["system"] for o in obs.values()} == {cs["url"]}
    assert {o["code"]["coding"][0]["code"] for o in obs.values()} == defined
    assert "loinc.org" not in str(body).lower()
    # The patient is their pseudonym, nothing else.
    (patient,) = [e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert set(patient) == {"resourceType", "id", "identifier"}


def test_a_short_night_has_no_index_and_a_provisional_one_says_why():
    # 40 min in bed: under the 48 min an index needs (docs/summary.md): no values, a reason.
    short = seed.make_night("dev-a", date(2026, 11, 3), 0.0, gap=False, in_bed_s=(600.0, 3000.0))
    short.update(lm_index=0.0, plm_index=0.0, severity="insufficient_data",
                 clinically_significant=False)
    unsynced = seed.make_night("dev-a", date(2026, 11, 4), 10.0)
    unsynced["clock_synced"] = False
    body = fhir.bundle({"pseudonym": "P-0001"}, [short, unsynced], NOW)
    _validate(body)
    obs = _observations(body)
    for code in ("plm-index", "lm-index", "periodicity-index"):
        assert "valueQuantity" not in obs[("2026-11-03", code)]
        assert obs[("2026-11-03", code)]["dataAbsentReason"]["coding"][0]["code"] == "as-text"
    assert obs[("2026-11-03", "time-in-bed")]["valueQuantity"]["value"] == 40.0
    assert obs[("2026-11-03", "night-quality")]["valueCodeableConcept"]["text"] == "excluded"
    q = obs[("2026-11-04", "night-quality")]
    assert q["valueCodeableConcept"]["text"] == "provisional"
    assert q["note"] == [{"text": "clock not synchronised: date and clock hours may be wrong"}]


def test_the_ids_are_stable_from_one_export_to_the_next():
    night = seed.make_night("dev-a", date(2026, 11, 2), 20.0)
    first = fhir.bundle({"pseudonym": "P-0001"}, [night], NOW)
    again = fhir.bundle({"pseudonym": "P-0001"}, [night], datetime(2026, 12, 1, tzinfo=timezone.utc))
    assert [e["fullUrl"] for e in first["entry"]] == [e["fullUrl"] for e in again["entry"]]
    assert len({e["fullUrl"] for e in first["entry"]}) == len(first["entry"])


def test_the_export_of_a_patient_is_valid_role_checked_and_audited(staff, seeded):
    response = staff.get(f"/patients/{seeded.flagged_patient}/fhir.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+json"
    body = response.json()
    _validate(body)
    assert len(_observations(body)) == 30 * 5
    db = open_db(seeded.path)
    (entry,) = [e for e in audit.page(db, limit=5) if e["action"] == "export.fhir"]
    db.conn.close()
    assert (entry["actor"], entry["patient"]) == ("nurse.kim", "P-0001")
    assert staff.get("/patients/999/fhir.json").status_code == 404


def test_the_validators_refuse_what_r4_does_not_allow():
    import pytest
    from fhirclient.models.fhirabstractbase import FHIRValidationError
    from pydantic import ValidationError

    body = fhir.bundle({"pseudonym": "P-0001"},
                       [seed.make_night("dev-a", date(2026, 11, 2), 20.0)], NOW)
    body["entry"][2]["resource"]["valueQuantity"]["value"] = "twenty"   # not a decimal
    with pytest.raises(FHIRValidationError):
        R4Bundle(body, strict=True)
    with pytest.raises(ValidationError):
        PydanticBundle.model_validate(body)

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
from tests.server.test_sit import make_sit
from tests.web.test_sit_page import seed_sits
from tests.web import seed
from tests.pgserver import BOTH_DATABASES

pytestmark = BOTH_DATABASES  # the tests that use the database run on SQLite and PostgreSQL

NOW = datetime(2026, 11, 24, 7, tzinfo=timezone.utc)


def _validate(body: dict) -> None:
    R4Bundle(body, strict=True)          # raises FHIRValidationError on any R4 violation
    PydanticBundle.model_validate(body)  # raises ValidationError (types, patterns, cardinality)


def _observations(body: dict) -> dict[tuple[str, str], dict]:
    """(night or evening test start, code) -> Observation."""
    out = {}
    for entry in body["entry"]:
        r = entry["resource"]
        if r["resourceType"] == "Observation":
            start = r["effectivePeriod"]["start"] if "effectivePeriod" in r else r["effectiveDateTime"]
            out[(start[:10], r["code"]["coding"][0]["code"])] = r
    return out


def _components(obs: dict) -> dict[str, dict]:
    return {c["code"]["coding"][0]["code"]: c for c in obs["component"]}


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
    assert {o["code"]["coding"][0]["code"] for o in obs.values()} == set(fhir.MEASURES)
    assert set(fhir.MEASURES) | set(fhir.SIT_MEASURES) == defined
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


def test_an_evening_test_is_one_observation_against_40_per_hour():
    # 50 periodic LMs 12 s apart in 60 min scored (tests/server/test_sit.py): 50/h, above 40/h.
    above = make_sit(plms=50, evening="2026-11-20")
    below = make_sit(plms=8, evening="2026-11-21")
    below["ended_early"] = True
    body = fhir.bundle({"pseudonym": "P-0001"}, [], NOW, [above, below])
    _validate(body)
    (cs,) = [e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "CodeSystem"]
    defined = {c["code"] for c in cs["concept"]}
    sits = [e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert len(sits) == 2
    obs = sits[0]
    assert obs["status"] == "final"
    assert obs["code"]["coding"] == [{"system": fhir.CODE_SYSTEM, "code": "sit-plm-index",
                                      "display": "SIT PLM index"}]
    assert obs["valueQuantity"] == {"value": 50.0, "unit": "/h", "system": "http://unitsofmeasure.org",
                                    "code": "/h"}
    assert obs["effectivePeriod"] == {"start": above["started_at"], "end": above["ended_at"]}
    assert obs["interpretation"][0]["coding"][0]["code"] == "H"
    assert obs["referenceRange"][0]["high"]["value"] == 40.0
    assert "Montplaisir et al., Mov Disord 1998" in obs["referenceRange"][0]["text"]
    assert obs["method"] == {"text": "SIT"}
    parts = _components(obs)
    assert set(parts) | {"sit-plm-index"} == {c for c in defined if c.startswith("sit-")}
    assert parts["sit-lm-index"]["valueQuantity"]["value"] == 50.0
    assert parts["sit-scored-time"]["valueQuantity"] == {
        "value": 60.0, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"}
    assert parts["sit-not-horizontal-time"]["valueQuantity"]["value"] == 0.0
    assert parts["sit-ended-early"]["valueBoolean"] is False
    assert parts["sit-taken"]["valueBoolean"] is True
    # 8/h: not above; ended early says so, in a component and a note.
    low = sits[1]
    assert low["valueQuantity"]["value"] == 8.0
    assert low["interpretation"][0]["coding"][0]["code"] == "N"
    assert low["interpretation"][0]["text"] == "not above 40/h"
    assert _components(low)["sit-ended-early"]["valueBoolean"] is True
    assert {"text": "ended early with the button"} in low["note"]


def test_an_evening_test_not_taken_or_too_short_has_no_value_but_a_reason():
    skipped = make_sit(taken=False, evening="2026-11-21")
    short = make_sit(plms=3, evening="2026-11-22")
    # 5 min scored, under the 6 min an index needs (docs/sit.md): no index, no verdict.
    short.update(scored_s=300.0, not_horizontal_s=3300.0, lm_index=None, plm_index=None,
                 above_threshold=None)
    body = fhir.bundle({"pseudonym": "P-0001"}, [], NOW, [skipped, short])
    _validate(body)
    nope, brief = [e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert nope["status"] == "cancelled" and "valueQuantity" not in nope
    assert nope["effectiveDateTime"] == skipped["offered_at"]
    assert nope["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert "interpretation" not in nope and "referenceRange" not in nope
    parts = _components(nope)
    assert parts["sit-taken"]["valueBoolean"] is False
    assert parts["sit-lm-index"]["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert parts["sit-scored-time"]["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert brief["status"] == "final" and "valueQuantity" not in brief
    assert brief["dataAbsentReason"]["text"] == "under the least scored time an index needs (6 min): no index"
    assert _components(brief)["sit-scored-time"]["valueQuantity"]["value"] == 5.0
    assert _components(brief)["sit-not-horizontal-time"]["valueQuantity"]["value"] == 55.0


def test_the_evening_tests_ids_are_stable_and_the_export_carries_them(staff, seeded):
    result = make_sit(plms=50, evening="2026-11-20")
    first = fhir.bundle({"pseudonym": "P-0001"}, [], NOW, [result])
    again = fhir.bundle({"pseudonym": "P-0001"}, [], datetime(2026, 12, 1, tzinfo=timezone.utc), [result])
    assert [e["fullUrl"] for e in first["entry"]] == [e["fullUrl"] for e in again["entry"]]
    seed_sits(seeded.path)
    body = staff.get(f"/patients/{seeded.flagged_patient}/fhir.json").json()
    _validate(body)
    sits = [e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "Observation"
            and e["resource"]["code"]["coding"][0]["code"] == "sit-plm-index"]
    # dev-a's two (50/h and not taken); dev-b's 8/h is the other patient's.
    assert [(o["status"], o.get("valueQuantity", {}).get("value")) for o in sits] == [
        ("final", 50.0), ("cancelled", None)]

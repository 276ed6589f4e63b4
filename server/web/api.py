"""The JSON API under /api, for the clinic's own systems, with its OpenAPI schema at /openapi.json.

Read-only: it never changes anything, so an API token can be handed to a reporting system safely.
Every route reads patient data, so every route is for the clinician role and every read is audited.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from fastapi import APIRouter, FastAPI, Depends, HTTPException, Path, Request
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from sqlite_utils import Database

from server.model import DEVICE_ID_PATTERN, NightSummary
from server.sit import SitResult, sit_results
from server.web import queries
from server.web.access import allow
from server.web.auth import ADMIN, CLINICIAN
from server.web.deps import audit, get_db, state

router = APIRouter()
_401 = {401: {"description": "No session and no valid Bearer token"}}
_404 = {404: {"description": "Not found"}}
DeviceId = Path(pattern=DEVICE_ID_PATTERN, max_length=63)
PatientId = Path(ge=1, le=2**62)


class NightHeadline(BaseModel):
    """A night's headline figures (the whole night is at /api/devices/{id}/nights/{night})."""

    night: date
    device_id: str
    summary_id: str
    plm_index: float
    lm_index: float
    lm_count: int
    plm_count: int
    plm_series_count: int
    time_in_bed_s: float
    recorded_s: float
    periodicity_index: float
    severity: str
    clinically_significant: bool
    rules: str
    generated_at: str
    received_at: str


class DeviceOut(BaseModel):
    """A device, the patient it is assigned to, and its last night."""

    device_id: str
    patient_id: int | None
    pseudonym: str | None
    status: str | None
    last_seen: str | None
    last_night: date | None
    plm_index: float | None
    severity: str | None
    clinically_significant: bool
    coverage: float | None
    missed_nights: int | None
    not_reporting: bool


class Note(BaseModel):
    """A staff note, e.g. a treatment started or changed."""

    id: int
    date: date
    text: str
    created_by: str
    created_at: str


class PatientOut(BaseModel):
    """A patient pseudonym and their devices."""

    id: int
    pseudonym: str
    created_at: str
    devices: list[str]


def _device_out(row: queries.DeviceRow) -> DeviceOut:
    return DeviceOut(device_id=row.device_id, patient_id=row.patient_id, pseudonym=row.pseudonym,
                     status=row.status, last_seen=row.last_seen, last_night=row.night,
                     plm_index=row.plm_index, severity=row.severity,
                     clinically_significant=row.clinically_significant, coverage=row.coverage,
                     missed_nights=row.missed_nights, not_reporting=row.not_reporting)


_403 = {403: {"description": "The token's role may not read this"}}


@router.get("/api/devices", response_model=list[DeviceOut], responses={**_401, **_403},
            tags=["devices"])
@allow(CLINICIAN)
def list_devices(request: Request, db: Database = Depends(get_db)) -> list[DeviceOut]:
    """Every device, assigned or not, with its last night and whether it has stopped reporting."""
    audit(request, db, "api.devices")
    today = state(request).today()
    rows = queries.patient_page(db, today, limit=None).rows
    return [_device_out(r) for r in rows + queries.unassigned_devices(db, today)]


@router.get("/api/devices/{device_id}/nights", response_model=list[NightHeadline],
            responses={**_401, **_403, **_404}, tags=["devices"])
@allow(CLINICIAN)
def device_nights(request: Request, device_id: str = DeviceId,
                  db: Database = Depends(get_db)) -> list[dict]:
    """Headline figures of the device's nights, oldest first."""
    nights = queries.device_nights(db, device_id)
    if nights is None:
        raise HTTPException(404, f"No device {device_id}.")
    audit(request, db, "api.device_nights", target_kind="device", target=device_id,
          patient=queries.device_pseudonym(db, device_id))
    return nights


@router.get("/api/devices/{device_id}/nights/{night}", response_model=NightSummary,
            responses={**_401, **_403, **_404}, tags=["devices"])
@allow(CLINICIAN)
def device_night(request: Request, night: date, device_id: str = DeviceId,
                 db: Database = Depends(get_db)) -> Any:
    """One night's whole summary (schema rlsmon.night/1), as the device published it."""
    found = queries.night_summary(db, device_id, night.isoformat())
    if found is None:
        raise HTTPException(404, f"No night {night} for device {device_id}.")
    audit(request, db, "api.night", target_kind="night", target=f"{device_id}/{night}",
          patient=found["pseudonym"])
    # From the JSON text: the contract's models are strict, so dates parse only from JSON.
    return NightSummary.model_validate_json(found["summary_json"])


@router.get("/api/devices/{device_id}/sits", response_model=list[SitResult],
            responses={**_401, **_403, **_404}, tags=["devices"])
@allow(CLINICIAN)
def device_sits(request: Request, device_id: str = DeviceId, db: Database = Depends(get_db)) -> Any:
    """The device's evening tests (schema rlsmon.sit/1, docs/sit.md), oldest first."""
    if db.execute("SELECT 1 FROM devices WHERE device_id = ?", [device_id]).fetchone() is None:
        raise HTTPException(404, f"No device {device_id}.")
    audit(request, db, "api.device_sits", target_kind="device", target=device_id,
          patient=queries.device_pseudonym(db, device_id))
    # From JSON text: the contract's models are strict, so dates parse only from JSON.
    return [SitResult.model_validate_json(json.dumps(r.result)) for r in sit_results(db, [device_id])]


@router.get("/api/patients", response_model=list[PatientOut], responses={**_401, **_403},
            tags=["patients"])
@allow(CLINICIAN)
def list_patients(request: Request, db: Database = Depends(get_db)) -> list[dict]:
    """Every patient pseudonym with their devices."""
    audit(request, db, "api.patients")
    rows = db.execute("""SELECT p.id, p.pseudonym, p.created_at, group_concat(d.device_id)
                         FROM patients p LEFT JOIN devices d ON d.patient_id = p.id
                         GROUP BY p.id ORDER BY p.pseudonym""").fetchall()
    return [{"id": r[0], "pseudonym": r[1], "created_at": r[2],
             "devices": sorted(r[3].split(",")) if r[3] else []} for r in rows]


def existing_patient(request: Request, patient_id: int = PatientId,
                     db: Database = Depends(get_db)) -> dict:
    """The patient in the path, or 404; the read is audited with the route's name."""
    found = queries.patient(db, patient_id)
    if found is None:
        raise HTTPException(404, f"No patient {patient_id}.")
    audit(request, db, f"api.{request.scope['endpoint'].__name__}", target_kind="patient",
          target=found["pseudonym"], patient=found["pseudonym"])
    return found


@router.get("/api/patients/{patient_id}", response_model=PatientOut,
            responses={**_401, **_403, **_404}, tags=["patients"])
@allow(CLINICIAN)
def get_patient(patient: dict = Depends(existing_patient)) -> dict:
    """One patient pseudonym and their devices."""
    return patient


@router.get("/api/patients/{patient_id}/nights", response_model=list[NightHeadline],
            responses={**_401, **_403, **_404}, tags=["patients"])
@allow(CLINICIAN)
def patient_nights(patient: dict = Depends(existing_patient),
                   db: Database = Depends(get_db)) -> list[dict]:
    """Headline figures of every night of the patient's devices, oldest first."""
    return queries.patient_nights(db, patient["id"])


@router.get("/api/patients/{patient_id}/notes", response_model=list[Note],
            responses={**_401, **_403, **_404}, tags=["patients"])
@allow(CLINICIAN)
def patient_notes(patient: dict = Depends(existing_patient),
                  db: Database = Depends(get_db)) -> list[dict]:
    """The patient's treatment notes, by date."""
    return queries.notes(db, patient["id"])


def openapi_spec(app: FastAPI) -> dict:
    """The OpenAPI schema (built once), with the Bearer scheme that every operation needs.
    Installed as ``app.openapi``."""
    if app.openapi_schema is None:
        spec = get_openapi(title=app.title, version=app.version, description=app.description,
                           routes=app.routes)
        spec.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"}}
        spec["security"] = [{"bearer": []}]
        app.openapi_schema = spec
    return app.openapi_schema


@router.get("/openapi.json", include_in_schema=False)
@allow(ADMIN, CLINICIAN)
def openapi_schema(request: Request) -> dict:
    """The OpenAPI schema of the JSON API."""
    return request.app.openapi()

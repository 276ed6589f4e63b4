"""A patient's nights as a FHIR R4 Bundle of Observations, for the clinic's own record systems.

Each night gives five Observations: the PLM index, the LM index, the periodicity index, the time
in bed and the night's quality. No LOINC or SNOMED CT code exists for the PLM index or the
periodicity index (LOINC has none for PLMs at all), and inventing one is not ours to do: every
code is from rlsmon's own code system, ``CODE_SYSTEM``, which the Bundle carries as a CodeSystem
resource and docs/dashboard.md ("FHIR export") documents. Units are UCUM (/h, 1, min).

Identifiers are stable: each resource's ``fullUrl`` is a UUID derived from the night's
``summary_id`` (or the patient's pseudonym), so exporting again gives the same ids and a
receiving system can update rather than duplicate.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlite_utils import Database

from server import quality

# rlsmon's code systems. The host is under .invalid (RFC 2606), which no one can register: the
# URI names rlsmon's codes and can never collide with a real system's.
CODE_SYSTEM = "https://rlsmon.invalid/fhir/CodeSystem/night-measures"
QUALITY_SYSTEM = "https://rlsmon.invalid/fhir/CodeSystem/night-quality"
PSEUDONYM_SYSTEM = "https://rlsmon.invalid/fhir/NamingSystem/patient-pseudonym"
DEVICE_SYSTEM = "https://rlsmon.invalid/fhir/NamingSystem/device-id"
UCUM = "http://unitsofmeasure.org"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
_NAMESPACE = uuid.UUID("0b7d7d3e-6f1c-4a55-9a53-6c1f4c1d2e90")  # rlsmon's, for uuid5 ids

# code -> (display, definition, unit and its UCUM code, the summary field, decimals)
MEASURES: dict[str, tuple[str, str, str | None, str, int]] = {
    "plm-index": ("PLM index", "Periodic limb movements (WASM 2016, or AASM 2012 as the "
                  "Observation's method says) per hour in bed, from a shin accelerometer; no EEG, "
                  "so per hour in bed, not per hour of sleep.", "/h", "plm_index", 2),
    "lm-index": ("LM index", "Leg movements per hour in bed (same rules and caveat as the PLM "
                 "index).", "/h", "lm_index", 2),
    "periodicity-index": ("Periodicity index", "The share of inter-movement intervals of 10-90 s "
                          "that lie in runs of at least 3 such intervals (Ferri et al., Sleep "
                          "2006), 0 to 1.", "1", "periodicity_index", 3),
    "time-in-bed": ("Time in bed", "Time in bed (lights off to on, or the shin lying), minus the "
                    "time the sensor did not record.", "min", "time_in_bed_s", 1),
    "night-quality": ("Night quality", "Whether the night can be used: eligible, provisional or "
                      "excluded, with the reasons as notes (docs/dashboard.md, Night quality).",
                      None, "", 0),
}
QUALITY_CODES = {
    quality.ELIGIBLE: "used in the statistics over nights",
    quality.PROVISIONAL: "shown, counted apart, not in the statistics",
    quality.EXCLUDED: "too little data for an index",
}
# Under min_time_in_bed_s the summary's indices are 0 and mean nothing (docs/summary.md,
# severity "insufficient_data"): the Observation then carries a reason, not a value.
_NO_INDEX = ("plm-index", "lm-index", "periodicity-index")


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def code_system() -> dict[str, Any]:
    """The CodeSystem resource of rlsmon's night measures."""
    return {"resourceType": "CodeSystem", "id": "rlsmon-night-measures", "url": CODE_SYSTEM,
            "name": "RlsmonNightMeasures", "title": "rlsmon night measures",
            "status": "active", "content": "complete", "caseSensitive": True,
            "description": "Figures of one night recorded at home by rlsmon, a shin "
                           "accelerometer scoring leg movements by WASM 2016. Not LOINC: no LOINC "
                           "code exists for these measures.",
            "concept": [{"code": code, "display": m[0], "definition": m[1]}
                        for code, m in MEASURES.items()]}


def _period(summary: dict[str, Any]) -> dict[str, str] | None:
    start = summary.get("recording_start") or summary.get("window", {}).get("start")
    if not start:
        return None
    began = datetime.fromisoformat(start)
    return {"start": began.isoformat(),
            "end": (began + timedelta(seconds=summary["duration_s"])).isoformat()}


def night_observations(summary: dict[str, Any], patient_ref: str) -> list[dict[str, Any]]:
    """The five Observations of one stored night summary, for the Patient at ``patient_ref``."""
    night_quality = quality.of_summary(summary)
    insufficient = summary["severity"] == "insufficient_data"
    period = _period(summary)
    out = []
    for code, (display, _, unit, field, decimals) in MEASURES.items():
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": _id(summary["summary_id"], code),
            "identifier": [{"system": "urn:ietf:rfc:3986",
                            "value": f"urn:uuid:{_id(summary['summary_id'], code)}"}],
            "status": "final",
            "code": {"coding": [{"system": CODE_SYSTEM, "code": code, "display": display}],
                     "text": display},
            "subject": {"reference": patient_ref},
            "method": {"text": summary["rules"]},
            "device": {"identifier": {"system": DEVICE_SYSTEM, "value": summary["device_id"]},
                       "display": f"rlsmon {summary['device_id']}"},
        }
        if period:
            obs["effectivePeriod"] = period
        else:
            obs["effectiveDateTime"] = summary["night"]
        if code == "night-quality":
            obs["valueCodeableConcept"] = {"coding": [{
                "system": QUALITY_SYSTEM, "code": night_quality.label,
                "display": night_quality.label}], "text": night_quality.label}
            if night_quality.reasons:
                obs["note"] = [{"text": reason} for reason in night_quality.reasons]
        elif insufficient and code in _NO_INDEX:
            obs["dataAbsentReason"] = {"coding": [{"system": DATA_ABSENT, "code": "as-text"}],
                                       "text": "under the least time in bed an index needs "
                                               "(48 min): no index"}
        else:
            value = summary[field] / 60 if field == "time_in_bed_s" else summary[field]
            obs["valueQuantity"] = {"value": round(value, decimals), "unit": unit,
                                    "system": UCUM, "code": unit}
        out.append(obs)
    return out


def bundle(patient: dict[str, Any], summaries: Iterable[dict[str, Any]],
           now: datetime) -> dict[str, Any]:
    """A ``collection`` Bundle: the CodeSystem, the Patient (pseudonym only) and each night's
    Observations."""
    patient_id = _id("patient", patient["pseudonym"])
    patient_ref = f"urn:uuid:{patient_id}"
    entries = [
        {"fullUrl": CODE_SYSTEM, "resource": code_system()},
        {"fullUrl": patient_ref, "resource": {
            "resourceType": "Patient", "id": patient_id,
            "identifier": [{"system": PSEUDONYM_SYSTEM, "value": patient["pseudonym"]}]}},
    ]
    for summary in summaries:
        entries += [{"fullUrl": f"urn:uuid:{obs['id']}", "resource": obs}
                    for obs in night_observations(summary, patient_ref)]
    return {"resourceType": "Bundle", "id": _id("bundle", patient["pseudonym"], now.isoformat()),
            "type": "collection", "timestamp": now.isoformat(), "entry": entries}


def patient_summaries(db: Database, patient_id: int) -> Iterable[dict[str, Any]]:
    """Every stored summary of the patient's devices, oldest first, one at a time."""
    for (text,) in db.execute(
            "SELECT n.summary_json FROM devices d JOIN nights n ON n.device_id = d.device_id "
            "WHERE d.patient_id = ? ORDER BY n.night, n.device_id", [patient_id]):
        yield json.loads(text)

"""A patient's nights and evening tests as a FHIR R4 Bundle of Observations, for the clinic's own
record systems.

Each night gives five Observations: the PLM index, the LM index, the periodicity index, the time
in bed and the night's quality. Each evening test (SIT, docs/sit.md) gives one Observation: the
SIT PLM index as its value, against 40/h, and the LM index, the times and the flags as
components. No LOINC or SNOMED CT code exists for the PLM index or the periodicity index (LOINC
has none for PLMs at all), and inventing one is not ours to do: every code is from rlsmon's own
code system, ``CODE_SYSTEM``, which the Bundle carries as a CodeSystem resource and
docs/dashboard.md ("FHIR export") documents. Units are UCUM (/h, 1, min).

Identifiers are stable: each resource's ``fullUrl`` is a UUID derived from the night's
``summary_id`` (a SIT result's, or the patient's pseudonym), so exporting again gives the same
ids and a receiving system can update rather than duplicate.
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
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
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
# The evening test's Observation: code -> (display, definition, UCUM unit or None for a boolean).
# The first is the Observation's code and value, the rest its components.
SIT_PLM_INDEX = "sit-plm-index"
SIT_MEASURES: dict[str, tuple[str, str, str | None]] = {
    SIT_PLM_INDEX: ("SIT PLM index", "Periodic leg movements per hour of scored time in a "
                    "Suggested Immobilization Test at home: up to 60 min sitting in bed, legs "
                    "outstretched, before lights off; LMs of 0.5-10 s (Michaud et al., Sleep Med "
                    "2001), periodic at intervals of 4-90 s in series of 4 (docs/sit.md). Above "
                    "40/h separated RLS patients from controls (Montplaisir et al., Mov Disord "
                    "1998).", "/h"),
    "sit-lm-index": ("SIT LM index", "Leg movements per hour of scored time in the same test.",
                     "/h"),
    "sit-scored-time": ("SIT scored time", "Time of the test with the shin near horizontal and "
                        "the sensor recording: the time the indices are per.", "min"),
    "sit-not-horizontal-time": ("SIT time not horizontal", "Time of the test with the shin not "
                                "near horizontal (the patient stood up): not scored.", "min"),
    "sit-ended-early": ("SIT ended early", "The patient ended the test with the button before "
                        "its planned length.", None),
    "sit-taken": ("SIT taken", "The patient took the test offered (false: offered, not taken).",
                  None),
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
    """The CodeSystem resource of rlsmon's night measures (and its evening test's)."""
    return {"resourceType": "CodeSystem", "id": "rlsmon-night-measures", "url": CODE_SYSTEM,
            "name": "RlsmonNightMeasures", "title": "rlsmon night measures",
            "status": "active", "content": "complete", "caseSensitive": True,
            "description": "Figures of one night recorded at home by rlsmon, a shin "
                           "accelerometer scoring leg movements by WASM 2016, and of the evening "
                           "test (SIT) it runs before the night. Not LOINC: no LOINC code exists "
                           "for these measures.",
            "concept": [{"code": code, "display": m[0], "definition": m[1]}
                        for code, m in [*MEASURES.items(), *SIT_MEASURES.items()]]}


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
            obs["valueQuantity"] = _quantity(value, unit, decimals)
        out.append(obs)
    return out


def _coding(code: str) -> dict[str, Any]:
    display = SIT_MEASURES[code][0]
    return {"coding": [{"system": CODE_SYSTEM, "code": code, "display": display}], "text": display}


def _quantity(value: float, unit: str, decimals: int) -> dict[str, Any]:
    return {"value": round(value, decimals), "unit": unit, "system": UCUM, "code": unit}


def _sit_component(code: str, value: float | bool | None, absent: str) -> dict[str, Any]:
    """One component; ``absent`` is the reason given when ``value`` is None."""
    unit = SIT_MEASURES[code][2]
    component: dict[str, Any] = {"code": _coding(code)}
    if value is None:
        component["dataAbsentReason"] = {"coding": [{"system": DATA_ABSENT, "code": absent}]}
    elif unit is None:
        component["valueBoolean"] = bool(value)
    else:
        component["valueQuantity"] = _quantity(value, unit, 2 if unit == "/h" else 1)
    return component


def sit_observation(result: dict[str, Any], patient_ref: str) -> dict[str, Any]:
    """The Observation of one stored evening test (``rlsmon.sit/1``, docs/sit.md): the SIT PLM
    index as the value with 40/h as its reference range and interpretation, the rest as
    components. A test not taken is ``cancelled`` with ``dataAbsentReason`` ``not-performed``;
    one taken with too little scored time for an index (``min_scored_s``) says so as text."""
    taken = result["taken"]
    absent = "as-text" if taken else "not-performed"
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _id(result["summary_id"], SIT_PLM_INDEX),
        "identifier": [{"system": "urn:ietf:rfc:3986",
                        "value": f"urn:uuid:{_id(result['summary_id'], SIT_PLM_INDEX)}"}],
        # FHIR R4 Observation.status: "cancelled" is an observation not started; a test ended
        # early has its figures, and they are final.
        "status": "final" if taken else "cancelled",
        "code": _coding(SIT_PLM_INDEX),
        "subject": {"reference": patient_ref},
        "method": {"text": result["rules"]},
        "device": {"identifier": {"system": DEVICE_SYSTEM, "value": result["device_id"]},
                   "display": f"rlsmon {result['device_id']}"},
    }
    if result["started_at"] and result["ended_at"]:
        obs["effectivePeriod"] = {"start": result["started_at"], "end": result["ended_at"]}
    else:
        obs["effectiveDateTime"] = result["offered_at"]
    threshold = result["threshold_per_h"]
    if result["plm_index"] is None:
        obs["dataAbsentReason"] = {
            "coding": [{"system": DATA_ABSENT, "code": absent}],
            "text": (f"under the least scored time an index needs "
                     f"({result['min_scored_s'] / 60:.0f} min): no index") if taken
            else "offered, not taken"}
    else:
        obs["valueQuantity"] = _quantity(result["plm_index"], "/h", 2)
        above = result["above_threshold"]
        # Montplaisir et al., Mov Disord 1998: a SIT PLM index above 40/h separated RLS patients
        # from controls with about 81 % sensitivity and specificity.
        obs["interpretation"] = [{
            "coding": [{"system": INTERPRETATION, "code": "H" if above else "N",
                        "display": "High" if above else "Normal"}],
            "text": f"{'above' if above else 'not above'} {threshold:g}/h"}]
        obs["referenceRange"] = [{
            "high": _quantity(threshold, "/h", 2),
            "text": f"above {threshold:g}/h separated RLS patients from controls with about 81 % "
                    "sensitivity and specificity (Montplaisir et al., Mov Disord 1998)"}]
    obs["component"] = [
        _sit_component("sit-lm-index", result["lm_index"], absent),
        _sit_component("sit-scored-time", result["scored_s"] / 60 if taken else None, absent),
        _sit_component("sit-not-horizontal-time",
                       result["not_horizontal_s"] / 60 if taken else None, absent),
        _sit_component("sit-ended-early", result["ended_early"], absent),
        _sit_component("sit-taken", taken, absent),
    ]
    notes = (["ended early with the button"] if result["ended_early"] else []) + result["caveats"]
    if notes:
        obs["note"] = [{"text": text} for text in notes]
    return obs


def bundle(patient: dict[str, Any], summaries: Iterable[dict[str, Any]],
           now: datetime, sits: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """A ``collection`` Bundle: the CodeSystem, the Patient (pseudonym only), each night's
    Observations and each evening test's (``sits``: stored ``rlsmon.sit/1`` results)."""
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
    for result in sits:
        obs = sit_observation(result, patient_ref)
        entries.append({"fullUrl": f"urn:uuid:{obs['id']}", "resource": obs})
    return {"resourceType": "Bundle", "id": _id("bundle", patient["pseudonym"], now.isoformat()),
            "type": "collection", "timestamp": now.isoformat(), "entry": entries}


def patient_summaries(db: Database, patient_id: int) -> Iterable[dict[str, Any]]:
    """Every stored summary of the patient's devices, oldest first, one at a time."""
    for (text,) in db.execute(
            "SELECT n.summary_json FROM devices d JOIN nights n ON n.device_id = d.device_id "
            "WHERE d.patient_id = ? ORDER BY n.night, n.device_id", [patient_id]):
        yield json.loads(text)

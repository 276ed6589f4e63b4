"""A patient's medications: structured entries (drug, dose, class, start and stop dates) that the
trend, the treatment response and the clinic report read. Free-text notes stay for the rest.

Dates are the evening a change took effect, like a night's date: a drug started on 3 Nov acts
on the night of 3 Nov."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlite_utils import Database

# How each class reads on the page; the keys are what is stored (server/db.py MEDICATION_CLASSES,
# in the same order: tests/web/test_medications.py checks it).
CLASS_NAMES = {
    "dopamine_agonist": "dopamine agonist",
    "alpha2delta": "α2δ ligand",
    "iron": "iron",
    "opioid": "opioid",
    "benzodiazepine": "benzodiazepine",
    "other": "other",
}
DOPAMINE_AGONIST = "dopamine_agonist"
_COLUMNS = ("id", "drug", "dose", "drug_class", "started", "stopped", "created_by", "created_at")


@dataclass(frozen=True)
class Medication:
    """One medication entry; ``stopped`` is None while it is taken."""

    id: int
    drug: str
    dose: str
    drug_class: str
    started: date
    stopped: date | None
    created_by: str = ""
    created_at: str = ""

    @property
    def class_name(self) -> str:
        """The class as the page says it."""
        return CLASS_NAMES[self.drug_class]

    @property
    def label(self) -> str:
        """Drug and dose, e.g. "ropinirole 0.25 mg"."""
        return f"{self.drug} {self.dose}".strip()

    def as_dict(self) -> dict[str, Any]:
        """The entry as JSON-ready values (ISO dates)."""
        return {"id": self.id, "drug": self.drug, "dose": self.dose,
                "drug_class": self.drug_class, "started": self.started.isoformat(),
                "stopped": self.stopped.isoformat() if self.stopped else None,
                "created_by": self.created_by, "created_at": self.created_at}


def of_patient(db: Database, patient_id: int) -> list[Medication]:
    """The patient's medications, by start date."""
    rows = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM medications WHERE patient_id = ? "
                      "ORDER BY started, id", [patient_id]).fetchall()
    return [Medication(r[0], r[1], r[2], r[3], date.fromisoformat(r[4]),
                       date.fromisoformat(r[5]) if r[5] else None, r[6], r[7]) for r in rows]


def _text(value: str, what: str, longest: int) -> str:
    value = " ".join(value.split())
    if not value or len(value) > longest or not value.isprintable():
        raise ValueError(f"{what} is 1–{longest} printable characters")
    return value


def add(db: Database, patient_id: int, *, drug: str, dose: str, drug_class: str, started: date,
        stopped: date | None, username: str, now_iso: str) -> int:
    """Record a medication; returns its id. ValueError names the field that is wrong."""
    drug, dose = _text(drug, "the drug", 100), _text(dose, "the dose", 50)
    if drug_class not in CLASS_NAMES:
        raise ValueError(f"the class is one of: {', '.join(CLASS_NAMES)}")
    if stopped is not None and stopped < started:
        raise ValueError("the stop date is before the start date")
    with db.atomic():
        cursor = db.execute(
            "INSERT INTO medications (patient_id, drug, dose, drug_class, started, stopped, "
            "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [patient_id, drug, dose, drug_class, started.isoformat(),
             stopped.isoformat() if stopped else None, username, now_iso])
    return cursor.lastrowid


def stop(db: Database, patient_id: int, medication_id: int, on: date) -> Medication:
    """Set the stop date of a medication still taken; LookupError when the patient has no such
    entry, ValueError when it is stopped already or ``on`` is before its start."""
    found = next((m for m in of_patient(db, patient_id) if m.id == medication_id), None)
    if found is None:
        raise LookupError(f"no medication {medication_id} for this patient")
    if found.stopped is not None:
        raise ValueError(f"{found.label} was stopped on {found.stopped} already")
    if on < found.started:
        raise ValueError("the stop date is before the start date")
    with db.atomic():
        db.execute("UPDATE medications SET stopped = ? WHERE id = ? AND patient_id = ? "
                   "AND stopped IS NULL", [on.isoformat(), medication_id, patient_id])
    return found

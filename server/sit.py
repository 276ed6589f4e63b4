"""The evening test contract, `schema: "rlsmon.sit/1"` (docs/sit.md), and its place in the database.

`SitResult` is what a device publishes on `rlsmon/v1/<id>/sit` after a Suggested Immobilization
Test; its JSON Schema is exported to `server/sit-result.schema.json` (checked in; a test keeps them
equal). The collector (server/collector.py) calls `check_sit()` (pure) and `store_sit()` (inside its
transaction), under the same rules as a night: the same `summary_id` again is a duplicate, other
content under it a conflict, an older `generated_at` stale, and the refused go to `rejected`.
`sit_results()` is the read other parts of the server (pages, exports, FHIR, the report) call.

Policy as for nights (server/model.py): strict types, bounds on every list and time, unknown keys
allowed and kept (`sits.result_json`); counts and flags must agree with the events they come from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field, ValidationError, model_validator
from sqlite_utils import Database

from server.consistency import CLOCK_SKEW
from server.model import (DEVICE_ID_PATTERN, Count, ShortText, TimeS, _Record, render_schema,
                          schema_document)

SCHEMA_ID = "rlsmon.sit/1"
SCHEMA_FILE = Path(__file__).with_name("sit-result.schema.json")
# A SIT lasts at most an hour (docs/sit.md); the bounds leave room and refuse garbage.
MAX_SIT_S = 2 * 3600.0
MAX_SIT_LMS = 2_000  # an LM lasts ≥ 0.5 s and two on a leg are ≥ 0.5 s apart: ≤ 7200 in 2 h, far fewer in life
MAX_BLOCKS = 12
MAX_EXCLUDED = 1_000
SitS = Annotated[float, Field(ge=0.0, le=MAX_SIT_S, allow_inf_nan=False)]
PerHour = Annotated[float, Field(ge=0.0, le=100_000.0, allow_inf_nan=False)]
_TOLERANCE_S = 0.05
# Montplaisir et al., Mov Disord 1998: a SIT PLM index above 40/h (the device says so too).
SIT_THRESHOLD_PER_H = 40.0


class SitLM(_Record):
    """One LM of the test, times from the test's start."""

    onset_s: SitS
    offset_s: SitS
    duration_s: SitS
    clm: bool
    periodic: bool
    bilateral: bool
    imi_s: TimeS | None


class Excluded(_Record):
    """Time of the test not scored: the shin not near horizontal (stood up), or a recording gap."""

    start_s: SitS
    end_s: SitS
    reason: Literal["not_horizontal", "gap"]


class Block(_Record):
    """One 10-minute block of the test: time scored in it, LMs and PLMs by onset."""

    start_s: SitS
    end_s: SitS
    scored_s: SitS
    lm_count: Count
    plm_count: Count


class SitResult(_Record):
    """A Suggested Immobilization Test, as the device publishes it.

    Rules: `lm_count == len(lm_events)`, `plm_count` == LMs with `periodic`; `scored_s <=
    duration_s <= planned_s`; a test not `taken` has no events, no index and no verdict;
    `above_threshold` is null exactly when `plm_index` is, and otherwise `plm_index >
    threshold_per_h`; the blocks add up to the counts.
    """

    schema_: Literal["rlsmon.sit/1"] = Field(alias="schema")
    rules: ShortText
    algorithm_version: ShortText
    device_id: Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]
    evening: date
    summary_id: UUID
    generated_at: AwareDatetime
    offered_at: AwareDatetime
    started_at: AwareDatetime | None
    ended_at: AwareDatetime | None
    timezone: ShortText
    software_version: ShortText
    taken: bool
    ended_early: bool
    planned_s: SitS
    duration_s: SitS
    scored_s: SitS
    not_horizontal_s: SitS
    gap_s: SitS
    excluded: Annotated[list[Excluded], Field(max_length=MAX_EXCLUDED)]
    lm_events: Annotated[list[SitLM], Field(max_length=MAX_SIT_LMS)]
    lm_count: Count
    plm_count: Count
    lm_index: PerHour | None
    plm_index: PerHour | None
    threshold_per_h: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)]
    above_threshold: bool | None
    min_scored_s: SitS
    blocks: Annotated[list[Block], Field(max_length=MAX_BLOCKS)]
    caveats: Annotated[list[Annotated[str, Field(max_length=1000)]], Field(max_length=20)]

    @model_validator(mode="after")
    def _consistent(self) -> SitResult:
        if self.lm_count != len(self.lm_events):
            raise ValueError("lm_count differs from the number of lm_events")
        if self.plm_count != sum(e.periodic for e in self.lm_events):
            raise ValueError("plm_count differs from the periodic lm_events")
        if not self.scored_s <= self.duration_s + _TOLERANCE_S or not self.duration_s <= self.planned_s + _TOLERANCE_S:
            raise ValueError("expected scored_s <= duration_s <= planned_s")
        if not self.taken and (self.lm_events or self.plm_index is not None or self.started_at is not None):
            raise ValueError("a test not taken has no start, no events and no index")
        if (self.above_threshold is None) != (self.plm_index is None):
            raise ValueError("above_threshold is null exactly when plm_index is")
        if self.plm_index is not None and self.above_threshold != (self.plm_index > self.threshold_per_h):
            raise ValueError("above_threshold does not follow plm_index and threshold_per_h")
        if self.blocks and (sum(b.lm_count for b in self.blocks) != self.lm_count
                            or sum(b.plm_count for b in self.blocks) != self.plm_count):
            raise ValueError("the blocks do not add up to lm_count and plm_count")
        return self


def json_schema() -> dict[str, Any]:
    """The JSON Schema of `SitResult`, as checked in at `server/sit-result.schema.json`."""
    return schema_document(SCHEMA_ID, SitResult.model_json_schema(by_alias=True))


def render_json_schema() -> str:
    """`json_schema()` as the checked-in text."""
    return render_schema(json_schema())


def write_json_schema(path: Path = SCHEMA_FILE) -> None:
    """Regenerate the checked-in schema (after changing the model):
    `python -c "from server.sit import write_json_schema; write_json_schema()"`."""
    path.write_text(render_json_schema())


def check_sit(device_id: str, payload: bytes, now: datetime) -> dict[str, Any]:
    """Validate a SIT result from `device_id`; its `sits` row (without the JSON and received_at).
    Raises ValueError with the reason (locations and messages only, never the values)."""
    try:
        sit = SitResult.model_validate_json(payload)
    except ValidationError as e:
        parts = [f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                 for err in e.errors(include_url=False, include_input=False)[:5]]
        raise ValueError("invalid sit: " + "; ".join(parts)) from None
    if sit.device_id != device_id:
        raise ValueError(f"device mismatch: device_id {sit.device_id!r} in the payload differs from {device_id!r} in the topic")
    if sit.generated_at > now + CLOCK_SKEW or sit.offered_at > now + CLOCK_SKEW:
        raise ValueError("future: the result is dated after the collector's clock")
    return {
        "device_id": device_id, "evening": sit.evening.isoformat(), "summary_id": str(sit.summary_id),
        "generated_at": sit.generated_at.astimezone(timezone.utc).isoformat(), "taken": int(sit.taken),
        "ended_early": int(sit.ended_early), "scored_s": sit.scored_s, "lm_count": sit.lm_count,
        "plm_count": sit.plm_count, "lm_index": sit.lm_index, "plm_index": sit.plm_index,
        "above_threshold": None if sit.above_threshold is None else int(sit.above_threshold),
    }


_COLUMNS = ("device_id", "evening", "summary_id", "generated_at", "received_at", "taken", "ended_early",
            "scored_s", "lm_count", "plm_count", "lm_index", "plm_index", "above_threshold", "result_json")
_UPSERT = (
    f"INSERT INTO sits ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COLUMNS)}) "
    "ON CONFLICT (device_id, evening) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[2:])
)


def store_sit(db: Database, row: dict[str, Any], payload: bytes, received_at: str) -> tuple[str, str]:
    """Upsert a checked SIT result inside the caller's transaction; returns (kind, reason) with kind
    "stored", "replaced", "duplicate", "stale" or "rejected", by the rules of a night."""
    device_id, evening, summary_id = row["device_id"], row["evening"], row["summary_id"]
    stored = db.execute("SELECT summary_id, generated_at, result_json FROM sits WHERE device_id = ? AND evening = ?",
                        [device_id, evening]).fetchone()
    elsewhere = db.execute("SELECT 1 FROM sits WHERE device_id = ? AND summary_id = ? AND evening != ?",
                           [device_id, summary_id, evening]).fetchone()
    same = stored is not None and stored[0] == summary_id
    if elsewhere is not None or (same and json.loads(stored[2]) != json.loads(payload)):
        return "rejected", f"conflict: sit {summary_id} is already stored with different content"
    if same:
        return "duplicate", ""
    if stored is not None and datetime.fromisoformat(stored[1]) >= datetime.fromisoformat(row["generated_at"]):
        return "stale", f"sit of {evening} already stored from {stored[0]}, not older than {summary_id}"
    db.execute(_UPSERT, {**row, "result_json": payload.decode(), "received_at": received_at})
    return ("replaced" if stored is not None else "stored"), ""


@dataclass(frozen=True)
class SitRow:
    """One stored evening test, its headline figures and the whole result (`result`, as sent)."""

    device_id: str
    evening: str
    taken: bool
    ended_early: bool
    scored_s: float
    lm_count: int
    plm_count: int
    lm_index: float | None
    plm_index: float | None
    above_threshold: bool | None
    result: dict[str, Any]


def sit_results(db: Database, device_ids: list[str], first: str | None = None,
                last: str | None = None) -> list[SitRow]:
    """The SIT results of `device_ids` (a patient's devices), by evening, optionally from `first` to
    `last` (YYYY-MM-DD, inclusive). For pages, exports, FHIR and the clinic report."""
    if not device_ids:
        return []
    marks = ", ".join("?" for _ in device_ids)
    rows = db.execute(
        f"SELECT device_id, evening, taken, ended_early, scored_s, lm_count, plm_count, lm_index, plm_index, "
        f"above_threshold, result_json FROM sits WHERE device_id IN ({marks}) AND evening >= ? AND evening <= ? "
        "ORDER BY evening, device_id", [*device_ids, first or "0000-00-00", last or "9999-99-99"]).fetchall()
    return [SitRow(r[0], r[1], bool(r[2]), bool(r[3]), r[4], r[5], r[6], r[7], r[8],
                   None if r[9] is None else bool(r[9]), json.loads(r[10])) for r in rows]


SIT_COLUMNS = ["evening", "device_id", "taken", "ended_early", "duration_s", "scored_s", "not_horizontal_s",
               "lm_count", "plm_count", "lm_index", "plm_index", "above_threshold", "rules", "summary_id"]


def patient_sits(db: Database, patient_id: int) -> list[dict[str, Any]]:
    """The evening tests of the patient's devices as export rows (`SIT_COLUMNS` and the 10-min
    `blocks`), oldest first."""
    devices = [r[0] for r in db.execute("SELECT device_id FROM devices WHERE patient_id = ? ORDER BY device_id",
                                        [patient_id])]
    return [{**{c: r.result.get(c) for c in SIT_COLUMNS}, "evening": r.evening, "device_id": r.device_id,
             "blocks": r.result.get("blocks", [])} for r in sit_results(db, devices)]

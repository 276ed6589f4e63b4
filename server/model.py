"""The night summary contract, `schema: "rlsmon.night/1"`, as pydantic models (docs/summary.md).

`NightCore` is what `rlsmon-device analyze --json` prints; `NightSummary` is what the daemon
publishes: the core plus the device and night metadata. Both are normative; their JSON Schema is
exported to `server/nightly-summary.schema.json` by `write_json_schema()` and kept in sync by a test.

Policy:
- Types are strict: a number given as a string, or a bool given as 0/1, is rejected.
- Every list has an upper bound and every time a range, so a garbage or hostile payload is rejected
  before it reaches the database.
- Unknown keys are ALLOWED and kept (in `nights.summary_json`), at every level: a device may add
  fields in an additive evolution of `rlsmon.night/1` without breaking older collectors. Anything
  that is not additive must bump `schema` to `rlsmon.night/2`.
- Counts must agree with the event list (`lm_count == len(lm_events)`, …), and every headline
  figure with the events and spans it comes from (`server/consistency.py`). Those cross-field
  rules cannot be said in JSON Schema; they are listed in each model's description.
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from typing_extensions import NotRequired, TypedDict  # pydantic needs this one on Python < 3.12

from server.consistency import check_figures

SCHEMA_ID = "rlsmon.night/1"
SCHEMA_FILE = Path(__file__).with_name("nightly-summary.schema.json")
DEVICE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"

# Bounds against garbage, far above anything physiological. An LM lasts at least 0.5 s and two on
# one leg are at least 0.5 s apart (WASM 2016, Ferri et al., Sleep Med 2016), so even a week-long
# recording of back-to-back LMs could not exceed this; a real night has at most a few thousand.
MAX_DURATION_S = 7 * 24 * 3600.0
MAX_LM_EVENTS = 20_000
MAX_INTERVALS = 10_000
MAX_HOURS = int(MAX_DURATION_S // 3600) + 2
MAX_MARKERS = 1_000
IMI_BINS = 45  # 2-s bins from 0 to 90 s
# Tolerance on duration_s == offset_s - onset_s, for values rounded separately by the device.
DURATION_TOLERANCE_S = 0.05

TimeS = Annotated[float, Field(ge=0.0, le=MAX_DURATION_S, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=10_000_000)]
ShortText = Annotated[str, Field(min_length=1, max_length=64)]


# extra="allow": see the module docstring (additive evolution).
_RECORD_CONFIG = ConfigDict(strict=True, extra="allow")


class _Record(BaseModel):
    model_config = _RECORD_CONFIG


class Interval(_Record):
    """A span `[start_s, end_s)` in seconds from the start of the recording or night."""

    start_s: TimeS
    end_s: TimeS

    @model_validator(mode="after")
    def _ordered(self) -> Interval:
        if self.end_s < self.start_s:
            raise ValueError("end_s is before start_s")
        return self


class LM(TypedDict):
    """One scored leg movement.

    Rules: `offset_s >= onset_s`; `duration_s == offset_s - onset_s` (±0.05 s);
    `periodic` exactly when `series` is not null; a periodic LM is a CLM; `leg`, when given, is
    "both" exactly when `bilateral`.
    """

    # A TypedDict, not a model: a night has hundreds of LMs and the collector validates hundreds of
    # nights a second; dicts validate about a third faster than model instances. Unknown keys are
    # allowed (the schema says so) but not copied into each dict, a third faster again: they are
    # kept where every reader finds them, in the stored JSON (nights.summary_json).
    __pydantic_config__ = ConfigDict(  # type: ignore[misc]
        strict=True, extra="ignore", json_schema_extra={"additionalProperties": True})

    onset_s: TimeS
    offset_s: TimeS
    duration_s: TimeS
    periodic: bool
    clm: bool
    bilateral: bool
    series: Annotated[int, Field(ge=0, le=MAX_LM_EVENTS)] | None
    imi_s: TimeS | None
    # Added within rlsmon.night/1 (optional): the leg, when known; "both" exactly when bilateral.
    leg: NotRequired[Literal["left", "right", "both"]]


class ImiHistogram(_Record):
    """Inter-movement intervals between consecutive CLMs: 45 bins of 2 s from 0 to 90 s."""

    bin_width_s: Literal[2]
    counts: Annotated[list[Count], Field(min_length=IMI_BINS, max_length=IMI_BINS)]
    below_10_s: Count
    from_10_to_90_s: Count
    above_90_s: Count


class Hour(_Record):
    """LMs and PLMs in one clock hour (`clock_hour` null when the wall-clock start is unknown)."""

    start_s: TimeS
    end_s: TimeS
    clock_hour: Annotated[int, Field(ge=0, le=23)] | None
    lm_count: Count
    plm_count: Count


class Coverage(_Record):
    """How much of the night was actually recorded, and the gaps (never interpolated)."""

    recorded_s: TimeS
    gaps: Annotated[list[Interval], Field(max_length=MAX_INTERVALS)]


class Wear(_Record):
    """Was the sensor worn? `assessed` is false when no temperature was read (then wear cannot be
    judged and `not_worn` is empty); `not_worn` holds the spans a sensor was off the leg, ordered and
    disjoint, within the recording. Time not worn is not in `in_bed` (docs/summary.md)."""

    assessed: bool
    not_worn: Annotated[list[Interval], Field(max_length=MAX_INTERVALS)]


class NightCore(_Record):
    """The scored night, as printed by `rlsmon-device analyze --json`.

    Rules: `lm_count == len(lm_events)`, `clm_count` == LMs with `clm`, `plm_count` == LMs with
    `periodic`, `plm_series_count` == distinct `series` (numbered from 0, each of at least 4 LMs);
    `lm_events` ordered by onset, each in bed. `time_in_bed_s` == `in_bed` minus `coverage.gaps`;
    `coverage.recorded_s` == `duration_s` minus the gaps; `lm_index` and `plm_index` == count per
    hour of `time_in_bed_s` (0 under 600 s), ±0.01; `severity` and `clinically_significant` follow
    `plm_index` (bands 5/25/50, > 15/h); `hourly` covers 0 to `duration_s` and adds up to the counts;
    `imi_histogram` adds up to the CLMs with an `imi_s`. Times are compared to ±1 ms per value.
    A night with `severity` "insufficient_data" has `lm_index` and `plm_index` 0 and
    `clinically_significant` false; when `min_time_in_bed_s` is given, `severity` is
    "insufficient_data" exactly when `time_in_bed_s` is below it. `wear.not_worn`, when given,
    is ordered, disjoint, within `duration_s`, and outside `in_bed`.
    """

    schema_: Literal["rlsmon.night/1"] = Field(alias="schema")
    rules: Literal["WASM2016", "AASM2012"]
    algorithm_version: ShortText
    recording_start: AwareDatetime | None
    duration_s: TimeS
    lm_events: Annotated[list[LM], Field(max_length=MAX_LM_EVENTS)]
    lm_count: Count
    clm_count: Count
    plm_count: Count
    plm_series_count: Count
    in_bed: Annotated[list[Interval], Field(max_length=MAX_INTERVALS)]
    time_in_bed_s: TimeS
    lm_index: Annotated[float, Field(ge=0.0, le=100_000.0, allow_inf_nan=False)]
    plm_index: Annotated[float, Field(ge=0.0, le=100_000.0, allow_inf_nan=False)]
    periodicity_index: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
    imi_histogram: ImiHistogram
    hourly: Annotated[list[Hour], Field(max_length=MAX_HOURS)]
    coverage: Coverage
    severity: Literal["normal", "mild", "moderate", "severe", "insufficient_data"]
    clinically_significant: bool
    caveats: Annotated[list[Annotated[str, Field(max_length=1000)]], Field(max_length=50)]
    # Added within rlsmon.night/1 (optional, so earlier summaries stay valid): the least recorded
    # time in bed for an index; below it `severity` is "insufficient_data".
    min_time_in_bed_s: TimeS | None = None
    # Added within rlsmon.night/1 (optional): the spans the sensor was not worn (the daemon sends it).
    wear: Wear | None = None

    @model_validator(mode="after")
    def _consistent(self) -> NightCore:
        # One pass over the events, since the collector validates hundreds of nights a second.
        clm = periodic = imis = 0
        series: dict[int, int] = {}
        last_onset_s = -math.inf
        for i, lm in enumerate(self.lm_events):
            onset_s, offset_s, periodic_lm, series_lm = lm["onset_s"], lm["offset_s"], lm["periodic"], lm["series"]
            if offset_s < onset_s:
                raise ValueError(f"lm_events[{i}]: offset_s is before onset_s")
            if abs(offset_s - onset_s - lm["duration_s"]) > DURATION_TOLERANCE_S:
                raise ValueError(f"lm_events[{i}]: duration_s is not offset_s - onset_s")
            if onset_s < last_onset_s:
                raise ValueError(f"lm_events[{i}]: not ordered by onset")
            last_onset_s = onset_s
            if periodic_lm != (series_lm is not None):
                raise ValueError(f"lm_events[{i}]: periodic must be true exactly when series is set")
            if periodic_lm and not lm["clm"]:
                raise ValueError(f"lm_events[{i}]: a periodic LM must be a CLM")
            clm += lm["clm"]
            periodic += periodic_lm
            imis += lm["clm"] and lm["imi_s"] is not None
            if series_lm is not None:
                series[series_lm] = series.get(series_lm, 0) + 1
        checks = (
            ("lm_count", self.lm_count, len(self.lm_events)),
            ("clm_count", self.clm_count, clm),
            ("plm_count", self.plm_count, periodic),
            ("plm_series_count", self.plm_series_count, len(series)),
        )
        for key, stated, counted in checks:
            if stated != counted:
                raise ValueError(f"{key} is {stated} but lm_events give {counted}")
        insufficient = self.severity == "insufficient_data"
        if insufficient and (self.clinically_significant or self.plm_index or self.lm_index):
            raise ValueError("a night with insufficient data has no index and is not clinically significant")
        if self.min_time_in_bed_s is not None and insufficient != (self.time_in_bed_s < self.min_time_in_bed_s):
            raise ValueError("severity is insufficient_data exactly when time_in_bed_s < min_time_in_bed_s")
        check_figures(self, series, imis)
        return self


class Window(_Record):
    """The night window the daemon recorded, with its IANA time zone."""

    start: AwareDatetime
    end: AwareDatetime
    timezone: Annotated[str, Field(pattern=r"^[A-Za-z0-9_+\-/]{1,64}$")]


class Sensor(_Record):
    """The IMU the night was recorded with."""

    chip: ShortText
    who_am_i: Annotated[int, Field(ge=0, le=255)]
    driver: ShortText
    legs: Annotated[int, Field(ge=1, le=2)]
    odr_hz: Annotated[float, Field(gt=0.0, le=10_000.0, allow_inf_nan=False)]
    odr_measured_hz: Annotated[float, Field(ge=0.0, le=10_000.0, allow_inf_nan=False)] | None
    accel_fs_g: Annotated[float, Field(gt=0.0, le=64.0, allow_inf_nan=False)]
    gyro_fs_dps: Annotated[float, Field(gt=0.0, le=10_000.0, allow_inf_nan=False)]


class Marker(_Record):
    """A press of the patient's button: lights off or lights on, `t_s` on the night's timeline."""

    t_s: TimeS
    kind: Literal["lights_off", "lights_on"]


class NightSummary(NightCore):
    """A night as the daemon publishes it on `rlsmon/v1/<device_id>/summary`: the core plus the device
    and night metadata. `device_id` must equal the id in the topic (checked by the collector);
    `summary_id` is the idempotency key; a later `generated_at` for the same night replaces it.
    The core's rules apply (counts agree with `lm_events`, see NightCore).
    """

    device_id: Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]
    night: date
    summary_id: UUID
    generated_at: AwareDatetime
    window: Window
    software_version: ShortText
    sensor: Sensor
    clock_synced: bool
    markers: Annotated[list[Marker], Field(max_length=MAX_MARKERS)]


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a published night, with the core under `$defs/NightCore`."""
    schema = NightSummary.model_json_schema(by_alias=True)
    core = NightCore.model_json_schema(by_alias=True)
    schema["$defs"].update(core.pop("$defs"))
    schema["$defs"]["NightCore"] = core
    return schema_document(SCHEMA_ID, schema)


def schema_document(contract: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON Schema as a draft 2020-12 document named by its contract, e.g. `rlsmon.sit/1`."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://rlsmon.invalid/schema/{contract}",
        **schema,
    }


def render_schema(document: dict[str, Any]) -> str:
    """A schema document as the text checked in beside its model (sorted, so diffs stay small)."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def render_json_schema() -> str:
    """`json_schema()` as the text checked in at `server/nightly-summary.schema.json`."""
    return render_schema(json_schema())


def write_json_schema(path: Path = SCHEMA_FILE) -> None:
    """Regenerate the checked-in schema file (run after changing a model):
    `python -c "from server.model import write_json_schema; write_json_schema()"`."""
    path.write_text(render_json_schema())

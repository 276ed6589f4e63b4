"""The summary contract: valid nights pass, garbage is refused, the checked-in JSON Schema is current."""

from __future__ import annotations

import json

import jsonschema_rs
import pytest
from pydantic import ValidationError

from server.model import SCHEMA_FILE, NightCore, NightSummary, render_json_schema
from tests.server.payloads import encode, make_summary, put

CORE_KEYS = set(NightCore.model_fields) - {"schema_"} | {"schema"}


def core_of(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k in CORE_KEYS}


def test_checked_in_schema_is_current():
    assert SCHEMA_FILE.read_text() == render_json_schema(), (
        "server/nightly-summary.schema.json is stale: run "
        "`python -c 'from server.model import write_json_schema; write_json_schema()'`"
    )


def test_valid_night_passes_pydantic_and_json_schema():
    summary = make_summary(n_lms=60)
    night = NightSummary.model_validate_json(encode(summary))
    assert night.lm_count == 60 and night.device_id == "dev-a"
    jsonschema_rs.validator_for(json.loads(SCHEMA_FILE.read_text())).validate(summary)


def test_core_alone_passes_core_and_fails_published():
    core = core_of(make_summary())
    NightCore.model_validate_json(json.dumps(core))
    schema = json.loads(SCHEMA_FILE.read_text())
    core_schema = {**schema["$defs"]["NightCore"], "$defs": schema["$defs"]}
    jsonschema_rs.validator_for(core_schema).validate(core)
    with pytest.raises(ValidationError, match="device_id"):
        NightSummary.model_validate_json(json.dumps(core))


def test_extra_keys_are_kept_for_additive_evolution(tmp_path):
    from server.collector import ingest
    from server.db import open_db

    summary = make_summary()
    summary["future_field"] = {"x": 1}
    summary["lm_events"][0]["peak_dps"] = 1
    night = NightSummary.model_validate_json(encode(summary))
    assert night.model_dump(mode="json", by_alias=True)["future_field"] == {"x": 1}
    jsonschema_rs.validator_for(json.loads(SCHEMA_FILE.read_text())).validate(summary)
    # An LM's added keys are accepted but not copied into the model (for speed): the stored JSON keeps them.
    db = open_db(tmp_path / "server.db")
    assert ingest(db, "rlsmon/v1/dev-a/summary", encode(summary)).kind == "stored"
    stored = json.loads(db["nights"].get(("dev-a", "2026-01-05"))["summary_json"])
    assert stored["future_field"] == {"x": 1} and stored["lm_events"][0]["peak_dps"] == 1


def insufficient() -> dict:
    """A night with too little time in bed for an index (rlsmon.night/1, additive): 10 min in bed
    and no LM, consistent in every other figure."""
    return make_summary(n_lms=0) | {
        "in_bed": [{"start_s": 300.0, "end_s": 900.0}], "time_in_bed_s": 600.0, "min_time_in_bed_s": 2880.0,
        "lm_index": 0.0, "plm_index": 0.0, "severity": "insufficient_data", "clinically_significant": False,
        "markers": [{"t_s": 300.0, "kind": "lights_off"}, {"t_s": 900.0, "kind": "lights_on"}]}


def test_a_night_with_insufficient_data_is_accepted():
    summary = insufficient()
    night = NightSummary.model_validate_json(encode(summary))
    assert night.severity == "insufficient_data" and night.min_time_in_bed_s == 2880.0
    jsonschema_rs.validator_for(json.loads(SCHEMA_FILE.read_text())).validate(summary)


def test_the_collector_stores_a_night_with_insufficient_data(tmp_path):
    from server.collector import ingest
    from server.db import open_db

    db = open_db(tmp_path / "server.db")
    assert ingest(db, "rlsmon/v1/dev-a/summary", encode(insufficient())).kind == "stored"
    assert db["nights"].get(("dev-a", "2026-01-05"))["severity"] == "insufficient_data"


def test_a_night_from_before_min_time_in_bed_s_is_still_valid():
    summary = make_summary()
    summary.pop("min_time_in_bed_s", None)
    assert NightSummary.model_validate_json(encode(summary)).min_time_in_bed_s is None


@pytest.mark.parametrize(("key", "value"), [("clinically_significant", True), ("plm_index", 3.0),
                                            ("lm_index", 3.0), ("time_in_bed_s", 2880.0)])
def test_insufficient_data_with_an_index_a_flag_or_enough_time_is_refused(key, value):
    with pytest.raises(ValidationError, match="insufficient"):
        NightSummary.model_validate_json(encode(insufficient() | {key: value}))


def test_a_severity_despite_too_little_time_is_refused():
    summary = make_summary() | {"time_in_bed_s": 600.0, "min_time_in_bed_s": 2880.0}
    with pytest.raises(ValidationError, match="insufficient_data exactly when"):
        NightSummary.model_validate_json(encode(summary))


def _mutations():
    def drop(key):
        return lambda s: s.pop(key)

    return {
        "wrong schema version": put(["schema"], "rlsmon.night/2"),
        "unknown rules": put(["rules"], "AASM2007"),
        "count as string": put(["lm_count"], "40"),
        "bool as int": put(["clinically_significant"], 0),
        "negative time": put(["lm_events", 0, "onset_s"], -1.0),
        "offset before onset": put(["lm_events", 0, "offset_s"], 0.0),
        "duration disagrees": put(["lm_events", 0, "duration_s"], 9.0),
        "lm_count disagrees": put(["lm_count"], 41),
        "plm_count disagrees": put(["plm_count"], 1),
        "periodic without series": put(["lm_events", 0, "series"], None),
        "periodicity over 1": put(["periodicity_index"], 1.5),
        "44 histogram bins": put(["imi_histogram", "counts"], [0] * 44),
        "bad device id": put(["device_id"], "Dev_A"),
        "naive generated_at": put(["generated_at"], "2026-01-05T06:00:00"),
        "not a uuid": put(["summary_id"], "abc"),
        "bad night date": put(["night"], "2026-13-01"),
        "clock hour 24": put(["hourly", 0, "clock_hour"], 24),
        "unknown marker": put(["markers", 0, "kind"], "alarm"),
        "missing lm_events": drop("lm_events"),
        "too many events": put(["lm_events"], [{}] * 20_001),
        "nan index": put(["plm_index"], float("nan")),
    }


@pytest.mark.parametrize("name", sorted(_mutations()))
def test_garbage_is_refused(name):
    summary = make_summary()
    _mutations()[name](summary)
    with pytest.raises(ValidationError):
        NightSummary.model_validate_json(json.dumps(summary))

"""The EDF+ export, read back by a parser written from the EDF+ specification (Kemp & Olivan 2003,
edfplus.info/specs/edfplus.html), independent of the writer; and by pyedflib, which wraps EDFlib,
the library behind EDFbrowser."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.web.edf import Annotation, write_annotations_edf
from tests.web.seed import make_night

TAL = re.compile(rb"([+-]\d+(?:\.\d+)?)(?:\x15(\d+(?:\.\d+)?))?\x14((?:[^\x00]*?\x14)*)\x00")


def parse_edf_plus(data: bytes) -> dict:
    """Header fields and TALs of an annotations-only EDF+ file, checking the spec's rules."""
    def ascii_field(start: int, width: int) -> str:
        raw = data[start:start + width]
        assert all(32 <= b < 127 for b in raw), f"non-printable byte in header at {start}"
        return raw.decode("ascii")

    header = {
        "version": ascii_field(0, 8), "patient": ascii_field(8, 80),
        "recording": ascii_field(88, 80), "startdate": ascii_field(168, 8),
        "starttime": ascii_field(176, 8), "header_bytes": int(ascii_field(184, 8)),
        "reserved": ascii_field(192, 44), "n_records": int(ascii_field(236, 8)),
        "record_s": float(ascii_field(244, 8)), "ns": int(ascii_field(252, 4)),
    }
    ns = header["ns"]
    assert header["header_bytes"] == 256 * (ns + 1)
    base = 256

    def per_signal(width: int) -> list[str]:
        nonlocal base
        values = [ascii_field(base + i * width, width) for i in range(ns)]
        base += ns * width
        return values

    signals = {name: per_signal(width) for name, width in (
        ("label", 16), ("transducer", 80), ("dimension", 8), ("phys_min", 8), ("phys_max", 8),
        ("dig_min", 8), ("dig_max", 8), ("prefilter", 80), ("samples", 8), ("reserved", 32))}
    assert base == header["header_bytes"]
    samples = [int(s) for s in signals["samples"]]
    record_bytes = 2 * sum(samples)
    body = data[header["header_bytes"]:]
    assert len(body) == header["n_records"] * record_bytes, "file size disagrees with the header"
    records = []
    for k in range(header["n_records"]):
        raw = body[k * record_bytes:(k + 1) * record_bytes]
        tals = []
        pos = 0
        while pos < len(raw) and raw[pos] != 0:
            m = TAL.match(raw, pos)
            assert m, f"record {k}: malformed TAL at byte {pos}: {raw[pos:pos + 40]!r}"
            texts = [t.decode("utf-8") for t in m.group(3).split(b"\x14")[:-1]]
            tals.append((float(m.group(1)), float(m.group(2)) if m.group(2) else None, texts))
            pos = m.end()
        assert not raw[pos:].strip(b"\x00"), f"record {k}: bytes after the last TAL"
        records.append(tals)
    return {"header": header, "signals": signals, "records": records}


def test_an_edf_plus_annotation_file_follows_the_spec():
    start = datetime(2026, 11, 20, 22, 30, 5, 250_000)
    notes = [Annotation(12.5, 2.25, "LM"), Annotation(40.0, 1.5, "PLM"),
             Annotation(3600.0, None, "Lights on"), Annotation(65.0, 3.0, "PLM:bilateral")]
    parsed = parse_edf_plus(write_annotations_edf(notes, start, 3700.0, "P 0001", "rlsmon dev-a"))
    h = parsed["header"]
    assert h["version"] == "0       "
    assert h["reserved"].startswith("EDF+C")
    assert h["startdate"] == "20.11.26" and h["starttime"] == "22.30.05"
    # EDF+ subfields: patient "code sex birthdate name", recording "Startdate dd-MMM-yyyy ...".
    assert h["patient"].split() == ["P_0001", "X", "X", "X"]
    assert h["recording"].split()[:2] == ["Startdate", "20-NOV-2026"]
    assert h["recording"].split()[4] == "rlsmon_dev-a"
    assert h["ns"] == 1 and parsed["signals"]["label"] == ["EDF Annotations "]
    s = parsed["signals"]
    assert int(s["dig_min"][0]) == -32768 and int(s["dig_max"][0]) == 32767
    assert float(s["phys_min"][0]) != float(s["phys_max"][0])
    assert h["n_records"] == 62  # ceil((3700 + 0.25) / 60)
    frac = 0.25
    found = []
    for k, tals in enumerate(parsed["records"]):
        onset, duration, texts = tals[0]
        # The first TAL of each record keeps time: its start, and an empty annotation.
        assert onset == pytest.approx(k * h["record_s"] + frac) and duration is None
        assert texts == [""]
        for onset, duration, texts in tals[1:]:
            assert k * h["record_s"] <= onset < (k + 1) * h["record_s"] + frac
            found.append((onset - frac, duration, texts[0]))
    assert found == [(12.5, 2.25, "LM"), (40.0, 1.5, "PLM"), (65.0, 3.0, "PLM:bilateral"),
                     (3600.0, None, "Lights on")]


def test_a_nights_export_holds_every_lm_and_plm(staff, seeded):
    night = seeded.last_night
    response = staff.get(f"/devices/dev-a/nights/{night}/annotations.edf")
    assert response.status_code == 200
    assert response.headers["content-disposition"] == f'attachment; filename="dev-a_{night}.edf"'
    parsed = parse_edf_plus(response.content)
    summary = make_night("dev-a", night, 19)  # the seed is deterministic: the same night
    texts = [t for tals in parsed["records"] for _, _, ts in tals[1:] for t in ts]
    lms = summary["lm_events"]
    # Every LM is an "LM" and every PLM also a "PLM", with ":bilateral" when it joins both legs:
    # a class's count is the night's count, as Luna and PSG software count annotations. This
    # seeded night does not say the leg of its one-leg LMs, so their labels name none.
    assert sum(t in ("LM", "LM:bilateral") for t in texts) == summary["lm_count"] == len(lms)
    assert sum(t in ("PLM", "PLM:bilateral") for t in texts) == summary["plm_count"]
    assert texts.count("LM:bilateral") == sum(lm["bilateral"] for lm in lms) > 0
    assert texts.count("PLM series") == summary["plm_series_count"]
    assert texts.count("Lights off") == 1 and texts.count("Lights on") == 1
    assert texts.count("In bed") == 1 and texts.count("Recording gap") == 1
    # Times are relative to the recording's wall-clock start in its own zone.
    start = datetime.fromisoformat(summary["recording_start"]).astimezone(ZoneInfo("Europe/Berlin"))
    h = parsed["header"]
    assert h["starttime"] == start.strftime("%H.%M.%S")
    assert h["patient"].split()[0] == "P-0001"
    onsets = sorted(o for tals in parsed["records"] for o, _, ts in tals[1:] if ts[0] == "LM")
    assert onsets[0] == pytest.approx(lms[0]["onset_s"], abs=1e-3)


def test_the_export_opens_in_pyedflib(tmp_path, staff, seeded):
    """pyedflib wraps EDFlib, the reader behind EDFbrowser: what it opens, EDFbrowser opens."""
    import pyedflib

    response = staff.get(f"/devices/dev-a/nights/{seeded.last_night}/annotations.edf")
    path = tmp_path / "night.edf"
    path.write_bytes(response.content)
    with pyedflib.EdfReader(str(path)) as f:
        onsets, durations, texts = f.readAnnotations()
    assert "PLM" in set(texts) and "LM" in set(texts)
    assert list(onsets) == sorted(onsets)


def test_unknown_nights_are_404(staff):
    assert staff.get(f"/devices/dev-a/nights/{date(2001, 1, 1)}/annotations.edf").status_code == 404
    assert staff.get("/devices/dev-a/nights/not-a-date/annotations.edf").status_code == 422


def test_record_size_grows_with_the_busiest_minute():
    busy = [Annotation(i * 0.5, 0.5, "LM") for i in range(100)]
    parsed = parse_edf_plus(write_annotations_edf(busy, datetime(2026, 1, 1, 23, 0), 120.0,
                                                  "P-1", "x"))
    assert sum(len(t) - 1 for t in parsed["records"]) == 100
    assert timedelta(seconds=parsed["header"]["record_s"]) == timedelta(minutes=1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(
    st.floats(0, 7200, allow_nan=False).map(lambda x: round(x, 3)),
    st.one_of(st.none(), st.floats(0, 600, allow_nan=False).map(lambda x: round(x, 3))),
    st.sampled_from(["LM", "PLM:left", "PLM:bilateral", "Lights off", "PLM series 3", "Bein ü"])),
    max_size=80))
def test_any_annotations_read_back_as_written(items):
    notes = [Annotation(*item) for item in items]
    data = write_annotations_edf(notes, datetime(2026, 3, 1, 23, 5, 7), 7200.0, "P-1", "rlsmon")
    parsed = parse_edf_plus(data)
    back = [(round(o, 3), d, ts[0]) for tals in parsed["records"] for o, d, ts in tals[1:]]
    assert sorted(back, key=str) == sorted(items, key=str)


def test_rlsmon_will_not_score_an_export_that_mixes_sided_and_unsided_lms(tmp_path, staff, seeded):
    """The seeded night has bilateral LMs but does not say the leg of the others: read back by
    `rlsmon-device score`'s reader (device/lm_import.py), an unsided LM could be either leg's part of
    a bilateral one, so the file is refused, saying why, rather than scored wrong. A two-leg night
    that says its legs reads back whole (tests/web/test_edf_legs.py)."""
    from device.errors import EventsFormatError
    from device.lm_import import read_events

    night = seeded.last_night
    path = tmp_path / "night.edf"
    path.write_bytes(staff.get(f"/devices/dev-a/nights/{night}/annotations.edf").content)
    with pytest.raises(EventsFormatError, match="without a side among .* with one"):
        read_events(path)

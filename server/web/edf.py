"""A night's LMs and PLMs as an EDF+ file holding only an "EDF Annotations" signal.

Written to the EDF+ specification (Kemp & Olivan, Clin Neurophysiol 2003;114:1755–1761,
edfplus.info/specs/edfplus.html): a 256-byte header, one 256-byte signal header, then data records
of Time-stamped Annotation Lists (TALs). Sleep-scoring software (EDFbrowser, Luna, MNE) reads the
annotations and lines them up with a PSG recorded the same night.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

# Each data record covers this many seconds; an annotation goes in the record where it starts,
# as the spec recommends, so readers that stream records see events in time order.
RECORD_S = 60
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True)
class Annotation:
    """One EDF+ annotation: ``onset_s`` after the start, an optional duration, and its text."""

    onset_s: float
    duration_s: float | None
    text: str


def _field(value: str, width: int) -> bytes:
    """A header field: printable US-ASCII, left-aligned, padded with spaces (EDF 'ascii' fields)."""
    text = "".join(c if 32 <= ord(c) < 127 else "_" for c in value)[:width]
    return text.ljust(width).encode("ascii")


def _subfield(value: str) -> str:
    """An EDF+ header subfield: no spaces (they separate subfields); 'X' when unknown."""
    cleaned = "_".join(value.split())
    return cleaned or "X"


def _seconds(value: float) -> str:
    """A TAL number: decimal point, no exponent, no needless zeros."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _tal(onset_s: float, duration_s: float | None, texts: Iterable[str]) -> bytes:
    # TAL: '+'onset [0x15 duration] 0x14 text 0x14 ... 0x00 (EDF+ spec 2.2.2).
    head = ("+" if onset_s >= 0 else "") + _seconds(onset_s)
    if duration_s is not None:
        head += "\x15" + _seconds(duration_s)
    body = "".join(t.replace("\x14", " ").replace("\x15", " ").replace("\x00", " ") + "\x14"
                   for t in texts)
    return (head + "\x14" + body + "\x00").encode("utf-8")


def write_annotations_edf(
    annotations: Iterable[Annotation],
    start: datetime,
    duration_s: float,
    patient_code: str,
    equipment: str,
) -> bytes:
    """The EDF+C file of ``annotations`` for a recording that began at ``start`` (local wall clock).

    ``patient_code`` fills the patient-identification code (a pseudonym, never a name); the sex,
    birthdate and name subfields are 'X' (unknown), as EDF+ allows.
    """
    # The header keeps whole seconds; the fraction goes into every time-keeping TAL (spec 2.2.4).
    frac_s = start.microsecond / 1e6
    start = start.replace(microsecond=0)
    n_records = max(1, math.ceil((duration_s + frac_s) / RECORD_S))
    per_record: list[list[bytes]] = [[] for _ in range(n_records)]
    for a in sorted(annotations, key=lambda a: a.onset_s):
        onset = a.onset_s + frac_s
        k = min(n_records - 1, max(0, int(onset // RECORD_S)))
        per_record[k].append(_tal(onset, a.duration_s, [a.text]))
    # Each record opens with its time-keeping TAL, '+start' 0x14 0x14 0x00: an empty annotation.
    records = [_tal(k * RECORD_S + frac_s, None, [""]) + b"".join(tals)
               for k, tals in enumerate(per_record)]
    samples = max(1, math.ceil(max(len(r) for r in records) / 2))  # 2 bytes per 'sample'
    if samples > 99_999_999:
        raise ValueError("too many annotations in one data record for an EDF header field")

    header = b"".join([
        _field("0", 8),
        _field(f"{_subfield(patient_code)} X X X", 80),
        _field(f"Startdate {start.day:02d}-{_MONTHS[start.month - 1]}-{start.year} X X "
               f"{_subfield(equipment)}", 80),
        _field(start.strftime("%d.%m.%y"), 8),
        _field(start.strftime("%H.%M.%S"), 8),
        _field(str(256 * 2), 8),
        _field("EDF+C", 44),
        _field(str(n_records), 8),
        _field(str(RECORD_S), 8),
        _field("1", 4),
        # The one signal's header, field by field (EDF spec: ns × each field).
        _field("EDF Annotations", 16),
        _field("", 80),
        _field("", 8),
        _field("-1", 8),
        _field("1", 8),
        _field("-32768", 8),
        _field("32767", 8),
        _field("", 80),
        _field(str(samples), 8),
        _field("", 32),
    ])
    assert len(header) == 512
    return header + b"".join(r.ljust(2 * samples, b"\x00") for r in records)


# The labels Luna reads as its own classes: its NSRR harmonisation maps the PSG labels "Limb movement
# - left|Limb Movement (Left)" (Compumedics, via NSRR) and "PLM (Left)" to "LM:left" and "PLM:left",
# and unsided ones to "LM" and "PLM" (remnrem/luna-base, annot/nsrr-remap.cpp; older releases wrote
# "LM/left"). Every leg movement is an "LM…" and each periodic one also a "PLM…", so counting a class
# gives the night's lm_count and plm_count. The leg follows the class after a colon when the summary
# says it (docs/summary.md `leg`); a bilateral LM (WASM 2016), which has no NSRR class, is
# "LM:bilateral" in the same form. rlsmon-device score (device/lm_import.py) reads all of them back.
# Never a number in a label (Luna counts a label as a class): each series is one "PLM series" span.
LM_LABEL, PLM_LABEL, SERIES_LABEL = "LM", "PLM", "PLM series"
LEG_SUFFIX = {"left": ":left", "right": ":right", "both": ":bilateral"}


def _leg_suffix(lm: dict) -> str:
    """The label's leg: bilateral when the LM joins both legs (said before `leg` existed), else its `leg`."""
    return LEG_SUFFIX.get("both" if lm.get("bilateral") else lm.get("leg", ""), "")


def night_annotations(summary: dict) -> list[Annotation]:
    """The annotations for one night summary: LMs and PLMs, PLM series, in-bed time, gaps, markers."""
    out = []
    series: dict[int, list[float]] = {}
    for lm in summary.get("lm_events", []):
        leg = _leg_suffix(lm)
        out.append(Annotation(lm["onset_s"], lm["duration_s"], LM_LABEL + leg))
        if lm.get("periodic"):
            out.append(Annotation(lm["onset_s"], lm["duration_s"], PLM_LABEL + leg))
            if lm.get("series") is not None:
                series.setdefault(lm["series"], []).extend([lm["onset_s"], lm["offset_s"]])
    for times in series.values():
        out.append(Annotation(min(times), max(times) - min(times), SERIES_LABEL))
    for span in summary.get("in_bed", []):
        out.append(Annotation(span["start_s"], span["end_s"] - span["start_s"], "In bed"))
    for gap in summary.get("coverage", {}).get("gaps", []):
        out.append(Annotation(gap["start_s"], gap["end_s"] - gap["start_s"], "Recording gap"))
    for marker in summary.get("markers", []):
        out.append(Annotation(marker["t_s"], None,
                              "Lights off" if marker["kind"] == "lights_off" else "Lights on"))
    return out

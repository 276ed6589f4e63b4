"""Leg movements scored elsewhere, read for `rlsmon-device score`: a PSG's EDF+ annotations, or a CSV.

EDF+ annotation texts are mapped by `LABELS`, a table of the labels PSG software writes for a leg
movement ("LM", "Limb movement - left", "LM/right", "Limb Movement (Left)", …) and for lights off and
on. A label is looked up after `normalise_label` (case, and the separators "-", "/", "()", "_", ":"
and "," are ignored). A label not in the table is never guessed at: it is counted and listed, and
`--label TEXT=KIND` adds it to the table.

The CSV has a header `onset_s,offset_s,leg`, then one LM per row, `leg` left or right (or l, r), or
bilateral.

Legs are 0 (left) and 1 (right). A bilateral LM ("LM:bilateral", as rlsmon's own EDF+ export writes
it) is read as one movement of each leg over its span, which the scorer joins again into one
bilateral LM. A PLM label ("PLM:left", NSRR's "PLM (Left)") is an LM: the scorer finds the periodic
ones itself, and a PLM that repeats an LM's span joins it on its leg. A file whose LMs carry no side
("LM" alone) is one leg; mixing sided and unsided LMs is an error, since an unsided LM could be
either leg's part of a bilateral LM.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import product
from typing import Literal

from device.detect.bed import Marker
from device.detect.events import Interval, LegMovement
from device.detect.scoring import LEFT_RIGHT, Side
from device.edfplus import read_edf_annotations
from device.errors import EventsFormatError
from device.recording import MAX_T_S

Kind = Literal["left", "right", "bilateral", "unsided", "lights_off", "lights_on", "gap"]
KINDS: tuple[Kind, ...] = ("left", "right", "bilateral", "unsided", "lights_off", "lights_on", "gap")
CSV_HEADER = "onset_s,offset_s,leg"

_LM_NAMES = ("lm", "limb movement", "leg movement", "limb movement event", "leg movement event",
             "plm", "periodic leg movement", "periodic limb movement")
_SIDES: dict[str, Kind] = {
    "left": "left", "l": "left", "lt": "left", "lat": "left",  # LAT: left anterior tibialis
    "right": "right", "r": "right", "rt": "right", "rat": "right",
    "bilateral": "bilateral",
}
_LEGS_OF: dict[Kind, tuple[int, ...]] = {"left": (0,), "right": (1,), "bilateral": (0, 1), "unsided": (0,)}


def _lm_labels() -> dict[str, Kind]:
    table: dict[str, Kind] = {name: "unsided" for name in _LM_NAMES}
    for name, (side, kind) in product(_LM_NAMES, _SIDES.items()):
        for label in (f"{name} {side}", f"{side} {name}", f"{name} {side} leg", f"{side} leg {name}"):
            table[label] = kind
    return table


# Normalised label -> what it marks. Leg movements in the forms PSG software writes them (Compumedics
# "Limb Movement (Left)", NSRR's "Limb movement - left" and "PLM (Left)", Luna's harmonised "LM:left"
# and "PLM:right", "LM/right", "Left leg movement", "LM LAT"), lights off and on, and rlsmon's own
# export of a bilateral LM and a recording gap (server/web/edf.py).
LABELS: dict[str, Kind] = {
    **_lm_labels(),
    "lights off": "lights_off", "lights out": "lights_off", "lightsoff": "lights_off",
    "lights on": "lights_on", "lightson": "lights_on",
    "recording gap": "gap",
}


def normalise_label(text: str) -> str:
    """`text` in lower case with separators as single spaces: "LM/Right" -> "lm right"."""
    return " ".join(re.sub(r"[-/()_:,\[\]]", " ", text.lower()).split())


@dataclass
class ImportedEvents:
    """What a file of scored events holds, on the file's timeline (seconds from its start)."""

    legs: list[list[LegMovement]]
    markers: list[Marker] = field(default_factory=list)
    gaps: list[Interval] = field(default_factory=list)
    duration_s: float = 0.0
    unknown_labels: Counter = field(default_factory=Counter)

    @property
    def sides(self) -> tuple[Side, ...]:
        """The side of each leg list: left and right for sided LMs; none known for unsided ones."""
        return LEFT_RIGHT if len(self.legs) == 2 else ()


def read_events(path: str | os.PathLike, extra_labels: dict[str, Kind] | None = None) -> ImportedEvents:
    """Read LMs (and, from EDF+, lights off/on and gaps) from an EDF+ file or an LM CSV.

    The format is told by the file's first bytes (an EDF header starts with "0" and 7 spaces).
    `extra_labels` extends `LABELS` (keys are normalised here). Raises `EventsFormatError` naming
    the file, and the line of a CSV.
    """
    name = os.fspath(path)
    with open(name, "rb") as f:
        is_edf = f.read(8) == b"0       "
    if is_edf:
        table = LABELS | {normalise_label(k): v for k, v in (extra_labels or {}).items()}
        return _from_edf(name, table)
    return _from_csv(name)


def _from_edf(name: str, table: dict[str, Kind]) -> ImportedEvents:
    edf = read_edf_annotations(name)
    if edf.duration_s > MAX_T_S:
        raise EventsFormatError(name, f"its records span {edf.duration_s:g} s, more than a week: not one night")
    sided: dict[Kind, list[tuple[float, float]]] = {"left": [], "right": [], "bilateral": [], "unsided": []}
    out = ImportedEvents(legs=[], duration_s=edf.duration_s, gaps=[Interval(*g) for g in edf.gaps])
    for a in edf.annotations:
        kind = table.get(normalise_label(a.text))
        if kind is None:
            out.unknown_labels[a.text] += 1
        elif kind in ("lights_off", "lights_on"):
            out.markers.append((a.onset_s, kind))
        elif a.duration_s is None:
            raise EventsFormatError(name, f"the annotation {a.text!r} at {a.onset_s:g} s has no duration: "
                                          f"a {'gap' if kind == 'gap' else 'leg movement'} needs one")
        elif not 0.0 <= a.onset_s <= a.onset_s + a.duration_s <= MAX_T_S:
            raise EventsFormatError(name, f"the annotation {a.text!r} at {a.onset_s:g} s lasting {a.duration_s:g} s "
                                          "is not within a week from the start")
        elif kind == "gap":
            out.gaps.append(Interval(a.onset_s, a.onset_s + a.duration_s))
        else:
            sided[kind].append((a.onset_s, a.onset_s + a.duration_s))
    n_sided = len(sided["left"]) + len(sided["right"]) + len(sided["bilateral"])
    if sided["unsided"] and n_sided:
        raise EventsFormatError(name, f"{len(sided['unsided'])} leg movements without a side among "
                                      f"{n_sided} with one: an unsided LM could be either leg's, so they "
                                      "cannot be scored together")
    out.legs = [[] for _ in range(1 if sided["unsided"] else 2)]
    for kind, spans in sided.items():
        for onset_s, offset_s in spans:
            for leg in _LEGS_OF[kind]:
                out.legs[leg].append(LegMovement(onset_s, offset_s, leg))
    for moves in out.legs:
        moves.sort(key=lambda m: m.onset_s)
    return out


def _from_csv(name: str) -> ImportedEvents:
    legs: list[list[LegMovement]] = [[], []]
    with open(name, newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None or ",".join(h.strip() for h in header) != CSV_HEADER:
            got = ",".join(header) if header else ""
            raise EventsFormatError(name, f"the header must be {CSV_HEADER!r}, not {got[:80]!r}", line=1)
        for row in rows:
            line = rows.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != 3:
                raise EventsFormatError(name, f"{len(row)} columns where 3 are expected ({CSV_HEADER})", line=line)
            onset_s, offset_s = (_seconds(text, column, name, line) for text, column in zip(row, ("onset_s", "offset_s")))
            if offset_s < onset_s:
                raise EventsFormatError(name, f"offset_s {offset_s:g} is before onset_s {onset_s:g}", line=line)
            side = _SIDES.get(row[2].strip().lower())
            if side is None:
                raise EventsFormatError(name, f"leg is {row[2].strip()[:20]!r}; it must be left or right (l, r), "
                                              "or bilateral", line=line)
            for leg in _LEGS_OF[side]:
                legs[leg].append(LegMovement(onset_s, offset_s, leg))
    duration_s = max((m.offset_s for moves in legs for m in moves), default=0.0)
    return ImportedEvents(legs=legs, duration_s=duration_s)


def _seconds(text: str, column: str, name: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise EventsFormatError(name, f"{column} is not a number: {text.strip()[:40]!r}", line=line) from None
    if not math.isfinite(value) or not 0.0 <= value <= MAX_T_S:
        raise EventsFormatError(name, f"{column} = {text.strip()[:40]} is not a time from 0 to a week, in seconds",
                                line=line)
    return value

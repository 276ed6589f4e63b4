"""The annotations of an EDF+ file, read in pure Python: what a PSG's scorer marked, and when.

EDF+ (Kemp & Olivan, Clin Neurophysiol 2003;114:1755–1761; edfplus.info/specs/edfplus.html): a
256-byte header, 256 bytes per signal, then data records. Annotations live in the signals labelled
"EDF Annotations" as Time-stamped Annotation Lists (TALs): `+onset[0x15 duration]0x14 text 0x14 …
0x00`, onsets in seconds from the file's start. The first TAL of each record has no text: it says
when the record starts. In an EDF+D ("discontinuous") file the records need not follow each other:
the time between them was not recorded, and is returned as a gap.

Only the annotation signals' bytes are read, so a PSG of several hundred MB costs little memory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from device.errors import EventsFormatError

ANNOTATION_LABEL = "EDF Annotations"
_TIMESTAMP = re.compile(r"[+-]\d+(\.\d*)?")
# Record starts closer than this to the end of the record before are contiguous (TAL onsets are
# written in decimal, so an exact comparison would see gaps of a few ns).
_CONTIGUOUS_S = 1e-6


@dataclass(frozen=True)
class Annotation:
    """One annotation: `onset_s` after the file's start, a duration when given, and its text."""

    onset_s: float
    duration_s: float | None
    text: str


@dataclass
class EdfAnnotations:
    """The annotations of one file, the span its records cover, and the gaps between them (EDF+D)."""

    annotations: list[Annotation] = field(default_factory=list)
    duration_s: float = 0.0
    gaps: list[tuple[float, float]] = field(default_factory=list)


def read_edf_annotations(path: str | os.PathLike) -> EdfAnnotations:
    """Read the annotations of the EDF+ file at `path`, in file order.

    Raises `EventsFormatError` naming the file (and the data record) for a file that is not EDF+,
    has no annotation signal, is cut short, or holds a malformed TAL.
    """
    name = os.fspath(path)
    with open(name, "rb") as f:
        head = f.read(256)
        if len(head) < 256 or head[:8] != b"0       ":
            raise EventsFormatError(name, "not an EDF file (it must start with '0' and 7 spaces)")
        kind = head[192:236].decode("ascii", "replace").strip()
        if not kind.startswith(("EDF+C", "EDF+D")):
            raise EventsFormatError(name, f"an EDF file without EDF+ annotations (its reserved field is {kind[:20]!r}, "
                                          "not EDF+C or EDF+D)")
        header_bytes = _number(head, 184, 192, name, "header size", int)
        n_records = _number(head, 236, 244, name, "number of data records", int)
        record_s = _number(head, 244, 252, name, "data record duration", float)
        n_signals = _number(head, 252, 256, name, "number of signals", int)
        signals = f.read(256 * n_signals)
        if len(signals) < 256 * n_signals or header_bytes != 256 * (n_signals + 1):
            raise EventsFormatError(name, "the header is cut short or its size disagrees with its signal count")
        labels = [signals[16 * k : 16 * (k + 1)].decode("ascii", "replace").strip() for k in range(n_signals)]
        per_record = [_number(signals, 216 * n_signals + 8 * k, 216 * n_signals + 8 * (k + 1), name,
                              f"samples per record of signal {k + 1}", int) for k in range(n_signals)]
        starts = [2 * sum(per_record[:k]) for k in range(n_signals)]
        record_bytes = 2 * sum(per_record)
        wanted = [(starts[k], 2 * per_record[k]) for k, label in enumerate(labels) if label == ANNOTATION_LABEL]
        if not wanted:
            raise EventsFormatError(name, f"no {ANNOTATION_LABEL!r} signal (signals: {', '.join(labels) or 'none'})")
        available = (os.fstat(f.fileno()).st_size - header_bytes) // record_bytes if record_bytes else 0
        if n_records < 0:  # -1: the writer did not know it yet (EDF+ spec 2.1.3)
            n_records = available
        elif available < n_records:
            raise EventsFormatError(name, f"cut short: the header says {n_records} data records, the file holds {available}")
        out = EdfAnnotations()
        record_starts = []
        for r in range(n_records):
            for offset, size in wanted:
                f.seek(header_bytes + r * record_bytes + offset)
                tals = _tals(f.read(size), name, r + 1)
                if offset == wanted[0][0]:
                    if not tals or tals[0][2][:1] != [""]:
                        raise EventsFormatError(name, f"data record {r + 1}: the first TAL must give the record's start")
                    record_starts.append(tals[0][0])
                out.annotations.extend(Annotation(onset, duration, text) for onset, duration, texts in tals
                                       for text in texts if text)
    ends = [s + record_s for s in record_starts]
    out.gaps = [(end, start) for end, start in zip(ends, record_starts[1:]) if start - end > _CONTIGUOUS_S]
    annotated_end = max((a.onset_s + (a.duration_s or 0.0) for a in out.annotations), default=0.0)
    out.duration_s = max(ends[-1] if ends else 0.0, annotated_end if record_s == 0 else 0.0)
    return out


def _number(buf: bytes, start: int, end: int, name: str, what: str, kind: type):
    text = buf[start:end].decode("ascii", "replace").strip()
    try:
        return kind(text)
    except ValueError:
        raise EventsFormatError(name, f"the header's {what} is not a number: {text!r}") from None


def _tals(raw: bytes, name: str, record: int) -> list[tuple[float, float | None, list[str]]]:
    """The TALs of one annotation signal's bytes in one record: (onset_s, duration_s, texts)."""
    out = []
    for tal in raw.split(b"\x00"):
        if not tal:
            continue  # padding after the last TAL
        try:
            text = tal.decode("utf-8")  # EDF+ spec 2.2.2: TAL texts are UTF-8
        except UnicodeDecodeError:
            raise EventsFormatError(name, f"data record {record}: a TAL is not UTF-8 text") from None
        parts = text.split("\x14")
        if len(parts) < 2 or parts[-1] != "":
            raise EventsFormatError(name, f"data record {record}: TAL {text[:60]!r} does not end its texts with 0x14")
        stamp, *duration = parts[0].split("\x15")
        if not _TIMESTAMP.fullmatch(stamp) or len(duration) > 1 or (duration and not _is_decimal(duration[0])):
            raise EventsFormatError(name, f"data record {record}: TAL time {parts[0]!r} is not '+onset' or "
                                          "'+onset<0x15>duration'")
        out.append((float(stamp), float(duration[0]) if duration else None, parts[1:-1]))
    return out


def _is_decimal(text: str) -> bool:
    return re.fullmatch(r"\d+(\.\d*)?", text) is not None

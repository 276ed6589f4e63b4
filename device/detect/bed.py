"""Time in bed, from the shin's posture and the patient's lights-off/on markers. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from device.detect.events import Interval, PostureSegment

Marker = tuple[float, str]  # (t_s, "lights_off" | "lights_on")


def in_bed_intervals(
    postures: Sequence[PostureSegment], markers: Iterable[Marker], duration_s: float
) -> list[Interval]:
    """The spans in bed: the shin lying (near horizontal), and between lights off and on when marked.

    The shin is near horizontal in bed and near vertical when standing, walking or sitting on the
    bed's edge (docs/architecture.md), so only `"lying"` counts; `"unknown"` does not. When the patient
    marked lights off/on, in bed is also limited to those windows, as a PSG's time in bed runs from
    lights off to lights on; a trip to the bathroom inside the window still leaves bed, by posture.
    A lights-off without a later lights-on runs to the end; a lights-on with no lights-off before it
    closes a window that opened at the start. Repeated presses of the same kind are ignored.
    Returns sorted, disjoint intervals within [0, duration_s].
    """
    lying = merge([Interval(p.start_s, p.end_s) for p in postures if p.posture == "lying"])
    windows = _lights_windows(markers, duration_s)
    spans = lying if windows is None else _intersect(lying, windows)
    clipped = (Interval(max(0.0, s.start_s), min(duration_s, s.end_s)) for s in spans)
    return [s for s in clipped if s.end_s > s.start_s]


def subtract(spans: Sequence[Interval], holes: Sequence[Interval]) -> list[Interval]:
    """`spans` minus `holes`, `spans` sorted and disjoint (as `merge` makes them)."""
    out: list[Interval] = []
    holes = merge(holes)
    for span in spans:
        start = span.start_s
        for hole in holes:
            if hole.end_s <= start or hole.start_s >= span.end_s:
                continue
            if hole.start_s > start:
                out.append(Interval(start, hole.start_s))
            start = max(start, hole.end_s)
        if span.end_s > start:
            out.append(Interval(start, span.end_s))
    return out


def _lights_windows(markers: Iterable[Marker], duration_s: float) -> list[Interval] | None:
    marks = sorted(markers)
    if not marks:
        return None
    windows: list[Interval] = []
    opened: float | None = None
    for t_s, kind in marks:
        if kind == "lights_off" and opened is None:
            opened = t_s
        elif kind == "lights_on":
            if opened is not None:
                windows.append(Interval(opened, t_s))
                opened = None
            elif not windows:
                windows.append(Interval(0.0, t_s))
        elif kind not in ("lights_off", "lights_on"):
            raise ValueError(f"unknown marker kind {kind!r} at t = {t_s} s; expected lights_off or lights_on")
    if opened is not None:
        windows.append(Interval(opened, duration_s))
    return windows


def merge(spans: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint spans covering the same time as `spans`."""
    out: list[Interval] = []
    for span in sorted(spans, key=lambda s: s.start_s):
        if out and span.start_s <= out[-1].end_s:
            out[-1] = Interval(out[-1].start_s, max(out[-1].end_s, span.end_s))
        else:
            out.append(span)
    return out


def _intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i].start_s, b[j].start_s), min(a[i].end_s, b[j].end_s)
        if end > start:
            out.append(Interval(start, end))
        if a[i].end_s < b[j].end_s:
            i += 1
        else:
            j += 1
    return out

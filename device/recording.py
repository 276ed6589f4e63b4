"""The recording CSV: read it as a stream of `SampleBlock`s, and write one.

The format (docs/architecture.md): a header line `t,ax,ay,az,gx,gy,gz`, then one row per sample; `t` in
seconds from the start of the recording, accel in g, gyro in dps. A jump in `t` is a gap in
recording: it is kept as it is, never interpolated. An optional eighth column, `temp_c`, is the
sensor's temperature in °C (its latest reading at that row), which tells worn from not worn
(device/wear.py); a block read from such a file carries the mean of its rows as `temp_c`.

Reading is the hot path of `rlsmon-device analyze` (an 8-hour night at 52 Hz is 1.5 M rows), so rows
are parsed a megabyte at a time with vectorised numpy (about twice as fast as `np.loadtxt`), eight
digits at a time. Chunks that this fast path cannot prove well formed (an exponent, spaces, more than
8 digits, or an error) go through `np.loadtxt`, and only a chunk that holds an error is walked line
by line, to name the line. Memory stays constant whatever the length of the night.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import numpy as np

from device.errors import RecordingFormatError
from device.samples import SampleBlock
from device.sensor.lsm6ds import VARIANTS

RECORDING_HEADER = "t,ax,ay,az,gx,gy,gz"
RECORDING_HEADER_TEMP = RECORDING_HEADER + ",temp_c"

# No supported chip reports more than its int16 range times its coarsest LSB: 32768 x 0.976 mg
# = 32.0 g (LSM6DSO32 at ±32 g) and 32768 x 140 mdps = 4588 dps (ISM330DHCX at ±4000 dps). Twice
# that leaves room for a remapped or calibrated axis; anything beyond is not a measurement (an
# overflowed or corrupted value such as 1e308), and would overflow the detector's arithmetic.
ACCEL_LIMIT_G = 2 * max(32768 * s.per_lsb for v in VARIANTS.values() for s in v.accel_scales.values())
GYRO_LIMIT_DPS = 2 * max(32768 * s.per_lsb for v in VARIANTS.values() for s in v.gyro_scales.values())
# A recording is one night; a t a week from the start is a corrupted value, and would make the
# hourly profile of the night millions of hours long.
MAX_T_S = 7 * 24 * 3600.0
# The chips work from -40 to +85 °C; a temperature beyond ±200 °C is a corrupted value.
TEMP_LIMIT_C = 200.0
_LIMITS = np.array([MAX_T_S] + [ACCEL_LIMIT_G] * 3 + [GYRO_LIMIT_DPS] * 3 + [TEMP_LIMIT_C])
_UNITS = ("s", "g", "g", "g", "dps", "dps", "dps", "°C")

_CHUNK_BYTES = 1 << 20
# Precision on write: 0.1 ms is far below any sample period we use; 10 µg and 0.1 mdps are below
# the LSM6DS noise floor (about 70 µg/√Hz and 3.8 mdps/√Hz), so nothing measurable is lost.
_ROW_FORMAT = "%.4f,%.5f,%.5f,%.5f,%.4f,%.4f,%.4f\n"
_ROW_FORMAT_TEMP = _ROW_FORMAT[:-1] + ",%.3f\n"  # 1 m°C: finer than the chips' 1/256 °C
_WRITE_ROWS = 16384


def read_recording(path: str | os.PathLike, block_rows: int = 4096) -> Iterator[SampleBlock]:
    """Yield the recording at `path` as `SampleBlock`s of `block_rows` rows (the last may be shorter).

    `odr_hz` is estimated once, from the first megabyte: the median sample interval finds the
    regular spacing, and the mean of the intervals within 1.5 of it (so gaps are left out) refines
    it past the rounding of `t` in the file. Raises `RecordingFormatError` naming the 1-based line
    for a bad header (`RECORDING_HEADER`, or `RECORDING_HEADER_TEMP` with a temperature column),
    a wrong number of columns, a field that is not a finite number, a value beyond
    any supported sensor's range (`ACCEL_LIMIT_G`, `GYRO_LIMIT_DPS`; `t` up to `MAX_T_S`), or a `t`
    that does not increase.
    """
    if block_rows < 1:
        raise ValueError(f"block_rows must be at least 1, not {block_rows}")
    name = os.fspath(path)
    odr_hz: float | None = None
    pending: list[np.ndarray] = []
    pending_rows = 0
    last_t = -np.inf
    with open(name, "rb") as f:
        header = f.readline().removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace").strip()
        if header not in (RECORDING_HEADER, RECORDING_HEADER_TEMP):
            raise RecordingFormatError(
                name, 1, f"the header must be {RECORDING_HEADER!r} (or with ',temp_c'), not {header[:80]!r}"
            )
        columns = header.split(",")
        first_line = 2
        for rows, first_line in _chunks(f, name, first_line, columns):
            _check_range(rows, name, first_line, columns)
            t = rows[:, 0]
            bad = np.flatnonzero(np.diff(t, prepend=last_t) <= 0)
            if bad.size:
                i = int(bad[0])
                before = float(rows[i - 1, 0] if i else last_t)
                raise RecordingFormatError(
                    name, first_line + i, f"t = {float(rows[i, 0])!r} does not increase (the row before has t = {before!r})"
                )
            last_t = t[-1]
            if odr_hz is None:
                odr_hz = _estimate_odr_hz(t, name)
            pending.append(rows)
            pending_rows += len(rows)
            while pending_rows >= block_rows:
                merged = np.concatenate(pending) if len(pending) > 1 else pending[0]
                cut = (pending_rows // block_rows) * block_rows
                for k in range(0, cut, block_rows):
                    yield _block(merged[k : k + block_rows], odr_hz)
                rest = merged[cut:]
                pending, pending_rows = ([rest] if len(rest) else []), len(rest)
    if pending_rows:
        yield _block(np.concatenate(pending), odr_hz)


def write_recording(path: str | os.PathLike, blocks: Iterable[SampleBlock]) -> None:
    """Write `blocks` to `path` as a recording CSV, with the header, 0.1 ms, 10 µg and 0.1 mdps.

    Raises `ValueError` (before writing the offending rows) when `t` does not increase, since such a
    file could not be read back.
    """
    last_t = -np.inf
    temp_c: float | None = None  # the latest temperature, held from row to row
    row_format = None  # chosen by the first block: with a temperature column if it has a reading
    with open(os.fspath(path), "w", encoding="ascii", newline="\n") as f:
        for block in blocks:
            if not len(block):
                continue
            if row_format is None:
                row_format = _ROW_FORMAT if block.temp_c is None else _ROW_FORMAT_TEMP
                f.write((RECORDING_HEADER if block.temp_c is None else RECORDING_HEADER_TEMP) + "\n")
            t = np.round(np.asarray(block.t_s, dtype=np.float64), 4)
            if np.any(np.diff(t, prepend=last_t) <= 0):
                raise ValueError("SampleBlock t_s must increase by at least 0.1 ms from row to row")
            last_t = t[-1]
            columns = [t, block.accel_g, block.gyro_dps]
            if row_format is _ROW_FORMAT_TEMP:
                temp_c = temp_c if block.temp_c is None else block.temp_c
                columns.append(np.full(len(t), temp_c))
            table = np.column_stack(columns)
            for k in range(0, len(table), _WRITE_ROWS):
                part = table[k : k + _WRITE_ROWS]
                f.write((row_format * len(part)) % tuple(part.ravel().tolist()))
        if row_format is None:
            f.write(RECORDING_HEADER + "\n")


def _block(rows: np.ndarray, odr_hz: float) -> SampleBlock:
    rows = np.ascontiguousarray(rows)
    temp_c = float(rows[:, 7].mean()) if rows.shape[1] > 7 else None
    return SampleBlock(t_s=rows[:, 0].copy(), accel_g=rows[:, 1:4].copy(), gyro_dps=rows[:, 4:7].copy(),
                       odr_hz=odr_hz, temp_c=temp_c)


def _check_range(rows: np.ndarray, name: str, first_line: int, columns: list[str]) -> None:
    """Raise `RecordingFormatError` naming the first line with a value beyond `_LIMITS`."""
    beyond = np.abs(rows) > _LIMITS[: len(columns)]
    if not beyond.any():
        return
    i, column = (int(k) for k in np.argwhere(beyond)[0])
    value, limit, unit = float(rows[i, column]), _LIMITS[column], _UNITS[column]
    what = "more than a week from the start" if column == 0 else f"beyond any supported sensor's range (±{limit:.0f} {unit})"
    raise RecordingFormatError(name, first_line + i, f"{columns[column]} = {value!r} {unit} is {what}")


def _estimate_odr_hz(t: np.ndarray, name: str) -> float:
    dt = np.diff(t)
    if not dt.size:
        raise RecordingFormatError(name, 2, "a recording needs at least two samples to know its sample rate")
    median_s = float(np.median(dt))
    return float(1.0 / dt[dt < 1.5 * median_s].mean())


def _chunks(f: BinaryIO, name: str, first_line: int, columns: list[str]) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (rows as an (n, len(columns)) float array, line number of its first row) for each chunk."""
    carry = b""
    while True:
        data = f.read(_CHUNK_BYTES)
        if not data:
            break
        data = carry + data
        end = data.rfind(b"\n") + 1
        if end == 0:
            carry = data
            continue
        # Blank lines at the end of a chunk wait in the carry: at the end of the file they are
        # harmless, but rows after them make them an error of their own line.
        body_end = len(data[:end].rstrip(b" \t\r\n"))
        end = data.index(b"\n", body_end) + 1 if body_end else 0
        carry = data[end:]
        if not end:
            continue
        rows, nlines = _parse(data[:end], name, first_line, columns)
        if len(rows):
            yield rows, first_line
        first_line += nlines
    if carry.strip():
        rows, _ = _parse(carry + b"\n", name, first_line, columns)
        if len(rows):
            yield rows, first_line


def _parse(buf: bytes, name: str, first_line: int, columns: list[str] | None = None) -> tuple[np.ndarray, int]:
    """Parse whole lines in `buf` (ending in a newline); return the rows and the number of lines."""
    columns = columns or RECORDING_HEADER.split(",")
    ncol = len(columns)
    if b"\r" in buf:
        buf = buf.replace(b"\r\n", b"\n")
    rows = _parse_fast(buf, ncol)
    if rows is not None:
        return rows, len(rows)
    nlines = buf.count(b"\n")
    lines = buf.decode("utf-8", "replace").split("\n")[:-1]
    # np.loadtxt would skip a blank line silently and shift every line number after it.
    if any(not line.strip() for line in lines):
        raise _first_bad_line(lines, name, first_line, columns)
    try:
        rows = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        raise _first_bad_line(lines, name, first_line, columns) from None
    if (rows.size and rows.shape[1] != ncol) or not np.isfinite(rows).all():
        raise _first_bad_line(lines, name, first_line, columns)
    return rows.reshape(-1, ncol), nlines


def _first_bad_line(lines: list[str], name: str, first_line: int, columns: list[str]) -> RecordingFormatError:
    """The error for the first bad line in `lines`, found line by line (only for a chunk known bad)."""
    for i, line in enumerate(lines):
        fields = line.split(",")
        if not line.strip():
            return RecordingFormatError(name, first_line + i, "an empty line")
        if len(fields) != len(columns):
            return RecordingFormatError(
                name, first_line + i, f"{len(fields)} columns where {len(columns)} are expected ({','.join(columns)})"
            )
        for column, text in zip(columns, fields):
            try:
                value = float(text) if "_" not in text else None  # float() takes 1_000; np.loadtxt does not
            except ValueError:
                value = None
            if value is None:
                return RecordingFormatError(name, first_line + i, f"{column} is not a number: {text.strip()[:40]!r}")
            if not np.isfinite(value):
                return RecordingFormatError(name, first_line + i, f"{column} is not a finite number: {text.strip()!r}")
    return RecordingFormatError(name, first_line, "the lines from here on could not be parsed")


def _parse_fast(buf: bytes, ncol: int) -> np.ndarray | None:
    """Parse plain decimal CSV, `-?digits.digits` with at most 8 digits on each side of the dot.

    Each field is read as two 64-bit words, the 8 bytes before its dot and the 8 after, and turned
    into numbers eight digits at a time with SWAR arithmetic; the value is the exact integer
    `int * 1e8 + frac` divided by 1e8, so it rounds exactly as `float()` does. Every byte of the
    chunk is checked on the way (separators by position, digits by the SWAR test), so a chunk this
    accepts is well formed. Returns None for anything else; the caller then takes the general path.
    """
    b = np.frombuffer(buf, np.uint8)
    # Every byte up to ',' (44) is taken for a separator; the check below that each is ',' or '\n'
    # in its place then also rejects any other such byte (space, '\r', '+', …) in one compare.
    sep = np.flatnonzero(b <= 44)
    if not sep.size or sep.size % ncol:
        return None
    n = sep.size // ncol
    kinds = b[sep].reshape(n, ncol)
    if not ((kinds[:, :-1] == 44).all() and (kinds[:, -1] == 10).all()):
        return None
    dots = np.flatnonzero(b == 46)
    if dots.size != sep.size:
        return None
    starts = np.empty_like(sep)
    starts[0] = 0
    starts[1:] = sep[:-1] + 1
    if not ((dots >= starts) & (dots < sep)).all():  # so exactly one dot in each field
        return None
    negative = b[starts] == 45
    int_digits = dots - starts - negative
    frac_digits = sep - dots - 1
    if int_digits.max() > 8 or frac_digits.max() > 8 or ((int_digits + frac_digits) < 1).any():
        return None
    pad = np.full(8, 44, np.uint8)
    padded = np.concatenate([pad, b, pad])
    # words[i] is the little-endian uint64 of padded bytes i..i+7 (an unaligned, overlapping view).
    words = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
    # Bytes outside the field become '0': leading zeros before the integer part, trailing after
    # the fraction, so both words read as plain 8-digit numbers.
    low = _LOW_BYTES[8 - int_digits]
    int_word = (words[dots] & ~low) | (_ASCII_ZEROS & low)
    low = _LOW_BYTES[frac_digits]
    frac_word = (words[dots + 9] & low) | (_ASCII_ZEROS & ~low)
    int_part, int_ok = _eight_digits(int_word)
    frac_part, frac_ok = _eight_digits(frac_word)
    if not (int_ok.all() and frac_ok.all()):
        return None
    values = (int_part * np.uint64(100_000_000) + frac_part).astype(np.float64) / 1e8
    np.negative(values, out=values, where=negative)
    return values.reshape(n, ncol)


_U64 = np.uint64
_ASCII_ZEROS = _U64(0x3030303030303030)
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)  # k low bytes set


def _eight_digits(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Read uint64 words of 8 ASCII digits (first digit in the low byte): (values, all-digits mask)."""
    # A byte is a digit when its high nibble is 3, and still is after adding 6 (':' … '?' are not).
    high = _U64(0xF0F0F0F0F0F0F0F0)
    ok = ((words & high) == _ASCII_ZEROS) & (((words + _U64(0x0606060606060606)) & high) == _ASCII_ZEROS)
    v = words - _ASCII_ZEROS
    v = (v * _U64(10) + (v >> _U64(8))) & _U64(0x00FF00FF00FF00FF)  # pairs of digits
    v = (v * _U64(100) + (v >> _U64(16))) & _U64(0x0000FFFF0000FFFF)  # fours
    v = (v * _U64(10000) + (v >> _U64(32))) & _U64(0xFFFFFFFF)  # all eight
    return v, ok

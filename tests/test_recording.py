"""The recording CSV: round trips, the fast parser against Python's float(), and errors that name the line."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.errors import RecordingFormatError
from device.recording import RECORDING_HEADER, _parse, read_recording, write_recording
from device.samples import SampleBlock


def night(n: int, odr_hz: float = 52.0, gap_at: int | None = None, gap_s: float = 30.0, seed: int = 0) -> SampleBlock:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / odr_hz
    if gap_at is not None:
        t[gap_at:] += gap_s
    accel = rng.normal(0, 0.02, (n, 3)) + [0.0, 0.0, 1.0]
    gyro = rng.normal(0, 3.0, (n, 3))
    return SampleBlock(t_s=t, accel_g=accel, gyro_dps=gyro, odr_hz=odr_hz)


def read_all(path, block_rows: int = 4096) -> SampleBlock:
    blocks = list(read_recording(path, block_rows=block_rows))
    return SampleBlock(
        t_s=np.concatenate([b.t_s for b in blocks]),
        accel_g=np.concatenate([b.accel_g for b in blocks]),
        gyro_dps=np.concatenate([b.gyro_dps for b in blocks]),
        odr_hz=blocks[0].odr_hz,
    )


def write_text(tmp_path, text: str, name: str = "rec.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def test_round_trip_keeps_values_to_the_written_precision(tmp_path):
    block = night(30_000, gap_at=12_000)  # over 1 MB, so several parse chunks
    path = tmp_path / "rec.csv"
    write_recording(path, [SampleBlock(block.t_s[:7], block.accel_g[:7], block.gyro_dps[:7], 52.0),
                           SampleBlock(block.t_s[7:], block.accel_g[7:], block.gyro_dps[7:], 52.0)])
    assert path.read_text().splitlines()[0] == RECORDING_HEADER
    back = read_all(path)
    np.testing.assert_allclose(back.t_s, block.t_s, atol=0.5e-4)
    np.testing.assert_allclose(back.accel_g, block.accel_g, atol=0.5e-5)
    np.testing.assert_allclose(back.gyro_dps, block.gyro_dps, atol=0.5e-4)
    # The gap stays a gap: no rows are invented across it.
    assert len(back) == 30_000
    assert back.t_s[12_000] - back.t_s[11_999] == pytest.approx(30.0 + 1 / 52, abs=1e-3)


def test_parsed_values_equal_what_loadtxt_reads(tmp_path):
    path = tmp_path / "rec.csv"
    write_recording(path, [night(25_000, seed=3)])
    back = read_all(path)
    ref = np.loadtxt(path, delimiter=",", skiprows=1)
    assert np.array_equal(back.t_s, ref[:, 0])
    assert np.array_equal(back.accel_g, ref[:, 1:4])
    assert np.array_equal(back.gyro_dps, ref[:, 4:7])


@pytest.mark.parametrize("block_rows", [1, 7, 4096, 100_000])
def test_blocks_have_the_asked_size_and_cover_every_row(tmp_path, block_rows):
    path = tmp_path / "rec.csv"
    write_recording(path, [night(20_001)])
    sizes = [len(b) for b in read_recording(path, block_rows=block_rows)]
    assert sum(sizes) == 20_001
    assert all(size == block_rows for size in sizes[:-1])
    assert 0 < sizes[-1] <= block_rows


@pytest.mark.parametrize("odr_hz", [26.0, 52.0, 104.0, 416.0])
def test_odr_is_estimated_despite_rounding_and_gaps(tmp_path, odr_hz):
    path = tmp_path / "rec.csv"
    write_recording(path, [night(5_000, odr_hz=odr_hz, gap_at=2_000, gap_s=600.0)])
    rates = {b.odr_hz for b in read_recording(path)}
    assert len(rates) == 1
    assert rates.pop() == pytest.approx(odr_hz, rel=1e-3)


number = st.one_of(
    st.integers(-99_999_999, 99_999_999).map(str),
    st.tuples(st.integers(-99_999, 99_999), st.integers(0, 8), st.integers(0, 99_999_999)).map(
        lambda x: f"{x[0]}.{str(x[2]).zfill(8)[: x[1]]}"
    ),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: f"{v:.6f}"),
    st.floats(-1e6, 1e6, allow_nan=False).map(repr),  # exponents and 17 digits: the general path
    st.sampled_from(["-0.5", ".5", "-.25", "7.", "0.0", "-0.0", "00012.50"]),
)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(number, min_size=6, max_size=6), min_size=2, max_size=30))
def test_any_decimal_text_reads_as_float_reads_it(rows):
    # The parser on its own: most of these values are beyond any sensor's range, which
    # read_recording refuses once they are parsed (tested below).
    lines = [f"{i * 0.25},{','.join(r)}" for i, r in enumerate(rows)]
    parsed, nlines = _parse(("\n".join(lines) + "\n").encode(), "rec.csv", 2)
    expected = np.array([[float(v) for v in r] for r in rows])
    assert nlines == len(rows)
    assert np.array_equal(parsed[:, 1:], expected)
    assert np.array_equal(parsed[:, 0], np.arange(len(rows)) * 0.25)


def test_windows_line_endings_a_bom_and_no_final_newline_are_read(tmp_path):
    text = "\ufeff" + RECORDING_HEADER + "\r\n0.0,0,0,1,0,0,0\r\n0.02,0,0,1,0,0,0\r\n0.04,0,0,1,0,0,1.5"
    back = read_all(write_text(tmp_path, text))
    assert back.t_s.tolist() == [0.0, 0.02, 0.04]
    assert back.gyro_dps[-1].tolist() == [0.0, 0.0, 1.5]


def test_signs_spaces_and_exponents_are_read_as_float_reads_them(tmp_path):
    text = RECORDING_HEADER + "\n0.0,+1.5, 2.25 ,1e-3,-0,0,0\n0.02,0,0,1,0,0,0\n"
    back = read_all(write_text(tmp_path, text))
    assert back.accel_g[0].tolist() == [1.5, 2.25, 0.001]


def test_trailing_blank_lines_are_harmless(tmp_path):
    text = RECORDING_HEADER + "\n0.0,0,0,1,0,0,0\n0.02,0,0,1,0,0,0\n\n  \n"
    assert len(read_all(write_text(tmp_path, text))) == 2


def test_header_only_yields_nothing(tmp_path):
    assert list(read_recording(write_text(tmp_path, RECORDING_HEADER + "\n"))) == []


GOOD = "0.00,0.01,0.02,1.00,0.1,0.2,0.3\n"


def rows(n: int, start: int = 0) -> str:
    return "".join(f"{(start + i) / 50:.4f},0.01000,-0.02000,0.99000,0.1000,-0.2000,0.3000\n" for i in range(n))


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("t,ax,ay,az,gx,gy\n" + GOOD, 1, "header"),
        ("", 1, "header"),
        (RECORDING_HEADER + "\n" + rows(3) + "0.06,0,0,1,0,0\n" + rows(2, 4), 5, "6 columns"),
        (RECORDING_HEADER + "\n" + rows(3) + "0.06,0,0,1,0,0,0,0\n", 5, "8 columns"),
        (RECORDING_HEADER + "\n" + rows(3) + "0.06,0,zero,1,0,0,0\n", 5, "ay is not a number: 'zero'"),
        (RECORDING_HEADER + "\n" + rows(3) + "0.06,0,,1,0,0,0\n", 5, "ay is not a number"),
        (RECORDING_HEADER + "\n" + rows(3) + "0.06,0,0,1,nan,0,0\n", 5, "gx is not a finite number"),
        (RECORDING_HEADER + "\n" + rows(3) + "0.06,0,0,1,0,0,inf\n", 5, "gz is not a finite number"),
        (RECORDING_HEADER + "\n" + rows(3) + "0.04,0,0,1,0,0,0\n", 5, "t = 0.04 does not increase (the row before has t = 0.04)"),
        (RECORDING_HEADER + "\n" + rows(3) + "0.01,0,0,1,0,0,0\n", 5, "does not increase"),
        (RECORDING_HEADER + "\n" + rows(3) + "\n" + rows(2, 4), 5, "empty line"),
        (RECORDING_HEADER + "\n" + rows(3) + "0.06;0;0;1;0;0;0\n", 5, "1 columns"),
        (RECORDING_HEADER + "\n" + rows(3) + "0.06,0,0,1,0,1_000,0\n", 5, "gy is not a number: '1_000'"),
        (RECORDING_HEADER + "\n" + rows(3) + "0.06,0,0,1,0,1*2.5,0\n", 5, "gy is not a number: '1*2.5'"),
        (RECORDING_HEADER + "\n" + rows(3) + "0.06,0,0,1,0,1.2-5,0\n", 5, "gy is not a number: '1.2-5'"),
        (RECORDING_HEADER + "\n" + rows(3) + "0.06,0,0,1,0,1.2.5,0\n", 5, "gy is not a number: '1.2.5'"),
        (RECORDING_HEADER + "\n" + rows(3) + "0.06,0,0,1,0,0,0,\n", 5, "8 columns"),
        (RECORDING_HEADER + "\n" + GOOD, 2, "at least two samples"),
        # Beyond any supported chip's range (LSM6DSO32 ±32 g, ISM330DHCX ±4000 dps, with margin).
        (RECORDING_HEADER + "\n" + rows(3) + "0.06,1e308,0,1,0,0,0\n", 5,
         "ax = 1e+308 g is beyond any supported sensor's range (±64 g)"),
        (RECORDING_HEADER + "\n" + rows(3) + "0.06,0,0,-65.0,0,0,0\n", 5, "az = -65.0 g is beyond"),
        (RECORDING_HEADER + "\n" + rows(3) + "0.06,0,0,1,0,9200,0\n", 5,
         "gy = 9200.0 dps is beyond any supported sensor's range (±9175 dps)"),
        (RECORDING_HEADER + "\n" + rows(3) + "1e308,0,0,1,0,0,0\n", 5, "t = 1e+308 s is more than a week"),
    ],
)
def test_a_bad_file_names_its_line(tmp_path, text, line, words):
    path = write_text(tmp_path, text)
    with pytest.raises(RecordingFormatError) as info:
        list(read_recording(path))
    assert info.value.line == line
    assert words in str(info.value)
    assert str(path) in str(info.value)
    assert f"line {line}" in str(info.value)


def test_the_widest_values_a_chip_can_report_are_read(tmp_path):
    # ±32 g and ±4000 dps full scale, and the int16 extremes of those scales, are measurements.
    text = RECORDING_HEADER + "\n0.0,-32.0,31.98,1,-4000,4587.5,0\n0.02,0,0,1,0,0,0\n"
    back = read_all(write_text(tmp_path, text))
    assert back.accel_g[0].tolist() == [-32.0, 31.98, 1.0] and back.gyro_dps[0, 1] == 4587.5


def test_an_overflowing_value_deep_in_a_long_file_names_its_line(tmp_path):
    text = RECORDING_HEADER + "\n" + rows(33_000) + "660.0000,0.1,0.2,1,0,0,1.5e300\n" + rows(7_000, 33_001)
    with pytest.raises(RecordingFormatError) as info:
        list(read_recording(write_text(tmp_path, text)))
    assert info.value.line == 33_002 and "gz = 1.5e+300 dps" in str(info.value)


def test_an_error_deep_in_a_long_file_names_its_line(tmp_path):
    # 40 000 rows is over 2 MB, so the bad row sits in a later parse chunk than the first.
    text = RECORDING_HEADER + "\n" + rows(33_000) + "660.0000,0.1,0.2,x,0,0,0\n" + rows(7_000, 33_001)
    with pytest.raises(RecordingFormatError) as info:
        list(read_recording(write_text(tmp_path, text)))
    assert info.value.line == 33_002
    assert "az is not a number" in str(info.value)


def test_time_going_backwards_across_a_chunk_boundary_names_its_line(tmp_path):
    text = RECORDING_HEADER + "\n" + rows(30_000) + rows(10, 0)
    with pytest.raises(RecordingFormatError) as info:
        list(read_recording(write_text(tmp_path, text)))
    assert info.value.line == 30_002


def test_rows_before_an_error_are_still_delivered(tmp_path):
    # Streaming: what was read before the bad line is yielded, so a caller can say what it got.
    text = RECORDING_HEADER + "\n" + rows(30_000) + "bad\n"
    got = 0
    with pytest.raises(RecordingFormatError):
        for block in read_recording(write_text(tmp_path, text), block_rows=1000):
            got += len(block)
    assert 0 < got <= 30_000


def test_write_refuses_time_that_does_not_increase(tmp_path):
    block = night(10)
    backwards = SampleBlock(block.t_s[::-1].copy(), block.accel_g, block.gyro_dps, 52.0)
    with pytest.raises(ValueError, match="increase"):
        write_recording(tmp_path / "rec.csv", [backwards])


def test_memory_does_not_grow_with_the_length_of_the_recording(tmp_path):
    import tracemalloc

    def peak_bytes(n_rows: int) -> int:
        path = tmp_path / f"rec{n_rows}.csv"
        write_recording(path, [night(n_rows, seed=n_rows)])
        tracemalloc.start()
        try:
            for _ in read_recording(path, block_rows=4096):
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    short, long = peak_bytes(40_000), peak_bytes(160_000)  # about 2.3 MB and 9.3 MB of CSV
    assert long < 1.25 * short
    assert long < 32_000_000  # a few chunks' worth of parsing temporaries, whatever the length

"""The wear detector (device/wear.py) on hand-made minutes: temperature and stillness in, spans out."""

from __future__ import annotations

import numpy as np
import pytest

from device.detect.events import Interval
from device.samples import SampleBlock
from device.wear import (COOLING_EPOCHS, EPOCH_S, OFF_BELOW_C, STILL_SD_G, WearEpoch, WearEpochs,
                         not_worn_spans)

STILL, MOVING = 0.0005, 0.05  # g: the chip's noise on a table; a strap being handled


def epochs(temps: list[float | None], sds: list[float]) -> list[WearEpoch]:
    return [WearEpoch(i * EPOCH_S, t, sd) for i, (t, sd) in enumerate(zip(temps, sds))]


def test_a_worn_night_has_no_span_even_when_the_leg_lies_motionless_for_hours():
    assert not_worn_spans(epochs([32.5] * 240, [STILL] * 240)) == []


def test_a_cold_worn_leg_that_moves_is_worn():
    # A cold room, the leg out of the duvet: cool, but it moves every few minutes.
    temps = [25.0] * 30
    sds = [MOVING if i % 4 == 0 else STILL for i in range(30)]
    spans = not_worn_spans(epochs(temps, sds))
    # Between movements it is cool and still: each minute alone may look off, but none reaches
    # back over a movement, so no span lasts beyond the next movement.
    assert all(s.duration_s <= 3 * EPOCH_S for s in spans)


def test_strap_off_cooling_then_back_on():
    # Worn 20 min, handled at minute 20, cooling on a table from 32 °C toward 21 °C (tau 20 min),
    # handled again at minute 60, then warming back on the skin while the leg lies still.
    temps, sds = [32.0] * 20 + [32.0], [STILL] * 20 + [MOVING]
    temps += [21.0 + 11.0 * np.exp(-k / 20.0) for k in range(1, 40)]
    sds += [STILL] * 39
    temps += [temps[-1]]
    sds += [MOVING]
    temps += [33.0 - (33.0 - temps[-1]) * np.exp(-k / 20.0) for k in range(1, 30)]
    sds += [STILL] * 29
    spans = not_worn_spans(epochs(temps, sds))
    # Off from the first motionless minute after the handling to the handling that put it back.
    assert spans == [Interval(21 * EPOCH_S, 60 * EPOCH_S)]


def test_a_sensor_on_the_table_all_evening_is_off_from_the_start():
    temps = [21.5] * 90 + [21.5] + [33.0 - 11.5 * np.exp(-k / 20.0) for k in range(1, 60)]
    sds = [STILL] * 90 + [MOVING] + [STILL] * 59
    assert not_worn_spans(epochs(temps, sds)) == [Interval(0.0, 90 * EPOCH_S)]


def test_cooling_alone_starts_a_span_after_five_minutes_and_reaches_back():
    # Taken off in a warm room: it never falls under 26 °C, but it cools while motionless.
    temps = [32.0] * 10 + [31.0 - 0.5 * k for k in range(COOLING_EPOCHS + 3)]
    sds = [STILL] * 9 + [MOVING] + [STILL] * (COOLING_EPOCHS + 3)
    assert min(temps) > OFF_BELOW_C
    assert not_worn_spans(epochs(temps, sds)) == [Interval(10 * EPOCH_S, len(temps) * EPOCH_S)]


def test_short_cooling_is_not_enough():
    temps = [32.0] * 10 + [31.0 - 0.5 * k for k in range(COOLING_EPOCHS - 1)]
    temps += [temps[-1]] * 10  # then steady: a motionless leg whose skin cooled a little
    sds = [STILL] * len(temps)
    assert not_worn_spans(epochs(temps, sds)) == []


def test_minutes_without_a_temperature_never_start_a_span():
    assert not_worn_spans(epochs([None] * 60, [STILL] * 60)) == []


def test_a_gap_in_recording_ends_a_span():
    es = epochs([21.0] * 10, [STILL] * 10)
    es = es[:5] + [WearEpoch(e.start_s + 600.0, e.temp_c, e.accel_sd_g) for e in es[5:]]
    assert not_worn_spans(es) == [Interval(0.0, 5 * EPOCH_S), Interval(900.0, 1200.0)]


def test_warming_back_to_skin_ends_a_span_without_a_movement():
    temps = [21.0] * 10 + [31.0] * 5
    assert not_worn_spans(epochs(temps, [STILL] * 15)) == [Interval(0.0, 10 * EPOCH_S)]


def test_epochs_from_blocks_are_aligned_and_do_not_depend_on_block_size():
    odr = 52.0
    t = np.arange(int(odr * 150)) / odr  # 2.5 min
    rng = np.random.default_rng(1)
    accel = np.tile([0.0, 0.0, 1.0], (len(t), 1)) + rng.standard_normal((len(t), 3)) * 0.001
    accel[int(odr * 70):int(odr * 75)] += 0.2 * np.sin(t[int(odr * 70):int(odr * 75)])[:, None]

    def run(block_n: int) -> list[WearEpoch]:
        acc = WearEpochs()
        out = []
        for i in range(0, len(t), block_n):
            sl = slice(i, i + block_n)
            out += acc.feed(SampleBlock(t[sl], accel[sl], np.zeros((len(t[sl]), 3)), odr, temp_c=30.0 + i / len(t)))
        return out + acc.finish()

    a, b = run(52), run(4096)
    assert [e.start_s for e in a] == [e.start_s for e in b] == [0.0, 60.0, 120.0]
    assert [e.accel_sd_g for e in a] == pytest.approx([e.accel_sd_g for e in b])
    assert a[0].accel_sd_g < STILL_SD_G < a[1].accel_sd_g  # the second minute holds the movement
    assert a[0].temp_c is not None and 30.0 <= a[0].temp_c <= 31.0


def test_the_simulated_strap_off_night_has_its_truth_and_the_detector_finds_it():
    from device.sim import simulate_night

    night = simulate_night("strap_off", 2, 3.0)
    (span,) = night.truth["not_worn"]
    assert night.truth["lights_off_s"] < span["start_s"] < span["end_s"] < night.truth["lights_on_s"]
    assert 40 * 60 <= span["end_s"] - span["start_s"] <= 90 * 60
    assert not any(span["start_s"] <= m["onset_s"] < span["end_s"] for m in night.truth["lms"])
    worn_in_bed = sum(s["end_s"] - s["start_s"] for s in night.truth["in_bed"])
    assert night.truth["reference"]["time_in_bed_s"] == pytest.approx(worn_in_bed, abs=0.01)
    assert not any(s["start_s"] < span["end_s"] and span["start_s"] < s["end_s"] for s in night.truth["in_bed"])
    acc, got = WearEpochs(), []
    temps = []
    for block in night.blocks(5.0):
        got += acc.feed(block)
        temps.append((block.t_s[-1], block.temp_c))
    spans = not_worn_spans(got + acc.finish())
    assert len(spans) == 1  # within a minute of the truth at each end
    assert abs(spans[0].start_s - span["start_s"]) <= EPOCH_S and abs(spans[0].end_s - span["end_s"]) <= EPOCH_S
    worn = [c for t, c in temps if t < span["start_s"] - 60]
    off_late = [c for t, c in temps if span["end_s"] - 600 < t < span["end_s"] - 10]
    assert 30.0 <= min(worn) and max(worn) <= 35.0 and max(off_late) < OFF_BELOW_C


def test_a_recording_keeps_the_temperature_column(tmp_path):
    from device.recording import RECORDING_HEADER_TEMP, read_recording, write_recording

    t = np.arange(104) / 52.0
    blocks = [SampleBlock(t[:52], np.zeros((52, 3)), np.zeros((52, 3)), 52.0, temp_c=31.25),
              SampleBlock(t[52:], np.zeros((52, 3)), np.zeros((52, 3)), 52.0)]  # no reading: held
    write_recording(tmp_path / "r.csv", blocks)
    assert (tmp_path / "r.csv").read_text().splitlines()[0] == RECORDING_HEADER_TEMP
    back = list(read_recording(tmp_path / "r.csv"))
    assert [b.temp_c for b in back] == [31.25]


def test_sparse_readings_give_the_same_span():
    # A temperature only every third minute (readings missed, or a recording read in long blocks):
    # the rate is taken over the minutes between readings, and the span is found as before.
    temps = [32.0] * 10 + [31.0 - 0.5 * k for k in range(12)]
    sds = [STILL] * 9 + [MOVING] + [STILL] * 12
    sparse = [t if i % 3 == 0 else None for i, t in enumerate(temps)]
    dense_spans = not_worn_spans(epochs(temps, sds))
    assert dense_spans == [Interval(10 * EPOCH_S, len(temps) * EPOCH_S)]
    (span,) = not_worn_spans(epochs(sparse, sds))
    assert span.end_s == dense_spans[0].end_s and span.start_s - dense_spans[0].start_s <= 3 * EPOCH_S


def test_analyze_reads_wear_from_a_recordings_temperature_column(tmp_path):
    from device.analyze import analyze_recordings
    from device.recording import read_recording, write_recording
    from device.sim import simulate_night, write_night

    night = simulate_night("strap_off", 7, 1.5)
    write_night(night, tmp_path / "rec.csv", tmp_path / "truth.json")
    (off,) = night.truth["not_worn"]
    summary = analyze_recordings([tmp_path / "rec.csv"]).summary
    (span,) = summary["wear"]["not_worn"]
    assert summary["wear"]["assessed"] is True
    # The temperature arrives as a mean over each long block: the edges are minutes, not seconds.
    assert abs(span["start_s"] - off["start_s"]) <= 600.0 and abs(span["end_s"] - off["end_s"]) <= 120.0
    assert not any(b["start_s"] < span["end_s"] and span["start_s"] < b["end_s"] for b in summary["in_bed"])
    # The same samples without the column: wear cannot be judged, and nothing is taken out.
    plain = tmp_path / "plain.csv"
    write_recording(plain, (SampleBlock(b.t_s, b.accel_g, b.gyro_dps, b.odr_hz)
                            for b in read_recording(tmp_path / "rec.csv")))
    blind = analyze_recordings([plain]).summary
    assert blind["wear"] == {"assessed": False, "not_worn": []}
    assert blind["time_in_bed_s"] > summary["time_in_bed_s"] + 0.8 * (span["end_s"] - span["start_s"])

"""`rlsmon-device analyze` end to end, on simulated nights: JSON, report, two legs, gaps, errors, plot."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from device.cli import cli
from device.recording import read_recording, write_recording
from device.samples import SampleBlock
from server.model import NightCore


@pytest.fixture(scope="module")
def severe(tmp_path_factory):
    """A 1-hour severe PLM night at 52 Hz, with its truth."""
    from device.sim import simulate_night, write_night

    folder = tmp_path_factory.mktemp("severe")
    night = simulate_night("severe", 3, 1.0, 52.0)
    write_night(night, folder / "night.csv", folder / "truth.json")
    return folder / "night.csv", night.truth


def analyze(*args: str):
    result = CliRunner().invoke(cli, ["analyze", *map(str, args)])
    return result


def test_json_is_the_summary_contract_and_agrees_with_the_truth(severe):
    path, truth = severe
    result = analyze(path, "--json")
    assert result.exit_code == 0, result.output
    NightCore.model_validate_json(result.output)
    summary = json.loads(result.output)
    reference = truth["reference"]
    assert summary["rules"] == "WASM2016"
    assert summary["lm_count"] == pytest.approx(reference["lm_count"], rel=0.1)
    assert summary["plm_index"] == pytest.approx(reference["plm_index"], abs=10.0)
    assert summary["severity"] == "severe" and summary["clinically_significant"] is True
    assert summary["coverage"]["gaps"] == []
    assert summary["duration_s"] == pytest.approx(3600.0, abs=0.1)


def test_aasm_rules_are_used_when_asked(severe):
    path, _ = severe
    summary = json.loads(analyze(path, "--json", "--rules", "AASM2012").output)
    assert summary["rules"] == "AASM2012"
    # AASM's 5–90 s window admits every PLM that WASM's 10–90 s does, and more.
    wasm = json.loads(analyze(path, "--json").output)
    assert summary["plm_count"] >= wasm["plm_count"]


def test_two_legs_that_move_together_make_bilateral_lms(severe):
    path, _ = severe
    one = json.loads(analyze(path, "--json").output)
    two = json.loads(analyze(path, path, "--json").output)
    assert two["lm_count"] == one["lm_count"]
    assert all(e["bilateral"] for e in two["lm_events"])
    assert not any(e["bilateral"] for e in one["lm_events"])
    assert two["plm_count"] == one["plm_count"]


def test_the_human_report_gives_the_figures_and_caveats(severe):
    path, _ = severe
    result = analyze(path)
    assert result.exit_code == 0, result.output
    summary = json.loads(analyze(path, "--json").output)
    text = result.output
    assert f"PLM index       {summary['plm_index']:.1f}/h: severe, clinically significant (threshold" in text
    assert f"Leg movements   {summary['lm_count']} " in text
    assert "Time in bed" in text and "coverage 100.0 %" in text
    assert "Respiratory-related leg movements are not excluded" in text


def test_a_gap_in_the_recording_is_reported_and_ends_series(severe, tmp_path):
    path, _ = severe
    blocks = list(read_recording(path, block_rows=1 << 20))
    t = np.concatenate([b.t_s for b in blocks])
    keep = (t < 1000.0) | (t >= 1100.0)
    cut = tmp_path / "cut.csv"
    b = blocks[0]
    write_recording(cut, [SampleBlock(t[keep], np.concatenate([x.accel_g for x in blocks])[keep],
                                      np.concatenate([x.gyro_dps for x in blocks])[keep], b.odr_hz)])
    summary = json.loads(analyze(cut, "--json").output)
    gaps = summary["coverage"]["gaps"]
    assert len(gaps) == 1
    assert gaps[0]["start_s"] == pytest.approx(1000.0, abs=0.1) and gaps[0]["end_s"] == pytest.approx(1100.0, abs=0.1)
    assert summary["coverage"]["recorded_s"] == pytest.approx(3500.0, abs=0.5)
    assert not any(1000.0 <= e["onset_s"] < 1100.0 for e in summary["lm_events"])
    after = [e for e in summary["lm_events"] if e["onset_s"] >= 1100.0 and e["clm"]]
    assert after[0]["imi_s"] is None  # no IMI across a gap


def still_leg(path, start_s: float, seconds: float, odr_hz: float = 52.0):
    """A shin lying still (gravity along z) from `start_s` for `seconds`."""
    t = start_s + np.arange(int(seconds * odr_hz)) / odr_hz
    accel = np.tile([0.0, 0.0, 1.0], (len(t), 1))
    write_recording(path, [SampleBlock(t, accel, np.zeros((len(t), 3)), odr_hz)])
    return path


def test_each_legs_coverage_counts(tmp_path):
    # Issue 11: an 18-min left leg and a 38-s right leg were accepted with 100 % coverage. Without
    # the right leg no bilateral LM can be scored, so its missing 17 min 22 s is a gap of the night.
    left = still_leg(tmp_path / "left.csv", 0.0, 18 * 60)
    right = still_leg(tmp_path / "right.csv", 0.0, 38)
    summary = json.loads(analyze(left, right, "--json").output)
    assert summary["duration_s"] == pytest.approx(1080.0, abs=0.05)
    assert summary["coverage"]["gaps"] == [{"start_s": pytest.approx(38.0, abs=0.05), "end_s": summary["duration_s"]}]
    assert summary["coverage"]["recorded_s"] == pytest.approx(38.0, abs=0.05)
    report = analyze(left, right).output
    assert "coverage 3.5 % (1 gap, 0 h 17 min)" in report
    # The same leg twice covers the night.
    assert json.loads(analyze(left, left, "--json").output)["coverage"]["gaps"] == []


def test_legs_that_do_not_overlap_in_time_are_an_error(tmp_path):
    left = still_leg(tmp_path / "left.csv", 0.0, 18 * 60)
    right = still_leg(tmp_path / "right.csv", 2000.0, 38)
    result = analyze(left, right)
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {left} (t = 0–1080 s) and {right} (t = 2000–2038 s) do not overlap in time: "
        "they are not the two legs of one night"
    )
    empty = tmp_path / "empty.csv"
    empty.write_text("t,ax,ay,az,gx,gy,gz\n")
    result = analyze(left, empty)
    assert result.exit_code == 1 and f"{empty} (no samples) do not overlap in time" in result.output


def test_no_data_is_insufficient_not_normal(tmp_path):
    # Issue 11: a header-only CSV said "PLM index 0.0/h: normal".
    empty = tmp_path / "empty.csv"
    empty.write_text("t,ax,ay,az,gx,gy,gz\n")
    summary = json.loads(analyze(empty, "--json").output)
    NightCore.model_validate(summary)
    assert (summary["severity"], summary["clinically_significant"]) == ("insufficient_data", False)
    report = analyze(empty).output
    assert "PLM index       insufficient data: 0 min in bed, an index needs 48 min (no severity, no flag)" in report
    assert "normal" not in report and "0.0/h" not in report


def test_a_bad_file_fails_with_a_message_naming_the_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("t,ax,ay,az,gx,gy,gz\n0.0,0,0,1,0,0,0\n0.02,0,0,1,0,0,0\n0.04,0,0,1,0,0,0\n0.06,0,0,1,0,zero,0\n")
    result = analyze(bad)
    assert result.exit_code == 1
    assert f"{bad}, line 5: gy is not a number: 'zero'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_overflowing_value_is_an_error_naming_the_line_without_numpy_warnings(tmp_path):
    bad = tmp_path / "bad.csv"
    rows = "".join(f"{k / 52:.4f},0,0,1,0,0,0\n" for k in range(200))
    bad.write_text("t,ax,ay,az,gx,gy,gz\n" + rows + "3.9000,1e308,0,1,0,0,0\n")
    done = run_cli(["analyze", bad], subprocess.PIPE)
    assert done.returncode == 1
    assert done.stdout == b""
    assert done.stderr.decode().strip() == (
        f"Error: {bad}, line 202: ax = 1e+308 g is beyond any supported sensor's range (±64 g)"
    )


def test_a_missing_file_is_a_usage_error(tmp_path):
    result = analyze(tmp_path / "nope.csv")
    assert result.exit_code == 2
    assert "does not exist" in result.output


def run_cli(args, stderr):
    code = "from device.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, stderr=stderr,
                          timeout=120, check=False)


def test_no_progress_bar_when_stderr_is_piped(severe):
    path, _ = severe
    done = run_cli(["analyze", path, "--json"], subprocess.PIPE)
    assert done.returncode == 0
    assert done.stderr == b""
    json.loads(done.stdout)  # stdout is pure JSON


def test_a_progress_bar_on_a_terminal(severe):
    path, _ = severe
    leader, follower = pty.openpty()
    try:
        done = run_cli(["analyze", path, "--json"], follower)
        os.close(follower)
        follower = -1
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert done.returncode == 0
    assert b"Analysing" in seen
    json.loads(done.stdout)  # the bar never reaches stdout


def test_plot_writes_a_png(severe, tmp_path):
    path, _ = severe
    png = tmp_path / "night.png"
    result = analyze(path, "--plot", png)
    assert result.exit_code == 0, result.output
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000


def test_start_names_the_clock_hours(severe):
    path, _ = severe
    summary = json.loads(analyze(path, "--json", "--start", "2026-03-02T22:40:00+01:00").output)
    assert summary["recording_start"] == "2026-03-02T22:40:00+01:00"
    assert [h["clock_hour"] for h in summary["hourly"]] == [22, 23]
    assert summary["hourly"][0]["end_s"] == 1200.0


@pytest.mark.parametrize("start", ["2026-03-02T22:40:00", "yesterday"])
def test_a_start_without_offset_or_unreadable_is_refused(severe, start):
    path, _ = severe
    result = analyze(path, "--start", start)
    assert result.exit_code == 2
    assert "--start" in result.output


def test_the_summary_does_not_depend_on_the_block_size(severe, monkeypatch):
    import device.analyze

    path, _ = severe
    summaries = []
    for rows in (997, 16384, 1 << 20):
        monkeypatch.setattr(device.analyze, "BLOCK_ROWS", rows)
        summaries.append(device.analyze.analyze_recordings([path]).summary)
    assert summaries[0] == summaries[1] == summaries[2]

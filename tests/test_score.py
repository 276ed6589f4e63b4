"""`rlsmon-device score`: LMs scored elsewhere (a PSG's EDF+ annotations, or a CSV) scored by WASM 2016
or AASM 2012, with hand-worked nights; and the pure-Python EDF+ annotation reader.

The test EDF+ files are written by pyedflib (EDFlib, the library behind EDFbrowser), so the reader is
checked against files a PSG tool writes, not against our own writer.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from device.cli import cli
from device.edfplus import read_edf_annotations
from server.model import NightCore

# A night of one hour in bed (lights off 60 s, on 3660 s) in a 3700-s recording. Hand-worked:
# - 30 s, before lights off: not scored.
# - CLMs at 100, 120, 140, 160, 180 on the left, written in five label forms. A right LM 120.3-122.3
#   overlaps 120: one bilateral LM 120-122.3. Right pieces 140.5-141.0 and 141.2-141.6 are 0.2 s
#   apart: one right LM, which overlaps 140: bilateral 140-142 (2 parts, a CLM).
# - A 0.3-s right blip at 170: no LM (< 0.5 s).
# - A 12-s LM at 200: scored, no CLM; under WASM 2016 it ends the series (100-180: 5 PLMs) and the
#   intervals next to it are missing. 230, 250, 270: three CLMs, no series.
# - Under AASM 2012 the 12-s movement breaks nothing: 100-270 is one series of 8 PLMs.
ANNOTATIONS = [
    (30.0, 2.0, "LM left"),
    (60.0, -1, "Lights off"),
    (100.0, 2.0, "LM left"),
    (120.0, 2.0, "Limb movement - left"),
    (120.3, 2.0, "LM/right"),
    (140.0, 2.0, "LM/L"),
    (140.5, 0.5, "Limb Movement (Right)"),
    (141.2, 0.4, "LM right"),
    (160.0, 2.0, "Limb Movement (Left)"),
    (170.0, 0.3, "LM R"),
    (180.0, 2.0, "Left leg movement"),
    (200.0, 12.0, "LM left"),
    (230.0, 2.0, "LM LAT"),
    (250.0, 2.0, "lm-left"),
    (270.0, 2.0, "LM left"),
    (300.0, 30.0, "Sleep stage W"),
    (330.0, 30.0, "Sleep stage W"),
    (400.0, 3.0, "Arousal"),
    (3660.0, -1, "Lights on"),
]
ONSETS = [100.0, 120.0, 140.0, 160.0, 180.0, 200.0, 230.0, 250.0, 270.0]


def write_edf(path, annotations=ANNOTATIONS, seconds: int = 3700):
    """An EDF+ file with one 1-Hz leg channel and `annotations`, written by pyedflib."""
    import pyedflib

    writer = pyedflib.EdfWriter(str(path), 1, file_type=pyedflib.FILETYPE_EDFPLUS)
    writer.setSignalHeaders([{"label": "Leg L", "dimension": "uV", "sample_frequency": 1, "physical_max": 100.0,
                              "physical_min": -100.0, "digital_max": 32767, "digital_min": -32768,
                              "transducer": "", "prefilter": ""}])
    writer.writeSamples([np.zeros(seconds)])
    for onset_s, duration_s, text in annotations:
        writer.writeAnnotation(onset_s, duration_s, text)
    writer.close()
    return path


def score(*args):
    return CliRunner().invoke(cli, ["score", *map(str, args)])


@pytest.fixture(scope="module")
def edf(tmp_path_factory):
    return write_edf(tmp_path_factory.mktemp("psg") / "psg.edf")


# --- the EDF+ reader ------------------------------------------------------------------------------------

def test_the_reader_gives_what_pyedflib_reads(edf):
    import pyedflib

    ours = read_edf_annotations(edf)
    with pyedflib.EdfReader(str(edf)) as f:
        onsets, durations, texts = f.readAnnotations()
    assert [a.text for a in ours.annotations] == list(texts)
    assert [a.onset_s for a in ours.annotations] == pytest.approx(list(onsets))
    assert [-1.0 if a.duration_s is None else a.duration_s for a in ours.annotations] == pytest.approx(list(durations))
    assert ours.duration_s == 3700.0 and ours.gaps == []


def edf_plus_d(records: list[tuple[float, list[str]]], record_s: float = 10.0) -> bytes:
    """An EDF+D file with only an annotation signal, by the EDF+ spec: each record is
    (start_s, [extra TALs])."""
    size = 120  # bytes of the annotation signal per record (60 two-byte samples)
    body = b""
    for start_s, tals in records:
        raw = f"+{start_s:g}\x14\x14\x00".encode() + b"".join(t.encode() for t in tals)
        body += raw.ljust(size, b"\x00")
    fields = [("0", 8), ("X X X X", 80), ("Startdate X X X X", 80), ("01.01.26", 8), ("22.00.00", 8),
              ("512", 8), ("EDF+D", 44), (str(len(records)), 8), (f"{record_s:g}", 8), ("1", 4),
              ("EDF Annotations", 16), ("", 80), ("", 8), ("-1", 8), ("1", 8), ("-32768", 8), ("32767", 8),
              ("", 80), (str(size // 2), 8), ("", 32)]
    return b"".join(text.ljust(width).encode() for text, width in fields) + body


def test_the_time_between_edf_plus_d_records_is_a_gap(tmp_path):
    path = tmp_path / "d.edf"
    path.write_bytes(edf_plus_d([(0.0, ["+2.5\x151.5\x14LM left\x14\x00"]), (10.0, []), (30.0, ["+31\x152\x14LM\x14\x00"])]))
    got = read_edf_annotations(path)
    assert got.gaps == [(20.0, 30.0)]
    assert got.duration_s == 40.0
    assert [(a.onset_s, a.duration_s, a.text) for a in got.annotations] == [(2.5, 1.5, "LM left"), (31.0, 2.0, "LM")]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"0       " + b" " * 100, "not an EDF file"),
        (edf_plus_d([(0.0, [])]).replace(b"EDF+D", b"     "), "without EDF+ annotations"),
        (edf_plus_d([(0.0, [])]).replace(b"EDF Annotations", b"EEG Fpz-Cz     "), "no 'EDF Annotations' signal"),
        (edf_plus_d([(0.0, [])])[:-10], "cut short"),
        (edf_plus_d([(0.0, ["2.5\x14LM\x14\x00"])]), "data record 1: TAL time '2.5' is not"),
        (edf_plus_d([(0.0, ["+2.5\x14LM\x00"])]), "does not end its texts with 0x14"),
        (edf_plus_d([(0.0, []), (10.0, ["+12\x15x\x14LM\x14\x00"])]), "data record 2: TAL time"),
    ],
)
def test_a_malformed_edf_is_an_error_that_says_what(tmp_path, content, words):
    path = tmp_path / "bad.edf"
    path.write_bytes(content)
    result = score(path)
    assert result.exit_code == 1
    assert words in result.output and str(path) in result.output


# --- scoring a PSG's annotations ---------------------------------------------------------------------------

def test_a_psg_night_hand_worked_wasm(edf):
    result = score(edf, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    NightCore.model_validate(summary)
    assert [e["onset_s"] for e in summary["lm_events"]] == ONSETS
    assert [e["bilateral"] for e in summary["lm_events"]] == [False, True, True] + [False] * 6
    assert summary["lm_events"][1]["offset_s"] == 122.3 and summary["lm_events"][2]["offset_s"] == 142.0
    assert [e["series"] for e in summary["lm_events"]] == [0] * 5 + [None] * 4
    assert [e["imi_s"] for e in summary["lm_events"]] == [None, 20.0, 20.0, 20.0, 20.0, None, None, 20.0, 20.0]
    assert (summary["lm_count"], summary["clm_count"], summary["plm_count"], summary["plm_series_count"]) == (9, 8, 5, 1)
    assert summary["in_bed"] == [{"start_s": 60.0, "end_s": 3660.0}] and summary["time_in_bed_s"] == 3600.0
    assert (summary["plm_index"], summary["lm_index"], summary["severity"]) == (5.0, 9.0, "mild")
    assert summary["clinically_significant"] is False
    caveats = " ".join(summary["caveats"])
    assert "1 movements shorter than 0.5 s" in caveats and "1 leg movements while out of bed" in caveats
    # Labels the table does not know are listed on stderr, most frequent first, never guessed.
    assert result.stderr.strip() == ("Not scored, labels not in the LM table (add one with --label 'TEXT=left'): "
                                     "'Sleep stage W' x2, 'Arousal' x1")


def test_a_psg_night_hand_worked_aasm(edf):
    summary = json.loads(score(edf, "--json", "--rules", "AASM2012").stdout)
    assert [e["onset_s"] for e in summary["lm_events"]] == ONSETS
    assert [e["series"] for e in summary["lm_events"]] == [0] * 5 + [None] + [0] * 3
    assert (summary["plm_count"], summary["plm_series_count"], summary["plm_index"]) == (8, 1, 8.0)
    assert summary["lm_events"][6]["imi_s"] == 50.0  # from 180: a movement > 10 s is no LM under AASM


def test_the_report_and_the_plot_are_those_of_analyze(edf, tmp_path):
    result = score(edf, "--plot", tmp_path / "night.png")
    assert result.exit_code == 0, result.output
    assert f"rlsmon night analysis of {edf} (WASM2016 rules" in result.stdout
    assert "PLM index       5.0/h: mild, not clinically significant" in result.stdout
    assert f"Plot            {tmp_path / 'night.png'}" in result.stdout
    assert (tmp_path / "night.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_options_set_the_lights_and_the_gaps(edf):
    # Lights off at 150 instead (lights on stays the file's 3660): 100-140 are out of bed; 160, 180
    # and 230-270 lack a fourth CLM between breaks. A gap 240-245 ends the run too; in bed is
    # 3510 - 5 s.
    summary = json.loads(score(edf, "--json", "--lights-off", "150", "--gap", "240-245").stdout)
    assert [e["onset_s"] for e in summary["lm_events"]] == [160.0, 180.0, 200.0, 230.0, 250.0, 270.0]
    assert summary["lm_events"][4]["imi_s"] is None  # after the gap
    assert summary["plm_count"] == 0 and summary["time_in_bed_s"] == 3505.0
    assert summary["coverage"]["gaps"] == [{"start_s": 240.0, "end_s": 245.0}]


def test_unknown_labels_can_be_added_to_the_table(tmp_path):
    path = write_edf(tmp_path / "fr.edf", [(100.0 + 20 * k, 2.0, "Jambe gauche") for k in range(4)], seconds=3600)
    plain = score(path, "--json")
    assert json.loads(plain.stdout)["lm_count"] == 0 and "'Jambe gauche' x4" in plain.stderr
    added = score(path, "--json", "--label", "Jambe gauche=left")
    assert json.loads(added.stdout)["plm_count"] == 4 and added.stderr == ""


def test_unsided_lms_are_one_leg_but_cannot_mix_with_sided_ones(tmp_path):
    path = write_edf(tmp_path / "one.edf", [(100.0 + 20 * k, 2.0, "LM") for k in range(4)], seconds=3600)
    summary = json.loads(score(path, "--json").stdout)
    assert summary["plm_count"] == 4 and not any(e["bilateral"] for e in summary["lm_events"])
    mixed = write_edf(tmp_path / "mixed.edf", [(100.0, 2.0, "LM"), (120.0, 2.0, "LM left")], seconds=3600)
    result = score(mixed)
    assert result.exit_code == 1 and "1 leg movements without a side among 1 with one" in result.output


def test_an_lm_annotation_without_a_duration_is_an_error(tmp_path):
    path = write_edf(tmp_path / "nodur.edf", [(100.0, -1, "LM left")], seconds=600)
    result = score(path)
    assert result.exit_code == 1
    assert "the annotation 'LM left' at 100 s has no duration" in result.output


# --- a CSV of LMs -------------------------------------------------------------------------------------------

def csv_of(annotations) -> str:
    side = {"LM/right": "right", "Limb Movement (Right)": "right", "LM right": "right", "LM R": "right"}
    rows = [f"{t},{t + d},{side.get(text, 'left')}" for t, d, text in annotations
            if d > 0 and "Sleep" not in text and text != "Arousal"]
    return "onset_s,offset_s,leg\n" + "\n".join(rows) + "\n"


def test_a_csv_scores_as_the_same_psg_does(edf, tmp_path):
    path = tmp_path / "lms.csv"
    path.write_text(csv_of(ANNOTATIONS))
    from_csv = score(path, "--json", "--lights-off", "60", "--lights-on", "3660", "--duration", "3700")
    assert from_csv.exit_code == 0, from_csv.output
    assert json.loads(from_csv.stdout) == json.loads(score(edf, "--json").stdout)


# Luna's harmonised NSRR classes and NSRR's own PLM labels, with rlsmon's bilateral one. Hand-worked:
# left 100 (an LM and its PLM over the same span: one LM), right 130, bilateral 160 (one movement of
# each leg, joined again), left 190 and right 220: five CLMs 30 s apart, one series of 5 PLMs.
SIDED = [(100.0, 2.0, "LM:left"), (100.0, 2.0, "PLM:left"), (130.0, 2.0, "PLM (Right)"),
         (160.0, 3.0, "LM:bilateral"), (190.0, 2.0, "Periodic leg movement - left"), (220.0, 2.0, "PLM:right")]


def test_luna_and_nsrr_plm_labels_and_bilateral_lms_are_read_with_their_legs(tmp_path):
    path = write_edf(tmp_path / "luna.edf", SIDED, seconds=3600)
    result = score(path, "--json")
    assert result.exit_code == 0 and result.stderr == "", result.output
    summary = json.loads(result.stdout)
    assert [(e["onset_s"], e["leg"], e["bilateral"]) for e in summary["lm_events"]] == [
        (100.0, "left", False), (130.0, "right", False), (160.0, "both", True), (190.0, "left", False),
        (220.0, "right", False)]
    assert summary["plm_count"] == 5 and summary["plm_series_count"] == 1
    csv = tmp_path / "lms.csv"
    csv.write_text("onset_s,offset_s,leg\n100,102,left\n130,132,r\n160,163,bilateral\n190,192,l\n220,222,right\n")
    assert json.loads(score(csv, "--json", "--duration", "3600").stdout) == summary


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("onset,offset,leg\n", 1, "the header must be 'onset_s,offset_s,leg'"),
        ("", 1, "the header must be"),
        ("onset_s,offset_s,leg\n1,2,left\n3,x,left\n", 3, "offset_s is not a number: 'x'"),
        ("onset_s,offset_s,leg\n1,2,left\n5,4,left\n", 3, "offset_s 4 is before onset_s 5"),
        ("onset_s,offset_s,leg\n1,2,middle\n", 2, "leg is 'middle'; it must be left or right (l, r), or bilateral"),
        ("onset_s,offset_s,leg\n1,2\n", 2, "2 columns where 3 are expected"),
        ("onset_s,offset_s,leg\n1,2,left\n\n1e308,1e308,left\n", 4, "onset_s = 1e308 is not a time from 0 to a week"),
        ("onset_s,offset_s,leg\nnan,2,left\n", 2, "onset_s = nan is not a time"),
        ("onset_s,offset_s,leg\n-1,2,left\n", 2, "onset_s = -1 is not a time"),
    ],
)
def test_a_bad_csv_names_its_line(tmp_path, text, line, words):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    result = score(path)
    assert result.exit_code == 1
    assert f"{path}, line {line}: {words}" in result.output


@pytest.mark.parametrize(("value", "option"), [("100", "--gap"), ("200-100", "--gap"), ("LM=middle", "--label")])
def test_bad_options_are_usage_errors(edf, value, option):
    result = score(edf, option, value)
    assert result.exit_code == 2 and value in result.output

"""Night quality: every rule of server/quality.py on hand-worked nights."""

from __future__ import annotations

from server import quality
from server.quality import EXCLUDED, ELIGIBLE, PROVISIONAL, NightFacts, assess

H = 3600.0


def night(**change) -> NightFacts:
    """An 8 h recording, 7 h 45 min in bed with no gap, clock synced: eligible."""
    base = dict(time_in_bed_s=7.75 * H, in_bed_span_s=7.75 * H, duration_s=8 * H,
                recorded_s=8 * H, clock_synced=True)
    return NightFacts(**{**base, **change})


def test_a_full_clean_night_is_eligible():
    assert assess(night()) == quality.Quality(ELIGIBLE, ())


def test_time_in_bed_under_the_index_floor_is_excluded():
    # 47 min in bed, under the summary's 48 min floor.
    q = assess(night(time_in_bed_s=47 * 60.0, in_bed_span_s=47 * 60.0))
    assert q.label == EXCLUDED
    assert q.reasons == ("only 0 h 47 min in bed, under the 0 h 48 min an index needs",)


def test_the_floor_is_the_summarys_own_when_it_gives_one():
    # 1 h in bed is over 48 min, but under a floor of 2 h set by the device: excluded.
    assert assess(night(time_in_bed_s=H, in_bed_span_s=H, min_time_in_bed_s=2 * H)).label == EXCLUDED


def test_time_in_bed_under_4_h_is_provisional_and_4_h_is_enough():
    q = assess(night(time_in_bed_s=3.5 * H, in_bed_span_s=3.5 * H))
    assert q == quality.Quality(PROVISIONAL, ("only 3 h 30 min in bed, under 4 h",))
    assert assess(night(time_in_bed_s=4 * H, in_bed_span_s=4 * H)).label == ELIGIBLE


def test_coverage_under_90_percent_is_provisional():
    # 1 h missing of 8 h, all of it outside the time in bed: 12.5% missing.
    q = assess(night(recorded_s=7 * H))
    assert q == quality.Quality(PROVISIONAL, ("12% of the recording missing (gaps)",))
    # 48 min missing of 8 h is exactly 90%: still eligible.
    assert assess(night(recorded_s=8 * H - 48 * 60.0)).label == ELIGIBLE


def test_gaps_in_bed_over_10_percent_are_provisional_over_50_excluded():
    # In bed 8 h span, 1 h of it lost (12.5%); the recording is 9 h with 8 h recorded (89%).
    q = assess(night(duration_s=9 * H, recorded_s=8 * H, in_bed_span_s=8 * H, time_in_bed_s=7 * H))
    assert q.label == PROVISIONAL
    assert "sensor faults: 12% of the time in bed missing" in q.reasons
    assert "11% of the recording missing (gaps)" in q.reasons
    # 48 min of 8 h in bed lost is exactly 10%: not a fault.
    assert assess(night(in_bed_span_s=8 * H, time_in_bed_s=8 * H - 48 * 60.0)).label == ELIGIBLE
    # 5 h of an 8 h span lost (62.5%): excluded, though 3 h remain (provisional by time alone).
    q = assess(night(in_bed_span_s=8 * H, time_in_bed_s=3 * H, duration_s=9 * H, recorded_s=9 * H))
    assert q.label == EXCLUDED
    assert q.reasons == ("only 3 h 00 min in bed, under 4 h",
                         "sensor faults: 62% of the time in bed missing")


def test_an_unsynchronised_clock_is_provisional_and_unknown_is_not_judged():
    q = assess(night(clock_synced=False))
    assert q == quality.Quality(PROVISIONAL,
                                ("clock not synchronised: date and clock hours may be wrong",))
    assert assess(night(clock_synced=None)).label == ELIGIBLE


def test_wear_is_a_hook_that_says_nothing_yet():
    assert quality.wear in quality.RULES
    assert quality.wear(night()) is None


def test_the_worst_label_wins_and_every_reason_is_kept():
    q = assess(night(time_in_bed_s=40 * 60.0, in_bed_span_s=40 * 60.0, clock_synced=False))
    assert q.label == EXCLUDED and len(q.reasons) == 2


def test_of_summary_reads_the_summary_fields():
    summary = {"time_in_bed_s": 3 * H, "duration_s": 8 * H, "in_bed": [
        {"start_s": 0.0, "end_s": 2 * H}, {"start_s": 3 * H, "end_s": 4.5 * H}],
        "coverage": {"recorded_s": 7.5 * H, "gaps": [{"start_s": H, "end_s": 1.5 * H}]},
        "clock_synced": True}
    # In bed 3.5 h span, 0.5 h lost: 14% > 10%; 3 h < 4 h; coverage 93.75%.
    q = quality.of_summary(summary)
    assert q.label == PROVISIONAL
    assert q.reasons == ("only 3 h 00 min in bed, under 4 h",
                         "sensor faults: 14% of the time in bed missing")


def test_not_worn_over_10_percent_of_the_night_in_bed_is_provisional_over_50_excluded():
    in_bed = [{"start_s": 0.0, "end_s": 3 * H}, {"start_s": 4 * H, "end_s": 8 * H}]

    def q(not_worn):
        return assess(quality.facts(time_in_bed_s=7 * H, recorded_s=8.5 * H, duration_s=8.5 * H,
                                    in_bed=in_bed, clock_synced=True, min_time_in_bed_s=None,
                                    not_worn=not_worn))

    # An hour off the leg in an 8-h night in bed: 12.5%.
    assert q([{"start_s": 3 * H, "end_s": 4 * H}]) == quality.Quality(
        PROVISIONAL, ("sensor not worn for 1 h 00 min (12% of the night in bed)",))
    # Off before bed and after rising (on the table until bedtime) does not count.
    assert q([{"start_s": 8 * H, "end_s": 8.5 * H}]).label == ELIGIBLE
    # 48 min of 8 h is exactly 10%: eligible.
    assert q([{"start_s": 3 * H, "end_s": 3 * H + 48 * 60.0}]).label == ELIGIBLE
    # No wear spans at all (an older summary, or a worn night): nothing to say.
    assert q(None).label == ELIGIBLE and q([]).label == ELIGIBLE


def test_not_worn_most_of_the_night_is_excluded():
    f = quality.facts(time_in_bed_s=4 * H, recorded_s=8 * H, duration_s=8 * H,
                      in_bed=[{"start_s": 0.0, "end_s": 2 * H}, {"start_s": 6 * H, "end_s": 8 * H}],
                      clock_synced=True, min_time_in_bed_s=None, not_worn=[{"start_s": 2 * H, "end_s": 6 * H}])
    got = assess(f)
    assert got.label == PROVISIONAL  # exactly 50% is not over half
    f = quality.facts(time_in_bed_s=3 * H, recorded_s=8 * H, duration_s=8 * H,
                      in_bed=[{"start_s": 0.0, "end_s": 1 * H}, {"start_s": 6 * H, "end_s": 8 * H}],
                      clock_synced=True, min_time_in_bed_s=None, not_worn=[{"start_s": 1 * H, "end_s": 6 * H}])
    assert assess(f) == quality.Quality(EXCLUDED, ("only 3 h 00 min in bed, under 4 h",
                                                   "sensor not worn for 5 h 00 min (62% of the night in bed)"))

"""The table of simulated nights. A new kind of night is a new entry here, never a branch in the
simulator. Rates are per hour of the lights-off window unless named otherwise."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Scenario:
    """What one kind of night contains. Ranges are (low, high), drawn per night or per event."""

    description: str
    # PLM series: how many an hour of sleep on average, how many LMs each, and their IMIs.
    series_per_hour: float
    series_len: tuple[int, int]
    # Lognormal IMI around a median: Coleman et al. (Ann Neurol 1980) and Ferri et al. (Sleep 2006)
    # put most PLMS IMIs at 15-40 s. A small share of IMIs < 10 s exercises the WASM 2016 series-breaking rule.
    imi_median_s: float
    imi_sigma: float
    short_imi_p: float
    # PLMS are denser early in the night (Pollmächer & Schulz, Sleep 1993; Ferri et al., Sleep
    # 2006): the rate falls linearly from (1 + decline) at lights off to (1 - decline) at lights on.
    early_decline: float
    isolated_per_hour: float
    flex_deg: tuple[float, float]
    # Awake in bed: sleep latency, awakenings, and voluntary (restless) movements while awake.
    sleep_latency_min: tuple[float, float]
    awakenings_per_hour: float
    restless_per_wake_hour: float
    # Confounders.
    twitches_per_hour: float
    # Healthy sleepers shift posture about 1.5-2.5 times an hour (De Koninck et al., Sleep 1992).
    turns_per_hour: float
    partner_per_hour: float
    cable_per_hour: float
    bathroom_per_8h: float
    gaps_per_hour: float
    gap_s: tuple[float, float]
    # The strap: extra band-limited wobble on top of the chip's own noise (a loose strap rattles).
    strap_accel_mg: float
    strap_gyro_dps: float
    # No strap puts the sensor exactly on the shin's axes: the largest misalignment about z (yaw,
    # which mixes flexion and roll between the x and y gyros), y (the tibia's sloping front) and x.
    mount_deg: tuple[float, float, float] = (8.0, 8.0, 12.0)
    # A loose strap rings at this resonance (Hz) after each flexion and release; 0 for a snug one.
    strap_ring_hz: float = 0.0
    # Sitting up on the bed before lying down (minutes; the shin 30-60 deg up, knees raised or feet
    # on the floor), fidgeting this often a minute. Out of bed: time in bed is the shin lying.
    pre_bed_sit_min: tuple[float, float] = (0.0, 0.0)
    fidgets_per_min: float = 0.0
    # A strap turned round the shin: the sensor rolled this far about the shin's axis (deg).
    strap_turned_deg: tuple[float, float] = (0.0, 0.0)
    # The strap taken off for this many minutes in the middle of the night, then put back
    # (device/sim/wear.py; truth `not_worn`).
    strap_off_min: tuple[float, float] = (0.0, 0.0)
    # Within a series the IMIs are clipped to this range (s): in sleep most lie at 15-40 s.
    imi_clip_s: tuple[float, float] = (10.5, 85.0)
    # An evening test (SIT) rather than a night: awake from lights off to lights on, sitting in bed
    # with the legs outstretched (the shin horizontal), and PLM series run while awake. The truth
    # then also scores it by the SIT rules (`sit_reference`, device/detect/sit.py).
    sit_test: bool = False
    # Share of PLMs and isolated LMs that are ankle dorsiflexions alone (tibialis anterior, often
    # with the big toe; the knee and hip join in only some PLMs: Coleman et al., Ann Neurol 1980;
    # WASM 2016 scores the tibialis EMG whatever else moves): the shin only reacts, tilting by
    # `tibialis_deg` at 2-20 dps (issue 16; see device.sim.plan.make_tibialis).
    tibialis_share: float = 0.0
    tibialis_deg: tuple[float, float] = (0.3, 2.0)


SCENARIOS: dict[str, Scenario] = {
    "control": Scenario(
        description="healthy sleeper: a few isolated LMs, normal turning over, no PLM series",
        series_per_hour=0.0, series_len=(4, 6), imi_median_s=25.0, imi_sigma=0.3, short_imi_p=0.0,
        early_decline=0.0, isolated_per_hour=3.0, flex_deg=(4.0, 25.0),
        sleep_latency_min=(5.0, 15.0), awakenings_per_hour=0.5, restless_per_wake_hour=6.0,
        twitches_per_hour=20.0, turns_per_hour=2.0, partner_per_hour=2.0, cable_per_hour=0.5,
        bathroom_per_8h=0.5, gaps_per_hour=0.0, gap_s=(1.0, 5.0),
        strap_accel_mg=0.5, strap_gyro_dps=0.05,
    ),
    "plmd": Scenario(
        description="periodic limb movement disorder: moderate PLM series, denser early",
        series_per_hour=1.2, series_len=(6, 40), imi_median_s=25.0, imi_sigma=0.3, short_imi_p=0.02,
        early_decline=0.5, isolated_per_hour=5.0, flex_deg=(3.0, 25.0),
        sleep_latency_min=(10.0, 25.0), awakenings_per_hour=0.8, restless_per_wake_hour=15.0,
        twitches_per_hour=20.0, turns_per_hour=2.0, partner_per_hour=1.5, cable_per_hour=0.5,
        bathroom_per_8h=1.0, gaps_per_hour=0.0, gap_s=(1.0, 5.0),
        strap_accel_mg=0.5, strap_gyro_dps=0.05, tibialis_share=0.25,
    ),
    "severe": Scenario(
        description="severe PLMD: long series most of the night (PLMI well over 50/h)",
        series_per_hour=2.0, series_len=(20, 80), imi_median_s=22.0, imi_sigma=0.25, short_imi_p=0.03,
        early_decline=0.4, isolated_per_hour=6.0, flex_deg=(3.0, 25.0),
        sleep_latency_min=(15.0, 30.0), awakenings_per_hour=0.6, restless_per_wake_hour=20.0,
        twitches_per_hour=15.0, turns_per_hour=1.5, partner_per_hour=1.0, cable_per_hour=0.5,
        bathroom_per_8h=1.5, gaps_per_hour=0.0, gap_s=(1.0, 5.0),
        strap_accel_mg=0.5, strap_gyro_dps=0.05, tibialis_share=0.25,
    ),
    "restless_wake": Scenario(
        description="RLS: long restless wake at sleep onset and after awakenings, then PLMS",
        series_per_hour=0.8, series_len=(5, 25), imi_median_s=28.0, imi_sigma=0.35, short_imi_p=0.02,
        early_decline=0.5, isolated_per_hour=4.0, flex_deg=(3.0, 25.0),
        sleep_latency_min=(30.0, 60.0), awakenings_per_hour=1.5, restless_per_wake_hour=60.0,
        twitches_per_hour=15.0, turns_per_hour=3.0, partner_per_hour=1.0, cable_per_hour=1.0,
        bathroom_per_8h=2.0, gaps_per_hour=0.0, gap_s=(1.0, 5.0),
        strap_accel_mg=0.5, strap_gyro_dps=0.05,
    ),
    "gaps": Scenario(
        description="PLMD with sensor gaps (no rows) from a second to minutes",
        series_per_hour=1.2, series_len=(6, 40), imi_median_s=25.0, imi_sigma=0.3, short_imi_p=0.02,
        early_decline=0.5, isolated_per_hour=5.0, flex_deg=(3.0, 25.0),
        sleep_latency_min=(10.0, 25.0), awakenings_per_hour=0.8, restless_per_wake_hour=15.0,
        twitches_per_hour=20.0, turns_per_hour=2.0, partner_per_hour=1.5, cable_per_hour=0.5,
        bathroom_per_8h=1.0, gaps_per_hour=3.0, gap_s=(1.0, 600.0),
        strap_accel_mg=0.5, strap_gyro_dps=0.05, tibialis_share=0.25,
    ),
    "faint": Scenario(
        description="small flexions (2-5 deg of shin tilt) under a loose, noisy strap that gets tugged",
        series_per_hour=1.2, series_len=(6, 40), imi_median_s=25.0, imi_sigma=0.3, short_imi_p=0.02,
        early_decline=0.5, isolated_per_hour=4.0, flex_deg=(2.0, 5.0),
        sleep_latency_min=(10.0, 25.0), awakenings_per_hour=0.8, restless_per_wake_hour=15.0,
        twitches_per_hour=20.0, turns_per_hour=2.0, partner_per_hour=1.5, cable_per_hour=3.0,
        bathroom_per_8h=1.0, gaps_per_hour=0.0, gap_s=(1.0, 5.0),
        strap_accel_mg=3.0, strap_gyro_dps=0.4, mount_deg=(20.0, 10.0, 20.0), strap_ring_hz=8.0,
    ),
}
# PLMD sitting up on the bed before lying down, with the strap turned round the shin.
SCENARIOS["sitting"] = replace(
    SCENARIOS["plmd"],
    description="PLMD; sits up on the bed fidgeting for minutes before lying down, the strap turned round the shin",
    pre_bed_sit_min=(3.0, 12.0), fidgets_per_min=2.0, strap_turned_deg=(60.0, 300.0),
)
# PLMD; the strap comes off in the night, lies on the bedside table, and is put back on.
SCENARIOS["strap_off"] = replace(
    SCENARIOS["plmd"],
    description="PLMD; the strap is taken off for 40-90 min in the night and put back on",
    strap_off_min=(40.0, 90.0),
)
# The Suggested Immobilization Test: an hour sitting up in bed, legs outstretched, awake, with
# periodic LMs at the short intervals of wake. Michaud et al. (Sleep Med 2001;2:317-321): during
# the SIT most LMs are periodic, with a modal IMI of 11-12 s, and many last 5-10 s; an RLS patient
# reads well above 40/h (Montplaisir et al., Mov Disord 1998). Run it with hours=1.0 or so.
SCENARIOS["sit"] = replace(
    SCENARIOS["plmd"],
    description="SIT: an hour sitting in bed, legs outstretched, awake, periodic LMs every ~12 s",
    series_per_hour=4.0, series_len=(10, 40), imi_median_s=12.0, imi_sigma=0.3, short_imi_p=0.02,
    imi_clip_s=(4.5, 40.0), early_decline=0.0, isolated_per_hour=0.0, restless_per_wake_hour=4.0,
    turns_per_hour=0.0, partner_per_hour=0.0, cable_per_hour=0.5, bathroom_per_8h=0.0,
    twitches_per_hour=5.0, sit_test=True,
)
# PLMD whose movements are mostly ankle dorsiflexions that the shin barely feels (issue 16).
SCENARIOS["tibialis"] = replace(
    SCENARIOS["plmd"],
    description="PLMD of ankle dorsiflexions: 80% of LMs tilt the shin only 0.3-2 deg at 2-20 dps",
    tibialis_share=0.8,
)

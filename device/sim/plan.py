"""Plan a night: the posture timeline, every event, the gaps and the sensor's quirks, and the truth.

The plan is small: a few hundred to a few thousand event records. `device.sim.render` turns it into
samples on demand.
"""

from __future__ import annotations

import bisect
import zlib
from dataclasses import dataclass, field, replace

import numpy as np

from device.sim import physics
from device.sim.scenarios import SCENARIOS, Scenario
from device.sim.shapes import Event, Flexion, Path, Ring, Rocking, Tug, Twitch, Walk

# Lying positions: (name, roll of the leg about the shin in deg, weight). Adults sleep on a side
# most, then on the back, least on the front (De Koninck et al., Sleep 1992).
LYING = (("supine", 0.0, 0.35), ("left", 90.0, 0.25), ("right", -90.0, 0.25), ("prone", 180.0, 0.15))
SITTING_DEG = (72.0, 84.0)  # on the bed's edge, feet on the floor
SITTING_UP_DEG = (30.0, 60.0)  # on the bed, knees raised (or feet on a low stool): out of bed
SITTING_UP = "sitting up"
STANDING_DEG = (85.0, 92.0)
UPRIGHT_ABOVE_DEG = 45.0


@dataclass(frozen=True)
class Rhythms:
    """The small periodic motions of a body in bed that compete with the faintest LMs, as the shin
    sensor feels them (lying only): the patient's breathing, the ballistocardiographic recoil of each
    heartbeat, and a partner's breathing through the mattress (0 when sleeping alone). Rates are the
    peaks of the shin's tilt rate about y (dps), accelerations peaks in g."""

    breath_hz: float
    breath_dps: float
    breath_g: float
    heart_hz: float
    bcg_dps: float
    bcg_g: float
    partner_hz: float = 0.0
    partner_dps: float = 0.0
    partner_g: float = 0.0
    phases: tuple[float, float, float] = (0.0, 0.0, 0.0)


def draw_rhythms(rng: np.random.Generator, partner: bool) -> Rhythms:
    """One night's rhythms. Adults breathe 12-20 times a minute at rest and their heart beats 50-70
    times a minute asleep (standard adult vital signs). How far these move a shin is not published
    that we know of: the amplitudes are our assumption, set high to be a fair test. Breathing
    rocks the lying shin by 0.005-0.05 deg (a peak rate of 0.006-0.1 dps) and heaves it by up to
    0.3 mg; each heartbeat's recoil along the body (ballistocardiography) tilts it at 0.02-0.2 dps
    and pushes it by 0.2-1 mg; a partner's breathing tilts the mattress under the leg by up to
    0.05 deg."""
    breath_hz, heart_hz = rng.uniform(12, 20) / 60.0, rng.uniform(50, 70) / 60.0
    partner_hz = rng.uniform(12, 20) / 60.0 if partner else 0.0
    return Rhythms(
        breath_hz=breath_hz, breath_dps=2 * np.pi * breath_hz * rng.uniform(0.005, 0.05),
        breath_g=rng.uniform(0.0001, 0.0003), heart_hz=heart_hz, bcg_dps=rng.uniform(0.02, 0.2),
        bcg_g=rng.uniform(0.0002, 0.001), partner_hz=partner_hz,
        partner_dps=2 * np.pi * partner_hz * rng.uniform(0.005, 0.05) if partner else 0.0,
        partner_g=rng.uniform(0.0001, 0.0005) if partner else 0.0,
        phases=tuple(float(x) for x in rng.uniform(0, 2 * np.pi, 3)),
    )


@dataclass
class Plan:
    """Everything that defines a night's samples, apart from the per-chunk noise."""

    duration_s: float
    odr_hz: float
    seed: int
    key: int
    knots_t: list[float] = field(default_factory=list)
    knots_theta: list[float] = field(default_factory=list)
    knots_phi: list[float] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    gaps: list[tuple[float, float]] = field(default_factory=list)
    accel_offset_g: np.ndarray = field(default_factory=lambda: np.zeros(3))
    accel_scale: np.ndarray = field(default_factory=lambda: np.ones(3))
    accel_noise_g: float = 0.0
    gyro_noise_dps: float = 0.0
    bias_t: np.ndarray = field(default_factory=lambda: np.zeros(2))
    bias_dps: np.ndarray = field(default_factory=lambda: np.zeros((2, 3)))
    strap_accel_g: float = 0.0
    rhythms: Rhythms | None = None
    strap_gyro_dps: float = 0.0
    mount_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # The strap off the leg (device/sim/wear.py), and lights off, which warms the skin.
    not_worn: list[tuple[float, float]] = field(default_factory=list)
    lights_off_s: float = 0.0
    # Where the sensor sits: "shin" (the front of the shin above the ankle) or "instep" (the top of
    # the foot, which also feels the ankle's own rotation; its orientation is modelled as the shin's).
    placement: str = "shin"


class _Occupancy:
    """Non-overlapping busy intervals, so events never collide and truth stays unambiguous."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []

    def free(self, a: float, b: float) -> bool:
        i = bisect.bisect_left(self.starts, b)
        return i == 0 or self.ends[i - 1] <= a

    def take(self, a: float, b: float) -> None:
        i = bisect.bisect_left(self.starts, a)
        self.starts.insert(i, a)
        self.ends.insert(i, b)


def _in_any(t: float, spans: list[tuple[float, float]]) -> bool:
    return any(a <= t < b for a, b in spans)


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


MAX_FLEX_ACCEL_RAD_S2 = 15.0


def make_flexion(rng: np.random.Generator, onset_s: float, flex_deg: tuple[float, float]) -> Flexion:
    """A PLM-like flexion. WASM 2016 (Ferri et al., Sleep Med 2016): an LM lasts 0.5-10 s; PLMs
    mostly 1.5-5 s (docs/architecture.md; Coleman et al., Ann Neurol 1980). Peak shin rates of 10-150
    dps (docs/architecture.md)."""
    amp = _loguniform(rng, *flex_deg)
    dur = float(np.clip(rng.lognormal(np.log(2.5), 0.45), 0.6, 9.5))
    # Minimum-jerk peak speed is 1.875 amplitude/duration: pick the peak, derive the duration. Its
    # peak angular acceleration is 5.77 amplitude/duration^2; capping that keeps the sensor's lever
    # arm (up to 40 cm from the knee) within the 20-1000 mg of docs/architecture.md.
    fastest_s = np.sqrt(5.77 * np.radians(amp) / MAX_FLEX_ACCEL_RAD_S2)
    peak_flex = _loguniform(rng, max(10.0, 1.875 * amp / 2.0), min(150.0, 1.875 * amp / max(0.15, fastest_s)))
    peak_release = _loguniform(rng, max(10.0, 1.875 * amp / 3.0),
                               min(120.0, 1.875 * amp / max(0.2, fastest_s)))
    flex_s, release_s = 1.875 * amp / peak_flex, 1.875 * amp / peak_release
    hold_s = max(0.0, dur - flex_s - release_s)
    if rng.random() < 0.25 and flex_s + release_s >= 0.6:
        hold_s = 0.0  # a quick kick with no hold
    lever = -rng.uniform(0.25, 0.4) if rng.random() < 0.5 else rng.uniform(0.05, 0.12)
    held = hold_s >= 0.5  # only a real hold drifts and shivers; a brief plateau is just a turn-around
    return Flexion(
        start_s=onset_s, amp_rad=np.radians(amp), flex_s=flex_s, hold_s=hold_s, release_s=release_s,
        drift=rng.uniform(-0.15, 0.1) if held else 0.0, twist=rng.uniform(-0.15, 0.15),
        lever_m=lever, tremor_rad=np.radians(rng.uniform(0.3, 2.0) / (2 * np.pi * 10.0)) if held else 0.0,
        tremor_hz=rng.uniform(8.0, 12.0),
    )


# An ankle dorsiflexion alone (tibialis anterior) moves the foot; the shin on the sensor only reacts.
# Its rates (issue 16): 2-20 dps, far below a knee flexion's 10-150.
TIBIALIS_DPS = (2.0, 20.0)
# The foot turns this many times further than the shin reacts: a dorsiflexion of some 3-20 deg for a
# shin tilt of 0.3-2 deg. Our assumption (no published figure found for PLMs), used only to place a
# sensor on the instep (benchmarks/placement.py).
FOOT_PER_SHIN = 10.0
PLACEMENTS = ("shin", "instep")


def make_tibialis(rng: np.random.Generator, onset_s: float, tilt_deg: tuple[float, float]) -> Flexion:
    """The shin's reaction to an ankle dorsiflexion: a tilt of `tilt_deg` (0.3-2 deg) at 2-20 dps,
    with the hold and return of the contraction behind it. Durations as a PLM's (WASM 2016, Ferri et
    al., Sleep Med 2016: 0.5-10 s; mostly 1.5-5 s, Coleman et al., Ann Neurol 1980); a quarter with
    no hold, as in `make_flexion`. The ankle's tremor reaches the shin a tenth as strong."""
    amp = _loguniform(rng, *tilt_deg)
    dur = float(np.clip(rng.lognormal(np.log(2.5), 0.45), 0.6, 9.5))
    lo, hi = TIBIALIS_DPS
    # A flex of 0.15-1.5 s and a release of 0.2-2 s (minimum jerk: peak = 1.875 amplitude/duration).
    peak_flex = _loguniform(rng, max(lo, 1.875 * amp / 1.5), min(hi, 1.875 * amp / 0.15))
    peak_release = _loguniform(rng, max(lo, 1.875 * amp / 2.0), min(hi, 1.875 * amp / 0.2))
    flex_s, release_s = 1.875 * amp / peak_flex, 1.875 * amp / peak_release
    hold_s = max(0.0, dur - flex_s - release_s)
    if rng.random() < 0.25 and flex_s + release_s >= 0.6:
        hold_s = 0.0
    held = hold_s >= 0.5
    return Flexion(
        start_s=onset_s, amp_rad=np.radians(amp), flex_s=flex_s, hold_s=hold_s, release_s=release_s,
        drift=rng.uniform(-0.15, 0.1) if held else 0.0, twist=rng.uniform(-0.15, 0.15),
        lever_m=-rng.uniform(0.25, 0.4),
        tremor_rad=np.radians(rng.uniform(0.03, 0.2) / (2 * np.pi * 10.0)) if held else 0.0,
        tremor_hz=rng.uniform(8.0, 12.0), foot_gain=FOOT_PER_SHIN,
    )


def draw_lm(rng: np.random.Generator, onset_s: float, flex_deg: tuple[float, float],
            sc: Scenario) -> tuple[Flexion, bool]:
    """A PLM or isolated LM of the scenario: an ankle dorsiflexion alone (`tibialis_share` of them;
    True) or a knee flexion. No draw is spent when the scenario has no ankle-only LMs, so such
    nights stay what they were."""
    if sc.tibialis_share > 0 and rng.random() < sc.tibialis_share:
        return make_tibialis(rng, onset_s, sc.tibialis_deg), True
    return make_flexion(rng, onset_s, flex_deg), False


# Irregular movements: (high flexion deg, low flexion deg, twist deg, knot spacing s).
RESTLESS_PATH = ((8.0, 30.0), (0.0, 5.0), 12.0, (0.35, 1.2))
TURN_PATH = ((5.0, 30.0), (0.0, 4.0), 10.0, (0.4, 1.2))


def make_path(rng: np.random.Generator, start_s: float, dur_s: float, shape: tuple) -> Path:
    """An irregular movement of `shape` (RESTLESS_PATH, TURN_PATH): knots every so often,
    alternating high and low flexion, so it never rests for long; it starts and ends at rest."""
    hi_deg, lo_deg, twist_deg, step_s = shape
    knots, alpha, beta = [0.0], [0.0], [0.0]
    t, high = 0.0, True
    while True:
        t += rng.uniform(*step_s)
        if t > dur_s - step_s[0]:
            break
        knots.append(t)
        alpha.append(-np.radians(rng.uniform(*(hi_deg if high else lo_deg))))
        beta.append(np.radians(rng.uniform(-twist_deg, twist_deg)))
        high = not high
    if len(knots) == 1:  # too short for the rhythm: one swing out and back
        knots.append(dur_s / 2)
        alpha.append(-np.radians(rng.uniform(*hi_deg)))
        beta.append(0.0)
    elif high:  # end on a high knot, so the movement lasts until the final release
        del knots[-1], alpha[-1], beta[-1]
    knots.append(dur_s)
    alpha.append(0.0)
    beta.append(0.0)
    return Path(start_s, tuple(knots), tuple(alpha), tuple(beta), lever_m=-0.3)


def strap_rings(rng: np.random.Generator, ev: Flexion, ring_hz: float) -> list[Ring]:
    """A loose strap's ringing after the flexion and after the release: the sensor, a mass on a
    spring, deflects by (angular acceleration) / (2 pi f)^2 and rings on. None when `ring_hz` is 0."""
    if not ring_hz:
        return []
    phases = ((ev.start_s + ev.flex_s, ev.amp_rad, ev.flex_s),
              (ev.end_s, ev.amp_rad * (1.0 + ev.drift), ev.release_s))
    return [Ring(start_s=t, amp_rad=5.77 * amp / dur**2 / (2 * np.pi * ring_hz) ** 2 * rng.choice([-1.0, 1.0]),
                 freq_hz=ring_hz * rng.uniform(0.8, 1.2), tau_s=rng.uniform(0.05, 0.15),
                 roll_share=rng.uniform(-0.3, 0.3))
            for t, amp, dur in phases]


def _flex_deg(ev: Flexion | Path) -> float:
    """The largest flexion of a movement (deg)."""
    if isinstance(ev, Path):
        return float(np.degrees(np.max(np.abs(ev.alpha_rad))))
    return float(np.degrees(ev.amp_rad * max(1.0, 1.0 + ev.drift)))


def _peak_dps(ev: Event) -> float:
    """The largest angular rate of an event's own rotation, on a 5-ms grid."""
    t = np.arange(ev.start_s, ev.end_s + 0.005, 0.005)
    ch = ev.channels(t)
    rate = np.zeros(len(t) - 1)
    for name in ("alpha", "beta", "theta", "phi"):
        if name in ch:
            rate = rate + (np.diff(ch[name]) / 0.005) ** 2
    return float(np.degrees(np.sqrt(rate.max())))


class _Planner:
    """Builds a `Plan` and its truth for one scenario and seed."""

    def __init__(self, name: str, sc: Scenario, seed: int, hours: float, odr_hz: float) -> None:
        self.sc = sc
        key = zlib.crc32(name.encode())
        self.rng = np.random.default_rng([seed, key, 0])
        self.T = hours * 3600.0
        self.plan = Plan(duration_s=self.T, odr_hz=odr_hz, seed=seed, key=key)
        self.busy = _Occupancy()
        self.lms: list[dict] = []
        self.confounders: list[dict] = []
        self.positions: list[dict] = []
        self.wake: list[tuple[float, float]] = []
        self.out_of_bed: list[tuple[float, float]] = []
        # Each leg's own events and their truth entries (whole-body ones are not listed).
        self.owned: list[tuple[Event, dict]] = []
        # A loose strap's rings after each flexion (by the flexion's id), to follow it to a leg.
        self.rings: dict[int, list[Ring]] = {}
        self.rem: list[tuple[float, float]] = []
        self.edge = self.lights_off = self.lights_on = self.get_up_s = self.window = self.latency = 0.0


    # -- the night, step by step (in this order: the posture timeline is built in time order) ----
    def go_to_bed(self) -> None:
        """Walk in, sit on the bed, lie down; lights off a little later. Scaled down for short
        test nights, and the same for getting up at the end."""
        rng, T = self.rng, self.T
        self.edge = min(150.0, 0.06 * T)
        self.key(0.0, rng.uniform(*STANDING_DEG), 0.0)
        self.walk(max(3.0, 0.3 * self.edge))
        self.sit(max(2.0, 0.3 * self.edge), 1.5)
        if self.sc.pre_bed_sit_min[1] > 0:
            self.sit_up_on_bed(min(rng.uniform(*self.sc.pre_bed_sit_min) * 60.0, 0.1 * T))
        self.lie_down(rng.uniform(3.0, 5.0))
        self.lights_off = self.now()[0] + min(60.0, 0.02 * T)
        self.get_up_s = T - self.edge
        self.lights_on = self.get_up_s - min(30.0, 0.01 * T)
        self.busy.take(0.0, self.lights_off)
        self.busy.take(self.lights_on, T)
        self.window = self.lights_on - self.lights_off

    def sleep(self) -> None:
        """Sleep latency, awakenings, and REM. REM sleep closes each ~90-min sleep cycle, longer as
        the night goes on (Carskadon & Dement, Principles and Practice of Sleep Medicine). PLMS are
        rare in REM (Pollmächer & Schulz, Sleep 1993), and phasic twitches cluster there."""
        rng, sc = self.rng, self.sc
        if sc.sit_test:  # the evening test: awake throughout
            self.latency = self.window
            self.wake.append((self.lights_off, self.lights_on))
            return
        self.latency = min(rng.uniform(*sc.sleep_latency_min) * 60.0, 0.1 * self.window)
        self.wake.append((self.lights_off, self.lights_off + self.latency))
        for _ in range(rng.poisson(sc.awakenings_per_hour * self.window / 3600.0)):
            a = rng.uniform(self.lights_off + self.latency, self.lights_on)
            self.wake.append((a, min(self.lights_on, a + min(rng.uniform(120, 600), 0.05 * self.window))))
        t = self.lights_off + self.latency
        while (t := t + rng.uniform(75.0, 100.0) * 60.0) < self.lights_on:
            dur = min(35.0, 5.0 + 7.0 * len(self.rem)) * 60.0 * rng.uniform(0.8, 1.2)
            self.rem.append((t, min(t + dur, self.lights_on)))
            t += dur

    def posture_changes(self) -> None:
        """Bathroom trips (from an awakening) and turns, in time order."""
        rng, sc = self.rng, self.sc
        episodes = []
        for _ in range(rng.poisson(sc.bathroom_per_8h * self.window / 28800.0)):
            episodes.append((self.lights_off + self.latency, self.lights_on - 900.0, "bathroom"))
        for _ in range(rng.poisson(sc.turns_per_hour * self.window / 3600.0)):
            episodes.append((self.lights_off, self.lights_on - 30.0, "turn"))
        times = [(rng.uniform(lo, hi), kind) for lo, hi, kind in episodes if hi > lo]
        for t0, kind in sorted(times):
            if t0 <= self.now()[0] + 5.0:
                continue
            if kind == "turn":
                dur = rng.uniform(10.5, 20.0)
                if t0 + dur + 2.0 < self.lights_on:
                    self.turn(t0, dur)
                    self.busy.take(t0 - 2.0, t0 + dur + 2.0)
            elif t0 + 700.0 < self.lights_on:
                end = self.bathroom(t0)
                self.out_of_bed.append((t0, end))
                self.wake.append((t0 - 60.0, end + 120.0))
                self.busy.take(t0 - 2.0, end + 2.0)

    def get_up(self) -> None:
        self.hold(self.get_up_s)
        self.sit_up(self.rng.uniform(2.5, 4.0))
        self.hold(self.now()[0] + max(2.0, 0.2 * self.edge))
        self.walk(max(3.0, self.T - self.now()[0] - 3.0))
        self.hold(self.T + 1.0)

    def sensor_gaps(self) -> None:
        """Rows simply missing, from a second to minutes, in the lights-off window."""
        rng, sc = self.rng, self.sc
        n_gaps = rng.poisson(sc.gaps_per_hour * self.T / 3600.0) + (2 if sc.gaps_per_hour > 0 else 0)
        for _ in range(n_gaps):
            dur = min(_loguniform(rng, *sc.gap_s), 0.05 * self.T)
            t = self.place(self.lights_off, self.lights_on, dur, 2.0)
            if t is not None:
                self.busy.take(t - 2.0, t + dur + 2.0)
                self.plan.gaps.append((t, t + dur))
        self.plan.gaps.sort()

    def plm_series(self) -> None:
        """PLM series, one after another through the sleep: early in the night they come sooner and
        run longer (see Scenario.early_decline). The movements of one series are stereotyped: their
        size and rhythm vary around the series' own. None in wake or REM."""
        rng, sc = self.rng, self.sc
        if sc.series_per_hour <= 0:
            return
        mean_len = (sc.series_len[0] + sc.series_len[1]) / 2
        mean_pause_s = max(60.0, 3600.0 / sc.series_per_hour - mean_len * sc.imi_median_s)
        no_plms = sorted(self.rem if sc.sit_test else self.wake + self.rem)  # the SIT's PLMs are awake
        cursor, series = self.lights_off, 0
        while True:
            density = 1 + sc.early_decline * (1 - 2 * (cursor - self.lights_off) / self.window)
            # PLMS set in with light sleep, soon after sleep onset (Pollmächer & Schulz, Sleep 1993).
            cursor += rng.exponential(120.0 if series == 0 else mean_pause_s / density)
            for a, b in no_plms:
                cursor = b if a <= cursor < b else cursor
            if cursor >= self.lights_on:
                return
            size = _loguniform(rng, *sc.flex_deg)
            flex_deg = (max(sc.flex_deg[0], 0.7 * size), min(sc.flex_deg[1], 1.4 * size))
            imi_median = sc.imi_median_s * rng.lognormal(0.0, sc.imi_sigma / 2)
            onset = cursor
            for _ in range(max(4, round(rng.integers(sc.series_len[0], sc.series_len[1] + 1) * density))):
                ev, ankle = draw_lm(rng, onset, flex_deg, sc)
                if ev.end_s > self.lights_on or _in_any(onset, no_plms):
                    break
                if self.busy.free(onset - 1, ev.end_s + 1):  # else a turn or a gap took this beat
                    self.add_flexion(ev, "plm", series, wake=sc.sit_test, tibialis=ankle)
                cursor = ev.end_s
                if rng.random() < sc.short_imi_p:
                    imi = rng.uniform(4.0, 9.5)
                else:
                    imi = float(np.clip(rng.lognormal(np.log(imi_median), sc.imi_sigma / 2), *sc.imi_clip_s))
                onset += max(imi, ev.end_s - ev.start_s + 2.0)
            series += 1

    def isolated_lms(self) -> None:
        asleep_s = self.window - sum(b - a for a, b in self.wake)
        for _ in range(self.rng.poisson(self.sc.isolated_per_hour * asleep_s / 3600.0)):
            ev, ankle = draw_lm(self.rng, 0.0, self.sc.flex_deg, self.sc)
            t = self.place(self.lights_off, self.lights_on, ev.end_s, 1.0)
            if t is not None and not _in_any(t, self.wake):
                self.add_flexion(replace(ev, start_s=t), "isolated", None, wake=False, tibialis=ankle)

    def restless_lms(self) -> None:
        """Voluntary movement while awake: the urge of RLS relieved by moving. Irregular, 1-20 s."""
        rng = self.rng
        for a, b in list(self.wake):
            for _ in range(rng.poisson(self.sc.restless_per_wake_hour * (b - a) / 3600.0)):
                dur = rng.uniform(10.5, 20.0) if rng.random() < 0.3 else _loguniform(rng, 1.0, 9.0)
                t = self.place(max(a, self.lights_off), min(b, self.lights_on), dur, 1.0)
                if t is None:
                    continue
                ev = make_path(rng, t, dur, RESTLESS_PATH)
                self.plan.events.append(ev)
                self.busy.take(t - 1.0, ev.end_s + 1.0)
                self.lms.append(self._lm(t, ev.end_s, "restless", _peak_dps(ev), _flex_deg(ev), wake=True))
                self.owned.append((ev, self.lms[-1]))

    def confounders_in_bed(self) -> None:
        """Twitches, a bed partner and cable tugs: movements that are not LMs."""
        rng, sc, lo, hi = self.rng, self.sc, self.lights_off, self.lights_on
        # Twitches come alone or in bursts (fragmentary myoclonus), each shorter than 0.5 s and at
        # least 0.7 s from the next, so no two merge into an LM.
        for _ in range(rng.poisson(sc.twitches_per_hour * self.window / 3600.0)):
            self.twitches(lo, hi)
        for a, b in self.rem:  # three times as many in REM
            for _ in range(rng.poisson(2.0 * sc.twitches_per_hour * (b - a) / 3600.0)):
                self.twitches(a, b)
        # A bed partner moves whenever they like, also during the patient's own movements; only not
        # while the patient is out of bed.
        partner = _Occupancy()
        for a, b in self.out_of_bed:
            partner.take(a, b)
        for _ in range(rng.poisson(sc.partner_per_hour * self.window / 3600.0)):
            dur = rng.uniform(3.0, 20.0)
            t = rng.uniform(lo, max(lo, hi - dur))
            if t + dur <= hi and partner.free(t - 1.0, t + dur + 1.0):
                f1, f2 = rng.uniform(0.3, 1.0), rng.uniform(1.0, 2.5)
                # The rocking's own rate is 1-10 dps: rate = 2 pi f amplitude, with f the tilt's own
                # frequency (elevation rocks at f1, roll at f1 + f2; see Rocking.channels).
                tilts = tuple(np.radians(rng.uniform(1.0, 10.0) / (2 * np.pi * f)) for f in (f1, f1 + f2))
                ev = Rocking(t, dur, (f1, f2), tilts, rng.uniform(0.005, 0.06), rng.uniform(0, 2 * np.pi))
                self.plan.events.append(ev)
                partner.take(t - 1.0, t + dur + 1.0)
                self.confounders.append({"kind": "partner", "start_s": t, "end_s": ev.end_s})
        for _ in range(rng.poisson(sc.cable_per_hour * self.window / 3600.0)):
            twist = rng.uniform(5.0, 30.0) * rng.choice([-1.0, 1.0])
            twist_s = max(rng.uniform(0.15, 0.5), 1.875 * abs(twist) / 200.0)
            ev_len = twist_s + rng.uniform(0.5, 3.0)
            t = self.place(lo, hi, ev_len, 1.0)
            if t is not None:
                ev = Tug(t, np.radians(twist), twist_s, ev_len - twist_s, rng.uniform(0.0, 0.6),
                         pitch=rng.uniform(0.0, 0.25))
                self.plan.events.append(ev)
                self.busy.take(t - 1.0, ev.end_s + 1.0)
                self.confounders.append({"kind": "cable", "start_s": t, "end_s": ev.end_s,
                                         "twist_deg": round(twist, 1)})
                self.owned.append((ev, self.confounders[-1]))

    # -- posture timeline -------------------------------------------------------------------
    def key(self, t: float, theta_deg: float, phi_deg: float) -> None:
        self.plan.knots_t.append(t)
        self.plan.knots_theta.append(np.radians(theta_deg))
        self.plan.knots_phi.append(np.radians(phi_deg))

    def hold(self, t: float) -> None:
        """Stay in the current posture until t."""
        p = self.plan
        p.knots_t.append(t)
        p.knots_theta.append(p.knots_theta[-1])
        p.knots_phi.append(p.knots_phi[-1])

    def now(self) -> tuple[float, float, float]:
        p = self.plan
        return p.knots_t[-1], np.degrees(p.knots_theta[-1]), np.degrees(p.knots_phi[-1])

    def lying(self, phi_now: float, exclude: str = "") -> tuple[str, float, float]:
        names = [n for n, _, _ in LYING if n != exclude]
        w = np.array([wt for n, _, wt in LYING if n != exclude])
        name = names[self.rng.choice(len(names), p=w / w.sum())]
        roll = dict((n, r) for n, r, _ in LYING)[name] + self.rng.uniform(-15, 15)
        roll += 360.0 * np.round((phi_now - roll) / 360.0)  # the short way round
        return name, self.rng.uniform(-4.0, 10.0), roll

    def walk(self, dur_s: float) -> None:
        t0, _, _ = self.now()
        self.key(t0 + 1.0, self.rng.uniform(*STANDING_DEG), 0.0)
        self.positions.append({"start_s": t0, "position": "standing"})
        # A slow walk in the night: 0.85-1 strides/s, so steps at 1.7-2 Hz (docs/architecture.md: about
        # 2 Hz). The shank swings through some 50-60 deg, its rate peaking at 200-300 dps in swing
        # (shank gyroscopes in gait: Aminian et al., J Biomech 2002).
        walk = Walk(
            start_s=t0 + 1.0, dur_s=dur_s, stride_hz=self.rng.uniform(0.85, 1.0),
            swing_rad=(np.radians(self.rng.uniform(22, 32)), np.radians(self.rng.uniform(4, 9))),
            bounce_g=self.rng.uniform(0.1, 0.25), strike_g=self.rng.uniform(0.5, 1.5),
            phase=self.rng.uniform(0, 2 * np.pi),
        )
        self.plan.events.append(walk)
        self.confounders.append({"kind": "walk", "start_s": walk.start_s, "end_s": walk.end_s,
                                 "stride_hz": walk.stride_hz})
        self.positions.append({"start_s": walk.start_s, "position": "walking"})
        self.hold(walk.end_s)
        self.positions.append({"start_s": walk.end_s, "position": "standing"})
        self.hold(walk.end_s + 1.0)

    def sit(self, dur_s: float, move_s: float) -> None:
        t0, _, _ = self.now()
        self.key(t0 + move_s, self.rng.uniform(*SITTING_DEG), self.rng.uniform(-10, 10))
        self.positions.append({"start_s": t0, "position": "sitting"})
        self.hold(t0 + move_s + dur_s)

    def sit_up_on_bed(self, dur_s: float) -> None:
        """Sitting on the bed before lying down, the shin 30-60 deg up, fidgeting: now and then a
        flexion like an LM's (confounders `fidget`: out of bed, so no LM is scored)."""
        rng = self.rng
        t0, _, phi = self.now()
        self.key(t0 + 2.0, rng.uniform(*SITTING_UP_DEG), phi + rng.uniform(-10, 10))
        self.positions.append({"start_s": t0, "position": SITTING_UP})
        end = t0 + 2.0 + dur_s
        t = t0 + 2.0 + rng.exponential(60.0 / self.sc.fidgets_per_min)
        while t < end:
            ev = make_flexion(rng, t, (3.0, 15.0))
            if ev.end_s > end - 2.0:
                break
            self.plan.events.append(ev)
            self.confounders.append({"kind": "fidget", "start_s": ev.start_s, "end_s": ev.end_s})
            self.owned.append((ev, self.confounders[-1]))
            t = ev.end_s + 1.0 + rng.exponential(60.0 / self.sc.fidgets_per_min)
        self.hold(end)

    def lie_down(self, move_s: float) -> None:
        t0, _, phi = self.now()
        name, theta, roll = self.lying(phi)
        self.key(t0 + move_s, theta, roll)
        self.positions.append({"start_s": t0 + move_s, "position": name})
        self.confounders.append({"kind": "lie_down", "start_s": t0, "end_s": t0 + move_s})

    def sit_up(self, move_s: float) -> None:
        t0, _, _ = self.now()
        self.sit(0.0, move_s)
        self.confounders.append({"kind": "sit_up", "start_s": t0, "end_s": t0 + move_s})

    def turn(self, t0: float, dur_s: float) -> None:
        """Turning over: an irregular roll about the shin to a new lying position, the knee drawn up
        on the way, with kicks and shuffles throughout (never quiet for 0.5 s)."""
        self.hold(t0)
        _, theta0, phi0 = self.now()
        current = self.positions[-1]["position"]
        name, theta1, roll1 = self.lying(phi0, exclude=current)
        for frac, roll_frac, lift in ((0.2, -0.1, 1.0), (0.45, 0.55, 0.7), (0.7, 1.1, 0.4)):
            self.key(t0 + frac * dur_s, theta0 + lift * self.rng.uniform(10, 35),
                     phi0 + roll_frac * (roll1 - phi0) + self.rng.uniform(-8, 8))
        self.key(t0 + dur_s, theta1, roll1)
        wiggle = make_path(self.rng, t0, dur_s, TURN_PATH)
        self.plan.events.append(wiggle)
        self.positions.append({"start_s": t0 + dur_s, "position": name})
        peak = _peak_dps(wiggle)
        self.confounders.append({"kind": "turn", "start_s": t0, "end_s": t0 + dur_s, "lm": True,
                                 "from": current, "to": name})
        # A technologist scores the leg EMG of a turn as one LM > 10 s: not a CLM, and it breaks a
        # series (WASM 2016, Ferri et al., Sleep Med 2016).
        self.lms.append(self._lm(t0, t0 + dur_s, "turn", peak, _flex_deg(wiggle), wake=False))
        self.owned.append((wiggle, self.lms[-1]))

    def bathroom(self, t0: float) -> float:
        """Out of bed: sit up, walk out, stay, walk back, lie down. Returns the end time."""
        self.hold(t0)
        self.sit_up(self.rng.uniform(2.5, 4.0))
        self.hold(self.now()[0] + self.rng.uniform(3, 15))
        self.walk(self.rng.uniform(10, 30))
        self.sit(self.rng.uniform(60, 240), 1.5)
        self.walk(self.rng.uniform(10, 30))
        self.sit(self.rng.uniform(3, 10), 1.5)
        self.lie_down(self.rng.uniform(3.0, 5.0))
        end = self.now()[0]
        self.confounders.append({"kind": "bathroom", "start_s": t0, "end_s": end})
        return end

    # -- events inside the lights-off window ----------------------------------------------
    def _lm(self, onset: float, offset: float, kind: str, peak: float, tilt: float, wake: bool) -> dict:
        return {"onset_s": round(onset, 4), "offset_s": round(offset, 4),
                "duration_s": round(offset - onset, 4), "leg": 0, "kind": kind,
                "tilt_deg": round(tilt, 2), "peak_dps": round(peak, 1), "wake": wake,
                "clm": 0.5 <= offset - onset <= 10.0}

    def place(self, lo: float, hi: float, dur: float, margin: float, tries: int = 20) -> float | None:
        """A random start in [lo, hi - dur] whose span (plus margin) is free."""
        for _ in range(tries):
            if hi - dur <= lo:
                return None
            t = self.rng.uniform(lo, hi - dur)
            if self.busy.free(t - margin, t + dur + margin):
                return t
        return None

    def twitches(self, lo: float, hi: float) -> None:
        """A twitch, or a burst of up to 6, somewhere free in [lo, hi]."""
        durs = self.rng.uniform(0.1, 0.4, min(6, self.rng.geometric(0.6)))
        pauses = self.rng.uniform(0.7, 2.0, len(durs))
        offsets = np.concatenate([[0.0], np.cumsum(durs + pauses)[:-1]])
        t = self.place(lo, hi, offsets[-1] + durs[-1], 1.5)
        if t is None:
            return
        self.busy.take(t - 1.5, t + offsets[-1] + durs[-1] + 1.5)
        for start, dur in zip(t + offsets, durs):
            peak = self.rng.uniform(15.0, 80.0)
            ev = Twitch(start, dur, np.radians(peak * dur / np.pi), lever_m=-0.3)
            self.plan.events.append(ev)
            self.confounders.append({"kind": "twitch", "start_s": start, "end_s": ev.end_s,
                                     "peak_dps": round(peak, 1), "burst": len(durs)})
            self.owned.append((ev, self.confounders[-1]))

    def add_flexion(self, ev: Flexion, kind: str, series: int | None, wake: bool,
                    tibialis: bool = False) -> None:
        self.plan.events.append(ev)
        self.rings[id(ev)] = strap_rings(self.rng, ev, self.sc.strap_ring_hz)
        self.plan.events += self.rings[id(ev)]
        self.busy.take(ev.start_s - 1.0, ev.end_s + 1.0)
        lm = self._lm(ev.start_s, ev.end_s, kind, _peak_dps(ev), _flex_deg(ev), wake)
        if series is not None:
            lm["series"] = series
        if tibialis:
            lm["tibialis"] = True
        self.lms.append(lm)
        self.owned.append((ev, lm))


def plan_night(name: str, seed: int, hours: float, odr_hz: float, legs: int = 1,
               placement: str = "shin") -> tuple[list[Plan], dict]:
    """Lay out one night of scenario `name`: the posture timeline, every event, the gaps and the
    chip's quirks (one `Plan` per leg), and the truth (without the reference figures)."""
    pl = _Planner(name, SCENARIOS[name], seed, hours, odr_hz)
    pl.go_to_bed()
    pl.sleep()
    pl.posture_changes()
    pl.get_up()
    pl.sensor_gaps()
    pl.plm_series()
    pl.isolated_lms()
    pl.restless_lms()
    pl.confounders_in_bed()
    plans = [pl.plan]
    if legs == 2:
        plans.append(_second_leg(pl, np.random.default_rng([seed, pl.plan.key, 3])))
    # The body's rhythms come from a generator of their own, so they leave every other draw as it was.
    rhythms = draw_rhythms(np.random.default_rng([seed, pl.plan.key, 4]), partner=pl.sc.partner_per_hour > 0)
    for plan in plans:
        _sensor_quirks(plan, pl.rng, pl.sc)
        plan.rhythms = rhythms
        plan.placement = placement
        plan.events.sort(key=lambda e: e.start_s)
    truth = {
        "lights_off_s": pl.lights_off, "lights_on_s": pl.lights_on,
        "lms": sorted(pl.lms, key=lambda m: m["onset_s"]),
        "confounders": sorted(pl.confounders, key=lambda c: c["start_s"]),
        "positions": pl.positions,
        "wake": [{"start_s": a, "end_s": b} for a, b in sorted(pl.wake)],
        "rem": [{"start_s": a, "end_s": b} for a, b in pl.rem],
        "gaps": [{"start_s": a, "end_s": b} for a, b in pl.plan.gaps],
        "mount_deg": [list(plan.mount_deg) for plan in plans],  # yaw, pitch, roll per leg
    }
    return plans, truth


def _second_leg(pl: _Planner, rng: np.random.Generator) -> Plan:
    """The other leg's sensor on the same night: the body's posture, walking (in anti-phase), the
    bed partner and the gaps (one Pi) are shared. Of the first leg's flexions, 60% are bilateral
    (the other leg moves too, its onset within 0.3 s), 20% move to the other leg alone and 20%
    stay; restless movements are bilateral 70% of the time and turns always; twitches and cable
    tugs go to either leg. The split is our choice, to exercise both bilateral combination and
    single-leg LMs; every truth entry then names its leg."""
    p0 = pl.plan
    p1 = Plan(duration_s=p0.duration_s, odr_hz=p0.odr_hz, seed=p0.seed, key=p0.key + 1,
              knots_t=p0.knots_t, knots_theta=p0.knots_theta, knots_phi=p0.knots_phi, gaps=p0.gaps)
    p1.events = [ev if isinstance(ev, Rocking) else replace(ev, phase=ev.phase + np.pi)
                 for ev in p0.events if isinstance(ev, (Rocking, Walk))]
    moved: set[int] = set()
    for ev, entry in pl.owned:
        entry["leg"] = 0
        twin: Event | None = None
        r = rng.random()
        if isinstance(ev, Flexion):
            if r < 0.6:
                # The other leg's flexion differs in size, within 2-25 deg and 10-150 dps (an
                # ankle-only one within the scenario's shin tilts and 2-20 dps).
                peak, amp_deg = _peak_dps(ev), np.degrees(ev.amp_rad)
                accel = 5.77 * ev.amp_rad / min(ev.flex_s, ev.release_s) ** 2
                (lo_dps, hi_dps), (lo_deg, hi_deg) = (
                    (TIBIALIS_DPS, pl.sc.tibialis_deg) if entry.get("tibialis") else ((10.0, 150.0), (2.0, 25.0)))
                scale = np.clip(rng.uniform(0.75, 1.25), max(lo_dps / peak, lo_deg / amp_deg),
                                min(hi_dps / peak, hi_deg / amp_deg, MAX_FLEX_ACCEL_RAD_S2 / accel))
                twin = replace(ev, start_s=ev.start_s + rng.uniform(-0.3, 0.3), amp_rad=ev.amp_rad * scale,
                               twist=rng.uniform(-0.15, 0.15))
            elif r < 0.8:
                moved.add(id(ev))
        elif isinstance(ev, Path) and (entry["kind"] == "turn" or r < 0.7):
            shift = 0.0 if entry["kind"] == "turn" else rng.uniform(0.0, 0.3)
            twin = make_path(rng, ev.start_s + shift, ev.end_s - ev.start_s,
                             TURN_PATH if entry["kind"] == "turn" else RESTLESS_PATH)
        elif isinstance(ev, (Twitch, Tug)) and r < 0.5:
            moved.add(id(ev))
        if id(ev) in moved:
            rings = pl.rings.get(id(ev), [])  # the strap rings where the flexion is
            p1.events += [ev, *rings]
            moved.update(id(ring) for ring in rings)
            entry["leg"] = 1
        if twin is not None:
            p1.events.append(twin)
            if isinstance(twin, Flexion):
                p1.events += strap_rings(rng, twin, pl.sc.strap_ring_hz)
            if "onset_s" in entry:
                lm = pl._lm(twin.start_s, twin.end_s, entry["kind"], _peak_dps(twin), _flex_deg(twin),
                            entry["wake"])
                pl.lms.append(lm | {k: v for k, v in entry.items() if k in ("series", "tibialis")} | {"leg": 1})
    p0.events = [ev for ev in p0.events if id(ev) not in moved]
    return p1


def _sensor_quirks(plan: Plan, rng: np.random.Generator, sc: Scenario) -> None:
    """The chip's own errors for this night: offsets, scale, noise, and a wandering gyro bias."""
    nyquist = plan.odr_hz / 2.0
    plan.accel_offset_g = rng.uniform(-1, 1, 3) * physics.ACCEL_ZERO_G_MG / 1000.0
    plan.accel_scale = 1.0 + rng.uniform(-0.01, 0.01, 3)
    plan.accel_noise_g = rng.uniform(*physics.ACCEL_NOISE_UG_RTHZ) * 1e-6 * np.sqrt(nyquist)
    plan.gyro_noise_dps = rng.uniform(*physics.GYRO_NOISE_MDPS_RTHZ) * 1e-3 * np.sqrt(nyquist)
    step_s = 10.0
    plan.bias_t = np.arange(0.0, plan.duration_s + 2 * step_s, step_s)
    step_dps = physics.GYRO_BIAS_WALK_DPS_RTHR * np.sqrt(step_s / 3600.0)
    steps = rng.standard_normal((len(plan.bias_t), 3)) * step_dps
    plan.bias_dps = rng.uniform(-1, 1, 3) * physics.GYRO_ZERO_RATE_DPS * 2.0 + np.cumsum(steps, axis=0)
    plan.strap_accel_g = sc.strap_accel_mg / 1000.0
    plan.strap_gyro_dps = sc.strap_gyro_dps
    plan.mount_deg = tuple(round(float(rng.uniform(-m, m)), 2) for m in sc.mount_deg)
    if sc.strap_turned_deg[1] > 0:
        yaw, pitch, roll = plan.mount_deg
        plan.mount_deg = (yaw, pitch, round(roll + float(rng.uniform(*sc.strap_turned_deg)), 2))

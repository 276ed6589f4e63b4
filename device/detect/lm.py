"""Leg-movement (LM) detection on the conditioned activity of one leg, streaming.

Three stages, each with a little carried state:
1. `NoiseFloor`: onset thresholds that follow each night's noise floor, a low percentile of recent
   window activity. Fixed thresholds fail across straps, sensors and sleepers: PAM-RL needed its
   thresholds adjusted to the noise of each recording (Yang et al., Sleep Med 2014), and the
   Stanford detector uses noise-floor adjustable thresholds (Moore et al., PLoS One 2014).
2. `HysteresisTracker`: bursts of activity by the WASM rules. WASM 2016 (Ferri et al., Sleep Med
   2016): an LM starts where the EMG rises 8 µV above resting and ends at the start of a period of
   at least 0.5 s under 2 µV above resting, so movements less than 0.5 s apart are one. Our offset
   threshold is likewise a quarter of the onset threshold. The onset threshold decides that a
   movement happened; its onset is dated back to where the activity left the resting level (the
   offset threshold), as a technologist marks the start of the burst.
3. `HoldMerger`: a held contraction. The leg flexes, stays flexed with little rotation, then
   releases. The gyro sees two bursts; the flexion angle (gyro y-z integrated) shows the leg held away
   from where it started and brought back, so the two are one LM from the flexion to the release
   (docs/architecture.md, "What a shin sensor sees"). Turning over is also joined: bursts close together
   while the leg rolls far about its own axis are one long movement, so a turn (longer than 10 s,
   docs/architecture.md) is one LM that breaks a series, never a run of CLMs.
A partner rocking the mattress swings the leg back and forth slowly: such a burst is no LM
(`is_rocking`), but a movement made during it still stands out where it turns the leg faster than a
mattress can, and a second tracker above that rate finds it (`fast_part_stands_in`).
LMs shorter than 0.5 s are dropped (WASM 2016: an LM lasts at least 0.5 s). LMs over 10 s are kept
as LMs: scoring makes them non-CLMs that break a series.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# WASM 2016 (Ferri et al., Sleep Med 2016): minimum LM duration, and the 0.5 s below the offset
# threshold that ends an LM (movements closer than that are one LM).
MIN_LM_S = 0.5
OFFSET_QUIET_S = 0.5


@dataclass(frozen=True)
class LMParams:
    """Tunable constants of LM detection."""

    # Onset threshold as a multiple of the noise floor (a low percentile of window-mean activity).
    # For Gaussian noise of σ per axis the y-z magnitude averages 1.25σ, and 6 times that (7.5σ)
    # is exceeded with a probability of e^-28 per sample. But the floor of a loose strap is not
    # Gaussian: it rattles and rings after every jerk (accuracy.py, faint), and a twitch stretched
    # by its ringing past 0.5 s would count. Twelve times the floor keeps a rattling strap's onset
    # where its rattle cannot start an LM, while on a snug strap (floor 0.03-0.1 dps: the chip's
    # noise, breathing and heartbeat, docs/noise-budget.md) the lower bound below decides.
    onset_x_floor: float = 12.0
    # Offset / onset threshold: WASM 2016 EMG, 2 µV / 8 µV above resting. A limb coming to rest
    # slows smoothly to zero (a minimum-jerk profile spends its last 10 % under 3 % of its peak
    # rate; Flash & Hogan, J Neurosci 1985), so a gentle release ends 0.1-0.3 s before it stops.
    # With an onset at 1.5 dps a quarter of it (0.4 dps) is within reach of a heartbeat's recoil,
    # and the offset would hold twitches open past 0.5 s: half of it (0.75 dps) is far above the
    # snug strap's floor and still catches the slow tail of a 2-dps ankle movement.
    # A release too gentle to reach the onset level still ends its LM (`Burst.weak`).
    offset_ratio: float = 0.5
    # ...but never within the noise: on a rattling strap, noise peaks would hold an LM open.
    offset_x_floor: float = 4.0
    # Lower bounds. A knee flexion peaks at 10-150 dps on the shin (docs/architecture.md), but an
    # ankle dorsiflexion alone (tibialis anterior; the knee and hip join in only some PLMs:
    # Coleman et al., Ann Neurol 1980) tilts the shin only 0.3-2 deg at 2-20 dps (issue 16,
    # docs/noise-budget.md). The chip's noise is 0.02-0.04 dps rms at 52 Hz and a lying shin's
    # breathing and heartbeat a few hundredths to 0.2 dps, so 1.5 dps is 30-70 times the floor
    # and within the slowest dorsiflexion's reach. A partner rocking the mattress tilts the leg at
    # 1-10 dps too: it is told apart by its shape (`is_rocking`), not by its rate.
    min_onset_dps: float = 1.5
    min_onset_g: float = 0.03
    floor_percentile: float = 10.0
    floor_history_s: float = 300.0
    # Held contraction: bursts at most this far apart (a CLM lasts at most 10 s), the first leaving
    # the leg flexed by at least hold_min_deg and the second turning it back, are one LM. An ankle
    # dorsiflexion tilts the shin by as little as 0.3 deg (issue 16); each burst's change of angle is
    # measured over the burst alone (0.15-2 s), where a residual gyro bias of a few hundredths of a
    # dps adds a few hundredths of a degree (docs/noise-budget.md).
    max_hold_s: float = 10.0
    hold_min_deg: float = 0.2
    hold_reverse_deg: float = 45.0
    hold_size_ratio: float = 3.0
    # A held knee flexion drifts and shivers (the simulator's 8-12 Hz tremor, docs/architecture.md):
    # a burst during the hold that moves the leg less than this share of the held flexion, and turns
    # it slower than this share of its peak rate, is part of the hold, not an LM of its own.
    hold_drift_ratio: float = 0.25
    # Turning over: bursts at most turn_join_s apart are one movement once the leg has rolled by
    # turn_roll_deg (a tugged strap twists 5-30°; a turn rolls the leg 45-180°).
    turn_join_s: float = 1.5
    turn_roll_deg: float = 40.0
    # Rolling, not flexion: a burst that turns about the shin's own axis this many times faster than
    # it flexes, without rolling as far as a turn. A knee flexion barely rolls the shin (the hip
    # rotates a little with it); a tugged cable twists a loose strap about the shin at up to
    # ~200 dps while rocking it a little about y.
    roll_rate_ratio: float = 2.0
    # Rolling never starts an LM, but while the leg rolls faster than this (turning over: the
    # body carries the leg round, often with no flexion for a second or two) the LM goes on.
    # A partner rocking the mattress tilts it at up to ~10 dps.
    roll_sustain_dps: float = 15.0
    # Rocked, not moved: a partner rocking the mattress swings the whole leg passively back and
    # forth about where it lay, slowly (the mattress tilts it at up to ~10 dps). A burst that
    # travels more than one out-and-back (its flexion path at least rock_path_ratio times its
    # reach; a flexion and its return, held or not, travel twice the reach) at a mean rate under
    # rock_mean_dps is rocking. Restless flexing and turning over also swing back and forth, but
    # actively: 8-30 deg swings at 25-150 dps (docs/architecture.md), a mean rate well above 10 dps.
    rock_path_ratio: float = 3.0
    rock_mean_dps: float = 6.0
    # A leg movement during the rocking still shows where it turns the leg faster than the mattress
    # can: the bursts of rotation above rock_ceiling_dps (starting once above 1.2 times it) inside
    # a rocking burst are judged as LMs of their own. So is such a whole movement (out and back)
    # inside a burst that went on slowly for more than rock_lead_s before it: a flexion from rest
    # passes 10 dps well within a second (a 2-25 deg minimum-jerk flex of 0.15-2 s peaks at
    # 10-150 dps, docs/architecture.md), so a slow lead-in that long is the rocking it came on top of.
    rock_ceiling_dps: float = 10.0
    rock_lead_s: float = 1.0


@dataclass(frozen=True)
class Burst:
    """A stretch of activity between an onset and an offset, before holds are merged."""

    onset_s: float
    offset_s: float
    flex_on_deg: tuple[float, float]  # the flexion angle (y, z) at onset and at offset
    flex_off_deg: tuple[float, float]
    flex_dev_deg: float  # about the largest |flexion - flexion at onset| within the burst
    peak_dps: float
    roll_peak_dps: float = 0.0  # largest rate about the shin's own axis
    roll_on_deg: float = 0.0
    roll_off_deg: float = 0.0
    roll_span_deg: float = 0.0  # max - min of the roll angle within the burst
    path_deg: float = 0.0  # the flexion rate integrated unsigned over the burst's active runs
    cut_by_gap: bool = False
    # Already moving when the data began (the start of the recording or the end of a gap): its
    # true onset is unknown, so it cannot be scored (no LM may start at a gap's edge).
    onset_unseen: bool = False
    since_data_s: float = float("inf")  # from where the data began or resumed to the onset
    # Above the offset level only, never the onset level: no LM of its own, but it may be the slow
    # release of a flexion held before it (a limb let down gently barely turns).
    weak: bool = False
    held: bool = False  # already a flexion joined to its release
    turn: bool = False  # already joined as part of turning over

    def joined(self, later: Burst, held: bool, turn: bool) -> Burst:
        """This burst and a later one as one movement."""
        return Burst(
            onset_s=self.onset_s,
            offset_s=later.offset_s,
            flex_on_deg=self.flex_on_deg,
            flex_off_deg=later.flex_off_deg,
            flex_dev_deg=max(self.flex_dev_deg, _norm(later.flex_on_deg, self.flex_on_deg)),
            peak_dps=max(self.peak_dps, later.peak_dps),
            roll_peak_dps=max(self.roll_peak_dps, later.roll_peak_dps),
            roll_on_deg=self.roll_on_deg,
            roll_off_deg=later.roll_off_deg,
            roll_span_deg=max(
                self.roll_span_deg, later.roll_span_deg, abs(later.roll_off_deg - self.roll_on_deg)
            ),
            path_deg=self.path_deg + later.path_deg,
            cut_by_gap=later.cut_by_gap,
            onset_unseen=self.onset_unseen,
            since_data_s=self.since_data_s,
            held=held or self.held,
            turn=turn or self.turn,
        )


@dataclass(frozen=True)
class Thresholds:
    """The thresholds in force for one frame."""

    on_gyro_dps: float
    off_gyro_dps: float
    on_accel_g: float


class NoiseFloor:
    """A robust running estimate of the quiet level of the two activities (gyro, accel)."""

    def __init__(self, window_s: float, params: LMParams) -> None:
        self.params = params
        self._size = max(1, round(params.floor_history_s / window_s))
        self._ring = np.zeros((self._size, 2))
        self._count = 0  # windows seen, capped at the ring size

    def update(self, gyro_window_dps: np.ndarray, accel_window_g: np.ndarray) -> Thresholds:
        """Add window means; return the thresholds from the updated floor."""
        new = np.column_stack([gyro_window_dps, accel_window_g])[-self._size :]
        self._ring = np.concatenate([self._ring[len(new) :], new])
        self._count = min(self._size, self._count + len(new))
        recent = self._ring[self._size - self._count :]
        k = int(self.params.floor_percentile / 100.0 * (len(recent) - 1))
        floor = np.partition(recent, k, axis=0)[k]
        p = self.params
        on_gyro_dps = max(p.onset_x_floor * float(floor[0]), p.min_onset_dps)
        return Thresholds(
            on_gyro_dps=on_gyro_dps,
            off_gyro_dps=max(p.offset_ratio * on_gyro_dps, p.offset_x_floor * float(floor[0])),
            on_accel_g=max(p.onset_x_floor * float(floor[1]), p.min_onset_g),
        )


def run_reduce(ufunc: np.ufunc, x: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """`ufunc` reduced over each run x[starts[i]:ends[i]] (runs sorted, disjoint, non-empty)."""
    bounds = np.column_stack([starts, ends]).ravel()
    if bounds[-1] == len(x):
        bounds = bounds[:-1]  # the last run goes to the end anyway
    return ufunc.reduceat(x, bounds)[::2]


class HysteresisTracker:
    """Finds bursts in activities normalised to their thresholds (1.0 is on the threshold)."""

    def __init__(self, odr_hz: float, params: LMParams) -> None:
        self.params = params
        self.dt_s = 1.0 / odr_hz
        self.quiet_n = round(OFFSET_QUIET_S * odr_hz)
        self.in_lm = False
        self._quiet_run = 0  # samples below the offset threshold at the end of the last frame
        self._onset_s = 0.0
        self._onset_unseen = False
        self._quiet_start_s = 0.0
        # A stretch above the offset threshold still open at the end of the last frame, with no
        # onset yet: its start time, flexion, roll and whether it began with the data, in case the
        # onset comes in this frame.
        self._open_run: tuple[float, tuple[float, float], float, bool] | None = None
        self._segment_start_s: float | None = None  # first sample since the start or the last gap
        self._roll_on = self._roll_off = self._roll_lo = self._roll_hi = 0.0
        self._flex_on = self._flex_off = (0.0, 0.0)
        self._flex_dev = self._peak = self._roll_peak = self._path = 0.0

    @property
    def onset_s(self) -> float | None:
        """Onset of the burst in progress, if any."""
        return self._onset_s if self.in_lm else None

    def process(
        self,
        t_s: np.ndarray,
        act_on: np.ndarray,
        act_off: np.ndarray,
        gyro_dps: np.ndarray,
        roll_dps: np.ndarray,
        flex_deg: np.ndarray,
        roll_deg: np.ndarray,
        delay_n: int,
    ) -> list[Burst]:
        """Consume one contiguous frame; return the bursts that ended in it.

        `t_s` are the sample times, `act_on` the activity over the onset threshold, `act_off` the
        activity that times the extent over the offset threshold, `gyro_dps` the rotation rate and
        `roll_dps` the rate about x (for the peaks), `flex_deg` and `roll_deg` the flexion and roll
        angles. Reported times are taken back by `delay_n` samples, the group delay of smoothing.
        """
        lo = act_off >= 1.0
        hi_idx = np.flatnonzero(act_on >= 1.0)
        edges = np.diff(np.concatenate([[0], lo.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        shift_s = delay_n * self.dt_s
        if self._segment_start_s is None:
            self._segment_start_s = float(t_s[0])
        if len(starts):
            run_peak = run_reduce(np.maximum, gyro_dps, starts, ends)
            run_path = run_reduce(np.add, gyro_dps, starts, ends) * self.dt_s
            run_roll_peak = run_reduce(np.maximum, roll_dps, starts, ends)
            run_fmax = run_reduce(np.maximum, flex_deg, starts, ends)
            run_fmin = run_reduce(np.minimum, flex_deg, starts, ends)
            run_rmax = run_reduce(np.maximum, roll_deg, starts, ends)
            run_rmin = run_reduce(np.minimum, roll_deg, starts, ends)
        done: list[Burst] = []
        prev_end = -self._quiet_run  # index after the last active sample, in this frame's terms
        for i, (s, e) in enumerate(zip(starts, ends)):
            if self.in_lm and s - prev_end >= self.quiet_n:
                done.append(self._end())
            if not self.in_lm:
                onset_s = float(t_s[s]) - shift_s
                unseen = onset_s <= self._segment_start_s
                run_start = (max(onset_s, self._segment_start_s), tuple(flex_deg[s].tolist()),
                             float(roll_deg[s]), unseen)
                if s == 0 and self._open_run is not None:
                    run_start = self._open_run
                self._open_run = run_start if e == len(act_off) else None
                k = np.searchsorted(hi_idx, s)
                if k == len(hi_idx) or hi_idx[k] >= e:
                    if e < len(act_off):  # ended below the onset level: at most a release
                        reach = np.maximum(np.abs(run_fmax[i] - run_start[1]),
                                           np.abs(run_fmin[i] - run_start[1]))
                        done.append(Burst(
                            onset_s=run_start[0], offset_s=float(t_s[e - 1]) + self.dt_s - shift_s,
                            flex_on_deg=run_start[1], flex_off_deg=tuple(flex_deg[e - 1].tolist()),
                            flex_dev_deg=float(np.hypot(*reach)), peak_dps=float(run_peak[i]),
                            roll_peak_dps=float(run_roll_peak[i]), roll_on_deg=run_start[2],
                            roll_off_deg=float(roll_deg[e - 1]),
                            roll_span_deg=float(run_rmax[i] - run_rmin[i]), path_deg=float(run_path[i]),
                            onset_unseen=run_start[3], since_data_s=run_start[0] - self._segment_start_s,
                            weak=True))
                    prev_end = e
                    continue
                self._open_run = None
                self.in_lm = True
                self._onset_s, self._flex_on, self._roll_on, self._onset_unseen = run_start
                self._flex_dev = 0.0
                self._peak = self._roll_peak = self._path = 0.0
                self._roll_lo = self._roll_hi = self._roll_on
            # Peaks and excursions come from the runs above the offset threshold, not the quiet
            # (held) stretches between them.
            self._peak = max(self._peak, float(run_peak[i]))
            self._path += float(run_path[i])
            self._roll_peak = max(self._roll_peak, float(run_roll_peak[i]))
            reach = np.maximum(np.abs(run_fmax[i] - self._flex_on), np.abs(run_fmin[i] - self._flex_on))
            self._flex_dev = max(self._flex_dev, float(np.hypot(*reach)))
            self._flex_off = tuple(flex_deg[e - 1].tolist())
            self._roll_off = float(roll_deg[e - 1])
            self._roll_lo = min(self._roll_lo, float(run_rmin[i]))
            self._roll_hi = max(self._roll_hi, float(run_rmax[i]))
            self._quiet_start_s = float(t_s[e - 1]) + self.dt_s - shift_s
            prev_end = e
        n = len(act_off)
        if len(ends) == 0 or ends[-1] < n:
            self._open_run = None
        self._quiet_run = n - prev_end
        if self.in_lm and self._quiet_run >= self.quiet_n:
            done.append(self._end())
        return done

    def cut(self, end_s: float) -> list[Burst]:
        """End a burst in progress at a gap or the end of the recording (`end_s` is where data stops)."""
        self._open_run = None
        if not self.in_lm:
            self._quiet_run = 0
            self._segment_start_s = None
            return []
        if self._quiet_run == 0:
            self._quiet_start_s = end_s
        burst = replace(self._end(), cut_by_gap=True)
        self._quiet_run = 0
        self._segment_start_s = None
        return [burst]

    def _end(self) -> Burst:
        self.in_lm = False
        return Burst(
            onset_s=self._onset_s,
            offset_s=max(self._quiet_start_s, self._onset_s),
            flex_on_deg=self._flex_on,
            flex_off_deg=self._flex_off,
            flex_dev_deg=self._flex_dev,
            peak_dps=self._peak,
            roll_peak_dps=self._roll_peak,
            roll_on_deg=self._roll_on,
            roll_off_deg=self._roll_off,
            roll_span_deg=self._roll_hi - self._roll_lo,
            path_deg=self._path,
            onset_unseen=self._onset_unseen,
            since_data_s=self._onset_s - self._segment_start_s,
        )


def may_end_an_unseen_flexion(burst: Burst, params: LMParams) -> bool:
    """Whether `burst` may be the release of a flexion made before the data resumed: it goes one
    way (back), with no flexion before it since the data resumed, within a hold's reach of that.
    Its LM began unseen; scoring the release alone would date it late."""
    if burst.held or burst.since_data_s > params.max_hold_s:
        return False
    net = _norm(burst.flex_off_deg, burst.flex_on_deg)
    return net >= max(params.hold_min_deg, 0.5 * burst.flex_dev_deg)


def is_hold_release(first: Burst, second: Burst, params: LMParams) -> bool:
    """Whether `second` releases a contraction that `first` flexed and held (one LM, not two).

    The release must turn the leg back: its change of angle points the other way from the
    flexion's (within `hold_reverse_deg`), and neither is more than `hold_size_ratio` times the
    other. Each is measured over its own burst, so a slow drift of the integrated angle during the
    quiet hold (residual gyro bias, the leg sagging) does not matter, and neither does the part of
    a slow flexion or release that stayed under the offset threshold.
    """
    if first.held or is_turn(first, params) or is_turn(second, params):
        return False
    if second.onset_s - first.offset_s > params.max_hold_s:
        return False
    out = np.subtract(first.flex_off_deg, first.flex_on_deg)
    back = np.subtract(second.flex_off_deg, second.flex_on_deg)
    held, released = float(np.hypot(*out)), float(np.hypot(*back))
    smaller, larger = sorted((held, released))
    if smaller < params.hold_min_deg or larger > params.hold_size_ratio * smaller:
        return False
    # Each must go one way (a flexion that stays; a release), not out and back like a twitch or a
    # whole LM: its net change is most of its excursion.
    if held < 0.5 * first.flex_dev_deg or released < 0.5 * second.flex_dev_deg:
        return False
    return float(np.dot(out, back)) <= -np.cos(np.radians(params.hold_reverse_deg)) * held * released


def is_hold_drift(first: Burst, second: Burst, params: LMParams) -> bool:
    """Whether `second` is the drift or tremor of a flexion that `first` made and still holds: small
    and slow beside it, within a hold's reach. The release may still follow and join them."""
    if first.held or first.turn or is_turn(first, params) or is_turn(second, params):
        return False
    if second.onset_s - first.offset_s > params.max_hold_s:
        return False
    out = _norm(first.flex_off_deg, first.flex_on_deg)
    if out < params.hold_min_deg or out < 0.5 * first.flex_dev_deg:  # a flexion that stays
        return False
    return (second.flex_dev_deg <= params.hold_drift_ratio * out
            and second.peak_dps <= params.hold_drift_ratio * first.peak_dps)


def _norm(a: tuple[float, float], b: tuple[float, float]) -> float:
    """|a - b| for two flexion angles (y, z)."""
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))


def is_turn(burst: Burst, params: LMParams) -> bool:
    """Whether a burst is (part of) turning over: joined as such, or rolling as far as a turn."""
    return burst.turn or burst.roll_span_deg >= params.turn_roll_deg


def is_rolling(burst: Burst, params: LMParams) -> bool:
    """Whether a burst is the sensor rolling about the shin rather than the leg moving."""
    if is_turn(burst, params):
        return False  # turning over is scored: one LM longer than 10 s
    return burst.roll_peak_dps >= params.roll_rate_ratio * burst.peak_dps


def is_rocking(burst: Burst, params: LMParams) -> bool:
    """Whether a burst is the leg rocked back and forth by the mattress rather than moved."""
    if is_turn(burst, params) or burst.held:
        return False
    duration_s = burst.offset_s - burst.onset_s
    return (
        burst.path_deg >= params.rock_path_ratio * burst.flex_dev_deg
        and burst.path_deg < params.rock_mean_dps * duration_s
    )


def fast_part_stands_in(burst: Burst, fast: list[Burst], params: LMParams) -> bool:
    """Whether the fast bursts inside `burst` are the movements, the rest of it being rocking."""
    if is_rocking(burst, params):
        return True
    if not fast or burst.held or is_turn(burst, params):
        return False
    # ...and only where the fast part is a whole movement, out and back (a fast release after a
    # slow flexion and hold is one way: the burst is the LM, from the flexion on).
    first = fast[0]
    net_deg = _norm(first.flex_off_deg, first.flex_on_deg)
    return first.onset_s - burst.onset_s > params.rock_lead_s and net_deg < 0.5 * first.flex_dev_deg


def turn_after_rocking(burst: Burst, fast: list[Burst], params: LMParams) -> Burst:
    """A turn that began while a partner rocked the mattress: the rocking (slow, back and forth) ran
    into it above the offset level, so the burst starts with the rocking. The turn starts where the
    leg first moved faster than a mattress can (`fast`), when what came before was that slow."""
    if not fast or not is_turn(burst, params):
        return burst
    lead_s = fast[0].onset_s - burst.onset_s
    lead_deg = burst.path_deg - sum(f.path_deg for f in fast)
    if lead_s > params.rock_lead_s and lead_deg < params.rock_mean_dps * lead_s:
        return replace(burst, onset_s=fast[0].onset_s)
    return burst


def is_turning(first: Burst, second: Burst, params: LMParams) -> bool:
    """Whether `second` continues the same turning over as `first`."""
    if second.onset_s - first.offset_s > params.turn_join_s:
        return False
    rolled = max(first.roll_span_deg, second.roll_span_deg, abs(second.roll_off_deg - first.roll_on_deg))
    return first.turn or rolled >= params.turn_roll_deg


class HoldMerger:
    """Holds back the latest burst until it is known whether a release or more turning follows it."""

    def __init__(self, params: LMParams) -> None:
        self.params = params
        self._pending: Burst | None = None
        self._horizon_s = max(params.max_hold_s, params.turn_join_s)

    @property
    def onset_s(self) -> float | None:
        """Onset of the burst held back, if any."""
        return None if self._pending is None else self._pending.onset_s

    def add(self, burst: Burst) -> list[Burst]:
        """Take a finished burst; return the bursts that can no longer change."""
        first = self._pending
        if burst.weak:  # only ever the release of the flexion held before it
            if first is not None and not first.cut_by_gap and is_hold_release(first, burst, self.params):
                self._pending = first.joined(burst, held=True, turn=False)
            return []
        if first is not None and not first.cut_by_gap:
            if is_hold_drift(first, burst, self.params):
                self._pending = first.joined(burst, held=False, turn=first.turn)
                return []
            if is_hold_release(first, burst, self.params):
                self._pending = first.joined(burst, held=True, turn=False)
                return []
            if is_turning(first, burst, self.params):
                self._pending = first.joined(burst, held=False, turn=True)
                return []
        self._pending = burst
        return [first] if first is not None else []

    def release(self, now_s: float, onset_in_progress_s: float | None) -> list[Burst]:
        """Release the pending burst once nothing that could join it can still come."""
        first = self._pending
        if first is None:
            return []
        horizon = first.offset_s + (self.params.turn_join_s if first.held else self._horizon_s)
        nothing_coming = onset_in_progress_s is None or onset_in_progress_s > horizon
        if first.cut_by_gap or (now_s > horizon and nothing_coming):
            self._pending = None
            return [first]
        return []

    def flush(self) -> list[Burst]:
        """Release whatever is pending (end of the recording)."""
        first, self._pending = self._pending, None
        return [first] if first is not None else []

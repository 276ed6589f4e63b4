"""A physically based simulator of nights seen by a shin IMU, with exact ground truth.

    night = simulate_night("plmd", seed=1, hours=8.0, odr_hz=52.0)
    for block in night.blocks(60.0): ...        # SampleBlocks, generated lazily, deterministic
    night.truth                                 # every LM, confounder, gap, in-bed span, reference figures
    write_night(night, "rec.csv", "truth.json")

The truth (`night.truth`, schema "rlsmon.truth/1"): `scenario`, `seed`, `hours`, `odr_hz`, `legs`,
`placement`, `duration_s`; `lights_off_s`, `lights_on_s` and `markers`; `lms` (what a sleep technologist would
score: `onset_s`, `offset_s`, `duration_s`, `leg`, `kind`, `tilt_deg`, `peak_dps`, `wake`, `clm`,
and `series` for PLMs); `confounders` (`kind`, `start_s`, `end_s`, details); `positions` and
`postures` (lying/upright); `wake`, `rem`, `gaps`, `not_worn` and `in_bed` spans (in bed and worn);
`mount_deg`; and `reference`, the night summary core scored by `device.detect.scoring.score_night`
from the true LMs. The `sit` scenario (an evening test: an hour awake, sitting in bed with the legs
outstretched, PLM series at IMIs of 4.5-40 s around 12 s) adds `sit_reference`, scored by
`device.detect.sit.score_sit` from lights off to lights on.

The sensor sits on the front of the shin: x along the shin toward the knee, y lateral, z out of the
shin's front. Accel is specific force in g (1 g "up" at rest), gyro is dps in the sensor frame (see
`device.sim.physics` for the rotation chain). Output is floats; quantisation is the emulator's job.

What each event looks like to the sensor (for tuning the detector):

- Lying (truth `positions`; sides 50%, supine 35%, prone 15%): shin within ~10 deg of horizontal,
  so |ax| < ~0.2 g. Supine puts gravity on +z, prone on -z, the sides on +-y (roll 0, 180, +-90
  deg, each +-15 deg).
  Sitting on the bed's edge: shin 72-84 deg up; standing 85-92 deg: ax near +1 g. In the
  `sitting` scenario the patient first sits up on the bed for 3-12 min, the shin 30-60 deg up,
  fidgeting about twice a minute (confounder `fidget`: a flexion like an LM's, out of bed, so not
  an LM), and the strap is turned 60-300 deg round the shin (truth `mount_deg` roll).
- PLM / isolated LM (truth `lms`, kind `plm` / `isolated`): a knee flexion about the lateral y
  axis of 2-25 deg (scenario range): a minimum-jerk flex of 0.15-2 s (gyro y peak 10-150 dps,
  negative = flexion; angular acceleration at most 15 rad/s^2), then in most LMs a hold of up to
  several seconds with almost no rotation (the angle drifts by at most 15%: < ~3 dps, plus an 8-12
  Hz tremor of 0.3-2 dps), then a release of 0.2-3 s (gyro y of the other sign). A quarter have no
  hold. Duration 0.6-9.5 s, median 2.5 s. Up to 15% of the flexion leaks into
  roll (gyro x). Supine or prone, gravity shifts between x and z by sin(tilt) (35-420 mg); on a side
  the hinge axis is vertical, so gravity barely changes and only the gyro sees it. A lever-arm
  acceleration (sensor 5-12 cm from a heel pivot or 25-40 cm from the knee) adds up to a few
  hundred mg (dynamic acceleration 20-1000 mg in all, less on a side). Truth onset = start of the
  flex, offset = end of the release.
- Ankle-only LM (truth `tibialis: true`; 80% of PLMs and isolated LMs in the `tibialis` scenario, a
  quarter in `plmd`, `severe`, `gaps` and `sitting`): the tibialis anterior dorsiflexes the ankle
  and the shin only reacts, tilting 0.3-2 deg (truth `tilt_deg`) at 2-20 dps, with the same
  flex-hold-release shape and durations; its tremor reaches the shin a tenth as strong. On the
  instep (`placement="instep"`) the foot turns 10 times as far (an assumption).
- Sleep (truth `wake`, `rem`): a sleep latency after lights off, awakenings, and REM at the end of
  each ~90-min cycle (5 min at first, up to 35). No PLM series run in wake or REM; twitches are three
  times as frequent in REM.
- PLM series: one after another through the sleep, with pauses between them; early in the night
  the pauses are shorter and the series longer. Within a series the LMs are stereotyped (size within
  0.7-1.4x the series' own) and the IMIs lognormal around the series' own median (22-28 s typical,
  clipped to 10.5-85 s); a few IMIs are < 10 s (they break WASM series). A turn or a gap that falls
  on a beat takes its place. Truth `series` numbers the intended series; whether an LM is periodic
  is for the rules (truth `reference`).
- Restless movement while awake (kind `restless`, `wake: true`): 1-20 s of continuous irregular
  flexing (8-30 deg swings every 0.35-1.2 s, gyro y ~25-150 dps) with some roll, always ending on a
  release; ~30% last > 10 s.
  These are true LMs: a technologist scores any movement meeting the amplitude and duration
  criteria, awake or asleep. Those > 10 s are LMs but not CLMs.
- Turning over (confounder `turn`, also an LM of kind `turn`, > 10 s, `clm: false`): 10.5-20 s of
  large roll about the shin axis (gyro x, up to ~100 dps) to a new lying position, with the knee
  drawn up 10-35 deg and kicks throughout; gravity moves between y and z.
- Twitch (confounder `twitch`): a sin^2 flexion bump of 0.1-0.4 s, gyro y peak 15-80 dps, alone or
  in bursts of up to 6, 0.7-2 s apart (fragmentary myoclonus). Not an LM.
- Bed partner (confounder `partner`): 3-20 s of whole-body rocking at 0.3-2.5 Hz, 1-10 dps on x/y,
  and a 5-60 mg vertical bounce. It may overlap the patient's own LMs. Not an LM.
- Tugged cable (confounder `cable`): a 5-30 deg roll about the shin axis in 0.15-0.5 s (gyro x up to
  ~200 dps), springing back over 0.5-3 s to 0-60% of it, which persists; the strap also rocks the
  sensor about y by up to 25% of the twist, out and back. Not an LM.
- Walking (confounder `walk`, inside `bathroom` spells and at the start and end of the night): shin
  near vertical, swinging +-22-32 deg about y at ~0.9 stride/s (steps at ~2 Hz), a 0.1-0.25 g
  bounce at the step rate and a 0.5-1.5 g heel strike each stride. Never an LM.
- Sit up / lie down (confounders): the shin moves between horizontal and upright in 2.5-5 s.
- Gaps (truth `gaps`): no rows, a jump in t; 1 s to 10 min in the `gaps` scenario. A gap never
  cuts a true LM in two (a beat of a series that would fall in it is skipped), so the truth stays
  what could be scored from the recorded data.
- Strap off (`strap_off` scenario; truth `not_worn`): the sensor lies on the bedside table for
  40-90 min in the night, on its back and still, after 6 s of handling, then is strapped back on
  with 6 s more; its temperature (`NightMotion.temperature_c`, each block's `temp_c`) follows the
  skin (31.5 °C, 1.5 °C warmer after lights off) when worn and the room (20.5 °C) when not, with a
  20-min time constant (`device.sim.wear`). LMs while it is off are not in the truth.
- Two legs (`legs=2`): the second sensor shares the body's posture, the partner, the gaps and
  walking (in anti-phase); 60% of flexions are bilateral (onsets within 0.3 s, sizes differ), 20%
  on the second leg alone; every truth LM and per-leg confounder names its `leg`.
- Mounting: the sensor sits up to 8 deg (faint: 20) off the shin's axes in yaw, 8 (10) in pitch and
  12 (20) in roll (truth `mount_deg`), so flexion leaks into gyro x and roll into gyro y.
- A loose strap (`faint`) also rings after each flexion and each release: a decaying 6.4-9.6 Hz
  rocking of the sensor about y (and a little x), 1-10 dps at first, gone in ~0.3 s.
- Always: the chip's white noise (LSM6DSOX), a gyro bias of up to +-2 dps that random-walks
  ~1 dps/sqrt(h), accel offsets of up to 20 mg and 1% scale errors, sub-mg pulse/breathing
  micro-motion in bed (mg-level sway upright), and lying, the patient's breathing (12-20 /min, up to
  0.1 dps), each heartbeat's recoil (50-70 /min, up to 0.2 dps and 1 mg) and a partner's breathing
  through the mattress (up to 0.1 dps; `Plan.rhythms`), and in the `faint` scenario a loose strap's
  rattle (3 mg, 0.4 dps rms).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from device.samples import SampleBlock
from device.sim.plan import PLACEMENTS, SITTING_UP, UPRIGHT_ABOVE_DEG, Plan, plan_night
from device.sim.render import NightMotion, render
from device.sim.scenarios import SCENARIOS, Scenario
from device.sim.shapes import knot_track
from device.sim.wear import take_off, temperature_c

__all__ = ["SCENARIOS", "Night", "NightMotion", "Scenario", "simulate_night", "write_night"]

TRUTH_SCHEMA = "rlsmon.truth/1"
MIN_HOURS = 0.01


@dataclass
class Night:
    """A simulated night: its exact truth, and its samples on demand, one sensor per leg."""

    scenario: str
    seed: int
    hours: float
    odr_hz: float
    truth: dict
    plans: list[Plan]

    @property
    def legs(self) -> int:
        return len(self.plans)

    @property
    def plan(self) -> Plan:
        """The first (or only) leg's plan."""
        return self.plans[0]

    def blocks(self, block_s: float = 60.0, leg: int = 0) -> Iterator[SampleBlock]:
        """The samples of sensor `leg` as `SampleBlock`s of `block_s` seconds' worth of rows each
        (the last may be shorter; a block spans more time where a gap falls). The samples do not
        depend on `block_s`."""
        per_block = max(1, int(round(block_s * self.odr_hz)))
        t, a, g = np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3))
        for part in render(self.plans[leg]):
            t, a, g = (np.concatenate([old, new]) for old, new in zip((t, a, g), part))
            end = len(t) - len(t) % per_block
            for i in range(0, end, per_block):
                yield self._block(t[i:i + per_block], a[i:i + per_block], g[i:i + per_block], leg)
            t, a, g = t[end:], a[end:], g[end:]
        if len(t):
            yield self._block(t, a, g, leg)

    def _block(self, t: np.ndarray, a: np.ndarray, g: np.ndarray, leg: int) -> SampleBlock:
        # The sensor's temperature, read once a block (at its end) as the readers do.
        temp_c = float(temperature_c(self.plans[leg], t[-1:])[0])
        return SampleBlock(t, a, g, self.odr_hz, temp_c)

    def motion(self, leg: int = 0) -> NightMotion:
        """A fresh motion source for the register-level emulator, playing sensor `leg`."""
        return NightMotion(self.plans[leg])


def simulate_night(scenario: str, seed: int, hours: float, odr_hz: float = 52.0, legs: int = 1,
                   placement: str = "shin") -> Night:
    """Plan one night of `scenario` (a key of `SCENARIOS`), deterministic for `seed`, with a sensor
    on one leg or on both (`legs=2`; the first leg is the same night either way, apart from the LMs
    and confounders that move to the other leg), on the shin or on the instep (`placement`; the
    same night either way, only what the sensor feels of ankle movements differs). Samples are
    generated only when `Night.blocks()` is iterated; the truth is ready at once."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed}")
    if not hours >= MIN_HOURS:
        raise ValueError(f"hours must be at least {MIN_HOURS} (to walk in, lie down and get up), not {hours}")
    if not odr_hz > 0:
        raise ValueError(f"odr_hz must be positive, not {odr_hz}")
    if legs not in (1, 2):
        raise ValueError(f"legs must be 1 or 2, not {legs}")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, not {placement!r}")
    plans, truth = plan_night(scenario, seed, hours, odr_hz, legs, placement)
    take_off(plans, truth, SCENARIOS[scenario], seed)
    truth = {
        "schema": TRUTH_SCHEMA, "scenario": scenario, "seed": seed, "hours": hours, "odr_hz": odr_hz,
        "legs": legs, "placement": placement, "duration_s": plans[0].duration_s, **truth,
    }
    truth["lms"].sort(key=lambda m: (m["onset_s"], m["leg"]))
    truth["postures"] = _postures(plans[0], truth["positions"])
    truth["markers"] = [[truth["lights_off_s"], "lights_off"], [truth["lights_on_s"], "lights_on"]]
    truth.update(_reference(truth))
    return Night(scenario=scenario, seed=seed, hours=hours, odr_hz=odr_hz, truth=truth, plans=plans)


def _postures(plan: Plan, positions: list[dict]) -> list[dict]:
    """Lying / upright segments of the shin, from its planned elevation on a 0.1 s grid; sitting up
    on the bed (the shin 30-60 deg up) is out of bed too."""
    t = np.arange(0.0, plan.duration_s, 0.1)
    upright = knot_track(t, plan.knots_t, plan.knots_theta) > np.radians(UPRIGHT_ABOVE_DEG)
    for here, after in zip(positions, positions[1:] + [None]):
        if here["position"] == SITTING_UP:
            end_s = plan.duration_s if after is None else after["start_s"]
            upright |= (t >= here["start_s"]) & (t < end_s)
    edges = np.flatnonzero(np.diff(upright.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [len(t)]])
    return [
        {"start_s": round(float(t[a]), 3), "end_s": round(float(t[b]) if b < len(t) else plan.duration_s, 3),
         "posture": "upright" if upright[a] else "lying"}
        for a, b in zip(bounds[:-1], bounds[1:])
    ]


def _reference(truth: dict) -> dict:
    """In-bed spans and the night summary core, scored by our own rules from the true LMs."""
    from device.detect.bed import in_bed_intervals
    from device.detect.events import Interval, LegMovement, PostureSegment
    from device.detect.scoring import LEFT_RIGHT, score_night
    from device.wear import worn_in_bed

    postures = [PostureSegment(p["start_s"], p["end_s"], p["posture"]) for p in truth["postures"]]
    markers = [(t, m) for t, m in truth["markers"]]
    in_bed = in_bed_intervals(postures, markers, truth["duration_s"])
    legs = [[LegMovement(m["onset_s"], m["offset_s"], leg, m["peak_dps"], m["tilt_deg"])
             for m in truth["lms"] if m["leg"] == leg] for leg in range(truth["legs"])]
    gaps = [Interval(g["start_s"], g["end_s"]) for g in truth["gaps"]]
    in_bed = worn_in_bed(in_bed, [Interval(s["start_s"], s["end_s"]) for s in truth["not_worn"]])
    # The first leg is the left, the second (--right-out) the right, as analyze reads them.
    reference = score_night(legs, in_bed, gaps, truth["duration_s"], sides=LEFT_RIGHT if len(legs) == 2 else ())
    out = {"in_bed": [{"start_s": i.start_s, "end_s": i.end_s} for i in in_bed], "reference": reference}
    if SCENARIOS[truth["scenario"]].sit_test:  # the evening test, from lights off to lights on
        from device.detect.sit import score_sit

        out["sit_reference"] = score_sit(legs, postures, gaps, truth["lights_off_s"], truth["lights_on_s"],
                                         truth["lights_on_s"] - truth["lights_off_s"], False)
    return out


def write_night(night: Night, out_csv: str | os.PathLike, truth_json: str | os.PathLike,
                block_s: float = 60.0, other_leg_csv: str | os.PathLike | None = None) -> None:
    """Write the night's samples as a recording CSV (streamed), the second leg's to
    `other_leg_csv` for a two-leg night, and the truth as JSON."""
    from device.recording import write_recording

    if (other_leg_csv is None) != (night.legs == 1):
        raise ValueError(f"a {night.legs}-leg night needs {night.legs} recording paths")
    write_recording(out_csv, night.blocks(block_s))
    if other_leg_csv is not None:
        write_recording(other_leg_csv, night.blocks(block_s, leg=1))
    with open(truth_json, "w", encoding="utf-8") as f:
        json.dump(night.truth, f, indent=1)
        f.write("\n")

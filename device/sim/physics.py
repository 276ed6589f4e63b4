"""Rigid-body kinematics of a sensor on the shin, and the MEMS sensor model.

Frames. World: Z up. Sensor (docs/architecture.md): x along the shin toward the knee, y lateral, z out of
the shin's front. The sensor's orientation is a chain of four rotations, applied to sensor vectors
from the right:

    R = R_Y(-theta) . R_x(phi) . R_y(alpha) . R_x(beta)

- theta: elevation of the shin above the horizontal (0 lying, ~90 deg standing);
- phi: roll of the whole leg about the shin's axis (0 supine, +-90 on a side, 180 prone);
- alpha: knee flexion about the leg's lateral hinge (negative = flexion: the knee end of the shin
  rises toward the front of the shin);
- beta: the strap's own twist about the shin's axis (a tugged cable).

An accelerometer reads specific force: R^T (g_up + a_world) + the lever-arm acceleration of a
point on a rotating shin. A gyro reads the body-frame angular velocity.
"""

from __future__ import annotations

import numpy as np

G_MS2 = 9.80665

# LSM6DSOX datasheet (ST DS12814), mechanical characteristics, high-performance mode: accelerometer
# noise density about 70 ug/sqrt(Hz) at +-2 g, gyro rate noise density 3.8 mdps/sqrt(Hz); zero-rate
# level +-1 dps and zero-g offset +-20 mg typical. Each night draws from a wider range, 70-130
# ug/sqrt(Hz) and 3.8-5 mdps/sqrt(Hz), to cover larger full scales and the family's other chips
# (the emulator's table). RMS noise = density * sqrt(ODR / 2).
ACCEL_NOISE_UG_RTHZ = (70.0, 130.0)
GYRO_NOISE_MDPS_RTHZ = (3.8, 5.0)
GYRO_ZERO_RATE_DPS = 1.0
ACCEL_ZERO_G_MG = 20.0
# Micro-motion (rms, lying / upright): lying still, pulse and breathing move a shin by well under a
# mg and a few hundredths of a dps; standing or sitting, postural sway is a few mg and about a dps.
MICRO_ACCEL_G = (0.0005, 0.004)
MICRO_GYRO_DPS = (0.05, 0.8)
# The gyro bias wanders: a random walk of ~1 dps per sqrt(hour) gives a few dps over a night.
GYRO_BIAS_WALK_DPS_RTHR = 1.0


def min_jerk(u: np.ndarray) -> np.ndarray:
    """The minimum-jerk position profile from 0 to 1 over u in [0, 1] (Flash & Hogan 1985), the
    usual model of a smooth voluntary reach. Clipped outside: 0 before, 1 after. Peak speed is
    1.875 (in units of distance per duration)."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (10.0 - 15.0 * u + 6.0 * u * u)


def rot_t(axis: int, angle: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Apply the transpose of the rotation by `angle` (rad, per row) about `axis` (0 x, 1 y) to
    vectors `v` (n, 3): that expresses a vector of the outer frame in the rotated one."""
    c, s = np.cos(angle), np.sin(angle)
    out = np.empty_like(v)
    if axis == 0:
        out[:, 0] = v[:, 0]
        out[:, 1] = c * v[:, 1] + s * v[:, 2]
        out[:, 2] = -s * v[:, 1] + c * v[:, 2]
    else:
        out[:, 0] = c * v[:, 0] - s * v[:, 2]
        out[:, 1] = v[:, 1]
        out[:, 2] = s * v[:, 0] + c * v[:, 2]
    return out


def sensor_readings(
    theta: np.ndarray, phi: np.ndarray, alpha: np.ndarray, beta: np.ndarray,
    d_theta: np.ndarray, d_phi: np.ndarray, d_alpha: np.ndarray, d_beta: np.ndarray,
    a_world_g: np.ndarray, a_leg_g: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Ideal accelerometer (g) and gyro (dps) readings from the four angles (rad), their rates
    (rad/s), the world-frame linear acceleration (g) and the lever-arm acceleration in the leg frame
    (g, the frame after the flexion and before the strap twist)."""
    n = len(theta)
    up = np.zeros((n, 3))
    up[:, 2] = 1.0
    f = rot_t(1, -theta, up + a_world_g)
    f = rot_t(0, phi, f)
    f = rot_t(1, alpha, f)
    f = rot_t(0, beta, f + a_leg_g)

    w = np.zeros((n, 3))
    w[:, 1] = -d_theta
    w = rot_t(0, phi, w)
    w[:, 0] += d_phi
    w = rot_t(1, alpha, w)
    w[:, 1] += d_alpha
    w = rot_t(0, beta, w)
    w[:, 0] += d_beta
    return f, np.degrees(w)


def mount_matrix(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """The strap-to-sensor rotation R_z(yaw) R_y(pitch) R_x(roll) of a sensor strapped a little off
    the shin's axes. Row vectors in the strap frame times this matrix are in the sensor frame."""
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    rz = np.array([[np.cos(y), -np.sin(y), 0.0], [np.sin(y), np.cos(y), 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[np.cos(p), 0.0, np.sin(p)], [0.0, 1.0, 0.0], [-np.sin(p), 0.0, np.cos(p)]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(r), -np.sin(r)], [0.0, np.sin(r), np.cos(r)]])
    return rz @ ry @ rx


def lever_accel_g(lever_m: float, d_alpha: np.ndarray, dd_alpha: np.ndarray) -> np.ndarray:
    """Acceleration (g, leg frame) of the sensor at `lever_m` along the shin's x axis from the pivot
    of a flexion about y: tangential -d*alpha'' on z, centripetal -d*alpha'^2 on x."""
    a = np.zeros((len(d_alpha), 3))
    a[:, 0] = -lever_m * d_alpha * d_alpha / G_MS2
    a[:, 2] = -lever_m * dd_alpha / G_MS2
    return a


def moving_average_noise(
    rng: np.random.Generator, n: int, width: int, rms: float, tail: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Band-limited noise (n, 3): white noise smoothed by a `width`-sample moving average, scaled to
    `rms`. `tail` carries the last width-1 white samples of the previous chunk so chunks join
    seamlessly; the new tail is returned."""
    if tail is None:
        tail = rng.standard_normal((width - 1, 3))
    white = np.concatenate([tail, rng.standard_normal((n, 3))])
    csum = np.concatenate([np.zeros((1, 3)), np.cumsum(white, axis=0)])
    smooth = (csum[width:] - csum[:-width]) / np.sqrt(width)
    return smooth * rms, white[len(white) - (width - 1):]

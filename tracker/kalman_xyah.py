"""ByteTrack's Kalman filter on ``(x, y, a, h)`` boxes, as pure functions over batches of tracks.

State (Zhang et al. 2022, "ByteTrack", section 4.1, which takes DeepSORT's filter: Wojke et al.
2017, section 2.1)::

    mean = [x, y, a, h, x', y', a', h']

``x, y`` box centre (pixels), ``a`` aspect ratio w / h, ``h`` height (pixels), primes are
velocities per frame; constant-velocity model ``F``, measurement ``H = [I 0]``. Process and
measurement noise standard deviations are proportional to the current box height (``1/20`` of
``h`` for positions, ``1/160`` for velocities), except the aspect ratio's, which are fixed
(constants of the DeepSORT / ByteTrack reference code).

Covariance layout. ``F`` couples each quantity only with its own velocity and all noise matrices
are diagonal, so every covariance is block-diagonal with one 2x2 block per quantity and the
innovation covariance ``S`` is diagonal. The three distinct entries of each block are stored,
float64 (n, 12)::

    [var(x), var(y), var(a), var(h) | cov(x,x'), ..., cov(h,h') | var(x'), ..., var(h')]

so that prediction and correction of all tracks are a few element-wise array operations.
:func:`to_matrix` rebuilds the full (n, 8, 8) matrices. ``tests/test_tracker_kalman.py`` checks
these functions against the full-matrix equations of the reference implementation.

Every function takes and returns new arrays; nothing is modified in place.
"""

from __future__ import annotations

import numpy as np

STATE_DIM = 8
MEASUREMENT_DIM = 4
HEIGHT, HEIGHT_VELOCITY = 3, 7
ASPECT = 2
COV_DIM = 3 * MEASUREMENT_DIM

# Noise standard deviations relative to the box height (DeepSORT / ByteTrack reference values).
STD_WEIGHT_POSITION = 1.0 / 20
STD_WEIGHT_VELOCITY = 1.0 / 160
# Fixed standard deviations of the aspect ratio: process (position, velocity) and measurement.
STD_ASPECT = 1e-2
STD_ASPECT_VELOCITY = 1e-5
STD_ASPECT_MEASUREMENT = 1e-1
# A new track's position and velocity uncertainty, in multiples of the weights above.
INITIAL_POSITION_FACTOR = 2.0
INITIAL_VELOCITY_FACTOR = 10.0


def _noise_blocks(position_weight: float, velocity_weight: float, aspect_std: float, aspect_velocity_std: float):
    """Variances as (3, 4) blocks: ``scale * h^2 + fixed`` gives the per-track noise."""
    scale = np.zeros((3, MEASUREMENT_DIM))
    scale[0] = position_weight**2
    scale[2] = velocity_weight**2
    scale[:, ASPECT] = 0.0
    fixed = np.zeros((3, MEASUREMENT_DIM))
    fixed[0, ASPECT] = aspect_std**2
    fixed[2, ASPECT] = aspect_velocity_std**2
    return scale, fixed


_INITIAL_SCALE, _INITIAL_FIXED = _noise_blocks(
    INITIAL_POSITION_FACTOR * STD_WEIGHT_POSITION, INITIAL_VELOCITY_FACTOR * STD_WEIGHT_VELOCITY,
    STD_ASPECT, STD_ASPECT_VELOCITY,
)
_PROCESS_SCALE, _PROCESS_FIXED = _noise_blocks(
    STD_WEIGHT_POSITION, STD_WEIGHT_VELOCITY, STD_ASPECT, STD_ASPECT_VELOCITY
)
_MEASUREMENT_SCALE = _PROCESS_SCALE[0]
_MEASUREMENT_FIXED = np.where(np.arange(MEASUREMENT_DIM) == ASPECT, STD_ASPECT_MEASUREMENT**2, 0.0)


def initiate(measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks from measurements float64 (n, 4) ``[x, y, a, h]``: zero velocity, diagonal
    covariance with standard deviations ``2/20 h`` (positions) and ``10/160 h`` (velocities)."""
    mean = np.zeros((len(measurement), STATE_DIM))
    mean[:, :MEASUREMENT_DIM] = measurement
    h2 = np.square(measurement[:, HEIGHT])
    cov = h2[:, None, None] * _INITIAL_SCALE + _INITIAL_FIXED
    return mean, cov.reshape(-1, COV_DIM)


def predict(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame ahead: ``mean' = F mean``, ``P' = F P F^T + Q(h)``, ``h`` the current height.

    Per quantity: ``var' = var + 2 cov + var_vel + q_pos``, ``cov' = cov + var_vel``,
    ``var_vel' = var_vel + q_vel``.
    """
    new_mean = mean.copy()
    new_mean[:, :MEASUREMENT_DIM] += mean[:, MEASUREMENT_DIM:]
    blocks = cov.reshape(-1, 3, MEASUREMENT_DIM)
    h2 = np.square(mean[:, HEIGHT])
    new_blocks = blocks + h2[:, None, None] * _PROCESS_SCALE
    new_blocks += _PROCESS_FIXED
    new_blocks[:, 0] += 2.0 * blocks[:, 1] + blocks[:, 2]
    new_blocks[:, 1] += blocks[:, 2]
    return new_mean, new_blocks.reshape(-1, COV_DIM)


def update(mean: np.ndarray, cov: np.ndarray, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct each track with its measurement float64 (m, 4) ``[x, y, a, h]``.

    ``S = var + R(h)`` (``h`` from the predicted mean), gain ``k_pos = var / S``,
    ``k_vel = cov / S``; ``mean' = mean + K (z - H mean)``; ``P' = P - K S K^T``, which per 2x2
    block is ``var' = k_pos R``, ``cov' = k_vel R``, ``var_vel' = var_vel - k_vel cov``.
    """
    blocks = cov.reshape(-1, 3, MEASUREMENT_DIM)
    R = np.square(mean[:, HEIGHT])[:, None] * _MEASUREMENT_SCALE + _MEASUREMENT_FIXED
    S = blocks[:, 0] + R
    gain = blocks[:, :2] / S[:, None, :]  # (m, 2, 4): k_pos, k_vel
    innovation = measurement - mean[:, :MEASUREMENT_DIM]
    new_mean = mean + (gain * innovation[:, None, :]).reshape(-1, STATE_DIM)
    new_blocks = np.empty_like(blocks)
    new_blocks[:, :2] = gain * R[:, None, :]
    new_blocks[:, 2] = blocks[:, 2] - gain[:, 1] * blocks[:, 1]
    return new_mean, new_blocks.reshape(-1, COV_DIM)


def to_matrix(cov: np.ndarray) -> np.ndarray:
    """float (n, 12) per-quantity layout -> (n, 8, 8) full covariance matrices."""
    P = np.zeros((len(cov), STATE_DIM, STATE_DIM))
    i = np.arange(MEASUREMENT_DIM)
    P[:, i, i] = cov[:, 0:4]
    P[:, i, i + 4] = P[:, i + 4, i] = cov[:, 4:8]
    P[:, i + 4, i + 4] = cov[:, 8:12]
    return P

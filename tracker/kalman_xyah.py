"""ByteTrack's Kalman filter on ``(x, y, a, h)`` boxes, as pure functions over batches of tracks.

State (Zhang et al. 2022, "ByteTrack", section 4.1, which takes DeepSORT's filter: Wojke et al.
2017, section 2.1)::

    mean = [x, y, a, h, x', y', a', h']

``x, y`` box centre (pixels), ``a`` aspect ratio w / h, ``h`` height (pixels), primes are
velocities per frame; constant-velocity model, measurement ``[x, y, a, h]``. Process and
measurement noise standard deviations are proportional to the box height (``1/20`` of ``h`` for
positions, ``1/160`` for velocities; constants of the DeepSORT / ByteTrack reference code), except
the aspect ratio's, which are fixed.

Every function takes and returns new arrays (``mean`` float64 (n, 8), ``covariance`` float64
(n, 8, 8)); nothing is modified in place. Prediction is one batched call for all tracks.
"""

from __future__ import annotations

import numpy as np

STATE_DIM = 8
MEASUREMENT_DIM = 4
HEIGHT, HEIGHT_VELOCITY = 3, 7

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

_MOTION = np.eye(STATE_DIM)
_MOTION[np.arange(4), np.arange(4) + 4] = 1.0  # position += velocity * 1 frame
_MOTION_T = _MOTION.T.copy()


def _diag_batch(variances: np.ndarray) -> np.ndarray:
    """float (n, d) -> (n, d, d) diagonal matrices."""
    n, d = variances.shape
    out = np.zeros((n, d, d))
    out[:, np.arange(d), np.arange(d)] = variances
    return out


def initiate(measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks from measurements float64 (n, 4) ``[x, y, a, h]``: zero velocity, diagonal covariance."""
    n = len(measurement)
    h = measurement[:, HEIGHT]
    mean = np.zeros((n, STATE_DIM))
    mean[:, :MEASUREMENT_DIM] = measurement
    pos = INITIAL_POSITION_FACTOR * STD_WEIGHT_POSITION * h
    vel = INITIAL_VELOCITY_FACTOR * STD_WEIGHT_VELOCITY * h
    std = np.stack([pos, pos, np.full(n, STD_ASPECT), pos, vel, vel, np.full(n, STD_ASPECT_VELOCITY), vel], axis=1)
    return mean, _diag_batch(np.square(std))


def predict(mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame ahead: ``mean' = F mean``, ``cov' = F cov F^T + Q(h)`` with ``h`` the current height."""
    n = len(mean)
    h = mean[:, HEIGHT]
    pos = STD_WEIGHT_POSITION * h
    vel = STD_WEIGHT_VELOCITY * h
    std = np.stack([pos, pos, np.full(n, STD_ASPECT), pos, vel, vel, np.full(n, STD_ASPECT_VELOCITY), vel], axis=1)
    new_mean = mean @ _MOTION_T
    new_cov = _MOTION @ covariance @ _MOTION_T
    idx = np.arange(STATE_DIM)
    new_cov[:, idx, idx] += np.square(std)
    return new_mean, new_cov


def update(
    mean: np.ndarray, covariance: np.ndarray, measurement: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Correct each track with its measurement float64 (m, 4) ``[x, y, a, h]``.

    Projection ``S = H cov H^T + R(h)`` (``h`` from the predicted mean), gain
    ``K = cov H^T S^-1`` (solved, not inverted, as the reference's Cholesky solve),
    ``mean' = mean + K (z - H mean)``, ``cov' = cov - K S K^T``.
    """
    h = mean[:, HEIGHT]
    pos = np.square(STD_WEIGHT_POSITION * h)
    S = covariance[:, :MEASUREMENT_DIM, :MEASUREMENT_DIM].copy()
    S[:, 0, 0] += pos
    S[:, 1, 1] += pos
    S[:, 2, 2] += STD_ASPECT_MEASUREMENT**2
    S[:, 3, 3] += pos
    PHT = covariance[:, :, :MEASUREMENT_DIM]  # cov H^T, (m, 8, 4)
    gain = np.linalg.solve(S, PHT.transpose(0, 2, 1)).transpose(0, 2, 1)  # (m, 8, 4)
    innovation = measurement - mean[:, :MEASUREMENT_DIM]
    new_mean = mean + (gain @ innovation[:, :, None])[:, :, 0]
    new_cov = covariance - gain @ S @ gain.transpose(0, 2, 1)
    return new_mean, new_cov

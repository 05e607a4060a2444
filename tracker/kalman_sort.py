"""SORT's constant-velocity Kalman filter, defined with filterpy and stepped for many tracks at once.

State (Bewley et al. 2016, "Simple Online and Realtime Tracking", section 3.2)::

    x = [u, v, s, r, u', v', s']

``u, v`` box centre (pixels), ``s`` area (pixels^2), ``r`` aspect ratio w / h (held constant, so it
has no velocity), primes are velocities per frame. Measurement ``z = [u, v, s, r]``.

The model — transition ``F``, measurement ``H``, noise ``Q``, ``R`` and initial covariance ``P0`` —
is set on a :class:`filterpy.kalman.KalmanFilter` exactly as the SORT reference implementation
does (:func:`sort_kalman_filter`); :func:`predict` and :func:`update` evaluate filterpy's
``KalmanFilter.predict`` / ``KalmanFilter.update`` equations for all tracks at once.

Why the arrays look the way they do: ``F`` couples each measured quantity only with its own
velocity (u-u', v-v', s-s'; r alone) and ``Q``, ``R``, ``P0`` are diagonal, so every covariance the
filter produces is block-diagonal with one 2x2 block per measured quantity and ``S = H P H^T + R``
is diagonal. Each step therefore reduces to a few element-wise operations on all tracks — one
Python-level filterpy call per track would cost more than the whole frame budget.
:meth:`SortKalmanModel.from_filterpy` checks that structure, and ``tests/test_tracker_kalman.py``
checks these functions against filterpy's own per-track ``predict`` / ``update``.

Array layouts (n tracks)::

    x    float64 (n, 8):  [u, v, s, r | u', v', s', r']  with r' kept at 0 (r has no velocity), so
                          that every quantity has a (position, velocity) pair; x[:, :7] is the
                          paper's state.
    cov  float64 (n, 12): [var(u), var(v), var(s), var(r) | cov(u, u'), ..., cov(r, r') |
                           var(u'), ..., var(r')], the r' entries kept at 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from filterpy.kalman import KalmanFilter

PAPER_STATE_DIM = 7
MEASUREMENT_DIM = 4
STATE_DIM = 2 * MEASUREMENT_DIM  # stored state: paper state + r' (always 0)
COV_DIM = 3 * MEASUREMENT_DIM
NUM_MOVING = 3  # u, v, s have a velocity; r does not
AREA, AREA_VELOCITY = 2, 6


def sort_kalman_filter() -> KalmanFilter:
    """A filterpy ``KalmanFilter`` configured as SORT's per-track filter (state still zero).

    Noise settings of the SORT reference implementation (abewley/sort, ``KalmanBoxTracker``):
    filterpy's identity defaults, with ``R[2:, 2:] *= 10`` (area and aspect measurements are
    noisier), ``P[4:, 4:] *= 1000`` then ``P *= 10`` (unobserved initial velocities are very
    uncertain), ``Q[-1, -1] *= 0.01`` and ``Q[4:, 4:] *= 0.01``.
    """
    kf = KalmanFilter(dim_x=PAPER_STATE_DIM, dim_z=MEASUREMENT_DIM)
    kf.F = np.eye(PAPER_STATE_DIM)
    kf.F[0, 4] = kf.F[1, 5] = kf.F[2, 6] = 1.0  # position += velocity * 1 frame
    kf.H = np.eye(MEASUREMENT_DIM, PAPER_STATE_DIM)
    kf.R[2:, 2:] *= 10.0
    kf.P[4:, 4:] *= 1000.0
    kf.P *= 10.0
    kf.Q[-1, -1] *= 0.01
    kf.Q[4:, 4:] *= 0.01
    return kf


def blocks_from_matrix(P: np.ndarray) -> np.ndarray:
    """float (..., 7, 7) covariance -> (..., 12) per-quantity layout (module docstring)."""
    out = np.zeros(P.shape[:-2] + (COV_DIM,))
    i = np.arange(MEASUREMENT_DIM)
    m = np.arange(NUM_MOVING)
    out[..., 0:4] = P[..., i, i]
    out[..., 4 + m] = P[..., m, m + 4]
    out[..., 8 + m] = P[..., m + 4, m + 4]
    return out


def matrix_from_blocks(cov: np.ndarray) -> np.ndarray:
    """float (n, 12) per-quantity layout -> (n, 7, 7) full covariance matrices."""
    P = np.zeros((len(cov), PAPER_STATE_DIM, PAPER_STATE_DIM))
    i = np.arange(MEASUREMENT_DIM)
    m = np.arange(NUM_MOVING)
    P[:, i, i] = cov[:, 0:4]
    P[:, m, m + 4] = P[:, m + 4, m] = cov[:, 4 + m]
    P[:, m + 4, m + 4] = cov[:, 8 + m]
    return P


@dataclass(frozen=True)
class SortKalmanModel:
    """SORT's filter in per-quantity form: ``R`` (4,) measurement variances; ``Q`` and
    ``initial_cov`` (3, 4) = (position variance, cross covariance, velocity variance) per quantity."""

    R: np.ndarray
    Q: np.ndarray
    initial_cov: np.ndarray

    @classmethod
    def from_filterpy(cls, kf: KalmanFilter) -> "SortKalmanModel":
        """Read the model off a filterpy filter, checking the per-quantity structure it relies on.

        Raises:
            ValueError: ``F``, ``H``, ``Q``, ``R`` or ``P`` do not have SORT's structure.
        """
        expected_F = np.eye(PAPER_STATE_DIM)
        expected_F[np.arange(NUM_MOVING), np.arange(NUM_MOVING) + 4] = 1.0
        checks = {
            "F = constant velocity on u, v, s": np.array_equal(kf.F, expected_F),
            "H = [I 0]": np.array_equal(kf.H, np.eye(MEASUREMENT_DIM, PAPER_STATE_DIM)),
            "Q diagonal": np.array_equal(kf.Q, np.diag(np.diag(kf.Q))),
            "R diagonal": np.array_equal(kf.R, np.diag(np.diag(kf.R))),
            "P diagonal": np.array_equal(kf.P, np.diag(np.diag(kf.P))),
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"filterpy filter does not have SORT's per-quantity structure: {failed}")
        return cls(
            R=np.diag(kf.R).copy(),
            Q=blocks_from_matrix(kf.Q).reshape(3, MEASUREMENT_DIM),
            initial_cov=blocks_from_matrix(kf.P).reshape(3, MEASUREMENT_DIM),
        )


def initiate(model: SortKalmanModel, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks from measurements ``z`` float64 (n, 4): states (n, 8) with zero velocity and
    covariances (n, 12) equal to ``P0``."""
    x = np.zeros((len(z), STATE_DIM))
    x[:, :MEASUREMENT_DIM] = z
    return x, np.tile(model.initial_cov.reshape(-1), (len(z), 1))


def predict(model: SortKalmanModel, x: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame ahead for every track: ``x' = F x``, ``P' = F P F^T + Q``.

    Per quantity: ``var' = var + 2 cov + var_vel``, ``cov' = cov + var_vel``, plus ``Q``. Before
    predicting, a track whose area would become non-positive gets its area velocity zeroed (SORT
    reference: ``if s + s' <= 0: s' = 0``), so a shrinking box does not invert.

    Args:
        x: float64 (n, 8); cov: float64 (n, 12) (module docstring). Not modified.
    """
    new_x = x.copy()
    # Zero s' where s + s' <= 0 (multiplying by the comparison keeps NaN as NaN, like the reference).
    new_x[:, AREA_VELOCITY] *= (x[:, AREA] + x[:, AREA_VELOCITY]) > 0
    new_x[:, :MEASUREMENT_DIM] += new_x[:, MEASUREMENT_DIM:]
    blocks = cov.reshape(-1, 3, MEASUREMENT_DIM)
    new_blocks = blocks + model.Q
    new_blocks[:, 0] += 2.0 * blocks[:, 1] + blocks[:, 2]
    new_blocks[:, 1] += blocks[:, 2]
    return new_x, new_blocks.reshape(-1, COV_DIM)


def update(
    model: SortKalmanModel, x: np.ndarray, cov: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Correct every track with its measurement.

    ``S = var + R`` (diagonal), gain per quantity ``k_pos = var / S``, ``k_vel = cov / S``,
    ``x' = x + K (z - H x)``. filterpy's Joseph form ``(I - KH) P (I - KH)^T + K R K^T`` equals
    ``(I - KH) P`` for this optimal gain; per 2x2 block that is ``var' = k_pos R``,
    ``cov' = k_vel R``, ``var_vel' = var_vel - k_vel cov``.

    Args:
        x: float64 (m, 8); cov: float64 (m, 12); z: float64 (m, 4) measurements ``[u, v, s, r]``.
    """
    blocks = cov.reshape(-1, 3, MEASUREMENT_DIM)
    S = blocks[:, 0] + model.R
    gain = blocks[:, :2] / S[:, None, :]  # (m, 2, 4): k_pos, k_vel
    innovation = z - x[:, :MEASUREMENT_DIM]
    new_x = x + (gain * innovation[:, None, :]).reshape(-1, STATE_DIM)
    new_blocks = np.empty_like(blocks)
    new_blocks[:, :2] = gain * model.R
    new_blocks[:, 2] = blocks[:, 2] - gain[:, 1] * blocks[:, 1]
    return new_x, new_blocks.reshape(-1, COV_DIM)

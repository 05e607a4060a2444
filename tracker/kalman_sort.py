"""SORT's constant-velocity Kalman filter, defined with filterpy and stepped for many tracks at once.

State (Bewley et al. 2016, "Simple Online and Realtime Tracking", section 3.2, eq. 1)::

    x = [u, v, s, r, u', v', s']

``u, v`` box centre (pixels), ``s`` area (pixels^2), ``r`` aspect ratio w / h (held constant, so it
has no velocity), primes are velocities per frame. Measurement ``z = [u, v, s, r]``.

The model — transition ``F``, measurement ``H``, noise ``Q``, ``R`` and the initial covariance — is
set on a :class:`filterpy.kalman.KalmanFilter` exactly as the SORT reference implementation does
(:func:`sort_kalman_filter`). :func:`predict` and :func:`update` then apply filterpy's own
``KalmanFilter.predict`` / ``KalmanFilter.update`` equations (including its Joseph-form covariance
update) to a batch of tracks stacked along axis 0, because one Python-level filterpy call per
track costs more than the whole frame budget. ``tests/test_tracker_kalman.py`` checks that a batch
step equals filterpy's per-track step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from filterpy.kalman import KalmanFilter

STATE_DIM = 7
MEASUREMENT_DIM = 4
AREA, AREA_VELOCITY = 2, 6


def sort_kalman_filter() -> KalmanFilter:
    """A filterpy ``KalmanFilter`` configured as SORT's per-track filter (state still zero).

    Noise settings from the SORT reference implementation (abewley/sort, ``KalmanBoxTracker``):
    filterpy's identity defaults, with ``R[2:, 2:] *= 10`` (area and aspect measurements are
    noisier), ``P[4:, 4:] *= 1000`` then ``P *= 10`` (unobserved initial velocities are very
    uncertain), ``Q[-1, -1] *= 0.01`` and ``Q[4:, 4:] *= 0.01``.
    """
    kf = KalmanFilter(dim_x=STATE_DIM, dim_z=MEASUREMENT_DIM)
    kf.F = np.eye(STATE_DIM)
    kf.F[0, 4] = kf.F[1, 5] = kf.F[2, 6] = 1.0  # position += velocity * 1 frame
    kf.H = np.eye(MEASUREMENT_DIM, STATE_DIM)
    kf.R[2:, 2:] *= 10.0
    kf.P[4:, 4:] *= 1000.0
    kf.P *= 10.0
    kf.Q[-1, -1] *= 0.01
    kf.Q[4:, 4:] *= 0.01
    return kf


@dataclass(frozen=True)
class SortKalmanModel:
    """The matrices of :func:`sort_kalman_filter`, float64: F (7, 7), Q (7, 7), R (4, 4), P0 (7, 7)."""

    F: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    initial_covariance: np.ndarray

    @classmethod
    def from_filterpy(cls, kf: KalmanFilter) -> "SortKalmanModel":
        if not np.array_equal(kf.H, np.eye(MEASUREMENT_DIM, STATE_DIM)):
            raise ValueError("the batched SORT filter assumes H = [I 0] (measure u, v, s, r)")
        return cls(F=kf.F.copy(), Q=kf.Q.copy(), R=kf.R.copy(), initial_covariance=kf.P.copy())


def initiate(model: SortKalmanModel, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks from measurements ``z`` float64 (n, 4): state (n, 7) with zero velocity, covariance (n, 7, 7)."""
    x = np.zeros((len(z), STATE_DIM))
    x[:, :MEASUREMENT_DIM] = z
    P = np.broadcast_to(model.initial_covariance, (len(z), STATE_DIM, STATE_DIM)).copy()
    return x, P


def predict(model: SortKalmanModel, x: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame ahead for every track: ``x' = F x``, ``P' = F P F^T + Q`` (filterpy ``predict``).

    Before predicting, a track whose area would become non-positive gets its area velocity
    zeroed (SORT reference: ``if s + s' <= 0: s' = 0``), so a shrinking box does not invert.

    Args:
        x: float64 (n, 7) states; P: float64 (n, 7, 7) covariances. Not modified.
    """
    x = x.copy()
    x[x[:, AREA] + x[:, AREA_VELOCITY] <= 0, AREA_VELOCITY] = 0.0
    x_pred = x @ model.F.T
    P_pred = model.F @ P @ model.F.T + model.Q
    return x_pred, P_pred


def update(
    model: SortKalmanModel, x: np.ndarray, P: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Correct every track with its measurement (filterpy ``update`` equations, batched).

    ``y = z - Hx``, ``S = H P H^T + R``, ``K = P H^T S^-1``, ``x' = x + K y``,
    ``P' = (I - K H) P (I - K H)^T + K R K^T``. With ``H = [I 0]``, ``P H^T`` is ``P[:, :, :4]``.

    Args:
        x: float64 (m, 7); P: float64 (m, 7, 7); z: float64 (m, 4) measurements ``[u, v, s, r]``.
    """
    y = z - x[:, :MEASUREMENT_DIM]
    PHT = P[:, :, :MEASUREMENT_DIM]
    S = PHT[:, :MEASUREMENT_DIM, :] + model.R
    K = PHT @ np.linalg.inv(S)
    x_new = x + (K @ y[:, :, None])[:, :, 0]
    I_KH = np.broadcast_to(np.eye(STATE_DIM), P.shape).copy()
    I_KH[:, :, :MEASUREMENT_DIM] -= K
    P_new = I_KH @ P @ I_KH.transpose(0, 2, 1) + K @ model.R @ K.transpose(0, 2, 1)
    return x_new, P_new

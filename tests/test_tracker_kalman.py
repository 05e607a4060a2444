"""The trackers' numerical building blocks against independent references.

* SORT's batched Kalman step against filterpy's own per-track ``KalmanFilter`` (the issue asks for
  filterpy's filter; ours evaluates the same equations for all tracks at once).
* ByteTrack's batched Kalman step against the full-matrix equations of the DeepSORT / ByteTrack
  reference (8x8 matrices, Cholesky solve), written out here.
* IoU and box conversions on hand-computed cases; both assignment rules against ``lap.lapjv``.
"""

from __future__ import annotations

import lap
import numpy as np
import pytest
import scipy.linalg

from tracker import association, geometry, kalman_sort, kalman_xyah

RTOL = 1e-9


# --------------------------------------------------------------------------------------------
# SORT filter vs filterpy
# --------------------------------------------------------------------------------------------
def _random_sort_measurements(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.c_[rng.uniform(0, 600, (n, 2)), rng.uniform(400, 9000, n), rng.uniform(0.3, 0.9, n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sort_batch_step_equals_filterpy_per_track(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 6
    model = kalman_sort.SortKalmanModel.from_filterpy(kalman_sort.sort_kalman_filter())
    z0 = _random_sort_measurements(rng, n)
    x, cov = kalman_sort.initiate(model, z0)
    filters = []
    for z in z0:
        kf = kalman_sort.sort_kalman_filter()
        kf.x[:4, 0] = z
        filters.append(kf)
    drift = rng.normal(0, 4, (n, 4)) * [1, 1, 40, 0.002]
    for step in range(40):
        x, cov = kalman_sort.predict(model, x, cov)
        for kf in filters:
            if kf.x[6, 0] + kf.x[2, 0] <= 0:  # SORT's clamp, applied by its tracker before predict
                kf.x[6, 0] *= 0.0
            kf.predict()
        measured = np.flatnonzero(rng.random(n) < 0.7)  # some tracks miss this frame
        z = z0 + step * drift + rng.normal(0, 2, (n, 4)) * [1, 1, 20, 0.01]
        if len(measured):
            x[measured], cov[measured] = kalman_sort.update(model, x[measured], cov[measured], z[measured])
        for i in measured:
            filters[i].update(z[i])
    expected_x = np.array([kf.x[:, 0] for kf in filters])
    expected_P = np.array([kf.P for kf in filters])
    np.testing.assert_allclose(x[:, :7], expected_x, rtol=RTOL, atol=1e-9)
    np.testing.assert_array_equal(x[:, 7], 0.0)  # the aspect ratio has no velocity
    np.testing.assert_allclose(kalman_sort.matrix_from_blocks(cov), expected_P, rtol=RTOL, atol=1e-9)


def test_sort_predict_clamps_a_shrinking_area() -> None:
    model = kalman_sort.SortKalmanModel.from_filterpy(kalman_sort.sort_kalman_filter())
    x, cov = kalman_sort.initiate(model, np.array([[100.0, 100.0, 50.0, 0.5]]))
    x[0, kalman_sort.AREA_VELOCITY] = -80.0  # would make the area negative
    x_pred, _ = kalman_sort.predict(model, x, cov)
    assert x_pred[0, kalman_sort.AREA] == 50.0
    assert x_pred[0, kalman_sort.AREA_VELOCITY] == 0.0


def test_sort_model_rejects_a_filter_without_per_quantity_structure() -> None:
    kf = kalman_sort.sort_kalman_filter()
    kf.Q[0, 1] = kf.Q[1, 0] = 0.5  # couples u and v
    with pytest.raises(ValueError, match="Q diagonal"):
        kalman_sort.SortKalmanModel.from_filterpy(kf)


# --------------------------------------------------------------------------------------------
# ByteTrack filter vs the full-matrix reference equations
# --------------------------------------------------------------------------------------------
W_POS, W_VEL = 1.0 / 20, 1.0 / 160
F8 = np.eye(8) + np.eye(8, k=4)
H8 = np.eye(4, 8)


def _ref_initiate(z: np.ndarray):
    h = z[3]
    std = [2 * W_POS * h, 2 * W_POS * h, 1e-2, 2 * W_POS * h, 10 * W_VEL * h, 10 * W_VEL * h, 1e-5, 10 * W_VEL * h]
    return np.r_[z, np.zeros(4)], np.diag(np.square(std))


def _ref_predict(mean: np.ndarray, cov: np.ndarray):
    h = mean[3]
    std = [W_POS * h, W_POS * h, 1e-2, W_POS * h, W_VEL * h, W_VEL * h, 1e-5, W_VEL * h]
    return F8 @ mean, F8 @ cov @ F8.T + np.diag(np.square(std))


def _ref_update(mean: np.ndarray, cov: np.ndarray, z: np.ndarray):
    h = mean[3]
    S = H8 @ cov @ H8.T + np.diag(np.square([W_POS * h, W_POS * h, 1e-1, W_POS * h]))
    factor = scipy.linalg.cho_factor(S, lower=True)
    gain = scipy.linalg.cho_solve(factor, (cov @ H8.T).T).T
    return mean + (z - H8 @ mean) @ gain.T, cov - gain @ S @ gain.T


@pytest.mark.parametrize("seed", [0, 1])
def test_bytetrack_batch_step_equals_full_matrix_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 5
    z0 = np.c_[rng.uniform(0, 600, (n, 2)), rng.uniform(0.3, 0.8, n), rng.uniform(40, 300, n)]
    mean, cov = kalman_xyah.initiate(z0)
    reference = [_ref_initiate(z) for z in z0]
    np.testing.assert_allclose(kalman_xyah.to_matrix(cov), [c for _, c in reference], rtol=RTOL)
    for step in range(40):
        mean, cov = kalman_xyah.predict(mean, cov)
        reference = [_ref_predict(m, c) for m, c in reference]
        z = z0 + step * np.array([3.0, -1.0, 0.0, 0.5]) + rng.normal(0, 2, (n, 4)) * [1, 1, 0.01, 1]
        measured = np.flatnonzero(rng.random(n) < 0.7)
        if len(measured):
            mean[measured], cov[measured] = kalman_xyah.update(mean[measured], cov[measured], z[measured])
        for i in measured:
            reference[i] = _ref_update(*reference[i], z[i])
    np.testing.assert_allclose(mean, [m for m, _ in reference], rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(kalman_xyah.to_matrix(cov), [c for _, c in reference], rtol=RTOL, atol=1e-9)


def test_bytetrack_functions_do_not_modify_their_inputs() -> None:
    mean, cov = kalman_xyah.initiate(np.array([[10.0, 20.0, 0.5, 100.0]]))
    mean[0, 4:] = [1.0, 2.0, 0.0, 0.5]
    before = mean.copy(), cov.copy()
    kalman_xyah.update(*kalman_xyah.predict(mean, cov), np.array([[12.0, 21.0, 0.5, 101.0]]))
    np.testing.assert_array_equal(mean, before[0])
    np.testing.assert_array_equal(cov, before[1])


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("box_a", "box_b", "pixel_offset", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 0.0, 1.0),
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0, 0.0),
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0, 0.0),  # touching edges
        ([0, 0, 10, 10], [5, 0, 15, 10], 0.0, 50 / 150),
        ([0, 0, 10, 10], [0, 0, 5, 10], 0.0, 0.5),
        # inclusive-pixel convention: 11 x 11 boxes, overlap 6 x 11
        ([0, 0, 10, 10], [5, 0, 15, 10], 1.0, 66 / (121 + 121 - 66)),
        ([0, 0, 10, 10], [10, 0, 20, 10], 1.0, 11 / (121 + 121 - 11)),
    ],
)
def test_iou_matrix_known_values(box_a, box_b, pixel_offset, expected) -> None:
    iou = geometry.iou_matrix(np.array([box_a], float), np.array([box_b], float), pixel_offset)
    assert iou.shape == (1, 1)
    assert iou[0, 0] == pytest.approx(expected, rel=1e-12)


def test_iou_matrix_shapes_and_symmetry() -> None:
    rng = np.random.default_rng(0)
    a = np.sort(rng.uniform(0, 100, (5, 2, 2)), axis=1).transpose(0, 2, 1).reshape(5, 4)[:, [0, 2, 1, 3]]
    b = a[::-1].copy()
    np.testing.assert_allclose(geometry.iou_matrix(a, b), geometry.iou_matrix(b, a).T)
    assert geometry.iou_matrix(a, np.zeros((0, 4))).shape == (5, 0)
    assert geometry.iou_matrix(np.zeros((0, 4)), b).shape == (0, 5)


@pytest.mark.parametrize(
    ("forward", "backward"),
    [(geometry.xyxy_to_xysr, geometry.xysr_to_xyxy), (geometry.xyxy_to_xyah, geometry.xyah_to_xyxy)],
)
def test_box_conversions_round_trip(forward, backward) -> None:
    boxes = np.array([[10.0, 20.0, 50.0, 120.0], [0.5, 0.25, 3.0, 9.0]])
    np.testing.assert_allclose(backward(forward(boxes)), boxes, rtol=1e-12)


def test_xysr_without_a_box_gives_nan_row() -> None:
    state = np.array([[10.0, 10.0, -100.0, 0.5], [10.0, 10.0, 100.0, 1.0]])
    boxes = geometry.xysr_to_xyxy(state)
    assert np.isnan(boxes[0]).all()
    np.testing.assert_allclose(boxes[1], [5.0, 5.0, 15.0, 15.0])


# --------------------------------------------------------------------------------------------
# Assignment
# --------------------------------------------------------------------------------------------
def test_match_below_cost_equals_lapjv_with_cost_limit() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        n, m = rng.integers(1, 9, 2)
        cost = 1 - rng.random((n, m)) * (rng.random((n, m)) < 0.5)
        limit = float(rng.choice([0.5, 0.7, 0.9, 1.0]))
        _, row_to_col, col_to_row = lap.lapjv(cost, extend_cost=True, cost_limit=limit)
        rows, cols, free_rows, free_cols = association.match_below_cost(cost, limit)
        expected_rows = np.flatnonzero(row_to_col >= 0)
        np.testing.assert_array_equal(rows, expected_rows)
        np.testing.assert_array_equal(cols, row_to_col[expected_rows])
        np.testing.assert_array_equal(free_rows, np.flatnonzero(row_to_col < 0))
        np.testing.assert_array_equal(free_cols, np.flatnonzero(col_to_row < 0))


@pytest.mark.parametrize(
    ("iou", "expected_pairs", "expected_unmatched"),
    [
        # one clear partner each: taken directly
        ([[0.9, 0.0], [0.0, 0.8]], [(0, 0), (1, 1)], []),
        # competing partners: maximum total IoU (0.6 + 0.6 beats 0.9 + 0.0)
        ([[0.9, 0.6], [0.6, 0.0]], [(0, 1), (1, 0)], []),
        # the solver maximises the total (0.4 + 0.2 beats 0.5 + 0.0), then the pair below the
        # threshold is rejected and listed after the never-paired detection
        ([[0.5, 0.4], [0.2, 0.0], [0.0, 0.0]], [(0, 1)], [2, 1]),
        # nothing overlaps
        ([[0.0], [0.0]], [], [0, 1]),
    ],
)
def test_match_sort_table(iou, expected_pairs, expected_unmatched) -> None:
    det_idx, track_idx, unmatched = association.match_sort(np.array(iou, float), 0.3)
    assert sorted(zip(det_idx.tolist(), track_idx.tolist())) == sorted(expected_pairs)
    assert unmatched.tolist() == expected_unmatched


def test_forbid_cross_class() -> None:
    m = np.ones((2, 3))
    out = association.forbid_cross_class(m, np.array([0, 1]), np.array([0, 1, 1]), -1.0)
    np.testing.assert_array_equal(out, [[1, -1, -1], [-1, 1, 1]])

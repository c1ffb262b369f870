"""Metrics on hand-made cases whose values are worked out on paper."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unet_course.metrics import dice, iou, pixel_error, rand_error, rand_f_score, segments


def two_cells(gap=True):
    """Two 4x4 cells side by side, separated by a one-pixel membrane column (1 = cell)."""
    m = np.zeros((6, 11), np.int64)
    m[1:5, 1:5] = 1
    m[1:5, 6:10] = 1
    if not gap:
        m[1:5, 5] = 1
    return m


def test_perfect_prediction_scores_perfectly():
    m = two_cells()
    assert pixel_error(m, m) == 0.0
    assert rand_error(m, m) == 0.0
    assert iou(m, m) == 1.0 and dice(m, m) == 1.0
    assert rand_error(m.astype(np.float32), m) == 0.0  # a probability map of 0s and 1s


def test_pixel_error_iou_dice_by_hand():
    target = np.array([[1, 1, 0, 0]])
    pred = np.array([[1, 0, 1, 0]])
    assert pixel_error(pred, target) == 0.5
    assert iou(pred, target) == pytest.approx(1 / 3)     # |{0}| / |{0, 1, 2}|
    assert dice(pred, target) == pytest.approx(0.5)      # 2 * 1 / (2 + 2)
    prob = np.array([[0.9, 0.4, 0.6, 0.1]], np.float32)
    assert pixel_error(prob, target) == 0.5
    assert pixel_error(prob, target, threshold=0.35) == 0.25


def test_merging_two_equal_cells_costs_a_third():
    # Truth: two cells of 16 pixels. Prediction: one segment over both (membrane missed).
    # Only true-cell pixels count: sum p_ij^2 = 16^2 + 16^2, sum s_i^2 = 32^2, sum t_j^2 = 2 * 16^2,
    # so precision = 1/2, recall = 1, F = 2/3 and the error is 1/3.
    assert rand_error(two_cells(gap=False), two_cells()) == pytest.approx(1 / 3)


def test_predicted_membrane_inside_a_cell_splits_it():
    truth = np.zeros((6, 6), np.int64)
    truth[1:5, 1:5] = 1                      # one 16-pixel cell
    pred = truth.copy()
    pred[1:5, 2] = 0                         # a false membrane column: 4 singletons, pieces of 4 and 8
    both = 4**2 + 8**2 + 4                  # sum p_ij^2, singletons count 1 each
    precision = both / (4**2 + 8**2 + 4)     # = 1: every predicted segment lies in one cell
    recall = both / 16**2
    f = 2 * precision * recall / (precision + recall)
    assert rand_error(pred, truth) == pytest.approx(1 - f)


def test_rand_error_ignores_pixels_outside_true_cells():
    truth = two_cells()
    pred = truth.copy()
    pred[0, :] = 1  # claims part of the outer membrane as cell: not counted by the Rand index...
    pred[0, 5] = 0  # ...as long as it does not connect the two cells
    assert rand_error(pred, truth) == 0.0
    assert pixel_error(pred, truth) > 0


def test_rand_error_is_invariant_to_relabelling():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 5, size=(30, 30))
    pred = rng.integers(0, 7, size=(30, 30))
    perm = np.concatenate([[0], rng.permutation(np.arange(1, 7))])
    f1 = rand_f_score(pred, truth)
    assert rand_f_score(perm[pred], truth) == pytest.approx(f1)
    assert rand_f_score(pred, np.concatenate([[0], rng.permutation(np.arange(1, 5))])[truth]) == pytest.approx(f1)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_rand_score_is_in_unit_interval_and_symmetric_in_roles(seed):
    rng = np.random.default_rng(seed)
    a = segments(rng.random((12, 12)) > 0.4)
    b = segments(rng.random((12, 12)) > 0.4)
    f = rand_f_score(a, b)
    assert 0.0 <= f <= 1.0
    if (a > 0).all() and (b > 0).all():
        assert f == pytest.approx(rand_f_score(b, a))


def test_probability_maps_sweep_thresholds():
    truth = two_cells()
    prob = np.where(truth == 1, 0.7, 0.0).astype(np.float32)
    prob[1:5, 5] = 0.3  # a weak membrane: thresholds above 0.3 separate the cells
    assert rand_error(prob, truth) == 0.0
    assert rand_error(prob, truth, thresholds=[0.2]) == pytest.approx(1 / 3, abs=0.05)


def test_accepts_tensors_and_rejects_bad_input():
    m = two_cells()
    assert pixel_error(torch.from_numpy(m), torch.from_numpy(m)) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        pixel_error(m, m[:, :5])
    with pytest.raises(ValueError, match="2-D"):
        rand_error(m[None], m[None])
    with pytest.raises(ValueError, match="probability map"):
        iou(m.astype(np.float32) * 3, m)
    with pytest.raises(TypeError, match="integer label map"):
        dice(m, m.astype(np.float32))


# ------------------------------------------------------------------------------ no silent numbers


@pytest.mark.parametrize("metric", [pixel_error, rand_error, iou, dice])
def test_empty_maps_and_non_finite_probabilities_are_refused(metric):
    empty = np.zeros((0, 0), np.int64)
    with pytest.raises(ValueError, match=r"empty \(0x0\): there is no pixel to score"):
        metric(empty.astype(np.float32), empty)
    with pytest.raises(ValueError, match="empty"):
        metric(np.zeros((3, 0), np.int64), np.zeros((3, 0), np.int64))
    m = two_cells()
    for bad in (np.nan, np.inf):
        prob = m.astype(np.float32)
        prob[2, 2] = bad
        with pytest.raises(ValueError, match="1 NaN or infinite value"):
            metric(prob, m)


def test_threshold_and_thresholds_are_checked():
    m = two_cells()
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        pixel_error(m.astype(np.float32), m, threshold=float("nan"))
    with pytest.raises(ValueError, match="at least one probability"):
        rand_error(m.astype(np.float32), m, thresholds=[])


def test_huge_instance_ids_are_scored_like_small_ones():
    m = two_cells()
    ids = segments(m)
    huge = np.where(ids == 2, 2**62, ids)
    assert rand_error(m, huge) == rand_error(m, ids) == 0.0
    unsigned = ids.astype(np.uint64)
    unsigned[ids == 1] = np.uint64(2**64 - 1)
    assert rand_f_score(segments(m), unsigned) == 1.0


def test_baseline_options_are_checked():
    from unet_course.baseline import otsu_threshold, threshold_segmentation

    image = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="bins must be an int >= 2"):
        otsu_threshold(image, bins=1)
    with pytest.raises(ValueError, match=r"opening \(iterations\) must be an int >= 0"):
        threshold_segmentation(image, opening=-1)
    with pytest.raises(TypeError, match=r"max_hole \(pixels\) must be an int"):
        threshold_segmentation(image, max_hole=2.5)
    assert threshold_segmentation(image, opening=0, max_hole=0).shape == (16, 16)

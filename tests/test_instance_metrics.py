"""match_instances and seg_score against cells whose overlaps are counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from unet_course.instance_metrics import match_instances, seg_score
from unet_course.viz import matched_label_images


def two_cells():
    """Two true 4 x 4 cells (ids 1 and 2) on a 6 x 12 canvas."""
    truth = np.zeros((6, 12), dtype=np.int32)
    truth[1:5, 1:5] = 1
    truth[1:5, 7:11] = 2
    return truth


def test_exact_cells_score_one_whatever_their_ids():
    truth = two_cells()
    pred = np.where(truth > 0, 3 - truth, 0)  # ids swapped
    assert match_instances(pred, truth) == {1: (2, 1.0), 2: (1, 1.0)}
    assert seg_score(pred, truth) == 1.0


def test_a_split_cell_keeps_its_larger_half_and_a_missed_cell_scores_zero():
    truth = two_cells()
    pred = np.zeros_like(truth)
    pred[1:5, 1:4] = 5  # 12 of cell 1's 16 pixels: more than half, IoU 12/16
    pred[1:5, 4:5] = 6  # the other 4 pixels, a second piece: no match of its own
    pred[1:3, 7:11] = 7  # 8 of cell 2's 16 pixels: exactly half, which is not a match
    matches = match_instances(pred, truth)
    assert matches == {1: (5, 0.75), 2: (0, 0.0)}
    assert seg_score(pred, truth) == pytest.approx((0.75 + 0.0) / 2)


def test_a_prediction_larger_than_the_cell_pays_in_iou():
    truth = two_cells()
    pred = np.zeros_like(truth)
    pred[0:6, 0:6] = 1  # covers cell 1 (16 px) within 36 px: IoU 16/36
    assert match_instances(pred, truth)[1] == (1, pytest.approx(16 / 36))


def test_empty_truth_and_bad_input():
    empty = np.zeros((4, 4), dtype=np.int32)
    assert seg_score(empty, empty) == 1.0
    assert seg_score(np.ones((4, 4), dtype=np.int32), empty) == 0.0
    with pytest.raises(ValueError, match="one shape"):
        match_instances(np.zeros((4, 5), np.int32), empty)
    with pytest.raises(TypeError, match="integer"):
        seg_score(np.zeros((4, 4)), empty)
    with pytest.raises(ValueError, match="non-empty"):
        seg_score(np.zeros((0, 5), np.int32), np.zeros((0, 5), np.int32))


def test_matched_cells_share_a_colour_and_extras_are_gray():
    truth = two_cells()
    pred = np.zeros_like(truth)
    pred[1:5, 1:4], pred[1:5, 4:5] = 5, 6
    truth_rgb, pred_rgb = matched_label_images(pred, truth, match_instances(pred, truth))
    assert (truth_rgb[0, 0] == 0).all() and (pred_rgb[0, 0] == 0).all()  # black background
    assert np.array_equal(truth_rgb[2, 2], pred_rgb[2, 2]) and truth_rgb[2, 2].max() < 1
    assert (pred_rgb[2, 4] == 0.5).all()  # the unmatched piece
    assert (truth_rgb[2, 8] == 1.0).all()  # the missed cell, white

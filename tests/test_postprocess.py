"""unet_course.postprocess: probabilities -> mask -> instances, with the optional watershed."""

import numpy as np
import pytest

from unet_course.postprocess import (
    instances,
    mask_to_instances,
    probability_to_mask,
    split_touching,
)


def _discs(shape, *discs):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, bool)
    for cy, cx, r in discs:
        out |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return out


TWO = ((20, 20, 10), (20, 36, 10))  # centres 16 px apart, radius 10: they overlap


# ----------------------------------------------------------------------------------------------
# probability_to_mask
# ----------------------------------------------------------------------------------------------


def test_probability_to_mask_is_strictly_greater():
    prob = np.array([[0.0, 0.5, 0.50001, 1.0]], np.float32)
    mask = probability_to_mask(prob)
    assert mask.dtype == np.int64
    np.testing.assert_array_equal(mask, [[0, 0, 1, 1]])
    np.testing.assert_array_equal(probability_to_mask(prob, 1.0), 0)
    np.testing.assert_array_equal(probability_to_mask(prob, 0.0), [[0, 1, 1, 1]])


def test_probability_to_mask_errors():
    prob = np.full((2, 2), 0.3, np.float32)
    with pytest.raises(ValueError, match="threshold"):
        probability_to_mask(prob, float("nan"))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"threshold must be a probability in \[0, 1\]"):
            probability_to_mask(prob, bad)
    with pytest.raises(TypeError, match="threshold"):
        probability_to_mask(prob, "0.5")
    nan = prob.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        probability_to_mask(nan)
    with pytest.raises(ValueError, match="logits"):
        probability_to_mask(prob * 10)
    with pytest.raises(TypeError, match="float"):
        probability_to_mask(np.ones((2, 2), np.int64))


# ----------------------------------------------------------------------------------------------
# mask_to_instances
# ----------------------------------------------------------------------------------------------


def test_components_are_4_connected():
    mask = np.array([[1, 0], [0, 1]])
    labels = mask_to_instances(mask)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, [[1, 0], [0, 2]])


def test_min_size_removes_specks_and_relabels():
    mask = np.zeros((6, 10), bool)
    mask[0, 0] = True  # 1 px
    mask[2:5, 2:5] = True  # 9 px
    mask[0, 8:10] = True  # 2 px
    mask[4:6, 7:10] = True  # 6 px
    labels = mask_to_instances(mask, min_size=3)
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2]
    assert (labels[2:5, 2:5] == 1).all() and (labels[4:6, 7:10] == 2).all()
    assert labels[0, 0] == 0 and (labels[0, 8:10] == 0).all()
    assert mask_to_instances(mask).max() == 4


def test_mask_to_instances_errors():
    with pytest.raises(TypeError, match="probability_to_mask"):
        mask_to_instances(np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        mask_to_instances(np.zeros((2, 3, 3), bool))
    with pytest.raises(ValueError, match="min_size"):
        mask_to_instances(np.zeros((3, 3), bool), min_size=-1)


# ----------------------------------------------------------------------------------------------
# split_touching
# ----------------------------------------------------------------------------------------------


def test_two_overlapping_discs_split_into_two_at_the_neck():
    mask = _discs((40, 60), *TWO)
    assert mask_to_instances(mask).max() == 1
    labels = split_touching(mask)
    assert labels.dtype == np.int32
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2]
    np.testing.assert_array_equal(labels > 0, mask)
    # equal discs: the cut is the neck at column 28, each half keeps its own centre
    assert labels[20, 20] != labels[20, 36]
    sizes = np.bincount(labels.ravel())[1:]
    assert abs(int(sizes[0]) - int(sizes[1])) <= 0.1 * sizes.sum()
    assert (labels[:, :28][mask[:, :28]] == labels[20, 20]).all()
    assert (labels[:, 29:][mask[:, 29:]] == labels[20, 36]).all()


@pytest.mark.parametrize("radius", [3, 6, 10, 15])
@pytest.mark.parametrize("centre", [19.5, 20.0])
def test_a_single_disc_stays_one(radius, centre):
    mask = _discs((40, 40), (centre, centre, radius))
    assert split_touching(mask).max() == 1


def test_an_elongated_cell_is_not_over_split():
    yy, xx = np.mgrid[:30, :80]
    ellipse = ((yy - 15) / 8.0) ** 2 + ((xx - 40) / 32.0) ** 2 <= 1
    assert split_touching(ellipse).max() == 1
    # without the h-maxima merge the ridge's small bumps would split it
    assert split_touching(ellipse, h=0).max() > 1


def test_split_takes_probabilities_like_masks():
    mask = _discs((40, 60), *TWO)
    prob = np.where(mask, 0.9, 0.1).astype(np.float32)
    np.testing.assert_array_equal(split_touching(prob), split_touching(mask))


def test_small_cell_next_to_a_big_one_keeps_its_own_label():
    mask = _discs((40, 60), (20, 20, 12), (20, 36, 2))  # separate, the small one in the
    labels = split_touching(mask)  # big one's peak window
    assert labels.max() == 2 and labels[20, 36] != labels[20, 20]


def test_split_empty_mask_and_errors():
    np.testing.assert_array_equal(split_touching(np.zeros((5, 5), bool)), 0)
    with pytest.raises(ValueError, match="min_distance"):
        split_touching(np.zeros((5, 5), bool), min_distance=0)
    with pytest.raises(ValueError, match="h must be"):
        split_touching(np.zeros((5, 5), bool), h=-1)


def test_split_recovers_touching_cells():
    from unet_course.data import touching_cells

    _, _, ids = touching_cells(2, size=128, seed=0)
    for k in range(2):
        cells = ids[k] > 0
        assert split_touching(cells).max() == ids[k].max()


# ----------------------------------------------------------------------------------------------
# instances
# ----------------------------------------------------------------------------------------------


def test_instances_convenience():
    mask = _discs((40, 60), *TWO, (35, 55, 1))  # two touching discs and a 5 px speck
    prob = np.where(mask, 0.8, 0.2).astype(np.float32)
    assert instances(prob).max() == 2
    assert instances(prob, min_size=10).max() == 1
    assert instances(prob, split=True).max() == 3
    labels = instances(prob, split=True, min_size=10)
    assert labels.dtype == np.int32 and labels.max() == 2
    assert labels[35, 55] == 0
    assert instances(prob, threshold=0.9).max() == 0

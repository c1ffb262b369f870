import numpy as np
import pytest

from unet_course.baseline import otsu_threshold, threshold_segmentation


def test_otsu_splits_two_populations_between_their_means():
    rng = np.random.default_rng(0)
    image = np.concatenate([rng.normal(0.2, 0.03, 5000), rng.normal(0.7, 0.03, 3000)])
    t = otsu_threshold(image)
    assert 0.25 < t < 0.65  # anywhere in the gap between the two populations splits them
    assert np.mean(image[:5000] < t) > 0.99 and np.mean(image[5000:] > t) > 0.99


def test_threshold_segmentation_fills_small_dark_holes_but_keeps_membranes():
    image = np.full((40, 40), 0.8, np.float32)
    image[:, 19:21] = 0.1          # a membrane: a long dark line, separates two cells
    image[8:11, 5:8] = 0.1         # an organelle: a 9-pixel dark spot inside a cell
    seg = threshold_segmentation(image)
    assert seg[9, 6] == 1          # filled
    assert np.all(seg[:, 19:21] == 0)
    with pytest.raises(ValueError, match="2-D"):
        threshold_segmentation(image[None])

"""Test-time augmentation: the mean over the 8 symmetries of the square, turned back."""

import numpy as np
import pytest
import torch

from unet_course.model import UNet
from unet_course.predict import predict_class_probabilities, predict_probabilities


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return UNet(in_channels=1, num_classes=3, base_channels=4, depth=2, padding="same").eval()


def test_the_average_over_symmetries_turns_with_the_image(net):
    image = np.random.default_rng(0).random((40, 56), dtype=np.float32)  # not square
    plain = predict_class_probabilities(net, image)
    averaged = predict_class_probabilities(net, image, symmetries=True)
    assert averaged.shape == plain.shape == (3, 40, 56)
    assert np.allclose(averaged.sum(0), 1, atol=1e-5)
    # An untrained net is far from symmetric, so averaging changes its answer...
    assert np.abs(averaged - plain).max() > 0.05
    # ...into one that is exactly equivariant: predict a turned or mirrored image, get the
    # turned or mirrored prediction. Each view is turned back the right way, or this fails.
    for turn in (lambda a: np.rot90(a, 1, axes=(-2, -1)), lambda a: a[..., ::-1],
                 lambda a: np.rot90(a[..., ::-1], 3, axes=(-2, -1))):
        moved = predict_class_probabilities(net, np.ascontiguousarray(turn(image)),
                                            symmetries=True)
        assert np.abs(moved - turn(averaged)).max() < 1e-5


def test_the_cell_map_is_row_one_of_the_class_maps(net):
    image = np.random.default_rng(1).random((32, 32), dtype=np.float32)
    assert np.allclose(predict_probabilities(net, image, symmetries=True),
                       predict_class_probabilities(net, image, symmetries=True)[1], atol=1e-6)

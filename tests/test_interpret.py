"""Where the net looks: feature maps per level, region Grad-CAM, occlusion sensitivity."""

import numpy as np
import pytest
import torch

from unet_course.interpret import level_features, occlusion_map, region_grad_cam
from unet_course.model import UNet


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return UNet(in_channels=1, num_classes=2, depth=2, base_channels=4, padding="same",
                batch_norm=True, dropout=0.0)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).random((96, 96), dtype=np.float32)


def corner(size=96, edge=4):
    region = np.zeros((size, size), bool)
    region[:edge, :edge] = True
    return region


def test_level_features_go_down_the_u_and_back_up(net, image):
    names_shapes = [(n, f.shape) for n, f in level_features(net, image)]
    assert names_shapes == [("level 0 (down)", (4, 96, 96)), ("level 1 (down)", (8, 48, 48)),
                            ("level 2 (down)", (16, 24, 24)), ("level 1 (up)", (8, 48, 48)),
                            ("level 0 (up)", (4, 96, 96))]


def test_occlusion_outside_the_receptive_field_moves_nothing_and_inside_it_does(net, image):
    net.train()
    changes = occlusion_map(net, image, corner(), patch=16)
    assert net.training  # the caller's mode is given back
    assert changes.shape == (6, 6) and changes.dtype == np.float32
    assert changes[0, 0] > 1e-4              # covering the region itself moves it
    # A depth-2 same net sees about 2 * (2 + 4 + 8) + a few px around a pixel: a patch 64 px
    # away is outside that window, so the prediction there is bit for bit the same.
    assert changes[4:, 4:].max() == 0.0


def test_grad_cam_is_a_map_in_zero_one_of_the_image_size(net, image):
    cam = region_grad_cam(net, image, corner(), "level 1 (down)")
    assert cam.shape == (96, 96) and cam.dtype == np.float32
    assert cam.min() >= 0 and cam.max() <= 1 + 1e-6


@pytest.mark.parametrize("call, message", [
    (lambda n, im: region_grad_cam(n, im, corner(), "level 9 (down)"), "no block"),
    (lambda n, im: region_grad_cam(n, im, np.zeros((96, 96), bool), "level 0 (down)"), "empty"),
    (lambda n, im: region_grad_cam(n, im, corner(50), "level 0 (down)"), "image's size"),
    (lambda n, im: region_grad_cam(n, im, corner(), "level 0 (down)", 5), "target_class"),
    (lambda n, im: occlusion_map(n, im, corner(), patch=200), "does not fit"),
    (lambda n, im: occlusion_map(n, im[None, None], corner()), r"\(H, W\) or \(1, H, W\)"),
    (lambda n, im: level_features(UNet(depth=1, base_channels=2), im), "same-padded"),
])
def test_bad_input_gives_a_clear_error(net, image, call, message):
    with pytest.raises(ValueError, match=message):
        call(net, image)


def test_with_instance_norm_every_patch_reaches_the_region(image):
    # the docstring's caveat: instance norm takes each channel's statistics over the whole
    # image, so even a patch far outside the window moves the answer a little
    torch.manual_seed(0)
    inorm = UNet(depth=2, base_channels=4, padding="same", batch_norm=True, norm="instance",
                 dropout=0.0)
    changes = occlusion_map(inorm, image, corner(), patch=16)
    assert changes[4:, 4:].min() > 0.0


def test_patch_distances_are_chessboard_distances_to_the_region():
    from unet_course.experiments import patch_distances

    region = np.zeros((64, 64), bool)
    region[0, 0] = True
    d = patch_distances(region, patch=16)
    assert d.shape == (4, 4) and d.dtype == np.float32
    # patch (i, j) starts at (16 i, 16 j): its nearest pixel is max(16 i, 16 j) steps away
    assert np.array_equal(d, 16 * np.maximum.outer(np.arange(4), np.arange(4)))


def test_look_result_bins_and_the_membrane_region():
    from unet_course.experiments import LookResult, membrane_region

    look = LookResult(np.array([[0.5, 0.1], [0.2, 0.0]], np.float32),
                      np.array([[0, 10], [40, 100]], np.float32))
    assert look.mean_change(0, 1) == 0.5 and look.largest_change(1) == pytest.approx(0.2)
    assert look.largest_change(32) == pytest.approx(0.2) and look.largest_change(200) == 0.0
    mask = np.ones((20, 20), np.int64)
    mask[10, :] = 0  # one membrane row
    region = membrane_region(mask, centre=(10, 10), radius=3)
    assert region.sum() == 7 and region[10, 7:14].all()
    with pytest.raises(ValueError, match="no membrane within 3 px of"):
        membrane_region(mask, centre=(2, 2), radius=3)

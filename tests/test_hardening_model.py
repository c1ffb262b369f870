"""Issue 14: the model, the tiling and the prediction never fail a user silently or obscurely."""

import re

import numpy as np
import pytest
import torch

import unet_course.mirror
import unet_course.predict
import unet_course.tiling
from unet_course import UNet
from unet_course.geometry import UNetGeometry
from unet_course.predict import predict_probabilities, predict_tiled
from unet_course.tiling import estimate_tile_memory, tile_grid


def small_net(padding="same", num_classes=2, dtype=torch.float32, **kw):
    torch.manual_seed(0)
    return UNet(depth=2, base_channels=4, padding=padding, num_classes=num_classes, **kw).to(dtype)


# --------------------------------------------------------------------------- tile size vs memory
def test_an_explicit_tile_far_too_large_is_refused_not_allocated():
    """tile_size=20004 for a 64 x 80 image used to ignore the budget and allocate tens of GB."""
    net = small_net()
    image = torch.rand(1, 64, 80)
    need = estimate_tile_memory(net, (20004, 20004))
    assert need > 2**34  # what the forward pass would have tried to allocate
    with pytest.raises(ValueError) as caught:
        predict_tiled(net, image, tile_size=20004)
    message = str(caught.value)
    assert "tile_size (20004, 20004) needs about" in message and "memory_budget = 4.0 GiB" in message
    # ... and it names the tile that fits, the one tile_size=None picks
    chosen = tile_grid(net, (64, 80))
    assert f"tile_size={chosen.input_size} fits" in message
    fitted = predict_tiled(net, image, tile_size=chosen.input_size)
    assert torch.equal(fitted, predict_tiled(net, image))


def test_the_budget_bounds_explicit_tiles_but_not_the_arithmetic():
    net = small_net()
    # with the memory to pay for it, a huge tile is a valid (if wasteful) single tile
    grid = tile_grid(net, (64, 80), 20004, memory_budget=2**40)
    assert len(grid) == 1 and grid.input_size == (20004, 20004)
    # a tile that fits is used as given, as before
    assert tile_grid(net, (64, 80), 64).input_size == (64, 64)
    # when no tile fits at all the message says so
    with pytest.raises(ValueError, match=r"even the smallest tile, \(\d+, \d+\), needs"):
        tile_grid(net, (64, 80), 160, memory_budget=1000)


# --------------------------------------------------------------------------- input dtype
@pytest.mark.parametrize("dtype, fix", [
    (torch.float64, "x.float(), or the model with model.double()"),
    (torch.float16, "x.float(), or the model with model.half()"),
    (torch.uint8, "x.float() / 255"),
    (torch.int64, "x.float()"),
])
def test_input_of_another_dtype_names_both_dtypes_and_the_cast(dtype, fix):
    net = small_net()
    x = torch.zeros(1, 1, 16, 16, dtype=dtype)
    with pytest.raises(TypeError) as caught:
        net(x)
    message = str(caught.value)
    assert f"dtype {dtype}" in message and "weights are torch.float32" in message
    assert f"convert the input with {fix}" in message


def test_a_double_model_suggests_double_input_and_autocast_is_left_alone():
    net = small_net(dtype=torch.float64)
    with pytest.raises(TypeError, match=re.escape("x.double(), or the model with model.float()")):
        net(torch.zeros(1, 1, 16, 16))
    net32 = small_net().eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts itself
        assert net32(torch.zeros(1, 1, 16, 16, dtype=torch.bfloat16)).shape == (1, 2, 16, 16)


# --------------------------------------------------------------------------- probabilities
def test_a_single_logit_net_gives_sigmoid_probabilities():
    net = small_net(num_classes=1)
    image = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    prob = predict_probabilities(net, image)
    logit = predict_tiled(net, torch.from_numpy(image)[None])[0]
    assert prob.shape == (20, 30) and prob.dtype == np.float32
    np.testing.assert_allclose(prob, torch.sigmoid(logit).numpy(), rtol=1e-6)
    assert 0 <= prob.min() and prob.max() <= 1


@pytest.mark.parametrize("num_classes", [2, 3])
def test_several_maps_give_the_softmax_of_class_1(num_classes):
    net = small_net("valid", num_classes=num_classes)
    image = np.random.default_rng(1).random((1, 25, 19)).astype(np.float32)
    logits = predict_tiled(net, image)
    prob = predict_probabilities(net, image)
    np.testing.assert_allclose(prob, torch.softmax(logits, 0)[1].numpy(), rtol=1e-6)


# --------------------------------------------------------------------------- structure
def test_old_import_paths_still_work_and_name_the_same_objects():
    from unet_course.tiling import mirror_indices, mirror_pad
    from unet_course.tiling import predict_tiled as old_predict_tiled

    assert mirror_pad is unet_course.mirror.mirror_pad
    assert mirror_indices is unet_course.mirror.mirror_indices
    assert old_predict_tiled is unet_course.predict.predict_tiled
    with pytest.raises(AttributeError):
        unet_course.tiling.no_such_name  # noqa: B018


def test_tiling_recognises_a_unet_by_its_geometry():
    class NoGeometry(torch.nn.Module):
        in_channels = 1

    with pytest.raises(TypeError, match="lacking geometry"):
        tile_grid(NoGeometry(), (10, 10))

    class Wrapped(torch.nn.Module):
        """Any module with a UNetGeometry and in_channels can be tiled."""

        def __init__(self):
            super().__init__()
            self.net = small_net("valid")
            self.geometry, self.in_channels = self.net.geometry, 1

        def forward(self, x):
            return self.net(x)

    wrapped = Wrapped()
    assert isinstance(wrapped.geometry, UNetGeometry)
    image = torch.rand(1, 30, 30)
    assert torch.equal(predict_tiled(wrapped, image), predict_tiled(wrapped.net, image))


def test_tile_memory_reads_the_first_width_by_attribute():
    net = small_net()
    assert estimate_tile_memory(net, (10, 10)) == 4 * 100 * (6 * net.spec.base_channels + 32)


# --------------------------------------------------------------------------- texts the lessons show
def test_lesson_03_error_texts_are_unchanged():
    """Notebook 03 shows these two messages verbatim (nbval compares them)."""
    net = UNet(base_channels=1)
    with pytest.raises(ValueError) as caught:
        predict_tiled(net, np.zeros((600, 800), np.float32))
    assert str(caught.value) == (
        "image has shape (600, 800), (H, W) without a channel axis; predict_tiled expects (C, H, W) "
        "with C = 1 for this net: add the axis with image[None] (NumPy) or image.unsqueeze(0) (torch)")
    with pytest.raises(ValueError) as caught:
        predict_tiled(net, np.zeros((1, 600, 800), np.float32), tile_size=500)
    assert str(caught.value) == (
        "tile_size 500 does not work for this U-Net (valid padding, depth 4) on an axis of 600 "
        "pixels: tile sizes are 188 + 16k (valid sizes of this depth-4 net) whose output of 20 or "
        "more pixels can step on the 16-pixel pooling grid; the nearest are 492 or 508; or pass "
        "tile_size=None to choose one from the memory budget")

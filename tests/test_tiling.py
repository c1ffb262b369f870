"""Overlap-tile prediction is exact: tiled == one forward pass over the mirror-padded image."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unet_course import UNet
from unet_course.tiling import (
    DEFAULT_MEMORY_BUDGET,
    estimate_tile_memory,
    mirror_pad,
    predict_tiled,
    tile_grid,
)


def tiny_net(padding="valid", depth=2, in_channels=1, num_classes=2, dtype=torch.float64, seed=0,
             **kw):
    torch.manual_seed(seed)
    return UNet(in_channels=in_channels, num_classes=num_classes, depth=depth, base_channels=2,
                padding=padding, **kw).to(dtype)


def whole_image_reference(model, image, context):
    """One forward pass over ``image`` (C, H, W) mirrored by ``context`` px on every side.

    The padded image is extended at the bottom and right to a size the net accepts; the
    logits are cropped back to the image. Everything here is derived from the model's own
    size rules and np.pad, not from the tiling code.
    """
    C, H, W = image.shape
    q = 2**model.depth
    if model.padding == "valid":
        sizes = [model.valid_input_size(H + 2 * context), model.valid_input_size(W + 2 * context)]
        offset = 0  # a valid net's output starts `context` pixels inside its input
    else:
        sizes = [-(-(H + 2 * context) // q) * q, -(-(W + 2 * context) // q) * q]
        offset = context
    padded = np.pad(image.numpy(), ((0, 0), (context, sizes[0] - H - context),
                                    (context, sizes[1] - W - context)), mode="reflect")
    with torch.no_grad():
        y = model.eval()(torch.from_numpy(padded)[None])[0]
    return y[:, offset : offset + H, offset : offset + W]


def valid_margin(model):
    n = model.valid_input_size(1)
    return (n - model.output_size(n)) // 2


# --------------------------------------------------------------------------- mirror_pad
@given(h=st.integers(1, 9), w=st.integers(1, 9), pads=st.tuples(*[st.integers(0, 25)] * 4),
       mode=st.sampled_from(["reflect", "symmetric"]))
def test_mirror_pad_matches_numpy_even_for_pads_longer_than_the_image(h, w, pads, mode):
    top, bottom, left, right = pads
    if mode == "reflect" and (h == 1 and top + bottom or w == 1 and left + right):
        return  # np.pad cannot reflect a single pixel; see the test below
    a = np.random.default_rng(h * 10 + w).random((2, h, w))
    expected = np.pad(a, ((0, 0), (top, bottom), (left, right)), mode=mode)
    np.testing.assert_array_equal(mirror_pad(a, pads, mode), expected)
    np.testing.assert_array_equal(mirror_pad(torch.from_numpy(a), pads, mode).numpy(), expected)


def test_mirror_pad_reflect_agrees_with_torch_and_repeats_a_single_pixel():
    x = torch.rand(1, 3, 6, 7)
    assert torch.equal(mirror_pad(x, (2, 5, 6, 1)), F.pad(x, (6, 1, 2, 5), mode="reflect"))
    assert mirror_pad(np.array([[4.0]]), 2).tolist() == [[4.0] * 5] * 5
    assert mirror_pad(np.array([[1.0, 2.0, 3.0]]), (0, 0, 2, 2)).tolist() == [[3, 2, 1, 2, 3, 2, 1]]
    assert mirror_pad(np.array([[1.0, 2.0, 3.0]]), (0, 0, 2, 2), "symmetric").tolist() == \
        [[2, 1, 1, 2, 3, 3, 2]]


@pytest.mark.parametrize("pad, mode, error", [
    (-1, "reflect", ValueError), ((1, 2, 3), "reflect", ValueError), (1, "edge", ValueError),
    ("a", "reflect", TypeError),
])
def test_mirror_pad_rejects_bad_arguments(pad, mode, error):
    with pytest.raises(error):
        mirror_pad(np.zeros((3, 3)), pad, mode)


# --------------------------------------------------------------------------- exactness
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    H=st.integers(1, 90), W=st.integers(1, 90), c_in=st.integers(1, 3), classes=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same"]), depth=st.integers(1, 3),
    dtype=st.sampled_from([torch.float64, torch.float32]), tile_step=st.integers(0, 3),
    batch=st.integers(1, 5), data=st.data(),
)
def test_tiled_equals_whole_image_forward_of_the_mirror_padded_image(
    H, W, c_in, classes, padding, depth, dtype, tile_step, batch, data
):
    model = tiny_net(padding, depth, c_in, classes, dtype)
    q = 2**depth
    # Context: the valid net's margin, or the documented default halo of a same-padded net.
    context = valid_margin(model) if padding == "valid" else 6 * q
    # At least q output pixels per tile (the smallest tile that can step on the pooling grid),
    # plus about a third of the image, so that there are several tiles per axis, not hundreds.
    tile = model.valid_input_size(2 * context + q * (1 + tile_step) + max(H, W) // 3)
    image = torch.from_numpy(np.random.default_rng(H * 1000 + W).random((c_in, H, W)))
    if data.draw(st.booleans(), label="numpy input"):
        image_in = image.numpy()
    else:
        image_in = image.to(dtype)

    y = predict_tiled(model, image_in, tile_size=tile, batch_size=batch)
    ref = whole_image_reference(model, image.to(dtype), context)
    assert y.shape == (classes, H, W) and y.dtype == dtype
    assert (y - ref).abs().max().item() <= 1e-4
    if dtype == torch.float64:
        assert (y - ref).abs().max().item() <= 1e-10


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_paper_depth_net_is_exact_on_an_odd_sized_image_float32(padding):
    model = tiny_net(padding, depth=4, dtype=torch.float32)
    image = torch.rand(1, 251, 97, generator=torch.Generator().manual_seed(1))
    grid = tile_grid(model, (251, 97), 236 if padding == "valid" else 224)
    assert len(grid) > 1
    y = predict_tiled(model, image, tile_size=grid.input_size)
    context = 92 if padding == "valid" else 96
    assert grid.context == context
    assert (y - whole_image_reference(model, image, context)).abs().max().item() <= 1e-4


def test_default_tile_size_is_one_whole_image_pass_when_it_fits():
    model = tiny_net(depth=3)
    image = torch.rand(1, 77, 41, dtype=torch.float64)
    grid = tile_grid(model, (77, 41))
    assert len(grid) == 1  # a tiny net on a small image: one tile within 4 GiB
    y = predict_tiled(model, image)
    assert (y - whole_image_reference(model, image, valid_margin(model))).abs().max() <= 1e-10


def test_too_small_a_halo_is_not_exact_so_the_default_one_matters():
    model = tiny_net("same", depth=2)
    image = torch.rand(1, 80, 80, dtype=torch.float64)
    ref = whole_image_reference(model, image, 24)  # default halo for depth 2: 6 * 4
    ok = predict_tiled(model, image, tile_size=64)
    assert (ok - ref).abs().max() <= 1e-10
    naive = predict_tiled(model, image, tile_size=16, halo=0)
    assert (naive - whole_image_reference(model, image, 0)).abs().max() > 1e-3


def test_halo_zero_is_naive_non_overlapping_tiling():
    model = tiny_net("same", depth=2)
    image = torch.rand(1, 48, 64, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        by_hand = torch.cat([
            torch.cat([model(image[None, :, i : i + 16, j : j + 16])[0] for j in range(0, 64, 16)], 2)
            for i in range(0, 48, 16)
        ], 1)
    assert torch.allclose(predict_tiled(model, image, tile_size=16, halo=0), by_hand, atol=1e-12)


# --------------------------------------------------------------------------- the grid
@settings(max_examples=60, deadline=None)
@given(H=st.integers(1, 700), W=st.integers(1, 700), padding=st.sampled_from(["valid", "same"]),
       depth=st.integers(1, 4), budget=st.sampled_from([1, 2**20, 2**24, DEFAULT_MEMORY_BUDGET]),
       batch=st.integers(1, 6))
def test_tiles_cover_every_output_pixel_exactly_once(H, W, padding, depth, budget, batch):
    model = tiny_net(padding, depth)
    grid = tile_grid(model, (H, W), batch_size=batch, memory_budget=budget)
    q = 2**depth
    hits = np.zeros((H, W), dtype=int)
    n_y, n_x = grid.input_size
    assert model.valid_input_size(n_y) == n_y and model.valid_input_size(n_x) == n_x
    assert grid.output_size == (model.output_size(n_y), model.output_size(n_x))
    for tile in grid:
        hits[tile.out] += 1
        for axis in (0, 1):
            out, keep, origin = tile.out[axis], tile.keep[axis], tile.origin[axis]
            assert keep.stop - keep.start == out.stop - out.start >= 1
            assert 0 <= keep.start and keep.stop <= grid.output_size[axis]
            # Output pixel k of a tile sits at input pixel k + margin of that tile.
            margin = (grid.input_size[axis] - grid.output_size[axis]) // 2
            assert origin + margin + keep.start == out.start
            # Every tile starts on the pooling grid of the first one.
            assert (origin + grid.context) % q == 0
    assert hits.min() == 1 and hits.max() == 1
    assert len(grid) == grid.shape[0] * grid.shape[1]
    assert 1 <= grid.batch_size <= batch
    context = valid_margin(model) if padding == "valid" else 6 * q
    smallest = model.valid_input_size(2 * context + q)
    if estimate_tile_memory(model, (smallest, smallest)) <= budget:  # some tiling fits
        assert grid.tile_memory <= budget
        assert grid.batch_size * grid.tile_memory <= budget


def test_paper_net_arithmetic_572_tile_keeps_384_rows_on_the_pooling_grid():
    model = UNet(base_channels=1)  # the paper's sizes; the width does not enter the arithmetic
    grid = tile_grid(model, (1024, 1000), 572)
    assert grid.output_size == (388, 388) and grid.context == 92
    assert grid.step == (384, 384)  # 388 rounded down to a multiple of 16
    assert grid.shape == (3, 3)     # 388 + 2 * 384 >= 1024 and >= 1000
    assert [t.origin for t in grid][:3] == [(-92, -92), (-92, 292), (-92, 676)]


def test_default_tile_fits_the_memory_budget_and_feeds_fewer_pixels_than_the_paper_tile():
    model = UNet()
    grid = tile_grid(model, (1024, 1024))
    assert grid.tile_memory <= DEFAULT_MEMORY_BUDGET
    assert grid.input_pixels < tile_grid(model, (1024, 1024), 572).input_pixels
    small = tile_grid(model, (1024, 1024), memory_budget=2**28)
    assert small.tile_memory <= 2**28 < grid.tile_memory and len(small) > len(grid)


# --------------------------------------------------------------------------- behaviour
def test_mode_is_restored_and_dropout_is_off_during_prediction():
    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=4, dropout=0.5).double()
    image = torch.rand(1, 30, 30, dtype=torch.float64)
    model.train()
    a = predict_tiled(model, image)
    assert model.training
    b = predict_tiled(model, image)
    assert torch.equal(a, b) and not a.requires_grad
    model.eval()
    predict_tiled(model, image)
    assert not model.training
    model.train()
    model.head.eval()  # a mixed state (e.g. frozen layers) comes back module by module
    predict_tiled(model, image)
    assert model.training and model.ups[0].training and not model.head.training


def test_numpy_views_and_read_only_arrays_work_without_warnings():
    model = tiny_net(dtype=torch.float32)
    a = np.random.default_rng(0).random((1, 40, 33))  # float64, cast to the net's float32
    ref = predict_tiled(model, torch.from_numpy(a).float())
    a.flags.writeable = False
    assert torch.equal(predict_tiled(model, a), ref)
    flipped = a[:, ::-1]
    assert torch.equal(predict_tiled(model, flipped), predict_tiled(model, flipped.copy()))


def test_progress_bar_only_when_asked_or_large(capsys):
    model = tiny_net()
    image = torch.rand(1, 50, 50, dtype=torch.float64)
    predict_tiled(model, image, tile_size=44)
    assert capsys.readouterr().err == ""
    predict_tiled(model, image, tile_size=44, progress=True)
    assert "predict_tiled" in capsys.readouterr().err


# --------------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def paper_arithmetic():
    return UNet(base_channels=1)


@pytest.mark.parametrize("image, error, words", [
    (np.zeros((64, 64), np.float32), ValueError, r"without a channel axis.*image\[None\]"),
    (np.zeros((1, 1, 64, 64), np.float32), ValueError, "a batch"),
    (np.zeros((3, 64, 64), np.float32), ValueError, "expects 1 input channel"),
    (np.zeros((64, 64, 1), np.float32), ValueError, r"channels-last.*transpose\(2, 0, 1\)"),
    (np.full((1, 8, 8), np.nan, np.float32), ValueError, "64 non-finite"),
    (torch.tensor([[[0.0, float("inf")]]]), ValueError, "1 non-finite"),
    (np.zeros((1, 8, 8), np.uint8), TypeError, r"floating point.*/ 255"),
    (torch.zeros(1, 8, 8, dtype=torch.int64), TypeError, "floating point"),
    ([[[0.0]]], TypeError, "NumPy array or a torch tensor"),
])
def test_bad_images_get_errors_that_say_what_would_work(paper_arithmetic, image, error, words):
    with pytest.raises(error, match=words):
        predict_tiled(paper_arithmetic, image)


@pytest.mark.parametrize("tile, error, words", [
    (500, ValueError, "nearest are 492 or 508"),
    (188, ValueError, "nearest are 204"),      # valid, but 4 output pixels cannot step by 16
    (100, ValueError, "nearest are 204"),
    (572.0, TypeError, "int"),
    ((572, 500), ValueError, "492 or 508"),
    ((572, 572, 572), ValueError, "pair"),
])
def test_invalid_tile_sizes_name_the_nearest_valid_ones(paper_arithmetic, tile, error, words):
    with pytest.raises(error, match=words):
        tile_grid(paper_arithmetic, (1000, 1000), tile)


def test_other_bad_arguments(paper_arithmetic):
    with pytest.raises(ValueError, match="same-padded nets only"):
        tile_grid(paper_arithmetic, (100, 100), halo=96)
    same = UNet(base_channels=1, padding="same")
    with pytest.raises(ValueError, match="multiple of 2\\*\\*\\(depth-1\\) = 8.*e.g. 88 or 96"):
        tile_grid(same, (100, 100), halo=90)
    with pytest.raises(ValueError, match="multiples of 16 of at least 208"):
        tile_grid(same, (500, 500), 200)
    with pytest.raises(ValueError, match="batch_size"):
        tile_grid(paper_arithmetic, (100, 100), batch_size=0)
    with pytest.raises(TypeError, match="UNet"):
        predict_tiled(torch.nn.Conv2d(1, 1, 3), np.zeros((1, 5, 5), np.float32))

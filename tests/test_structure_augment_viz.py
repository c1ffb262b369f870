"""Issue 14 for augmentation and figures: one warp, one kernel, one mirroring rule; viz split
into diagram, plots and logging; and the silent failures that now raise."""

from __future__ import annotations

import importlib
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from unet_course import viz
from unet_course.augment import (
    Compose,
    ElasticDeform,
    GrayValue,
    RandomFlip,
    RandomRotation,
    RandomShift,
    dense_field,
    elastic,
    elastic_deform,
    elastic_deform_torch,
    keys_kernel,
    mirror_indices,
    mirror_indices_torch,
    random_grid,
    warp,
)
from unet_course.augment.elastic_torch import _bicubic_torch
from unet_course.train import History


def smooth_image(shape=(48, 40), seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    image = 0.5 + 0.2 * np.sin(y / 5.0 + rng.random()) * np.cos(x / 7.0)
    return image.astype(np.float32)


# ------------------------------------------------------------------ one path: grid -> field -> warp


def test_elastic_deform_is_random_grid_then_dense_field_then_warp():
    image = smooth_image()
    label = (image > 0.5).astype(np.int64)
    out, lab = elastic_deform(image, label, grid=(3, 4), sigma=8.0, rng=np.random.default_rng(2))
    nodes = random_grid((3, 4), 8.0, np.random.default_rng(2))
    positions = dense_field(nodes, image.shape, np.float32, absolute=True)
    np.testing.assert_array_equal(out, warp(image, positions, order=3, absolute=True))
    np.testing.assert_array_equal(lab, warp(label, positions, order=0, absolute=True))


def test_editing_warp_changes_the_training_augmentation(monkeypatch):
    calls = []
    real = elastic.warp

    def spy(array, field, order=3, **kw):
        calls.append((array.dtype, order, kw))
        return real(array, field, order, **kw)

    monkeypatch.setattr(elastic, "warp", spy)
    image = smooth_image()
    mask = (image > 0.5).astype(np.int64)
    ElasticDeform()(image, mask, mask.astype(np.int32), rng=0)
    assert [c[:2] for c in calls] == [(np.float32, 3), (np.int64, 0), (np.int32, 0)]
    assert all(c[2] == {"absolute": True} for c in calls)


def test_absolute_positions_are_the_displacements_plus_the_pixel_grid():
    nodes = random_grid(3, 10.0, np.random.default_rng(0))
    shape = (37, 50)
    field = dense_field(nodes, shape)
    grid = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    np.testing.assert_allclose(dense_field(nodes, shape, absolute=True), field + grid, atol=1e-9)
    np.testing.assert_allclose(dense_field(nodes, shape, np.float32, absolute=True), field + grid,
                               atol=1e-4)
    # the caller's nodes stay displacements
    np.testing.assert_array_equal(nodes, random_grid(3, 10.0, np.random.default_rng(0)))
    image = smooth_image(shape)
    for order in (0, 1, 3):
        np.testing.assert_array_equal(warp(image, field + grid, order, absolute=True),
                                      warp(image, field, order))


def test_rotation_goes_through_warp(monkeypatch):
    orders = []
    real = warp

    def spy(array, field, order=3, **kw):
        orders.append(order)
        return real(array, field, order, **kw)

    from unet_course.augment import transforms

    monkeypatch.setattr(transforms, "warp", spy)
    image = smooth_image((33, 33))
    RandomRotation(30.0)(image, (image > 0.5).astype(np.uint8), rng=1)
    assert orders == [3, 0]


def test_labels_with_more_axes_still_share_the_field():
    image = smooth_image()
    stack = np.stack([(image > 0.5), (image > 0.6)])[:, None].astype(np.uint8)  # (2, 1, H, W)
    out, lab = elastic_deform(image, stack, sigma=5.0, rng=3)
    _, first = elastic_deform(image, stack[0, 0], sigma=5.0, rng=3)
    assert lab.shape == stack.shape
    np.testing.assert_array_equal(lab[0, 0], first)


# ------------------------------------------------------------------ one kernel, one mirroring rule


def test_keys_kernel_is_one_definition_for_numpy_and_torch():
    s = np.linspace(-2.5, 2.5, 101)
    w = keys_kernel(s)
    np.testing.assert_allclose(keys_kernel(torch.from_numpy(s)).numpy(), w, atol=0)
    assert keys_kernel(0.0) == 1.0 and keys_kernel(1.0) == 0.0 and keys_kernel(2.0) == 0.0
    np.testing.assert_allclose(keys_kernel(np.array([0.5, 1.5])), [0.5625, -0.0625])
    assert np.all(w[np.abs(s) >= 2] == 0)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64])
def test_torch_mirroring_is_the_numpy_rule(n):
    positions = np.arange(-5 * n - 3, 6 * n + 4)
    np.testing.assert_array_equal(mirror_indices_torch(torch.from_numpy(positions), n).numpy(),
                                  mirror_indices(positions, n))


def test_torch_images_are_mirrored_by_the_numpy_rule():
    # At whole-pixel positions bicubic interpolation returns the pixel itself, so sampling at
    # positions outside the image shows which pixel the mirroring picked: the one of
    # mirror_indices, also where a position is mirrored more than once.
    rng = np.random.default_rng(0)
    image = rng.random((20, 17))
    ys = rng.integers(-25, 45, size=(20, 17)).astype(np.float64)
    xs = rng.integers(-20, 37, size=(20, 17)).astype(np.float64)
    got = _bicubic_torch(torch.from_numpy(image)[None, None], torch.from_numpy(ys)[None],
                         torch.from_numpy(xs)[None])[0, 0].numpy()
    expected = image[mirror_indices(ys.astype(int), 20), mirror_indices(xs.astype(int), 17)]
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_torch_and_numpy_deformations_agree_on_smooth_images():
    # one field, two image kernels (PyTorch's bicubic, SciPy's B-spline): close on smooth images;
    # labels are identical
    image = smooth_image((64, 64))
    label = (image > 0.5).astype(np.int64)
    g = torch.Generator().manual_seed(4)
    out_t, lab_t = elastic_deform_torch(torch.from_numpy(image)[None, None],
                                        torch.from_numpy(label)[None], generator=g)
    nodes = torch.randn((1, 2, 3, 3), generator=torch.Generator().manual_seed(4)) * 10.0
    field = dense_field(nodes[0].numpy().astype(np.float64), image.shape)
    np.testing.assert_allclose(out_t[0, 0].numpy(), warp(image, field), atol=5e-3)
    assert (lab_t[0].numpy() != warp(label, field, order=0)).mean() < 0.002


# ------------------------------------------------------------------ silent failures that now raise


def test_a_non_finite_field_is_refused():
    field = np.zeros((2, 8, 8))
    field[1, 3, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        warp(np.zeros((8, 8)), field)
    field[1, 3, 3] = np.inf
    with pytest.raises(ValueError, match="finite"):
        warp(np.zeros((8, 8), int), field, order=0)


def test_gray_value_refuses_an_image_outside_zero_one():
    image = smooth_image() * 255  # an 8-bit image would have come out all white
    with pytest.raises(ValueError, match=r"\[0, 1\].*255"):
        GrayValue()(image, rng=0)
    GrayValue()(np.clip(smooth_image() + 0.004, 0, 1.004), rng=0)  # a hair over is clipped


def test_arguments_are_checked_when_the_augmentation_is_made():
    with pytest.raises(ValueError, match="sigma"):
        ElasticDeform(sigma=float("nan"))  # used to fail only at the first call
    with pytest.raises(TypeError, match="max_shift"):
        RandomShift(max_shift=2.5)
    with pytest.raises(TypeError, match="max_shift"):
        RandomShift(max_shift=True)
    with pytest.raises(ValueError, match="degrees"):
        RandomRotation(degrees=float("inf"))
    with pytest.raises(TypeError, match="grid"):
        random_grid(2.5)
    with pytest.raises(TypeError, match="Compose"):
        Compose(RandomFlip())
    with pytest.raises(TypeError, match="rng"):
        elastic_deform(np.zeros((8, 8)), rng=True)  # a bool is not a seed
    with pytest.raises(ValueError, match="sigma"):
        elastic_deform_torch(torch.zeros(1, 1, 8, 8), sigma=-1.0)
    with pytest.raises(ValueError, match="got a torch.int64 tensor"):
        elastic_deform_torch(torch.zeros(1, 1, 8, 8, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
def test_torch_labels_on_another_device_are_refused():
    with pytest.raises(ValueError, match="device"):
        elastic_deform_torch(torch.zeros(1, 1, 8, 8, device="cuda"), torch.zeros(1, 8, 8).long())


# ------------------------------------------------------------------ viz: diagram, plots, logging


def test_viz_keeps_every_name_and_each_lives_in_its_module():
    old_names = {"FeatureMap", "VisdomLogger", "draw_unet", "error_overlay", "plot_history",
                 "unet_feature_maps"}
    assert old_names <= set(viz.__all__)
    homes = {"FeatureMap": "feature_maps", "unet_feature_maps": "feature_maps",
             "draw_unet": "diagram", "error_overlay": "plots", "plot_history": "plots",
             "label_colors": "plots", "VisdomLogger": "visdom_logger"}
    for name, module in homes.items():
        assert getattr(viz, name) is getattr(importlib.import_module(f"unet_course.viz.{module}"), name)
    assert "matplotlib" not in Path(importlib.import_module("unet_course.viz.visdom_logger").__file__).read_text()


def test_tracing_restores_modes_even_when_the_forward_pass_fails(monkeypatch):
    from unet_course import UNet

    model = UNet(depth=1, base_channels=1, batch_norm=True)
    model.train()
    model.inc[1].eval()

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(model.head, "forward", broken)
    with pytest.raises(RuntimeError, match="boom"):
        viz.unet_feature_maps(model, 18)
    assert model.training and not model.inc[1].training
    assert not model._forward_pre_hooks and not model.head._forward_hooks


def notebook_04_colors(instances):
    rng = np.random.default_rng(1)
    colors = rng.uniform(0.25, 1.0, size=(int(instances.max()) + 1, 3))
    colors[0] = 0.0
    return colors


def notebook_05_colors(n_ids, seed=1):
    colors = np.random.default_rng(seed).uniform(0.25, 1.0, size=(n_ids + 1, 3))
    colors[0] = 0.0
    return colors


def test_label_colors_serves_both_lessons():
    instances = np.array([[0, 3], [7, 7]], dtype=np.int32)
    np.testing.assert_array_equal(viz.label_colors(instances).colors, notebook_04_colors(instances))
    np.testing.assert_array_equal(viz.label_colors(12).colors, notebook_05_colors(12))
    np.testing.assert_array_equal(viz.label_colors(12, seed=5).colors, notebook_05_colors(12, 5))
    np.testing.assert_array_equal(viz.label_colors(torch.tensor([[2, 0]])).colors,
                                  notebook_05_colors(2))
    assert viz.label_colors(0).N == 1
    with pytest.raises(ValueError, match=">= 0"):
        viz.label_colors(np.array([-1, 2]))
    with pytest.raises(TypeError, match="integer ids"):
        viz.label_colors(np.array([0.5, 2.0]))
    with pytest.raises(ValueError, match="highest id"):
        viz.label_colors(-3)


def test_plot_history_checks_before_drawing():
    open_figures = len(plt.get_fignums())
    with pytest.raises(ValueError, match="empty"):
        viz.plot_history(History())
    with pytest.raises(ValueError, match="smooth"):
        viz.plot_history(History(steps=[1, 2], loss=[1.0, 0.5]), smooth=0)
    assert len(plt.get_fignums()) == open_figures  # no empty figure left behind
    ax = viz.plot_history(History(steps=[1, 2, 3], loss=[1.0, 0.5, 0.4]), smooth=2)
    assert [line.get_label() for line in ax.lines] == ["loss per step", "mean of 2 steps"]
    plt.close(ax.figure)

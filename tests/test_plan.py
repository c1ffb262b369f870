"""nnU-Net's 2-D planning rules (unet_course.plan) against nnU-Net v2's own numbers.

The test vectors of the four median shapes follow nnU-Net v2's rules (2-D, one input channel,
an 8 GB target). The feature-map element counts and the deep-supervised network's parameter
counts were computed with nnU-Net's own network code (dynamic-network-architectures 0.4.4,
``PlainConvUNet.compute_conv_feature_map_size`` and its parameters, 2 classes) for the same
plans: they are that implementation's numbers, not this module's output copied back.
"""

import numpy as np
import pytest
import torch

from unet_course.losses import dice_ce_loss, soft_dice_loss
from unet_course.plan import (
    REFERENCE_BATCH,
    dataset_fingerprint,
    normalize,
    plan_2d,
    plan_dataset,
    pool_and_conv_props,
)
from unet_course.variants import PlainConvUNet


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("shape, spacing, patch, pools, elements", [
    ((512, 512), (1, 1), (512, 512), (7, 7), 82_624_512),
    ((96, 96), (1, 1), (96, 96), (4, 4), 2_820_096),
    ((584, 565), (1, 1), (640, 640), (7, 7), 129_100_800),
    ((256, 200), (1, 3), (256, 224), (6, 5), 26_808_320),
])
def test_the_issue_vectors_and_nnunets_feature_map_count(shape, spacing, patch, pools, elements):
    plan = plan_2d(shape, spacing)
    assert plan.patch_size == patch and plan.pools_per_axis == pools
    assert all(isinstance(v, int) for v in plan.patch_size + plan.pools_per_axis)
    assert plan.feature_map_elements == elements
    for edge, p in zip(plan.patch_size, plan.pools_per_axis):
        assert edge % 2**p == 0 and edge // 2**p >= 4  # 4 px or more at the bottleneck


def test_a_coarse_axis_is_not_pooled_first_and_gets_kernel_one():
    plan = plan_2d((256, 200), (1, 3))
    assert plan.pool_kernel_sizes[:3] == ((1, 1), (2, 1), (2, 2))
    assert plan.conv_kernel_sizes[:2] == ((3, 1), (3, 3))
    assert plan.conv_kernel_sizes[-1] == (3, 3)  # the bottleneck


def test_features_double_to_a_cap_of_512_and_the_net_has_nnunets_parameters():
    plan = plan_2d((512, 512))
    assert plan.features == (32, 64, 128, 256, 512, 512, 512, 512)
    assert count(plan.network(deep_supervision=True)) == 46_324_558
    assert count(plan_2d((256, 200), (1, 3)).network(deep_supervision=True)) == 33_442_956


def test_a_patch_too_large_for_the_memory_is_shrunk_one_pooling_step_at_a_time():
    plan = plan_2d((2048, 2048))  # nnU-Net v2 plans 1280 x 1024, batch 2 for this
    assert plan.patch_size == (1280, 1024) and plan.batch_size == 2
    assert plan.feature_map_elements / REFERENCE_BATCH * 2 <= plan.memory_reference
    small = plan_2d((512, 512), gpu_memory_gb=0.5)  # less memory: a smaller patch
    assert np.prod(small.patch_size) < 512 * 512
    with pytest.raises(ValueError, match="raise gpu_memory_gb"):
        plan_2d((512, 512), gpu_memory_gb=1e-6)


def test_batch_size_is_capped_at_five_percent_of_the_data_set_and_at_least_two():
    assert plan_2d((512, 512)).batch_size == 12  # only the memory limits it
    assert plan_2d((512, 512), n_cases=30).batch_size == 2  # 1.5 patches = 5 %; 2 at least
    assert plan_2d((96, 96), n_cases=10_000).batch_size == 362  # the memory's limit
    assert plan_2d((96, 96), n_cases=1000).batch_size == 50  # 5 % of 1000 images


def test_deep_supervision_weights_halve_and_ignore_the_coarsest():
    w = plan_2d((96, 96)).deep_supervision_weights  # 5 stages: 4 decoder outputs
    assert len(w) == 4 and w[-1] == 0 and abs(sum(w) - 1) < 1e-12
    assert w[0] == pytest.approx(2 * w[1]) == pytest.approx(4 * w[2])


def test_topology_pads_the_patch_up_to_a_multiple_of_two_to_the_pools():
    t = pool_and_conv_props((1.0, 1.0), (565.5, 100))  # a median of an even count
    # the last two rounds pool the long axis alone (stride (2, 1)); a lone axis stops at
    # 9 px, under 3 x 4: nnU-Net's get_pool_and_conv_props gives the same
    assert t.patch_size == (576, 112) and t.pools_per_axis == (6, 4)
    assert t.pool_kernel_sizes[-2:] == ((2, 1), (2, 1))


def test_fingerprint_measures_shapes_foreground_intensities_and_class_frequencies():
    rng = np.random.default_rng(0)
    images = [rng.random((40, 60)), rng.random((50, 30))]
    masks = [(im > 0.7).astype(np.int64) for im in images]
    fp = dataset_fingerprint(images, masks, max_samples=10**9)
    assert fp.shapes == ((40, 60), (50, 30)) and fp.median_shape == (45.0, 45.0)
    fg = np.concatenate([im[m > 0] for im, m in zip(images, masks)])
    assert fp.intensity["mean"] == pytest.approx(fg.mean())
    assert fp.intensity["percentile_99_5"] == pytest.approx(np.percentile(fg, 99.5))
    total = sum(m.size for m in masks)
    assert fp.class_frequencies[1] == pytest.approx(sum(m.sum() for m in masks) / total)
    plan = plan_dataset(fp)
    assert plan.median_shape == (45.0, 45.0) and plan.normalization == "ZScoreNormalization"
    z = normalize(images[0], plan)
    assert abs(z.mean()) < 1e-5 and z.std() == pytest.approx(1, abs=1e-4)


def test_ct_images_are_clipped_to_the_foreground_percentiles():
    rng = np.random.default_rng(1)
    image = rng.normal(0, 100, (64, 64))
    mask = (image > 0).astype(np.int64)
    fp = dataset_fingerprint([image], [mask], modality="CT")
    plan = plan_dataset(fp)
    assert plan.normalization == "CTNormalization"
    out = normalize(image, plan, fp)
    s = fp.intensity
    assert out.max() == pytest.approx((s["percentile_99_5"] - s["mean"]) / s["std"], rel=1e-5)
    with pytest.raises(ValueError, match="fingerprint"):
        normalize(image, plan)


@pytest.mark.parametrize("call, message", [
    (lambda: plan_2d((64, 64, 64)), "two values"),
    (lambda: plan_2d((64, 64), (1.0, -1.0)), "spacing"),
    (lambda: plan_2d((64, 64), num_classes=1), "num_classes"),
    (lambda: dataset_fingerprint([], []), "at least one"),
    (lambda: dataset_fingerprint([np.zeros((4, 4))], [np.zeros((4, 5), int)]), "same"),
    (lambda: dataset_fingerprint([np.zeros((4, 4))], [np.zeros((4, 4), int)]), "foreground"),
])
def test_bad_input_is_refused_with_a_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_planned_net_keeps_sizes_and_refuses_edges_off_its_grid():
    plan = plan_2d((64, 56), (1, 3), base_features=4, max_features=16)
    net = plan.network()
    h, w = plan.patch_size
    out = net.forward_all(torch.rand(2, 1, h, w))
    assert out[0].shape == (2, 2, h, w) and len(out) == plan.stages - 1
    assert [o.shape[-2:] for o in out] == sorted((o.shape[-2:] for o in out), reverse=True)
    with pytest.raises(ValueError, match="not a multiple"):
        net(torch.rand(1, 1, h + 2, w))
    assert PlainConvUNet(**net.config).config == net.config


def test_dice_ce_is_cross_entropy_plus_one_minus_batch_dice_without_background():
    torch.manual_seed(0)
    logits, target = torch.randn(3, 2, 8, 8), torch.randint(0, 2, (3, 8, 8))
    p = logits.softmax(1)[:, 1]
    t = (target == 1).float()
    dice = (2 * (p * t).sum() + 1e-5) / (p.sum() + t.sum() + 1e-5)
    ce = torch.nn.functional.cross_entropy(logits, target)
    assert dice_ce_loss(logits, target) == pytest.approx(float(ce + 1 - dice), abs=1e-6)
    per_image = soft_dice_loss(logits, target, include_background=False, reduction="none")
    assert per_image.shape == (3, 1)
    batch = soft_dice_loss(logits, target, include_background=False, batch_dice=True,
                           reduction="none")
    assert batch.shape == (1, 1)


def test_fit_takes_nnunets_recipe_and_refuses_nesterov_without_momentum():
    from unet_course import fit
    from unet_course.data import TileDataset, synthetic_em

    images, masks, _ = synthetic_em(2, size=64, seed=0)
    plan = plan_2d((32, 32), base_features=4, max_features=16)
    data = TileDataset(list(images), list(masks), 32, 32, length=6, seed=0)
    net = plan.network()
    t = plan.trainer
    h = fit(net, data, steps=6, batch_size=2, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov,
            weight_decay=t.weight_decay, lr_schedule=t.lr_schedule, loss=t.loss, progress=False)
    assert len(h.loss) == 6 and np.isfinite(h.loss).all()
    with pytest.raises(ValueError, match="nesterov"):
        fit(net, data, steps=1, optimizer="adam", nesterov=True, progress=False)
    with pytest.raises(ValueError, match="dice_ce"):
        fit(net, data, steps=1, loss="dice", progress=False)


def test_lesson11_data_and_laptop_plan():
    from unet_course.experiments.planning import CPU_PLAN, anisotropic_split, cpu_plan

    split, spacing = anisotropic_split(n_train=2, n_test=1, size=64)
    assert spacing == (1.0, 3.0) and split.train_images.shape == (2, 64, 22)
    assert split.test_masks.shape == (1, 64, 22)
    fingerprint, plan = cpu_plan(split, spacing)
    assert fingerprint.median_spacing == spacing and plan.features[0] == CPU_PLAN["base_features"]
    assert plan.conv_kernel_sizes[0] == (3, 1)  # the coarse x axis waits for y to catch up

"""U-Net's neighbours (unet_course.neighbours) and lesson 12's experiment, at tiny sizes.

Each net is checked for its interface (shapes, refusals) and for the one operation that
defines it, recomputed from the net's own intermediate maps: FCN's sums of score maps,
SegNet's reuse of the pooling indices, LinkNet's and FPN's additions, PSPNet's bins.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unet_course import UNet
from unet_course.data import synthetic_em
from unet_course.experiments.neighbours import (
    LESSON12,
    NETS,
    build_net,
    compare_neighbours,
    line_shifts,
)
from unet_course.memory import count_macs
from unet_course.neighbours import FPN, NEIGHBOURS, FCN8s, LinkNet, PSPNet, SegNet, build_neighbour
from unet_course.predict import predict_probabilities


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def record(module, store):
    """Keep every (inputs, output) of ``module``'s forward passes in ``store``."""
    return module.register_forward_hook(lambda m, i, o: store.append((i, o)))


@pytest.mark.parametrize("name", list(NEIGHBOURS))
def test_every_neighbour_maps_a_batch_to_logits_of_its_size(name):
    net = build_neighbour(name, in_channels=3, num_classes=4, base_channels=4)
    for h, w in ((64, 64), (64, 96)):
        assert net(torch.rand(2, 3, h, w)).shape == (2, 4, h, w)
    assert (net.in_channels, net.num_classes) == (3, 4)
    assert net.config == dict(in_channels=3, num_classes=4, base_channels=4, batch_norm=True)
    assert sum(count_macs(net.eval(), 64).values()) > 0  # one image: PSPNet needs eval mode


def test_pspnet_says_why_it_cannot_train_on_one_image():
    with pytest.raises(ValueError, match="at least 2 images: the 1x1 bin's batch norm"):
        PSPNet(base_channels=2).train()(torch.rand(1, 1, 48, 48))


@pytest.mark.parametrize("name, edge, message", [
    ("FCN-8s", 48, "multiples of 32 .* got 48, the nearest valid edges are 32 or 64"),
    ("SegNet", 100, "multiples of 32 .* got 100, the nearest valid edges are 96 or 128"),
    ("LinkNet", 16, "at least 32; got 16, the nearest valid edges are 32"),
    ("PSPNet", 50, "multiples of 8 .* got 50, the nearest valid edges are 48 or 56"),
    ("PSPNet", 40, "at least 48; got 40, the nearest valid edges are 48"),
])
def test_a_size_the_net_cannot_take_is_refused_naming_the_nearest(name, edge, message):
    net = build_neighbour(name, base_channels=2)
    with pytest.raises(ValueError, match=message):
        net(torch.rand(2, 1, 64, edge))
    assert net.valid_input_size(edge) == int(message.split()[-1])


def test_bad_names_and_channels_are_refused():
    with pytest.raises(ValueError, match="unknown net 'UNet\\+\\+'; choose one of FCN-8s"):
        build_neighbour("UNet++")
    with pytest.raises(ValueError, match="expects a batch \\(N, 1, H, W\\), got \\(1, 3, 64, 64\\)"):
        FCN8s(base_channels=2)(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="base_channels"):
        SegNet(base_channels=0)


def test_fcn_sums_upsampled_scores_at_strides_32_16_and_8():
    net = FCN8s(base_channels=2).eval()
    seen = {name: [] for name in ("score32", "score16", "score8", "up32", "up16")}
    for name, store in seen.items():
        record(getattr(net, name), store)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        out = net(x)
    (_, s32), (_, s16), (_, s8) = (seen[k][0] for k in ("score32", "score16", "score8"))
    assert [s.shape[-1] for s in (s32, s16, s8)] == [2, 4, 8]  # strides 32, 16, 8
    (up16_in,), up16_out = seen["up16"][0]
    assert torch.allclose(up16_in, seen["up32"][0][1] + s16)  # a sum, not a concatenation
    expected = F.interpolate(up16_out + s8, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(out, expected)
    assert all(torch.equal(a, b) for a, b in zip(net.score_maps(x), (s32, s16, s8)))


def test_fcn_learnt_upsampling_starts_as_bilinear():
    net = FCN8s(num_classes=3, base_channels=2)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        learnt = net.up32(x)
    bilinear = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(learnt[..., 1:-1, 1:-1], bilinear[..., 1:-1, 1:-1], atol=1e-6)


def test_segnet_unpools_with_the_encoders_own_indices():
    net = SegNet(base_channels=2).eval()
    pooled, unpooled = [], []
    record(net.pool, pooled)
    record(net.unpool, unpooled)
    with torch.no_grad():
        net(torch.rand(1, 1, 64, 64))
    assert len(pooled) == len(unpooled) == 5
    for (_, (_, where)), ((values, indices), out) in zip(reversed(pooled), unpooled):
        assert torch.equal(indices, where)  # the decoder reuses exactly what the pool kept
        # every value lands at its maximum's position, zeros everywhere else
        flat = torch.zeros_like(out).flatten(2).scatter_(2, indices.flatten(2),
                                                        values.flatten(2))
        assert torch.equal(out, flat.view_as(out))


def test_linknet_adds_each_decoder_output_to_its_encoder_input():
    net = LinkNet(base_channels=4).eval()
    initial, decoder0, final = [], [], []
    record(net.initial, initial)
    record(net.decoders[0], decoder0)
    record(net.final, final)
    with torch.no_grad():
        net(torch.rand(1, 1, 64, 64))
    (_, stem), (_, decoded), ((final_in,), _) = initial[0], decoder0[0], final[0]
    assert stem.shape[-1] == 16  # the initial block: stride 4
    assert torch.allclose(final_in, decoded + stem)


def test_fpn_adds_the_upsampled_coarser_level_to_each_lateral():
    net = FPN(base_channels=2).eval()
    laterals = [[] for _ in net.laterals]
    smooth = [[] for _ in net.smooth]
    for module, store in zip(net.laterals, laterals):
        record(module, store)
    for module, store in zip(net.smooth, smooth):
        record(module, store)
    with torch.no_grad():
        net(torch.rand(1, 1, 64, 64))
    assert [s[0][1].shape[-1] for s in smooth] == [16, 8, 4, 2]  # P2 .. P5: strides 4 .. 32
    assert all(s[0][1].shape[1] == net.laterals[0].out_channels for s in smooth)  # one width
    p5 = laterals[-1][0][1]
    p4_in = smooth[-2][0][0][0]
    assert torch.allclose(p4_in, laterals[-2][0][1] + F.interpolate(p5, scale_factor=2))


def test_pspnet_pools_bins_1_2_3_6_from_a_stride_8_map_and_concatenates():
    net = PSPNet(base_channels=4).eval()
    stages, fuse = [[] for _ in net.stages], []
    for module, store in zip(net.stages, stages):
        record(module, store)
    record(net.fuse, fuse)
    with torch.no_grad():
        out = net(torch.rand(1, 1, 96, 96))
    assert out.shape == (1, 2, 96, 96)
    assert [s[0][1].shape[-1] for s in stages] == [1, 2, 3, 6]
    (x,), _ = stages[0][0]
    assert x.shape[-1] == 96 // 8
    ((cat,), _) = fuse[0]
    assert cat.shape[1] == x.shape[1] + sum(s[0][1].shape[1] for s in stages)
    assert torch.equal(cat[:, : x.shape[1]], x)  # the map itself, then the four bins
    assert cat[:, x.shape[1]].std() < 1e-6  # the 1x1 bin: one value spread over the map


def test_a_neighbour_predicts_an_image_of_any_size_through_the_tiling():
    net = SegNet(base_channels=2)
    prob = predict_probabilities(net, np.random.default_rng(0).random((40, 70), np.float32))
    assert prob.shape == (40, 70) and 0 <= prob.min() and prob.max() <= 1


# ------------------------------------------------------------------ alignment
def per_coarse_pixel(shifts, stride=8):
    """Mean shift over the ``stride`` line positions that fall into one coarse pixel."""
    return shifts.reshape(-1, stride).mean(1)


INNER = range(16, 48)  # four stride-8 pixels, away from the borders


def test_either_set_of_alignment_rules_keeps_a_line_in_place_on_average():
    corner = line_shifts(65, 8, 3, True, INNER)  # odd kernels, 8n + 1, align_corners=True
    assert np.abs(per_coarse_pixel(corner)).max() < 1e-9 and np.abs(corner).max() <= 1 + 1e-9
    half = line_shifts(64, 8, 2, False, INNER)  # 2x2 windows, 8n, align_corners=False
    assert np.abs(per_coarse_pixel(half)).max() < 1e-9 and np.abs(half).max() <= 3.5 + 1e-9


def test_mixing_the_rules_moves_the_line():
    # odd kernels with align_corners=False: half a coarse pixel minus half a fine one
    assert np.allclose(per_coarse_pixel(line_shifts(64, 8, 3, False, INNER)), 3.5)
    assert np.allclose(per_coarse_pixel(line_shifts(256, 32, 3, False, range(64, 192)), 32),
                       15.5)
    # 2x2 windows with align_corners=True: the grid is stretched by 9/8 about the centre
    assert np.allclose(per_coarse_pixel(line_shifts(64, 8, 2, True, INNER)),
                       [-1.5, -0.5, 0.5, 1.5])
    # odd kernels and align_corners=True, but 8n instead of 8n + 1 pixels: a drift of c / 8
    assert np.allclose(per_coarse_pixel(line_shifts(64, 8, 3, True, INNER)),
                       np.array([19.5, 27.5, 35.5, 43.5]) / 8)


def test_line_shifts_refuses_what_it_cannot_measure():
    with pytest.raises(ValueError, match="power of 2"):
        line_shifts(64, 6, 2, False, [10])
    with pytest.raises(ValueError, match="kernel must be 2"):
        line_shifts(64, 8, 4, False, [10])
    with pytest.raises(ValueError, match="inside the image"):
        line_shifts(64, 8, 2, False, [64])


# ------------------------------------------------------------------ lesson 12's comparison
TINY = dict(steps=3, tile=64, batch_size=2, lr=3e-3, base_channels=2)


@pytest.fixture(scope="module")
def split():
    images, masks, _ = synthetic_em(3, size=96, seed=5)
    return images[:2], masks[:2], images[2:], masks[2:]


def test_all_six_nets_are_trained_on_the_same_tiles_and_scored(split):
    runs = compare_neighbours(*split, seed=1, **TINY)
    assert list(runs) == list(NETS)
    assert len({run.tile_checksum for run in runs.values()}) == 1
    for run in runs.values():
        assert not run.model.training and run.parameters > 0 and run.macs > 0
        for value in (run.step_time, run.inference_time, run.pixel_error, run.rand_error):
            assert math.isfinite(value) and 0 <= value
        assert run.pixel_error <= 1 and run.rand_error <= 1


def test_the_u_net_is_the_cpu_presets_net_and_the_recipe_is_checked(split):
    unet = build_net("U-Net", 4)
    assert isinstance(unet, UNet) and unet.padding == "same" and unet.depth == 4
    assert unet.spec.base_channels == 4 and unet.spec.batch_norm
    assert set(LESSON12) == {"quick", "full"}
    with pytest.raises(ValueError, match="unknown net 'ResNet'"):
        build_net("ResNet")
    with pytest.raises(ValueError, match="FCN-8s cannot take 48-pixel tiles; .* is 64"):
        compare_neighbours(*split, names=["FCN-8s"], **{**TINY, "tile": 48})
    with pytest.raises(ValueError, match="PSPNet cannot take 32-pixel tiles; .* is 48"):
        compare_neighbours(*split, names=["PSPNet"], **{**TINY, "tile": 32})

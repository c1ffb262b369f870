"""Lesson 10's experiment (unet_course.experiments.successors) at tiny sizes: a few seconds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unet_course.data import synthetic_em
from unet_course.experiments import (
    LESSON10,
    SUCCESSORS,
    build_successor,
    compare_successors,
    lesson10_splits,
    train_pruned_unetpp,
    train_successor,
)

TINY = dict(steps=6, tile=16, batch_size=2, depth=2, base_channels=4)


@pytest.fixture(scope="module")
def split():
    images, masks, _ = synthetic_em(3, size=64, seed=5)
    return images[:2], masks[:2], images[2:], masks[2:]


@pytest.fixture(scope="module")
def runs(split):
    return compare_successors(*split, seed=1, **TINY)


def test_every_net_is_trained_and_scored_with_finite_fields(runs):
    assert list(runs) == list(SUCCESSORS)
    for name, run in runs.items():
        assert run.name == name and run.seed == 1
        assert not run.model.training  # returned in evaluation mode
        assert run.parameters == sum(p.numel() for p in run.model.parameters()) > 0
        assert run.macs > 0
        for value in (run.step_time, run.inference_time, run.pixel_error, run.rand_error):
            assert math.isfinite(value) and value >= 0
        assert 0 <= run.pixel_error <= 1 and 0 <= run.rand_error <= 1


def test_all_nets_see_the_same_tiles_and_another_seed_sees_others(split, runs):
    assert len({run.tile_checksum for run in runs.values()}) == 1
    other = compare_successors(*split, seed=2, names=["U-Net"], **TINY)
    assert other["U-Net"].tile_checksum != runs["U-Net"].tile_checksum


def test_a_seed_gives_the_same_net_twice(split):
    a, _, ca = train_successor("Attention U-Net", *split[:2], seed=3, **TINY)
    b, _, cb = train_successor("Attention U-Net", *split[:2], seed=3, **TINY)
    assert ca == cb
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert np.array_equal(pa.detach().numpy(), pb.detach().numpy())


def test_the_nets_differ_only_in_their_idea():
    nets = {name: build_successor(name, 2, 4) for name in SUCCESSORS}
    assert all(net.in_channels == 1 and net.num_classes == 2 for net in nets.values())
    assert nets["Attention U-Net"].gates is not None and nets["U-Net"].gates is None
    assert build_successor("UNet++", 2, 4, deep_supervision=True).deep_supervision


def test_pruned_unetpp_scores_every_level_and_restores_the_whole_net(split):
    net, scores = train_pruned_unetpp(*split, seed=0, **TINY)
    assert [s.level for s in scores] == [1, 2]
    assert scores[0].macs < scores[1].macs
    assert net.prune == net.depth and net.deep_supervision
    assert all(0 <= s.pixel_error <= 1 and s.inference_time > 0 for s in scores)


def test_bad_input_raises_a_clear_value_error(split):
    with pytest.raises(ValueError, match="unknown net 'SegNet'"):
        build_successor("SegNet")
    with pytest.raises(ValueError, match="deep_supervision exists for UNet\\+\\+ only"):
        build_successor("U-Net", deep_supervision=True)
    with pytest.raises(ValueError, match="tile must be a multiple of 2\\*\\*depth = 4, got 18"):
        train_successor("U-Net", *split[:2], **{**TINY, "tile": 18})
    with pytest.raises(ValueError, match="steps"):
        train_successor("U-Net", *split[:2], **{**TINY, "steps": 0})
    with pytest.raises(ValueError, match="held-out images and masks must be non-empty"):
        compare_successors(split[0], split[1], split[2], split[3][:0], **TINY)
    with pytest.raises(ValueError, match="expected the 30 ISBI 2012 slices"):
        lesson10_splits(np.zeros((3, 8, 8)), np.zeros((3, 8, 8)))


def test_the_profiles_share_their_keys():
    assert set(LESSON10["quick"]) == set(LESSON10["full"])
    for recipe in LESSON10.values():
        assert recipe["tile"] % 2 ** recipe["depth"] == 0

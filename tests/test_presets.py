"""Presets: the paper's recipe as written, the cpu recipe, overrides, and seeded training."""

import dataclasses

import numpy as np
import pytest
import torch

from unet_course.data import synthetic_em
from unet_course.presets import PRESETS, default_preset, get_preset, train


def test_paper_preset_is_the_paper():
    p = PRESETS["paper"]
    net = p.model()
    assert (p.padding, p.tile, net.output_size(p.tile)) == ("valid", 572, 388)
    assert (p.optimizer, p.momentum, p.batch_size) == ("sgd", 0.99, 1)
    assert p.weight_map and (p.w0, p.sigma) == (10.0, 5.0) and p.elastic and not p.flips
    assert sum(q.numel() for q in net.parameters()) == 31_030_658


def test_cpu_preset_differs_where_lesson_06_says():
    paper, cpu = PRESETS["paper"], PRESETS["cpu"]
    changed = {f.name for f in dataclasses.fields(paper)
               if getattr(paper, f.name) != getattr(cpu, f.name)}
    assert changed == {"name", "base_channels", "padding", "batch_norm", "norm", "dropout",
                       "tile", "flips", "optimizer", "lr", "lr_schedule"}
    assert cpu.model().config["norm"] == "instance"


def test_overrides_and_their_errors():
    assert get_preset("cpu", base_channels=8).base_channels == 8
    with pytest.raises(ValueError, match="unknown preset 'fast'.*paper, cpu"):
        get_preset("fast")
    with pytest.raises(TypeError, match="no field colour"):
        get_preset("cpu", colour=1)


def test_default_preset_follows_the_device():
    assert default_preset() == ("paper" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["paper", "cpu"])
def test_train_is_seeded(name):
    images, masks, instances = synthetic_em(2, size=64, seed=0)
    small = dict(depth=2, base_channels=4, tile=44 if name == "paper" else 32)
    a, ha = train(name, images, masks, instances, steps=3, seed=5, progress=False, **small)
    b, hb = train(name, images, masks, instances, steps=3, seed=5, progress=False, **small)
    assert ha.loss == hb.loss
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not a.training


def test_more_than_two_classes_train_unweighted():
    images, masks, _ = synthetic_em(2, size=64, seed=0)
    masks = masks.copy()
    masks[:, :8] = 2
    net, history = train("cpu", images, masks, steps=2, progress=False, depth=2, base_channels=4,
                         tile=32)
    assert net.num_classes == 3 and np.isfinite(history.loss).all()
    assert PRESETS["cpu"].weight_maps(list(masks), None) is None

"""The size arithmetic of UNetGeometry: one rule for the model, the tiling and every message."""

import dataclasses
import io
import itertools

import numpy as np
import pytest
import torch

from unet_course import UNet
from unet_course.geometry import UNetGeometry
from unet_course.model import UNetConfig


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_valid_sizes_walk_exactly_the_sizes_the_stages_allow(depth, padding):
    """The jump by 2**depth in valid_sizes agrees with the stage-by-stage definition."""
    g = UNetGeometry(depth, padding)
    by_stages = [n for n in range(1, 1200) if g.sizes(n) is not None]
    walked = list(itertools.takewhile(lambda n: n < 1200, g.valid_sizes()))
    assert walked == by_stages
    assert list(g.valid_sizes(1199, downward=True)) == by_stages[::-1]
    assert all(g.is_valid(n) == (n in by_stages) for n in range(-3, 1200))
    # every valid input loses the same margin on each side (valid) or none (same)
    assert {n - g.output_size(n) for n in by_stages} == {2 * g.margin}


def test_the_papers_numbers():
    g = UNetGeometry(depth=4, padding="valid")
    assert (g.output_size(572), g.margin, g.grid, g.first_valid, g.default_halo) == (388, 92, 16, 188, 96)
    assert g.sizes(572) == [572, 280, 136, 64, 28, 52, 100, 196, 388]  # Figure 1
    assert g.valid_input_size(570) == 572 and g.valid_input_size(-5) == 188
    assert g.nearest_valid(570) == (556, 572) and g.nearest_valid(100) == (None, 188)


def test_same_padding_keeps_the_size_at_every_level_pair():
    g = UNetGeometry(depth=3, padding="same")
    assert g.sizes(64) == [64, 32, 16, 8, 16, 32, 64]
    assert (g.margin, g.first_valid, g.default_halo, g.output_size(64)) == (0, 8, 48, 64)
    assert g.sizes(60) is None and g.sizes(4) is None


def test_nearest_valid_with_a_condition():
    g = UNetGeometry()
    big_output = lambda n: g.output_size(n) >= 100  # noqa: E731
    assert g.nearest_valid(290, accept=big_output) == (284, 300)
    assert g.nearest_valid(200, accept=big_output) == (None, 284)


# The exact texts the lessons show (notebooks 01, 02 and 07).
@pytest.mark.parametrize("depth, padding, n, text", [
    (4, "valid", 570, "input size 570 is not valid for this U-Net (valid padding, depth 4); valid sizes "
                      "are 188 + 16k for k = 0, 1, 2, ...; the nearest valid sizes are 556 or 572"),
    (4, "same", 572, "input size 572 is not valid for this U-Net (same padding, depth 4); valid sizes "
                     "are a multiple of 2**depth = 16; the nearest valid sizes are 560 or 576"),
    (2, "same", 102, "input size 102 is not valid for this U-Net (same padding, depth 2); valid sizes "
                     "are a multiple of 2**depth = 4; the nearest valid sizes are 100 or 104"),
])
def test_invalid_message_is_the_one_the_lessons_show(depth, padding, n, text):
    g = UNetGeometry(depth, padding)
    assert g.invalid_message(n) == text
    with pytest.raises(ValueError) as caught:
        UNet(depth=depth, padding=padding, base_channels=1).output_size(n)
    assert str(caught.value) == text


@pytest.mark.parametrize("n", [572.0, True, "572", None])
def test_sizes_of_the_wrong_kind_are_type_errors(n):
    with pytest.raises(TypeError, match="must be an int"):
        UNetGeometry().output_size(n)


@pytest.mark.parametrize("kwargs, error", [
    (dict(depth=0), ValueError), (dict(depth=2.0), TypeError), (dict(padding="reflect"), ValueError),
])
def test_bad_geometry_arguments(kwargs, error):
    with pytest.raises(error):
        UNetGeometry(**kwargs)


def test_geometry_is_a_small_frozen_value():
    g = UNetGeometry(np.int64(3), "same")
    assert type(g.depth) is int and g == UNetGeometry(3, "same") and len({g, UNetGeometry(3, "same")}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.depth = 4


@pytest.mark.parametrize("depth, padding", [(1, "valid"), (3, "valid"), (2, "same"), (4, "same")])
def test_the_model_delegates_its_size_arithmetic(depth, padding):
    net = UNet(depth=depth, padding=padding, base_channels=1)
    assert net.geometry == UNetGeometry(depth, padding)
    for n in range(1, 300):
        assert net._sizes(n) == net.geometry.sizes(n)
        assert net.valid_input_size(n) == net.geometry.valid_input_size(n)


# --------------------------------------------------------------------------- the config
def test_config_is_read_by_attribute_and_is_a_plain_dict_for_checkpoints():
    net = UNet(depth=np.int64(2), base_channels=np.int32(4), padding="same", dropout=0)
    spec = net.spec
    assert isinstance(spec, UNetConfig) and spec.base_channels == 4 and spec.widths == [4, 8, 16]
    assert type(net.config) is dict and dict(spec) == net.config
    assert list(net.config) == ["in_channels", "num_classes", "depth", "base_channels", "padding",
                                "batch_norm", "up_mode", "dropout", "norm"]
    assert all(type(net.config[k]) is int for k in ("in_channels", "num_classes", "depth", "base_channels"))
    assert net.config["dropout"] == 0.0 and net.config["depth"] == 2
    buffer = io.BytesIO()
    torch.save({"config": net.config}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["config"]
    assert loaded == net.config and UNet(**loaded).spec == spec and UNet(**spec).spec == spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.depth = 3
    with pytest.raises(KeyError):
        spec["width"]

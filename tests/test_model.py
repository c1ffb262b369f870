"""The network is the paper's: sizes, layer counts, parameters, initialisation and errors."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from unet_course import UNet, center_crop, he_init_
from unet_course.model import DoubleConv, Down, Up


def conv_layers(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def expected_parameter_count(in_channels, num_classes, widths):
    """The count derived from the architecture on paper, not from the module."""
    conv = lambda k, c_in, c_out: k * k * c_in * c_out + c_out  # noqa: E731
    total = conv(3, in_channels, widths[0]) + conv(3, widths[0], widths[0])
    for c_in, c_out in zip(widths, widths[1:]):  # contracting path
        total += conv(3, c_in, c_out) + conv(3, c_out, c_out)
    for c_in, c_out in zip(widths[:0:-1], widths[-2::-1]):  # expanding path
        total += conv(2, c_in, c_out) + conv(3, 2 * c_out, c_out) + conv(3, c_out, c_out)
    return total + conv(1, widths[0], num_classes)


@pytest.fixture(scope="module")
def paper_net():
    torch.manual_seed(0)
    return UNet()


def test_paper_net_has_23_conv_layers_and_31_million_parameters(paper_net):
    assert len(conv_layers(paper_net)) == 23  # the paper: "In total the network has 23 convolutional layers."
    n = sum(p.numel() for p in paper_net.parameters())
    assert n == expected_parameter_count(1, 2, [64, 128, 256, 512, 1024])
    assert n == 31_030_658


def test_paper_sizes(paper_net):
    assert paper_net.output_size(572) == 388
    assert paper_net.valid_input_size(1) == 188
    assert paper_net.output_size(188) == 4
    assert paper_net.valid_input_size(570) == 572
    # Every stage of the paper's Figure 1.
    assert paper_net._sizes(572) == [572, 284 - 4, 140 - 4, 68 - 4, 32 - 4, 52, 100, 196, 388]


def test_valid_sizes_are_188_plus_16k(paper_net):
    valid = [n for n in range(1, 700) if paper_net._sizes(n) is not None]
    assert valid == list(range(188, 700, 16))


def test_paper_forward_572_gives_388(paper_net):
    with torch.no_grad():
        y = paper_net.eval()(torch.rand(1, 1, 572, 572))
    assert y.shape == (1, 2, 388, 388)


def pool_inputs(model, x):
    """Run the network without its size check; record the size of every max-pool input."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda _m, a: seen.append(tuple(a[0].shape[-2:])))
             for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    model._check_input = lambda _x: None  # an instance attribute shadows the method
    try:
        out = model(x)
    finally:
        del model._check_input
        for h in hooks:
            h.remove()
    return out, seen


@settings(max_examples=25, deadline=None)
@given(n=st.integers(min_value=150, max_value=330), depth=st.integers(min_value=1, max_value=4))
def test_size_arithmetic_matches_the_real_network(n, depth):
    """output_size is checked against an unchecked forward pass of a narrow net."""
    net = UNet(depth=depth, base_channels=2, dropout=0.0).eval()
    x = torch.zeros(1, 1, n, n)
    try:
        expected = net.output_size(n)
    except ValueError:
        # Invalid: the unchecked network either fails or pools an odd size (losing a row).
        try:
            with torch.no_grad():
                _, seen = pool_inputs(net, x)
        except RuntimeError:
            return
        assert any(h % 2 for h, _ in seen)
        return
    with torch.no_grad():
        out, seen = pool_inputs(net, x)
    assert out.shape[-2:] == (expected, expected)
    assert all(h % 2 == 0 for h, _ in seen)


def test_invalid_size_names_the_nearest_valid_sizes(paper_net):
    with pytest.raises(ValueError, match=r"556 or 572"):
        paper_net.output_size(570)
    with pytest.raises(ValueError, match=r"556 or 572"):
        paper_net(torch.zeros(1, 1, 570, 570))
    with pytest.raises(ValueError, match=r"\b188\b"):
        paper_net.output_size(100)


def test_non_square_inputs_check_each_edge():
    net = UNet(depth=2, base_channels=2)
    h, w = net.valid_input_size(60), net.valid_input_size(80)
    assert net(torch.zeros(1, 1, h, w)).shape[-2:] == (net.output_size(h), net.output_size(w))
    with pytest.raises(ValueError, match="not valid"):
        net(torch.zeros(1, 1, h, w + 1))


def test_shape_errors_say_what_is_wrong(paper_net):
    with pytest.raises(ValueError, match="batch dimension is missing"):
        paper_net(torch.zeros(1, 572, 572))
    with pytest.raises(ValueError, match="expects 1 input channel.*got 3"):
        paper_net(torch.zeros(1, 3, 572, 572))
    with pytest.raises(TypeError, match="torch.Tensor"):
        paper_net([[0.0]])
    with pytest.raises(TypeError, match="must be an int"):
        paper_net.output_size(572.0)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(padding="reflect"), ValueError, "padding"), (dict(up_mode="nearest"), ValueError, "up_mode"),
    (dict(depth=0), ValueError, "depth"), (dict(dropout=1.0), ValueError, "dropout"),
    # a value of the wrong kind is a TypeError (the package's convention, see validation.py)
    (dict(base_channels=2.5), TypeError, "base_channels"), (dict(batch_norm="yes"), TypeError, "batch_norm"),
    (dict(batch_norm=True, norm="group"), ValueError, "norm must be 'batch' or 'instance'"),
])
def test_bad_constructor_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        UNet(**kwargs)


@pytest.mark.parametrize("n", [16, 48, 64, 112])
def test_same_padding_keeps_the_size(n):
    net = UNet(padding="same", base_channels=4).eval()
    assert net.output_size(n) == n
    assert net(torch.zeros(2, 1, n, n)).shape == (2, 2, n, n)


def test_same_padding_rejects_sizes_not_divisible_by_2_to_the_depth():
    net = UNet(padding="same", base_channels=4)
    with pytest.raises(ValueError, match="48 or 64"):
        net(torch.zeros(1, 1, 60, 64))
    assert net.valid_input_size(60) == 64


@pytest.mark.parametrize("up_mode", ["transpose", "bilinear"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_options_build_and_run(up_mode, batch_norm):
    net = UNet(in_channels=3, num_classes=4, depth=3, base_channels=4,
               up_mode=up_mode, batch_norm=batch_norm).eval()
    n = net.valid_input_size(100)
    assert net(torch.rand(2, 3, n, n)).shape == (2, 4, net.output_size(n), net.output_size(n))
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == batch_norm


def test_instance_norm_treats_every_tile_alone_in_training_and_in_eval():
    net = UNet(depth=2, base_channels=4, padding="same", batch_norm=True, norm="instance",
               dropout=0.0)  # no dropout: training mode must be deterministic here
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 2 * (1 + 2 + 2) and all(m.affine for m in norms)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert UNet(**net.config).config["norm"] == "instance"  # a checkpoint's config rebuilds it
    tiles = torch.rand(2, 1, 32, 32)
    tiles[1] = 5 * tiles[1] + 3  # a second tile on another scale must not change the first's
    net.train()
    together, alone = net(tiles)[0], net(tiles[:1])[0]
    assert torch.allclose(together, alone, atol=1e-5)
    # a batch-norm net, by contrast, mixes the tiles' statistics in training
    bn = UNet(depth=2, base_channels=4, padding="same", batch_norm=True, dropout=0.0).train()
    assert not torch.allclose(bn(tiles)[0], bn(tiles[:1])[0], atol=1e-3)
    net.eval()
    assert torch.allclose(net(tiles[:1])[0], alone, atol=1e-5)  # eval: the same statistics


def test_he_init_std_is_sqrt_2_over_fan_in(paper_net):
    for m in conv_layers(paper_net):
        if isinstance(m, nn.ConvTranspose2d):
            fan_in = m.in_channels  # stride 2, kernel 2: one tap per input channel reaches a pixel
        else:
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        n, expected = m.weight.numel(), math.sqrt(2 / fan_in)
        # Sampling bounds of 5 standard errors: the sample std has a relative error of about
        # 1/sqrt(2n), the sample mean an error of expected/sqrt(n).
        assert m.weight.detach().std().item() == pytest.approx(expected, rel=5 / math.sqrt(2 * n))
        assert abs(m.weight.detach().mean().item()) < 5 * expected / math.sqrt(n)
        assert torch.count_nonzero(m.bias) == 0


def test_he_init_keeps_activation_scale_through_depth():
    torch.manual_seed(0)
    stack = nn.Sequential(*[nn.Sequential(nn.Conv2d(16, 16, 3), nn.ReLU()) for _ in range(12)])
    x = torch.randn(4, 16, 64, 64)

    def last_rms():
        with torch.no_grad():
            return stack(x).pow(2).mean().sqrt().item()

    default_rms = last_rms()
    he_init_(stack)
    he_rms = last_rms()
    assert 0.3 < he_rms < 3.0           # about the input's scale (1.0) after 12 layers
    assert default_rms < he_rms / 10    # PyTorch's default init lets it fade layer by layer


def test_dropout_only_in_training():
    net = UNet(depth=2, base_channels=4)
    x = torch.rand(1, 1, net.valid_input_size(60), net.valid_input_size(60))
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    torch.manual_seed(1)
    a = net(x)
    assert not torch.equal(a, net(x))
    assert isinstance(UNet(dropout=0.0, depth=1, base_channels=2).dropout, nn.Identity)


def test_same_seed_same_weights():
    torch.manual_seed(3)
    a = UNet(depth=2, base_channels=4).state_dict()
    torch.manual_seed(3)
    b = UNet(depth=2, base_channels=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_center_crop():
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    assert center_crop(x, (2, 2)).flatten().tolist() == [14.0, 15.0, 20.0, 21.0]
    with pytest.raises(ValueError, match="larger"):
        center_crop(x, (8, 8))


def test_building_blocks_shapes():
    x = torch.rand(1, 8, 40, 40)
    assert DoubleConv(8, 16)(x).shape == (1, 16, 36, 36)
    assert DoubleConv(8, 16, padding="same")(x).shape == (1, 16, 40, 40)
    assert Down(8, 16)(x).shape == (1, 16, 16, 16)
    up = Up(16, 8)
    assert up(torch.rand(1, 16, 10, 10), torch.rand(1, 8, 40, 40)).shape == (1, 8, 16, 16)


# --- count_macs: the compute that lessons 01 and 02 compare -----------------------------------


def test_count_macs_matches_the_hand_formulas():
    from unet_course.memory import count_macs

    class Two(nn.Module):
        in_channels = 3

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)  # 10 x 12 -> 8 x 8 x 10
            self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)  # 8 x 10 -> 4 x 16 x 20

        def forward(self, x):
            return self.up(self.conv(x))

    macs = count_macs(Two(), (10, 12))
    assert macs == {"conv": 8 * 10 * 8 * 3 * 9, "up": 8 * 10 * 8 * 4 * 4}
    paper = count_macs(UNet(depth=1, base_channels=4), 188)
    assert paper["inc.0"] == 186 * 186 * 4 * 1 * 9  # valid 3 x 3: 188 -> 186
    with pytest.raises(ValueError, match="Conv2d"):
        count_macs(nn.Sequential(nn.ReLU()), 8)

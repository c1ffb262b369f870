"""LateFusionUNet: UNet's contract, one contracting path per modality, clear errors."""

import numpy as np
import pytest
import torch

from unet_course.augment import ModalityDropout
from unet_course.checkpoint import load_model, save_checkpoint
from unet_course.fusion import LateFusionUNet
from unet_course.mirror import mirror_pad
from unet_course.model import UNet
from unet_course.predict import predict_tiled


def small(**kw):
    torch.manual_seed(0)
    args = dict(in_channels=3, depth=2, base_channels=4, padding="same", batch_norm=False,
                dropout=0.0)
    return LateFusionUNet(**{**args, **kw}).eval()


@pytest.mark.parametrize("fusion", ["concat", "sum"])
def test_same_padding_keeps_the_size_and_gives_one_map_per_class(fusion):
    net = small(num_classes=3, fusion=fusion)
    out = net(torch.rand(2, 3, 32, 40))
    assert out.shape == (2, 3, 32, 40)


def test_valid_padding_has_unets_size_arithmetic():
    torch.manual_seed(0)
    late = LateFusionUNet(2, depth=2, base_channels=4, padding="valid")
    unet = UNet(2, depth=2, base_channels=4, padding="valid")
    assert late.output_size(92) == unet.output_size(92) == 52
    assert late.valid_input_size(90) == unet.valid_input_size(90)
    assert late(torch.rand(1, 2, 92, 92)).shape == (1, 2, 52, 52)


def test_path_k_sees_channel_k_only():
    net = small()
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    paths = net.encode(x)
    assert len(paths) == 3 and all(len(maps) == net.depth + 1 for maps in paths)
    for k, maps in enumerate(paths):
        for level, feature in enumerate(maps):
            (grad,) = torch.autograd.grad(feature.sum(), x, retain_graph=True)
            seen = [j for j in range(3) if grad[0, j].abs().sum() > 0]
            assert seen == [k], f"path {k}, level {level} depends on channels {seen}"


def test_changing_one_channel_changes_only_its_own_path():
    net = small()
    x = torch.rand(1, 3, 16, 16)
    y = x.clone()
    y[:, 1] = torch.rand(16, 16)
    with torch.no_grad():
        before, after = net.encode(x), net.encode(y)
    for k in range(3):
        same = all(torch.equal(a, b) for a, b in zip(before[k], after[k]))
        assert same == (k != 1)


def test_the_output_depends_on_every_channel():
    net = small()
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(net(x).sum(), x)
    assert all(grad[0, k].abs().sum() > 0 for k in range(3))


def test_concat_fusion_mixes_with_a_1x1_convolution_and_sum_has_no_weights():
    concat, summed = small(fusion="concat"), small(fusion="sum")
    widths = [4, 8, 16]
    assert [f.mix.weight.shape for f in concat.fuse] == [(w, 3 * w, 1, 1) for w in widths]
    assert all(f.mix is None for f in summed.fuse)
    extra = sum(p.numel() for p in concat.parameters()) - sum(p.numel() for p in summed.parameters())
    assert extra == sum(w * 3 * w + w for w in widths)


def test_wrong_channel_counts_are_clear_value_errors():
    net = small()
    with pytest.raises(ValueError, match="expects 3 input channels, one per modality.*got 1"):
        net(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="2 or more input channels.*use UNet"):
        LateFusionUNet(in_channels=1)
    with pytest.raises(ValueError, match="fusion must be 'concat'"):
        LateFusionUNet(fusion="mean")
    with pytest.raises(ValueError, match=r"batch \(N, C, H, W\)"):
        net(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="valid"):
        net(torch.rand(1, 3, 18, 18))  # not a multiple of 2**depth


def test_predict_tiled_drives_it_like_a_unet():
    net = small()
    image = torch.rand(3, 40, 56)
    halo = 6 * 2**net.depth  # a same-padded net's default context around each tile
    with torch.no_grad():
        whole = net(mirror_pad(image, halo)[None])[0, :, halo:-halo, halo:-halo]
    tiled = predict_tiled(net, image)
    assert tiled.shape == (2, 40, 56)
    assert torch.allclose(tiled, whole, atol=1e-5)
    with pytest.raises(ValueError, match="3 input channel"):
        predict_tiled(net, image[:2])


def test_checkpoint_round_trip_keeps_the_net_and_its_modalities(tmp_path):
    net = small(fusion="sum")
    net.modalities = ("outline", "uptake", "noisy")
    save_checkpoint(tmp_path / "late.pt", net)
    back = load_model(tmp_path / "late.pt")
    assert type(back) is LateFusionUNet and back.config == net.config
    assert back.modalities == ("outline", "uptake", "noisy")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(back(x), net(x))


def test_modality_dropout_hides_one_channel_with_its_fill():
    image = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    mask = np.ones((8, 8), np.int64)
    aug = ModalityDropout(p=1.0, fill=(0.1, 0.2, 0.3))
    hidden = set()
    for seed in range(30):
        out, out_mask = aug(image, mask, rng=seed)
        changed = [k for k in range(3) if not np.array_equal(out[k], image[k])]
        assert len(changed) == 1 and np.all(out[changed[0]] == np.float32((0.1, 0.2, 0.3)[
            changed[0]]))
        assert out_mask is mask or np.array_equal(out_mask, mask)
        hidden.add(changed[0])
    assert hidden == {0, 1, 2}
    assert np.array_equal(ModalityDropout(p=0.0)(image, rng=0), image)
    with pytest.raises(ValueError, match="2 or more channels"):
        aug(image[:1], rng=0)
    with pytest.raises(ValueError, match="one per channel"):
        ModalityDropout(p=1.0, fill=(0.1, 0.2))(image, rng=0)

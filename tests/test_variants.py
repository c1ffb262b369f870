"""U-Net's successors: the reference implementations' parameter counts, shapes, sizes, tiling."""

import pytest
import torch

from unet_course.debug import check_unet
from unet_course.predict import predict_tiled
from unet_course.variants import (
    AttentionUNet,
    NestedUNet,
    R2AttUNet,
    R2UNet,
    ReferenceUNet,
)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_equal_the_reference_implementations():
    # 3 input channels, 1 output channel, widths 64..1024, batch norm, nearest x2 + 3x3 conv
    assert count(ReferenceUNet()) == 34_527_041
    assert count(AttentionUNet()) == 34_878_573
    assert count(R2UNet()) == 39_091_393 == count(R2UNet(t=3))  # t shares the weights
    assert count(R2AttUNet()) == 39_442_925
    # UNet++: widths 32..512 (64..1024 for the last), batch norm, bilinear upsampling
    assert count(NestedUNet()) == 9_163_329
    assert count(NestedUNet(deep_supervision=True)) == 9_163_428
    assert count(NestedUNet(base_channels=64)) == 36_629_633


SMALL = dict(in_channels=1, num_classes=2, depth=2, base_channels=4)
VARIANTS = [ReferenceUNet, AttentionUNet, R2UNet, R2AttUNet, NestedUNet]


@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_each_variant_passes_the_course_checks(cls):
    report = check_unet(lambda: cls(**SMALL), sizes=(32, 48, (32, 64)), depth=2,
                        padding="same", expected_parameters=None)
    assert report.ok, report


@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_a_size_off_the_grid_gets_the_course_message_not_a_cat_mismatch(cls):
    with pytest.raises(ValueError, match="multiple of 2\\*\\*depth = 4"):
        cls(**SMALL)(torch.rand(1, 1, 30, 32))
    with pytest.raises(ValueError, match="1 input channel"):
        cls(**SMALL)(torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_predict_tiled_equals_one_pass_over_the_mirror_padded_image(cls):
    from unet_course.mirror import mirror_pad

    torch.manual_seed(0)
    net = cls(**SMALL).eval()
    image = torch.rand(1, 40, 56)
    halo = net.geometry.default_halo
    tiled = predict_tiled(net, image, tile_size=16 + 2 * halo)
    big = [net.valid_input_size(n + 2 * halo) for n in image.shape[-2:]]
    padded = mirror_pad(image, (halo, big[0] - 40 - halo, halo, big[1] - 56 - halo))
    with torch.no_grad():
        whole = net(padded[None])[0][:, halo:halo + 40, halo:halo + 56]
    # UNet++'s bilinear upsampling with align_corners=True (the reference's) samples at
    # positions that depend on the map's size, so it is not shift-equivariant and tiles can
    # only come close (seen: 5e-5); the others are exact up to float rounding
    tolerance = 1e-3 if cls is NestedUNet else 1e-5
    assert (tiled - whole).abs().max() <= tolerance


def test_attention_coefficients_are_kept_per_level_in_zero_one():
    net = AttentionUNet(**SMALL).eval()
    with torch.no_grad():
        net(torch.rand(2, 1, 32, 32))
    maps = net.attention
    assert [tuple(m.shape) for m in maps] == [(2, 1, 32, 32), (2, 1, 16, 16)]
    assert all(0 <= m.min() and m.max() <= 1 for m in maps)
    assert ReferenceUNet(**SMALL).attention == []


def test_nested_unet_prunes_with_deep_supervision_and_says_when_it_cannot():
    net = NestedUNet(**SMALL, deep_supervision=True).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        outputs = net.forward_all(x)
        assert len(outputs) == 2 and all(o.shape == (1, 2, 32, 32) for o in outputs)
        net.prune = 1
        assert torch.allclose(net(x), outputs[0])  # the pruned net is the first head's
    plain = NestedUNet(**SMALL)
    plain.prune = 1
    with pytest.raises(ValueError, match="deep_supervision"):
        plain(x)


@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_fit_trains_each_variant_and_its_checkpoint_rebuilds_it(cls, tmp_path):
    from unet_course import fit, load_model
    from unet_course.data import TileDataset, synthetic_em

    images, masks, _ = synthetic_em(2, size=64, seed=0)
    torch.manual_seed(0)
    model = cls(**SMALL)
    data = TileDataset(list(images), list(masks), 32, 32, length=4, seed=0)
    history = fit(model, data, steps=4, batch_size=2, progress=False, checkpoint_dir=tmp_path)
    assert len(history.loss) == 4 and all(torch.isfinite(torch.tensor(history.loss)))
    rebuilt = load_model(tmp_path / "last.pt")
    assert type(rebuilt) is cls
    x = torch.rand(1, 1, 32, 32)
    assert torch.equal(model.eval()(x), rebuilt(x))


def test_deep_supervision_trains_every_head():
    from unet_course.steps import batch_loss

    model = NestedUNet(**SMALL, deep_supervision=True)
    x, y = torch.rand(2, 1, 32, 32), torch.randint(0, 2, (2, 32, 32))
    batch_loss(model, x, y, None).backward()
    for column, head in model.heads.items():  # every head takes part in the loss
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0, column
    plain = NestedUNet(**SMALL)
    batch_loss(plain, x, y, None).backward()
    assert list(plain.heads) == ["2"]


@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_trace_shapes_follows_each_variant_and_names_the_size_error(cls):
    from unet_course.debug import trace_shapes

    trace = trace_shapes(cls(**SMALL), torch.zeros(1, 1, 32, 48))
    assert trace.error is None and len(trace.rows) > 10
    assert trace.rows[0].outputs == ["(1, 2, 32, 48)"]  # the whole net comes first
    failed = trace_shapes(cls(**SMALL), torch.zeros(1, 1, 30, 32))
    assert isinstance(failed.error, ValueError) and "30" in str(failed.error)


def test_the_planned_net_predicts_a_whole_image_tile_by_tile():
    from unet_course.plan import plan_2d

    net = plan_2d((64, 64), base_features=4, max_features=16).network().eval()
    image = torch.rand(1, 100, 90)  # not a multiple of the net's grid: mirrored, then cropped
    with torch.no_grad():  # approximate, not exact: instance norm sees one tile at a time
        logits = predict_tiled(net, image)
    assert logits.shape == (2, 100, 90) and torch.isfinite(logits).all()

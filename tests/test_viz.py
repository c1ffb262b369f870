"""draw_unet redraws the paper's Figure 1 from the traced model, for any configuration."""

import matplotlib.pyplot as plt
import pytest
import torch

from unet_course import UNet
from unet_course.viz import draw_unet, unet_feature_maps

# Read off the paper's Figure 1 (Ronneberger et al. 2015), not computed by any code here.
PAPER_SIZES = [572, 570, 568, 284, 282, 280, 140, 138, 136, 68, 66, 64, 32, 30, 28,
               56, 54, 52, 104, 102, 100, 200, 198, 196, 392, 390, 388]
PAPER_CHANNELS = {"1", "64", "128", "256", "512", "1024", "2"}


def texts(fig, gid=None):
    return [t.get_text() for t in fig.axes[0].texts if gid is None or t.get_gid() == gid]


def feature_boxes(fig):
    return [p.get_gid().split(":") for p in fig.axes[0].patches
            if (p.get_gid() or "").startswith("fmap:")]


def expected_sizes(n, depth, padding):
    """Every traced edge, derived by hand: 3x3 valid conv -2, pool /2, up-conv x2."""
    if padding == "same":
        return {n // 2**lv for lv in range(depth + 1)}
    sizes, s = [n, n - 2, n - 4], n - 4
    for _ in range(depth):
        s //= 2
        sizes += [s, s - 2, s - 4]
        s -= 4
    for _ in range(depth):
        s *= 2
        sizes += [s, s - 2, s - 4]
        s -= 4
    return set(sizes)


@pytest.fixture(scope="module")
def paper_figure():
    fig = draw_unet(UNet(), 572)
    yield fig
    plt.close(fig)


def test_paper_figure_shows_every_size_of_the_paper(paper_figure):
    sizes = texts(paper_figure, "size")
    assert sorted(set(sizes)) == sorted(f"{n}×{n}" for n in PAPER_SIZES)
    assert "572×572" in sizes and sizes.count("388×388") == 2  # last conv and the output map
    channels = set(texts(paper_figure, "channels"))
    assert PAPER_CHANNELS <= channels
    # Each concatenation keeps the copy's and the up-conv's channels: 512 + 512 at the bottom.
    assert {"64+64", "128+128", "256+256", "512+512"} <= channels


def test_paper_figure_has_every_arrow_and_a_legend(paper_figure):
    arrows = [p.get_gid() for p in paper_figure.axes[0].patches
              if (p.get_gid() or "").startswith("arrow:")]
    legend = 1
    # 23 conv layers: 18 3x3 convs in the U, plus 1x1; 4 pools, 4 up-convs, 4 copies.
    assert arrows.count("arrow:conv") == 18 + legend
    assert arrows.count("arrow:pool") == 4 + legend
    assert arrows.count("arrow:upconv") == 4 + legend
    assert arrows.count("arrow:copy") == 4 + legend
    assert arrows.count("arrow:head") == 1 + legend
    words = texts(paper_figure)
    for entry in ("conv 3x3, ReLU", "copy and crop", "max pool 2x2", "up-conv 2x2", "conv 1x1"):
        assert entry in words
    assert any("31,030,658 parameters" in w for w in words)


def test_depth_three_draws_fewer_levels():
    fig = draw_unet(UNet(depth=3, base_channels=8), 124)
    try:
        boxes = feature_boxes(fig)
        assert {int(level) for _, _, level, _ in boxes} == {0, 1, 2, 3}
        # input, 3 + 3 * (pool, conv, conv) down, 3 * (crop, up, conv, conv) up, output
        assert len(boxes) == 3 + 3 * 3 + 3 * 4 + 1
        assert set(texts(fig, "size")) == {f"{n}×{n}" for n in expected_sizes(124, 3, "valid")}
        assert "64" in texts(fig, "channels") and "128" not in texts(fig, "channels")
    finally:
        plt.close(fig)


@pytest.mark.parametrize("config, n", [
    ({"depth": 1, "base_channels": 1}, 18),
    ({"depth": 2, "base_channels": 3}, 60),
    ({"depth": 2, "base_channels": 2, "padding": "same", "up_mode": "bilinear"}, 48),
    ({"depth": 3, "base_channels": 2, "batch_norm": True, "in_channels": 3, "num_classes": 5}, 140),
])
def test_labels_carry_the_traced_sizes(config, n):
    model = UNet(**config)
    fig = draw_unet(model, n, title="")
    try:
        sizes = set(texts(fig, "size"))
        assert sizes == {f"{s}×{s}" for s in expected_sizes(n, model.depth, model.padding)}
        assert sizes == {m.size_label for m in unet_feature_maps(model, n)}
        assert str(config.get("num_classes", 2)) in texts(fig, "channels")
        assert str(config.get("in_channels", 1)) == texts(fig, "channels")[0]
    finally:
        plt.close(fig)


def test_traced_maps_follow_the_network():
    model = UNet(depth=2, base_channels=4)
    maps = unet_feature_maps(model, 60)
    x = model(torch.zeros(1, 1, 60, 60))
    assert (maps[0].kind, maps[0].height) == ("input", 60)
    assert (maps[-1].kind, maps[-1].channels, maps[-1].height) == ("output", 2, x.shape[-1])
    crops = [m for m in maps if m.kind == "crop"]
    ups = [m for m in maps if m.kind == "upconv"]
    assert [(c.channels, c.height) for c in crops] == [(8, 16), (4, 24)]
    assert [(u.channels, u.height) for u in ups] == [(8, 16), (4, 24)]
    assert [m.level for m in maps if m.kind == "pool"] == [1, 2]


def test_rectangular_tiles_are_labelled_height_by_width():
    model = UNet(depth=1, base_channels=1)
    fig = draw_unet(model, (18, 20))
    try:
        assert "18×20" in texts(fig, "size") and "2×4" in texts(fig, "size")
    finally:
        plt.close(fig)


def test_invalid_size_gives_the_models_error():
    model = UNet(depth=2, base_channels=2)
    open_figures = len(plt.get_fignums())
    with pytest.raises(ValueError) as expected:
        model.output_size(61)
    with pytest.raises(ValueError) as got:
        draw_unet(model, 61)
    assert str(got.value) == str(expected.value)
    assert "nearest valid sizes" in str(got.value)
    with pytest.raises(TypeError):
        draw_unet(model, 60.0)
    with pytest.raises(TypeError):
        draw_unet(torch.nn.Conv2d(1, 1, 3), 60)
    assert len(plt.get_fignums()) == open_figures  # nothing half-drawn is left open


def test_tracing_leaves_the_model_as_it_was():
    model = UNet(depth=2, base_channels=2, batch_norm=True)
    model.train()
    model.inc[1].eval()  # a frozen batch norm stays frozen
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plt.close(draw_unet(model, 60))
    assert model.training and model.ups[0].conv.training and not model.inc[1].training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics untouched
    hooks = [h for m in model.modules() for h in (*m._forward_hooks, *m._forward_pre_hooks)]
    assert hooks == []

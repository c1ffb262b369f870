"""The debugging tools: the shape table, the first failing module, check_unet's verdicts, helpers."""

import os

import pytest
import torch
from torch import nn

from unet_course import UNet
from unet_course.debug import (
    PAPER_PARAMETERS,
    check_mask,
    check_unet,
    saved_activation_bytes,
    suggest_nn_name,
    toy_blobs,
    trace_shapes,
)
from unet_course.model import DoubleConv


def shape(text):
    return tuple(int(v) for v in text.strip("()").split(",") if v.strip())


# ----------------------------------------------------------------------------- trace_shapes
@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return UNet(depth=2, base_channels=4).eval()


def test_trace_lists_every_called_module_with_its_shapes(small_net):
    x = torch.rand(2, 1, 60, 60)
    trace = trace_shapes(small_net, x)
    assert trace.error is None and trace.failed is None
    containers = {n for n, m in small_net.named_modules() if isinstance(m, nn.ModuleList)}
    assert {r.name for r in trace} == {n for n, _ in small_net.named_modules()} - containers
    root = trace[""]
    assert root.kind == "UNet" and shape(root.inputs[0]) == (2, 1, 60, 60)
    assert shape(root.outputs[0]) == tuple(trace.output.shape) == (2, 2, 20, 20)
    # A valid 3x3 convolution removes one pixel on each side.
    assert shape(trace["inc.0"].outputs[0]) == (2, 4, 58, 58)
    modules = dict(small_net.named_modules())
    for row in trace:
        m = modules[row.name]
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            assert row.in_channels == [m.in_channels] and row.out_channels == [m.out_channels]
            assert shape(row.inputs[0])[1] == m.in_channels
    # Each expanding step receives two tensors: the level below and the skip with half the channels.
    up = trace["ups.0"]
    assert len(up.inputs) == 2 and up.in_channels == [16, 8] and up.out_channels == [8]
    # Calls are listed in the order they start: a container before what it contains.
    assert trace["inc"].index < trace["inc.0"].index < trace["inc.2"].index < trace["head"].index
    assert not trace.output.requires_grad  # no graph is kept by default


def test_trace_text_and_depth_filter(small_net):
    trace = trace_shapes(small_net, torch.rand(1, 1, 60, 60), depth=1)
    text = str(trace)
    assert "ups.0" in text and "(1, 16, 8, 8), (1, 8, 24, 24)" in text
    assert "inc.0" not in text  # deeper than 1
    assert "inc.0" in str(trace_shapes(small_net, torch.rand(1, 1, 60, 60)))
    assert "<table>" in trace._repr_html_()


class WrongChannels(nn.Module):
    """The second convolution expects 8 channels but receives 4."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 2, 1), nn.ReLU())
        self.tail = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return self.tail(self.body(self.stem(x)))


def test_trace_stops_at_and_names_the_first_failing_module():
    trace = trace_shapes(WrongChannels(), torch.rand(1, 1, 10, 10))
    assert isinstance(trace.error, RuntimeError)
    assert trace.failed.name == "body.1" and trace.failed.kind == "Conv2d"
    assert trace.output is None
    assert trace.rows[-1] is trace.failed  # nothing after the failure ran
    assert "tail" not in {r.name for r in trace} and "body.2" not in {r.name for r in trace}
    assert shape(trace.failed.inputs[0]) == (1, 4, 8, 8)
    text = str(trace)
    assert "FAILED HERE" in text and "'body.1'" in text.splitlines()[-1]
    # The enclosing modules did not return either, but they are not the one that failed.
    assert not trace["body"].finished and not trace[""].finished


def test_trace_can_reraise_with_a_note_and_removes_its_hooks():
    model = WrongChannels()
    with pytest.raises(RuntimeError, match="expected input") as info:
        trace_shapes(model, torch.rand(1, 1, 10, 10), raise_error=True)
    assert any("body.1" in note for note in getattr(info.value, "__notes__", ["body.1"]))
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


class BadConcat(nn.Module):
    """Fails in its own forward code (torch.cat), after its child returned."""

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)

    def forward(self, x, skip):
        return torch.cat([skip, self.up(x)], dim=1)


def test_a_failure_in_forward_code_names_the_module_whose_code_failed():
    block = BadConcat()
    trace = trace_shapes(block, torch.rand(1, 4, 12, 12), torch.rand(1, 2, 25, 25))
    assert trace.failed.name == "" and trace.failed.kind == "BadConcat"
    assert trace["up"].finished and shape(trace["up"].outputs[0]) == (1, 2, 24, 24)


def test_a_missing_return_shows_as_a_none_output():
    class NoReturn(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            self.conv(x)

    trace = trace_shapes(NoReturn(), torch.rand(1, 1, 8, 8))
    assert trace.error is None and trace.output is None
    assert trace[""].outputs == ["None"] and shape(trace["conv"].outputs[0]) == (1, 2, 6, 6)


def test_trace_rejects_a_non_module():
    with pytest.raises(TypeError, match="nn.Module"):
        trace_shapes(lambda x: x, torch.rand(1))


# ----------------------------------------------------------------------------- check_unet
def parameters(model):
    return sum(p.numel() for p in model.parameters())


def test_check_unet_passes_the_papers_net():
    report = check_unet(UNet)
    assert report.ok, str(report)
    assert report.failed == []
    assert {c.name for c in report.checks} == {"builds", "parameters", "output", "shapes", "gradient"}
    assert PAPER_PARAMETERS == 31_030_658  # the paper's count, derived in tests/test_model.py
    assert report["parameters"].detail.startswith("31,030,658 parameters")


# Single-bug variants of the correct net, one for each bug planted in the lesson's BrokenUNet
# (plus two more properties). They are small (base_channels=8) to keep the tests fast.
SMALL = {"base_channels": 8}


class MissingReturn(UNet):
    def forward(self, x):
        super().forward(x)


class SamePaddedDecoder(UNet):
    """The expanding path pads its 3x3 convolutions; the contracting path does not."""

    def __init__(self, **kw):
        super().__init__(**kw)
        for up in self.ups:
            up.conv = DoubleConv(up.conv[0].in_channels, up.conv[0].out_channels, padding="same")


class FrozenEncoder(UNet):
    """The contracting path runs without autograd."""

    def forward(self, x):
        with torch.no_grad():
            skips = [self.inc(x)]
            for down in self.downs:
                skips.append(down(skips[-1]))
        x = self.dropout(skips.pop())
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)


class UpConvKeepsChannels(UNet):
    """The up-convolution does not halve the channels; the conv after the concat was adjusted."""

    def __init__(self, **kw):
        super().__init__(**kw)
        for up in self.ups:
            c, out = up.up.in_channels, up.conv[0].out_channels
            up.up = nn.ConvTranspose2d(c, c, kernel_size=2, stride=2)
            up.conv = DoubleConv(c + c // 2, out)


class WideHead(UNet):
    """A 3x3 output layer (padded, so the shapes still agree) instead of the paper's 1x1."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.head = nn.Conv2d(self.head.in_channels, self.head.out_channels, 3, padding=1)


class AllThree(FrozenEncoder):
    """The three bugs of the lesson's bug hunt at once."""

    def __init__(self, **kw):
        super().__init__(**kw)
        for up in self.ups:
            c, out = up.up.in_channels, up.conv[0].out_channels
            up.up = nn.ConvTranspose2d(c, c, kernel_size=2, stride=2)
            up.conv = DoubleConv(c + c // 2, out, padding="same")


@pytest.mark.parametrize(
    ("variant", "failing"),
    [
        (UNet, []),
        (MissingReturn, ["output"]),
        (SamePaddedDecoder, ["shapes"]),
        (FrozenEncoder, ["gradient"]),
        (UpConvKeepsChannels, ["parameters"]),
        (WideHead, ["parameters"]),
        (AllThree, ["parameters", "shapes", "gradient"]),
    ],
)
def test_check_unet_flags_each_bug_separately(variant, failing):
    expected = parameters(UNet(**SMALL))
    report = check_unet(lambda: variant(**SMALL), expected_parameters=expected)
    assert report.failed == failing, str(report)
    if variant is MissingReturn:
        assert report["shapes"].status == report["gradient"].status == "skip"
        assert "None" in report["output"].detail


def test_check_unet_reports_without_telling_the_fix():
    report = check_unet(lambda: SamePaddedDecoder(**SMALL), expected_parameters=None)
    text = str(report)
    assert "1 of 5 checks fail" in text and "FAIL  shapes" in text
    assert "expected (1, 2, 4, 4)" in text  # what should come out ...
    assert "padding" not in text.lower()  # ... but not why it does not
    assert report["parameters"].status == "skip"


def test_check_unet_reports_build_and_forward_errors():
    def explodes():
        raise RuntimeError("boom")

    report = check_unet(explodes)
    assert report.failed == ["builds"] and "boom" in report["builds"].detail

    class Crashes(UNet):
        def forward(self, x):
            raise ValueError("bad forward")

    report = check_unet(lambda: Crashes(**SMALL), expected_parameters=None)
    assert report.failed == ["output"] and "bad forward" in report["output"].detail


def test_check_unet_accepts_an_instance_and_rejects_invalid_sizes():
    assert check_unet(UNet(**SMALL), expected_parameters=None).ok
    with pytest.raises(ValueError, match="nearest valid sizes"):
        check_unet(UNet, sizes=(190,))


# ----------------------------------------------------------------------------- helpers
@pytest.mark.parametrize(("typo", "right"),
                         [("Relu", "ReLU"), ("Conv2D", "Conv2d"), ("Batchnorm2d", "BatchNorm2d")])
def test_suggest_nn_name_puts_the_right_layer_first(typo, right):
    assert not hasattr(nn, typo)
    found = suggest_nn_name(typo)
    assert found[0] == right and all(hasattr(nn, s) for s in found)


def test_suggest_nn_name_points_functions_to_functional():
    assert "functional.interpolate" in suggest_nn_name("interpolate")


def test_check_mask():
    good = torch.tensor([[0, 1], [1, 0]])
    assert check_mask(good, 2) is good
    with pytest.raises(ValueError, match=r"255.*mask > 127"):
        check_mask(good * 255, 2)
    with pytest.raises(ValueError, match="0..1"):
        check_mask(torch.tensor([0, 2]), 2)
    with pytest.raises(TypeError, match="int64"):
        check_mask(good.float(), 2)


def test_saved_activation_bytes_counts_what_autograd_keeps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
    small, large = torch.rand(2, 3, 16, 16), torch.rand(4, 3, 16, 16)
    kept = saved_activation_bytes(model, small)
    # At least the input of the first conv (needed for its weight gradient) is kept ...
    assert kept >= small.nbytes
    # ... activations scale with the batch, and the weights are not counted.
    assert saved_activation_bytes(model, large) == 2 * kept
    with torch.no_grad():
        assert saved_activation_bytes(model, small) == 0


def test_toy_blobs():
    images, masks = toy_blobs(8, size=32, seed=3)
    assert images.shape == (8, 1, 32, 32) and images.dtype == torch.float32
    assert masks.shape == (8, 32, 32) and masks.dtype == torch.int64
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(masks.unique().tolist()) == {0, 1}
    assert 0.005 < masks.float().mean() < 0.1  # strongly imbalanced
    fg = images[:, 0][masks == 1].mean() - images[:, 0][masks == 0].mean()
    assert 0.25 < fg < 0.45  # the discs are brighter by about `contrast`
    again, _ = toy_blobs(8, size=32, seed=3)
    assert torch.equal(images, again)
    with pytest.raises(ValueError):
        toy_blobs(0)


# --- short tracebacks: what every expected error in the book looks like -----------------------


def _raise_inside_torch():
    torch.nn.Conv2d(3, 8, 3)(torch.rand(1, 4, 20, 20))  # 4 channels into a 3-channel layer


def test_short_traceback_folds_torch_frames_and_fits_the_column():
    from unet_course.debug import format_short_traceback

    try:
        _raise_inside_torch()
    except RuntimeError as raised:
        error = raised  # `raised` is unbound after the except block
        lines = format_short_traceback(error, width=60)
    text = "\n".join(lines)
    assert lines[0] == "Traceback (library frames folded):"
    assert "test_debug.py" in text and "_raise_inside_torch()" in text  # the user's frames stay
    assert any(line.startswith("  ... ") and line.endswith("inside torch") for line in lines)
    assert "site-packages" not in text and os.sep + "torch" + os.sep not in text
    assert max(map(len, lines)) <= 60
    # the message is all there, wrapped: rejoined, it is the exception's text
    start = next(i for i, line in enumerate(lines) if line.startswith("RuntimeError: "))
    rejoined = " ".join(line.strip() for line in lines[start:])
    assert rejoined == "RuntimeError: " + " ".join(str(error).split())


def test_short_traceback_names_package_frames_relative_and_refuses_narrow_width():
    from unet_course import UNet
    from unet_course.debug import format_short_traceback

    try:
        UNet(padding="same", depth=2, base_channels=8)(torch.rand(1, 1, 102, 102))
    except ValueError as raised:
        error = raised
        lines = format_short_traceback(error)
    assert any(line.startswith("  unet_course/geometry.py, line ") for line in lines)
    assert not any(os.path.isabs(line.strip().split(",")[0]) for line in lines)
    with pytest.raises(ValueError, match="at least 40"):
        format_short_traceback(error, width=20)


def test_short_tracebacks_outside_ipython_changes_nothing():
    from unet_course.debug import short_tracebacks

    assert short_tracebacks() is None and short_tracebacks(False) is None


def test_workers_replay_one_generator_unless_reseeded_or_drawn_per_item():
    from torch.utils.data import DataLoader

    from unet_course.debug import AugmentationDraws, reseed_worker

    def draws(dataset, **options):
        torch.manual_seed(0)
        return [int(d) for d in DataLoader(dataset, batch_size=1, num_workers=2, **options)]

    shared = draws(AugmentationDraws(6))
    assert shared[0::2] == shared[1::2]  # the bug: worker 1 repeats worker 0
    assert len(set(draws(AugmentationDraws(6), worker_init_fn=reseed_worker))) == 6
    per_item = draws(AugmentationDraws(6, per_item=True))
    assert per_item == [int(d) for d in DataLoader(AugmentationDraws(6, per_item=True))]
    with pytest.raises(ValueError, match="n"):
        AugmentationDraws(0)

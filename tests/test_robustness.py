"""What used to crash, hang the machine or print a traceback now says what to change, in one line.

* ``train`` estimates memory before it allocates (a depth the tile cannot hold, a net larger
  than the memory available) and its out-of-memory hint also covers the held-out scoring;
* ``count_macs`` counts a module as often as it runs (R2U-Net's recurrent convolutions);
* ``plan`` refuses shapes and spacings it cannot plan, and caps the batch;
* empty maps in ``postprocess`` and narrow or even-kernel variants.

CLI cases run ``python -m unet_course`` in a subprocess, as a user would. Each subprocess gets
a 16 GiB address-space limit: a regression that tries to allocate a depth-10 net (tens of GB)
then fails at once with a MemoryError instead of swapping the test machine to death.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import subprocess
import sys
import weakref

import numpy as np
import pytest
import torch

from unet_course import memory
from unet_course.memory import (
    count_macs,
    estimate_training_memory,
    training_tile,
)
from unet_course.model import UNet
from unet_course.plan import MAX_BATCH_WITHOUT_CASES, plan_2d
from unet_course.postprocess import instances, mask_to_instances, split_touching
from unet_course.presets import get_preset
from unet_course.variants import AttentionUNet, PlainConvUNet, R2UNet, RecurrentResidualBlock

ADDRESS_SPACE = 16 * 2**30


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_cli(*args):
    """(exit status, stdout, stderr) of ``python -m unet_course ARGS`` with at most 16 GiB."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "unet_course", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300,
                          preexec_fn=_limit_memory)
    return done.returncode, done.stdout, done.stderr


def error_line(stderr: str) -> str:
    """The one error line, after asserting that there is exactly one and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


# ------------------------------------------------------------------ train: memory before allocation
SMALL_DATA = ["--images", "2", "--size", "64", "--steps", "1", "--device", "cpu"]


def test_train_refuses_a_depth_that_leaves_no_pixel_at_the_bottom(tmp_path):
    # the cpu preset's 256 tile at depth 10: rounded up to 1024, the bottom of the U is 1 x 1
    rc, out, err = run_cli("train", *SMALL_DATA, "--depth", "10", "--out", tmp_path)
    line = error_line(err)
    assert rc == 2 and "training on" not in out
    assert "--tile 256" in line and "--depth 10" in line and "4096" in line and "--depth 6" in line


def test_train_refuses_a_net_larger_than_the_available_memory(tmp_path):
    # 256 base channels at depth 7: about 19 billion parameters, hundreds of GB with Adam
    rc, out, err = run_cli("train", *SMALL_DATA, "--depth", "7", "--tile", "512",
                           "--base-channels", "256", "--out", tmp_path)
    line = error_line(err)
    assert rc == 2 and "training on" not in out
    assert "available" in line and "parameters" in line and "--base-channels" in line
    assert not (tmp_path / "last.pt").exists()


def test_training_tile_is_the_rounded_tile_or_a_clear_error():
    assert training_tile(4, "same", 256) == 256  # the cpu preset
    assert training_tile(4, "valid", 572) == 572  # the paper
    assert training_tile(2, "valid", 32) == 44  # rounded up, as before: 4 px at the bottom
    assert training_tile(3, "same", 30) == 32
    with pytest.raises(ValueError, match=r"--tile 60 .*--depth 5: .*--tile 128 or more, or "
                                         r"--depth 3 or less"):
        training_tile(5, "same", 60)


def test_the_estimate_never_allocates_the_network():
    preset = get_preset("cpu", depth=10, base_channels=16, tile=4096)
    est = estimate_training_memory(lambda: preset.model(1, 2), (4096, 4096), 1, "adam")
    assert est.parameters > 7e9  # 32 GB of float32 weights that were never allocated
    assert est.parameter_bytes == est.parameters * 4 * (1 + 1 + 2 + 1)  # w, grad, Adam, temp
    assert est.total == est.parameter_bytes + est.activation_bytes


def test_the_estimate_counts_every_activation_of_a_small_net():
    # depth 1, same padding, no batch norm, 8 x 8 tiles, batch 2: every leaf module's output
    def build():
        return UNet(1, 2, depth=1, base_channels=4, padding="same", dropout=0.0)

    est = estimate_training_memory(build, (8, 8), 2, "sgd")
    top, bottom = 8 * 8, 4 * 4
    # inc: 2 convs (4 ch); down: pool (4 ch) at 4 x 4, 2 convs (8 ch); up: transposed conv
    # (4 ch), 2 convs (4 ch); head (2 ch); in-place ReLUs share their input's memory
    values = 2 * (2 * 4 * top + 4 * bottom + 2 * 8 * bottom + 4 * top + 2 * 4 * top + 2 * top)
    assert est.activation_bytes == 2 * 4 * values  # forward and backward, float32
    params = sum(p.numel() for p in build().parameters())
    assert est.parameters == params and est.parameter_bytes == params * 4 * 4  # SGD: 1 buffer


def test_the_refusal_names_what_dominates(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda device=None: 10 * 2**20)
    big_tiles = get_preset("cpu", depth=2, base_channels=4, tile=1024, batch_size=8)
    with pytest.raises(ValueError, match=r"only 10.0 MiB .* lower --tile or --batch-size"):
        memory.check_training_memory(big_tiles, 1, 2, torch.device("cpu"))
    wide = get_preset("cpu", depth=4, base_channels=64, tile=64)
    with pytest.raises(ValueError, match=r"lower --base-channels or --depth"):
        memory.check_training_memory(wide, 1, 2, torch.device("cpu"))
    monkeypatch.setattr(memory, "available_memory", lambda device=None: None)  # unknown: no check
    assert memory.check_training_memory(wide, 1, 2, torch.device("cpu")).total > 10 * 2**20


def test_available_memory_is_a_positive_number_of_bytes_or_unknown(monkeypatch):
    free = memory.available_memory("cpu")
    assert free is None or 0 < free <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")

    def no_driver(device=None):
        raise RuntimeError("Found no NVIDIA driver on your system")

    monkeypatch.setattr(torch.cuda, "mem_get_info", no_driver)
    assert memory.available_memory("cuda") is None  # unknown: training is not refused for it


def test_the_out_of_memory_hint_of_train_covers_the_held_out_scoring(capsys):
    from unet_course._cli_errors import exit_status

    args = argparse.Namespace(command="train", out="run")
    assert exit_status(MemoryError("Unable to allocate 18.0 GiB"), args) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "--tile" in line and "--val-fraction 0" in line
    assert "held-out" in line


def test_report_keeps_one_held_out_image_in_memory_at_a_time(monkeypatch, capsys):
    # >2 classes: the logits of each image are scored and dropped before the next is predicted
    import unet_course.predict as predict
    from unet_course._cli_train import _report

    alive: list[int] = []
    refs: list[weakref.ref] = []
    real = predict.predict_tiled

    def counting(model, image, *args, **kwargs):
        gc.collect()
        alive.append(sum(r() is not None for r in refs))
        out = real(model, image, *args, **kwargs)
        refs.append(weakref.ref(out))
        return out

    monkeypatch.setattr(predict, "predict_tiled", counting)
    torch.manual_seed(0)
    model = UNet(1, 3, depth=1, base_channels=2, padding="same").eval()
    images = [np.random.default_rng(k).random((16, 16), dtype=np.float32) for k in range(3)]
    masks = [np.zeros((16, 16), np.int64) for _ in images]
    _report(model, images, masks, 3)
    assert alive == [0, 0, 0]
    assert "held out (3 images): pixel_error" in capsys.readouterr().out


# ------------------------------------------------------------------ count_macs: per application
def test_count_macs_counts_a_recurrent_convolution_at_every_application():
    torch.manual_seed(0)
    block = RecurrentResidualBlock(1, 4, t=2, batch_norm=False)
    macs = count_macs(block, (8, 8))
    pixels = 8 * 8
    entry = pixels * 4 * 1 * 1  # 1x1, 1 -> 4 channels, applied once
    one_3x3 = pixels * 4 * 4 * 9  # 3x3, 4 -> 4 channels
    applied = 2 + 1  # t + 1 times per recurrent unit
    assert macs["entry"] == entry
    assert macs["recurrent.0.conv.0"] == macs["recurrent.1.conv.0"] == applied * one_3x3
    assert sum(macs.values()) == entry + 2 * applied * one_3x3 == 55_552


def test_the_lesson_scale_r2unet_costs_what_a_hand_count_says():
    # depth 2, 8 channels, 48 px tiles (lesson 10's quick recipe), t = 2
    net = R2UNet(1, 2, depth=2, base_channels=8)

    def block(c_in, c_out, px):  # entry 1x1 + two 3x3 units applied 3 times each
        return px * c_out * c_in + 2 * 3 * px * c_out * c_out * 9

    sizes = [48 * 48, 24 * 24, 12 * 12]
    w = [8, 16, 32]
    encoder = block(1, 8, sizes[0]) + block(8, 16, sizes[1]) + block(16, 32, sizes[2])
    ups = sum(sizes[i] * w[i] * w[i + 1] * 9 for i in range(2))  # upsample, 3x3 halving
    decoder = sum(block(2 * w[i], w[i], sizes[i]) for i in range(2))
    head = sizes[0] * 2 * 8
    assert sum(count_macs(net, 48).values()) == encoder + ups + decoder + head
    assert 45e6 < encoder + ups + decoder + head < 47e6


# ------------------------------------------------------------------ plan
def test_plan_refuses_a_spacing_that_leaves_a_patch_of_no_pixel():
    rc, out, err = run_cli("plan", "--shape", "512", "512", "--spacing", "1", "1e9")
    line = error_line(err)
    assert rc == 2 and "spacing" in line and "0 px" in line


def test_plan_refuses_a_shape_too_small_to_pool():
    rc, out, err = run_cli("plan", "--shape", "1", "1")
    line = error_line(err)
    assert rc == 2 and "too small" in line and "8" in line
    with pytest.raises(ValueError, match="too small"):
        plan_2d((8, 5))  # one axis of 8 px pools only alongside the other
    assert plan_2d((8, 8)).pools_per_axis == (1, 1)
    assert plan_2d((5, 12)).pools_per_axis == (0, 1)


def test_the_batch_is_capped_without_a_case_count():
    assert plan_2d((8, 8)).batch_size == MAX_BATCH_WITHOUT_CASES
    assert plan_2d((8, 8), n_cases=100).batch_size == 5  # nnU-Net's 5 % rule
    assert plan_2d((96, 96)).batch_size == 362  # below the cap: nnU-Net's number
    assert plan_2d((512, 512)).batch_size == 12


# ------------------------------------------------------------------ postprocess: empty maps
@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (3, 0)])
def test_empty_maps_give_empty_labels(shape):
    for labels in (instances(np.zeros(shape)), instances(np.zeros(shape), split=True),
                   mask_to_instances(np.zeros(shape, np.int64)),
                   mask_to_instances(np.zeros(shape, bool), min_size=3),
                   split_touching(np.zeros(shape, np.int64))):
        assert labels.shape == shape and labels.dtype == np.int32


# ------------------------------------------------------------------ variants
def test_attention_unet_of_one_base_channel_runs():
    net = AttentionUNet(1, 2, depth=2, base_channels=1).eval()
    assert net(torch.rand(1, 1, 16, 16)).shape == (1, 2, 16, 16)


def test_plain_conv_unet_refuses_even_kernels():
    with pytest.raises(ValueError, match=r"odd.*\(2, 2\)"):
        PlainConvUNet(1, 2, features=(4, 8), conv_kernel_sizes=[(3, 3), (2, 2)])
    net = PlainConvUNet(1, 2, features=(4, 8), conv_kernel_sizes=[(1, 3), (3, 3)])
    assert net(torch.rand(1, 1, 8, 8)).shape == (1, 2, 8, 8)


def test_rand_score_of_many_segments_needs_no_dense_table_and_agrees_with_a_direct_count():
    # 3000 x 3000 true segments on a 200 x 200 map: a dense pair table would hold 9e6 entries
    # for 4e4 pixels (at 6000 x 6000 pixels, tens of GB); the sparse count must agree with a
    # direct evaluation of the formula.
    from unet_course.metrics import rand_f_score

    rng = np.random.default_rng(0)
    truth = rng.integers(1, 3000, size=(200, 200))
    pred = rng.integers(0, 3000, size=(200, 200))
    inside = truth > 0
    t, q = truth[inside], pred[inside]
    single = q == 0
    _, joint = np.unique(np.stack([q[~single], t[~single]]), axis=1, return_counts=True)
    _, pred_sizes = np.unique(q[~single], return_counts=True)
    _, true_sizes = np.unique(t, return_counts=True)
    both = (joint.astype(float) ** 2).sum() + single.sum()
    precision = both / ((pred_sizes.astype(float) ** 2).sum() + single.sum())
    recall = both / (true_sizes.astype(float) ** 2).sum()
    expected = 2 * precision * recall / (precision + recall)
    assert rand_f_score(pred, truth) == pytest.approx(expected, rel=1e-12)

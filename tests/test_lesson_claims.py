"""The training claims of lessons 04, 05 and 07, rerun at several seeds and at 1 and 2 threads.

Float results differ between processors and thread counts, so a claim that held in the one run
stored in a notebook proves little. Each test reruns one lesson's experiment from
``unet_course.experiments`` with the notebook's quick-profile settings and its fixed data, with
the training seed (initial weights and batches) at 0, 1 and 2 and torch at 1 and 2 threads, and
asserts the notebook's own claim, with the notebook's own margin, in every run. Each run prints
the values it checks (``pytest -s`` shows them).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_course.data import synthetic_em
from unet_course.debug import toy_blobs
from unet_course.experiments import (
    compare_deformation,
    compare_weightings,
    foreground_iou,
    pixel_accuracy,
    predict_classes,
    torch_threads,
    touching_split,
    train_tiny,
)

SEEDS = (0, 1, 2)
THREADS = (1, 2)
runs = pytest.mark.parametrize("threads", THREADS)
seeds = pytest.mark.parametrize("seed", SEEDS)


# ------------------------------------------------------------------ lesson 04, elastic deformation
@pytest.fixture(scope="module")
def lesson04():
    train_images, train_masks, _ = synthetic_em(2, size=96, seed=1)  # quick: 96 px, 200 steps
    test_images, test_masks, _ = synthetic_em(4, size=256, seed=1000)
    image, mask = (a[0] for a in synthetic_em(2, size=512, seed=0)[:2])
    best_threshold_error = min(np.mean((image > t) != (mask == 1)) for t in np.linspace(0, 1, 201))
    return (train_images, train_masks, test_images, test_masks), float(best_threshold_error)


@runs
@seeds
def test_lesson04_deformation_lowers_held_out_error_and_the_gap(lesson04, seed, threads):
    data, threshold_error = lesson04
    with torch_threads(threads):
        result = compare_deformation(*data, steps=200, seed=seed)
    plain, deformed = result["no augmentation"], result["elastic deformation"]
    print(f"\n04 seed {seed} threads {threads}: held-out plain {plain.held_out.error:.4f} "
          f"deformed {deformed.held_out.error:.4f} | gap plain {plain.gap:.4f} deformed "
          f"{deformed.gap:.4f} | threshold / 2 {threshold_error / 2:.4f}")
    assert deformed.held_out.error < plain.held_out.error
    assert deformed.gap < plain.gap
    assert max(plain.held_out.error, deformed.held_out.error) < threshold_error / 2


# ------------------------------------------------------------------ lesson 05, weight maps
@pytest.fixture(scope="module")
def lesson05():
    return touching_split(24, 8, size=128)  # quick: 24 + 8 images of 128 px, 200 steps


@runs
@seeds
def test_lesson05_weight_map_separates_touching_cells(lesson05, seed, threads):
    total = lesson05.test_cells
    with torch_threads(threads):
        scores = compare_weightings(lesson05, steps=200, seed=seed, crop=64, device="cpu")
    print(f"\n05 seed {seed} threads {threads}: " + " | ".join(
        f"{name} acc {s.accuracy:.3f} blobs {s.blobs} separated {s.separated}/{total}"
        for name, s in scores.items()))
    for s in scores.values():
        assert s.accuracy > 0.9
    paper = scores["w (paper)"].separated
    assert paper >= 0.9 * total
    assert paper > scores["no weights"].separated and paper > scores["w_c only"].separated


# ------------------------------------------------------------------ lesson 07, class imbalance
@pytest.fixture(scope="module")
def lesson07():
    train_x, train_y = toy_blobs(64, size=32, seed=0)
    test_x, test_y = toy_blobs(16, size=32, seed=1)
    fg = train_y.float().mean().item()
    balanced = torch.tensor([1.0, ((1 - fg) / fg) ** 0.5])
    return (train_x, train_y, test_x, test_y), balanced


@runs
@seeds
def test_lesson07_plain_loss_predicts_all_black_and_weights_fix_it(lesson07, seed, threads):
    data, balanced = lesson07
    test_x, test_y = data[2:]
    with torch_threads(threads):
        plain_net, _ = train_tiny(*data, None, steps=100, seed=seed, device="cpu")
        weighted_net, _ = train_tiny(*data, balanced, steps=100, seed=seed, device="cpu")
    plain, weighted = predict_classes(plain_net, test_x), predict_classes(weighted_net, test_x)
    by_min = 1 - weighted  # argmin of two classes
    print(f"\n07 seed {seed} threads {threads}: plain foreground "
          f"{(plain == 1).float().mean():.4f} acc {pixel_accuracy(plain, test_y):.3f} "
          f"IoU {foreground_iou(plain, test_y):.3f} | weighted IoU "
          f"{foreground_iou(weighted, test_y):.3f} | argmin IoU {foreground_iou(by_min, test_y):.3f}")
    assert (plain == 1).float().mean() < 0.002
    assert pixel_accuracy(plain, test_y) > 0.95
    assert foreground_iou(weighted, test_y) > 0.35 > foreground_iou(plain, test_y) + 0.2
    assert foreground_iou(by_min, test_y) < 0.05


@runs
@seeds
def test_lesson07_plain_loss_escapes_later(lesson07, seed, threads):
    data, _ = lesson07
    with torch_threads(threads):
        _, curve = train_tiny(*data, None, steps=300, seed=seed, device="cpu")
    found = curve[curve[:, 2] > 0.05, 0]
    first = found.min() if found.size else np.inf
    print(f"\n07 long seed {seed} threads {threads}: first foreground at step {first} | "
          f"final IoU {curve[-1, 2]:.3f} | accuracy {curve[0, 1]:.3f} -> {curve[-1, 1]:.3f}")
    assert 100 < first < 300 and curve[-1, 2] > 0.4
    assert curve[-1, 1] - curve[0, 1] < 0.03

"""The training claims of the lessons (02 to 11), rerun at several seeds and at 1 and 2 threads.

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

from unet_course import UNet, seed_everything
from unet_course.data import synthetic_em
from unet_course.debug import sgd_lr_sweep, toy_blobs
from unet_course.experiments import (
    LESSON10,
    compare_deformation,
    compare_skips,
    compare_successors,
    compare_weightings,
    foreground_iou,
    lesson10_splits,
    overfit_batch,
    predict_classes,
    seam_distance,
    tiled_seams,
    torch_threads,
    touching_split,
    train_tiny,
)

SEEDS = (0, 1, 2)
LESSON08_LRS = (0.01, 10.0, 100.0)  # lesson 08, section 13
THREADS = (1, 2)
runs = pytest.mark.parametrize("threads", THREADS)
seeds = pytest.mark.parametrize("seed", SEEDS)


# ------------------------------------------------------------------ lesson 02, skip connections
@runs
@seeds
def test_lesson02_a_u_net_without_skips_is_far_worse_than_with_either(seed, threads):
    with torch_threads(threads):
        runs = compare_skips(seed=seed)
    errors = {mode: run.held_out.error for mode, run in runs.items()}
    print(f"\n02 seed {seed} threads {threads}: held-out pixel error " + ", ".join(
        f"{mode} {error:.4f}" for mode, error in errors.items()))
    # the notebook's claim (seen at seeds 0-2: none 0.13-0.20, sum 0.048-0.053,
    # concat 0.049-0.083): no skips is clearly worse than either way of joining them
    assert errors["none"] > 1.3 * max(errors["sum"], errors["concat"])


# ------------------------------------------------------------------ lesson 03, seams in labels
@runs
@seeds
def test_lesson03_trained_net_naive_tiles_flip_labels_at_seams_halo_none(seed, threads):
    with torch_threads(threads):
        run = tiled_seams(seed=seed)
    naive, averaged, halo = (run.flips(way).sum() for way in ("naive", "averaged", "halo"))
    dist = np.minimum.outer(seam_distance(512, run.tile), seam_distance(512, run.tile))
    print(f"\n03 seed {seed} threads {threads}: flipped labels naive {naive}, averaged "
          f"{averaged}, halo {halo}; naive flips farther than 22 px from a seam "
          f"{run.flips('naive')[dist > 22].sum()}")
    # the notebook's claims (seen at seeds 0-2: naive 627-757, averaged 429-564, halo 0)
    assert naive > 100 and not run.flips("naive")[dist > 22].any()  # the band is 6*4-2 = 22
    assert 0 < averaged < naive
    assert halo == 0


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
def test_lesson04_flips_and_rotations_narrow_the_gap_paper_scale_elastic_less(lesson04, seed,
                                                                             threads):
    data, threshold_error = lesson04
    with torch_threads(threads):
        result = compare_deformation(*data, steps=200, seed=seed)
    plain = result["no augmentation"]
    elastic, turned = result["elastic deformation"], result["flips and rotations"]
    print(f"\n04 seed {seed} threads {threads}: " + " | ".join(
        f"{name}: held-out {run.held_out.error:.4f} gap {run.gap:.4f}"
        for name, run in result.items()) + f" | threshold / 2 {threshold_error / 2:.4f}")
    # the notebook's claims: flips and rotations narrow the gap; the paper-scale elastic
    # deformation narrows it less (seen: gaps 0.021-0.025 none, 0.021-0.024 elastic,
    # 0.007-0.016 flips and rotations, at seeds 0-2 on 2 threads)
    assert turned.gap < plain.gap and turned.gap < elastic.gap
    assert max(run.held_out.error for run in result.values()) < threshold_error / 2


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


# ------------------------------------------------------------------ lesson 08, class imbalance
@pytest.fixture(scope="module")
def lesson08():
    train_x, train_y = toy_blobs(64, size=32, seed=0)
    test_x, test_y = toy_blobs(16, size=32, seed=1)
    fg = train_y.float().mean().item()
    balanced = torch.tensor([1.0, ((1 - fg) / fg) ** 0.5])
    return (train_x, train_y, test_x, test_y), balanced


@runs
@seeds
def test_lesson08_plain_loss_starts_all_black_and_weights_find_the_discs(lesson08, seed, threads):
    data, balanced = lesson08
    test_x, test_y = data[2:]
    with torch_threads(threads):
        # the notebook's 100-step plain run is the first 100 steps of its 300-step one
        _, plain = train_tiny(*data, None, steps=300, seed=seed, device="cpu")
        weighted_net, weighted = train_tiny(*data, balanced, steps=100, seed=seed, device="cpu")
    early = plain[plain[:, 0] <= 50]
    found = plain[plain[:, 2] > 0.05, 0]
    first = found.min() if found.size else np.inf
    by_min = 1 - predict_classes(weighted_net, test_x)  # argmin of two classes
    print(f"\n08 seed {seed} threads {threads}: plain steps <= 50: foreground <= "
          f"{early[:, 3].max():.4f}, accuracy >= {early[:, 1].min():.3f} | weighted IoU at 100 "
          f"{weighted[-1, 2]:.3f} | argmin IoU {foreground_iou(by_min, test_y):.3f} | plain: "
          f"first foreground at step {first}, IoU at 100 {plain[9, 2]:.3f}, at 300 "
          f"{plain[-1, 2]:.3f}, accuracy {plain[0, 1]:.3f} -> {plain[-1, 1]:.3f}")
    # section 5: all black for the first 50 steps, and yet "95 % accurate"; weights fix it
    assert early[:, 3].max() < 0.002 and early[:, 1].min() > 0.95
    assert weighted[-1, 2] > 0.35
    # section 6: argmin reports the background as foreground
    assert foreground_iou(by_min, test_y) < 0.05
    # solution 1: the plain net escapes after 50 steps and reaches the weighted net's level,
    # while its pixel accuracy hardly moves
    assert 50 < first < 300 and plain[-1, 2] > 0.4
    assert plain[-1, 1] - plain[0, 1] < 0.03


@runs
@seeds
def test_lesson08_one_batch_is_learnt_by_heart_and_a_stale_optimiser_never_moves(lesson08, seed,
                                                                                   threads):
    (train_x, train_y, *_), _ = lesson08
    one_x, one_y = train_x[:4], train_y[:4]
    with torch_threads(threads):
        seed_everything(seed)
        net = UNet(padding="same", depth=2, base_channels=8, dropout=0.0)
        good = overfit_batch(net, one_x, one_y, steps=200)
        iou = foreground_iou(predict_classes(net, one_x), one_y)
        stale = torch.optim.Adam(UNet(padding="same", depth=2, base_channels=8).parameters())
        net = UNet(padding="same", depth=2, base_channels=8, dropout=0.0)
        broken = overfit_batch(net, one_x, one_y, steps=20, optimizer=stale)
    print(f"\n08 overfit seed {seed} threads {threads}: loss {good[0]:.3f} -> {good[-1]:.5f}, "
          f"IoU {iou:.3f}")
    # section 10: the notebook asserts loss < 0.05 and IoU > 0.9; seen: < 0.003 and 1.0
    assert good[-1] < 0.05 and iou > 0.9
    assert broken.max() == broken.min()


@runs
@seeds
def test_lesson08_a_hundredfold_learning_rate_diverges_and_the_monitor_names_the_step(lesson08, seed,
                                                                                  threads):
    (train_x, train_y, *_), _ = lesson08
    with torch_threads(threads):
        runs = sgd_lr_sweep(train_x, train_y, LESSON08_LRS, steps=40, seed=seed)
    small, large = runs[LESSON08_LRS[0]], runs[LESSON08_LRS[-1]]
    print(f"\n08 lr sweep seed {seed} threads {threads}: " + "; ".join(
        f"lr {lr:g}: first non-finite {m.first_nonfinite}, max grad norm "
        f"{max(m.grad_norms):.3g}" for lr, m in runs.items()))
    # section 13: the paper's momentum with lr 0.01 stays finite and its gradient small (seen:
    # max norm 0.9-2.6); lr 100 is NaN within a few steps (seen: step 2-3)
    assert small.first_nonfinite is None and max(small.grad_norms) < 10
    assert np.nanmax(runs[LESSON08_LRS[1]].grad_norms) > 50 * max(small.grad_norms)  # seen > 100x
    assert large.first_nonfinite is not None and large.first_nonfinite <= 10
    assert "training diverged" in large.explain()


# ------------------------------------------------------------------ lesson 10, the successors
def isbi_or_skip():
    """The 30 ISBI 2012 slices from the data folder (``make data``; CI places them there)."""
    from unet_course.data import ISBI2012

    try:
        isbi = ISBI2012()
    except (FileNotFoundError, ValueError) as err:
        pytest.skip(f"ISBI 2012 is not in the data folder (run `make data`): {err}")
    return isbi


@pytest.fixture(scope="module")
def lesson10():
    isbi = isbi_or_skip()
    return lesson10_splits(isbi.images, isbi.masks)


@runs
@seeds
def test_lesson10_plain_attention_and_unetpp_segment_synthetic_em_and_learn_isbi(lesson10, seed,
                                                                               threads):
    # the claim is about these three; the R2 nets' evaluation-mode error varies too much to
    # bound (the notebook shows why), and leaving them out keeps the six runs short
    steady = ["U-Net", "Attention U-Net", "UNet++"]
    errors = {}
    with torch_threads(threads):
        for data, split in lesson10.items():
            result = compare_successors(*split, seed=seed, names=steady, **LESSON10["quick"])
            errors[data] = {name: run.pixel_error for name, run in result.items()}
    all_cell = {data: float(1 - np.mean(split[3])) for data, split in lesson10.items()}
    print(f"\n10 seed {seed} threads {threads}: held-out pixel error " + " | ".join(
        f"{data}: " + ", ".join(f"{n} {e:.4f}" for n, e in errs.items())
        + f" (all cell {all_cell[data]:.4f})" for data, errs in errors.items()))
    # the notebook's claims (seen at seeds 0-2, 1 and 2 threads: synthetic 0.021-0.053
    # against all cell 0.206, bound 0.103; ISBI best of the three 0.120-0.154 against all
    # cell 0.239, bound 0.189)
    assert max(errors["synthetic EM"].values()) < 0.5 * all_cell["synthetic EM"]
    assert min(errors["ISBI 2012"].values()) < all_cell["ISBI 2012"] - 0.05


# ------------------------------------------------------------------ lesson 11, planned recipe
@pytest.fixture(scope="module")
def lesson11():
    from unet_course.experiments import Split, anisotropic_split, cpu_plan

    isbi = isbi_or_skip()
    images = np.stack(isbi.images).astype(np.float32)
    masks = np.stack(isbi.masks).astype(np.int64)
    isbi_split = Split(images[:4], masks[:4], None, images[-2:], masks[-2:])
    aniso, spacing = anisotropic_split()
    return {"ISBI 2012": (isbi_split, cpu_plan(isbi_split, (4.0, 4.0))[1], 6e6),
            "anisotropic": (aniso, cpu_plan(aniso, spacing)[1], 4e6)}


@runs
@seeds
def test_lesson11_the_planned_recipe_beats_the_trivial_answers_on_real_and_anisotropic_slices(lesson11, seed,
                                                                               threads):
    from unet_course.experiments import all_cell_scores, otsu_scores, planned_steps, train_planned

    for name, (split, plan, pixels) in lesson11.items():
        with torch_threads(threads):
            scores = train_planned(plan, split, planned_steps(plan, pixels), seed).scores
        otsu = otsu_scores(split.test_images, split.test_masks)
        all_cell = all_cell_scores(split.test_masks)
        print(f"\n11 {name} seed {seed} threads {threads}: pixel error "
              f"{scores['pixel_error']:.4f} (Otsu {otsu['pixel_error']:.4f}, all cell "
              f"{all_cell['pixel_error']:.4f}), Rand error {scores['rand_error']:.4f} (Otsu "
              f"{otsu['rand_error']:.4f}, all cell {all_cell['rand_error']:.4f})")
        # the notebook's claims, with its margins: against "all cell", which beats Otsu on pixels
        if name == "ISBI 2012":
            assert scores["pixel_error"] < all_cell["pixel_error"] - 0.02
            assert scores["rand_error"] < 0.85 * otsu["rand_error"]
        else:
            assert scores["rand_error"] < 0.8 * all_cell["rand_error"]

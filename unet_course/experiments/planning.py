"""Lesson 11's experiment: nnU-Net's planned configuration against the paper's, at equal budget.

Both recipes see the same number of training pixels (input tiles x batch x steps), so a
recipe with larger patches takes fewer steps. The planned one is :func:`unet_course.plan.
plan_dataset` run with a laptop's memory target and widths (``CPU_PLAN``), trained with
nnU-Net's fixed recipe (SGD with Nesterov momentum 0.99, poly decay, Dice + cross-entropy,
deep supervision) on z-scored images. The paper's is the ``paper`` preset at lesson 06's
scale (valid convolutions, SGD 0.99, batch 1, weight map, elastic deformation). Each run is a
function of its seed, so ``tests/test_lesson_claims.py`` can rerun it at several seeds and
thread counts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data import TileDataset, synthetic_em
from ..plan import Fingerprint, Plan2D, dataset_fingerprint, normalize, plan_dataset
from ..settings import seed_everything
from ..train import evaluate, fit
from ._pool import map_in_processes
from .training import LESSON06, Split, train_and_score

__all__ = ["CPU_PLAN", "PlannedRun", "anisotropic_split", "compare_plans", "compare_plans_on",
           "cpu_plan", "planned_steps", "train_planned"]

#: What a laptop CPU gets instead of an 8 GB GPU: a memory target of 0.05 GB and 8 to 64
#: features. The rules are nnU-Net's; only their inputs are scaled.
CPU_PLAN = dict(gpu_memory_gb=0.05, base_features=8, max_features=64)


def anisotropic_split(n_train: int = 4, n_test: int = 2, size: int = 256, step: int = 3,
                      seed: int = 0) -> tuple[Split, tuple[float, float]]:
    """Synthetic EM sampled every ``step``-th column: (size, size / step) images, spacing (1, step).

    A stand-in for sections cut thicker than the pixels are wide: along x each pixel spans
    ``step`` times the distance it spans along y. Returns the split and its spacing.
    """
    images, masks, instances = synthetic_em(n_train + n_test, size=size, seed=seed)
    images, masks, instances = (a[:, :, ::step].copy() for a in (images, masks, instances))
    split = Split(images[:n_train], masks[:n_train], instances[:n_train], images[n_train:],
                  masks[n_train:])
    return split, (1.0, float(step))


def cpu_plan(split: Split, spacing: tuple[float, float] = (1.0, 1.0),
             **overrides) -> tuple[Fingerprint, Plan2D]:
    """The fingerprint of ``split``'s training images and their plan at ``CPU_PLAN`` scale."""
    fingerprint = dataset_fingerprint(list(split.train_images), list(split.train_masks),
                                      [spacing] * len(split.train_images))
    return fingerprint, plan_dataset(fingerprint, **{**CPU_PLAN, **overrides})


@dataclass
class PlannedRun:
    """One recipe's run: what it costs and how well it segments the held-out images."""

    recipe: str
    steps: int
    seconds: float  # wall-clock of training and scoring on this machine
    scores: dict[str, float] | None  # evaluate(): pixel_error, rand_error, iou, dice
    model: torch.nn.Module | None = None


def train_planned(plan: Plan2D, split: Split, steps: int, seed: int = 0) -> PlannedRun:
    """Train ``plan``'s network with nnU-Net's recipe for ``steps`` batches; score held-out."""
    seed_everything(seed)
    norm = lambda images: [normalize(im, plan) for im in images]  # noqa: E731
    model = plan.network()
    data = TileDataset(norm(split.train_images), split.train_masks, plan.patch_size,
                       plan.patch_size, length=steps * plan.batch_size, seed=seed)
    t = plan.trainer
    started = time.perf_counter()
    fit(model, data, steps=steps, batch_size=plan.batch_size, optimizer=t.optimizer, lr=t.lr,
        momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay,
        lr_schedule=t.lr_schedule, loss=t.loss, seed=seed, progress=False)
    scores = evaluate(model, norm(split.test_images), split.test_masks)
    seconds = time.perf_counter() - started
    return PlannedRun("planned (nnU-Net rules)", steps, seconds, scores, model)


def planned_steps(plan: Plan2D, pixels: int) -> int:
    """Batches of ``plan`` that hold ``pixels`` input pixels in all (at least one)."""
    return max(1, int(pixels) // (plan.batch_size * int(np.prod(plan.patch_size))))


def compare_plans(split: Split, plan: Plan2D, pixels: int, seed: int = 0) -> dict[str, PlannedRun]:
    """The planned and the paper's recipe, each trained on ``pixels`` input pixels in all."""
    runs = {"planned": train_planned(plan, split, planned_steps(plan, pixels), seed)}
    tile = LESSON06["paper"]["tile"]
    paper_steps = max(1, pixels // tile**2)
    started = time.perf_counter()
    result = train_and_score("paper", split, paper_steps, seed)
    runs["paper"] = PlannedRun("paper (lesson 06 scale)", paper_steps,
                               time.perf_counter() - started, result.scores, result.model)
    return runs


def _compare_one(task: tuple) -> tuple[str, int, dict[str, PlannedRun]]:
    name, split, plan, pixels, seed = task
    return name, seed, compare_plans(split, plan, pixels, seed)


def compare_plans_on(datasets: Mapping[str, tuple[Split, Plan2D, int]],
                     seeds: Sequence[int] = (0, 1, 2),
                     processes: int = 2) -> dict[str, list[dict[str, PlannedRun]]]:
    """:func:`compare_plans` for every data set ``{name: (split, plan, pixels)}`` and seed.

    Returns ``{name: [runs of seeds[0], runs of seeds[1], ...]}``. The runs are independent,
    so they go to ``processes`` worker processes with one torch thread each; the scores do
    not depend on ``processes``, and the seconds are those of one core.
    """
    tasks = [(name, split, plan, int(pixels), seed)
             for name, (split, plan, pixels) in datasets.items() for seed in seeds]
    out: dict[str, dict[int, dict[str, PlannedRun]]] = {name: {} for name in datasets}
    for name, seed, runs in map_in_processes(_compare_one, tasks, processes):
        out[name][seed] = runs
    return {name: [by_seed[seed] for seed in seeds] for name, by_seed in out.items()}

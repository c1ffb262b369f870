"""Lesson 06's experiment: the presets against Otsu's threshold on held-out slices.

The lesson states a claim about training ("the cpu preset halves the Rand error of a threshold
on held-out slices"); float rounding differs between processors and thread counts, so one run
proves little. :func:`train_and_score` is one function of a seed: the lesson calls it once and
shows the result, and ``tests/test_training_claims.py`` calls it at several seeds with torch at
1 and 2 threads and asserts the same claim every time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..baseline import threshold_segmentation
from ..data import synthetic_em
from ..metrics import pixel_error, rand_error
from ..presets import get_preset, train
from ..train import History, evaluate

__all__ = ["Split", "all_cell_scores", "em_split", "otsu_scores", "RunResult", "train_and_score",
           "LESSON06"]

#: The lesson-06 scale of each preset: small enough for a laptop CPU in seconds. The same
#: blocks with fewer channels and levels; the paper preset keeps valid padding, SGD 0.99 and
#: batch 1, but its small net has no dropout layer (dropout=0.0), unlike the paper's. The cpu
#: preset keeps batch norm here (its default is now instance norm): the claims were measured so.
LESSON06 = {
    "paper": dict(depth=3, base_channels=8, dropout=0.0, tile=124, lr=0.002),
    "cpu": dict(depth=3, base_channels=8, tile=128, norm="batch"),
}


@dataclass
class Split:
    """Training and held-out slices: images float32 (n, H, W), masks int64, instances int32."""

    train_images: np.ndarray
    train_masks: np.ndarray
    train_instances: np.ndarray
    test_images: np.ndarray
    test_masks: np.ndarray


def em_split(n_train: int = 4, n_test: int = 2, size: int = 256, seed: int = 0) -> Split:
    """``synthetic_em`` slices: the first ``n_train`` to train on, the last ``n_test`` held out."""
    images, masks, instances = synthetic_em(n_train + n_test, size=size, seed=seed)
    return Split(images[:n_train], masks[:n_train], instances[:n_train],
                 images[n_train:], masks[n_train:])


def otsu_scores(images, masks) -> dict[str, float]:
    """Mean pixel and Rand error of Otsu's threshold + morphology on the same images."""
    preds = [threshold_segmentation(im) for im in images]
    return {"pixel_error": float(np.mean([pixel_error(p, m) for p, m in zip(preds, masks)])),
            "rand_error": float(np.mean([rand_error(p, m) for p, m in zip(preds, masks)]))}


def all_cell_scores(masks) -> dict[str, float]:
    """Mean pixel and Rand error of calling every pixel "cell": the bar any method must clear.

    Where cells cover most of the image (about 80 % of an ISBI slice), this trivial answer
    already has a small pixel error, but its Rand error is near 1: it merges every cell.
    """
    preds = [np.ones_like(np.asarray(m)) for m in masks]
    return {"pixel_error": float(np.mean([pixel_error(p, m) for p, m in zip(preds, masks)])),
            "rand_error": float(np.mean([rand_error(p, m) for p, m in zip(preds, masks)]))}


@dataclass
class RunResult:
    """One training run: the trained net, its losses and held-out scores (None if it diverged)."""

    model: object
    history: History
    scores: dict[str, float] | None
    diverged_at: int | None = None

    @property
    def trained(self) -> bool:
        return self.scores is not None

    def beats(self, baseline: dict[str, float]) -> bool:
        """Trained, with lower pixel AND Rand error than ``baseline`` (e.g. :func:`otsu_scores`).

        The lessons' meaning of "learnt something useful".
        """
        return self.trained and all(self.scores[k] < baseline[k]
                                    for k in ("pixel_error", "rand_error"))


def train_and_score(preset: str, split: Split, steps: int, seed: int = 0,
                    **overrides) -> RunResult:
    """Train ``preset`` at its lesson-06 scale (plus ``overrides``) and score the held-out slices.

    A run whose loss becomes NaN or infinite is reported with ``diverged_at`` (the step) and no
    scores instead of raising, so a lesson can show it beside the runs that trained.
    """
    options = {**LESSON06.get(preset, {}), **overrides}
    p = get_preset(preset, **options)
    try:
        model, history = train(p, split.train_images, split.train_masks, split.train_instances,
                               steps=steps, seed=seed, progress=False)
    except FloatingPointError as err:
        return RunResult(None, err.history, None, diverged_at=err.step)
    return RunResult(model, history, evaluate(model, split.test_images, split.test_masks))

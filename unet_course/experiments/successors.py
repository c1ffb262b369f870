"""Lesson 10's experiment: U-Net and four successors, trained by one recipe and scored alike.

The four successors of :mod:`unet_course.variants` (attention gates, recurrent residual blocks,
both, nested skips) are each trained with exactly what the plain same-padded U-Net gets: the
same seed, the same tiles in the same order, the same optimiser, learning rate and number of
steps, and the same small widths. Each is then scored on the same held-out images.

Why an equal number of steps and not an equal wall-clock budget: a budget makes the result
depend on the processor (and on whatever else it runs), so a test could not rerun it. Each run
reports its own step time instead, so the reader can see what an equal budget would have given.

:func:`train_pruned_unetpp` trains UNet++ with deep supervision and scores the net pruned at
every level. ``tests/test_lesson_claims.py`` reruns :func:`compare_successors` at several seeds
and thread counts. Re-exported from :mod:`unet_course.experiments`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data import TileDataset
from ..memory import count_macs
from ..metrics import pixel_error, rand_error
from ..predict import predict_probabilities
from ..settings import seed_everything
from ..steps import batch_loss
from ..timing import best_time
from ..validation import positive_int
from ..variants import AttentionUNet, NestedUNet, R2AttUNet, R2UNet, ReferenceUNet
from ._pool import map_in_processes
from .training import em_split

__all__ = ["SUCCESSORS", "LESSON10", "build_successor", "train_successor", "train_by_recipe",
           "SuccessorRun",
           "compare_successors", "compare_on_splits", "PrunedScore", "train_pruned_unetpp", "lesson10_splits"]

#: The nets lesson 10 compares, by the name its table shows: (N, 1, H, W) -> (N, 2, H, W).
SUCCESSORS: dict[str, Callable[..., nn.Module]] = {
    "U-Net": ReferenceUNet,
    "Attention U-Net": AttentionUNet,
    "R2U-Net": R2UNet,
    "R2AttU-Net": R2AttUNet,
    "UNet++": NestedUNet,
}

#: Lesson 10's recipe per profile: tile edge (px), steps, batch size, Adam's learning rate,
#: depth and base_channels. Quick: the whole comparison (5 nets, 3 seeds, 2 data sets, 3600
#: steps in all) takes a few minutes on 2 CPU cores; full: wider and longer, for a GPU.
LESSON10 = {
    "quick": dict(tile=48, steps=120, batch_size=4, lr=3e-3, depth=2, base_channels=8),
    "full": dict(tile=128, steps=1500, batch_size=8, lr=1e-3, depth=4, base_channels=16),
}


def build_successor(name: str, depth: int = 2, base_channels: int = 8,
                    batch_norm: bool = True, deep_supervision: bool = False) -> nn.Module:
    """The net ``name`` of :data:`SUCCESSORS` for one gray channel and two classes.

    ``batch_norm`` (the variants' default) has a catch in the R2 nets: their recurrent unit
    applies one batch norm to t + 1 different inputs, so the running statistics used in
    evaluation average three distributions and fit none of them (lesson 10, section 3).
    ``deep_supervision`` (UNet++ only) adds a 1x1 head on every X[0, j].
    """
    if name not in SUCCESSORS:
        raise ValueError(f"unknown net {name!r}; choose one of {', '.join(SUCCESSORS)}")
    if deep_supervision and name != "UNet++":
        raise ValueError(f"deep_supervision exists for UNet++ only, not {name!r}")
    options = dict(deep_supervision=True) if deep_supervision else {}
    return SUCCESSORS[name](1, 2, depth, base_channels, batch_norm, **options)


def train_successor(name: str, images, masks, *, steps: int = 120, seed: int = 0, tile: int = 48,
                    batch_size: int = 4, lr: float = 3e-3, depth: int = 2, base_channels: int = 8,
                    batch_norm: bool = True,
                    deep_supervision: bool = False) -> tuple[nn.Module, float, float]:
    """Train the net ``name`` on random ``tile`` x ``tile`` crops of ``images`` with Adam.

    ``images`` float (n, H, W) in [0, 1], ``masks`` int (n, H, W), 1 = cell. ``seed`` fixes the
    initial weights and the tiles: item k of the tile sampler has its own generator seeded by
    (seed, k), so every net sees the same ``steps`` batches of ``batch_size`` tiles, whatever
    it draws from torch's generator on the way. Returns ``(model in eval mode, step time in
    seconds, tile checksum)``: the step time is the median over the steps after the first five
    (which allocate memory); the checksum is the sum of every input pixel trained on, equal for
    every net trained at one seed.
    """
    tile = positive_int(tile, "tile")

    def build() -> nn.Module:
        model = build_successor(name, depth, base_channels, batch_norm, deep_supervision)
        if model.valid_input_size(tile) != tile:
            raise ValueError(f"tile must be a multiple of 2**depth = {2**depth}, got {tile}; "
                             f"the nearest larger one is {model.valid_input_size(tile)}")
        return model

    return train_by_recipe(build, images, masks, steps=steps, seed=seed, tile=tile,
                           batch_size=batch_size, lr=lr)


def train_by_recipe(build: Callable[[], nn.Module], images, masks, *, steps: int, seed: int,
                    tile: int, batch_size: int, lr: float) -> tuple[nn.Module, float, float]:
    """Seed, ``build()`` a net and train it by lesson 10's recipe; what any net's comparison uses.

    Arguments and result as for :func:`train_successor`; ``build`` makes the net (after the
    seed is set, so the seed fixes its initial weights) and checks that ``tile`` fits it.
    Lesson 12 trains U-Net's neighbours with it.
    """
    steps, tile = positive_int(steps, "steps"), positive_int(tile, "tile")
    seed_everything(seed)  # before building: the initial weights depend on it
    model = build()
    data = TileDataset(images, masks, tile, tile, length=batch_size * steps, seed=seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    times, checksum = [], 0.0
    model.train()
    with torch.enable_grad():
        for x, y in torch.utils.data.DataLoader(data, batch_size=batch_size):
            checksum += float(x.double().sum())
            start = time.perf_counter()
            optimiser.zero_grad()
            batch_loss(model, x, y, None).backward()  # every head's loss with deep supervision
            optimiser.step()
            times.append(time.perf_counter() - start)
    step_time = statistics.median(times[5:] if len(times) > 5 else times)
    return model.eval(), step_time, checksum


def _inference_time(model: nn.Module, image: np.ndarray) -> float:
    """Best of three forward passes over one whole (H, W) image, in seconds."""
    x = torch.as_tensor(np.asarray(image, np.float32))[None, None]
    with torch.no_grad():
        return best_time(lambda: model(x), repeat=3, warmup=1)


def _scores(model: nn.Module, images, masks) -> tuple[float, float]:
    """Mean pixel and Rand error over held-out (H, W) images, each predicted whole."""
    probs = [predict_probabilities(model, image) for image in images]
    return (float(np.mean([pixel_error(p, m) for p, m in zip(probs, masks)])),
            float(np.mean([rand_error(p, m) for p, m in zip(probs, masks)])))


@dataclass
class SuccessorRun:
    """One net of lesson 10's comparison, trained at one seed and scored on held-out images.

    ``parameters`` count; ``macs`` multiply-accumulates of the convolutions for one training
    tile (:func:`~unet_course.memory.count_macs`); ``step_time`` seconds per training step
    (median); ``inference_time`` seconds for one forward pass over a held-out image (best of 3);
    ``pixel_error`` and ``rand_error`` means over the held-out images; ``tile_checksum`` the sum
    of the training tiles' pixels (the same for every net at one seed).
    """

    name: str
    seed: int
    model: nn.Module
    parameters: int
    macs: int
    step_time: float
    inference_time: float
    pixel_error: float
    rand_error: float
    tile_checksum: float


def _check_split(train_images, train_masks, test_images, test_masks) -> None:
    for what, images, masks in (("training", train_images, train_masks),
                                ("held-out", test_images, test_masks)):
        if len(images) == 0 or len(images) != len(masks):
            raise ValueError(f"{what} images and masks must be non-empty and as many, got "
                             f"{len(images)} images and {len(masks)} masks")


def compare_successors(train_images, train_masks, test_images, test_masks, seed: int = 0,
                       names: Sequence[str] | None = None, **recipe) -> dict[str, SuccessorRun]:
    """Train each net of ``names`` (default: all of :data:`SUCCESSORS`) by the same recipe.

    ``train_images`` / ``test_images`` float (n, H, W) in [0, 1], masks int (n, H, W) with
    1 = cell; held-out edges must be multiples of 2**depth (they are timed in one forward
    pass). ``recipe``: the keywords of :func:`train_successor` (default
    ``LESSON10["quick"]``). Returns ``{name: run}`` in the order of ``names``.
    """
    _check_split(train_images, train_masks, test_images, test_masks)
    recipe = {**LESSON10["quick"], **recipe}
    runs = {}
    for name in (SUCCESSORS if names is None else names):
        model, step_time, checksum = train_successor(name, train_images, train_masks,
                                                     seed=seed, **recipe)
        macs = sum(count_macs(model, recipe["tile"]).values())
        errors = _scores(model, test_images, test_masks)
        runs[name] = SuccessorRun(name, seed, model, sum(p.numel() for p in model.parameters()),
                                  macs, step_time, _inference_time(model, test_images[0]),
                                  *errors, checksum)
    return runs


def _compare_one(task: tuple) -> tuple[str, int, dict[str, SuccessorRun]]:
    data, split, seed, recipe = task
    return data, seed, compare_successors(*split, seed=seed, **recipe)


def compare_on_splits(splits: Mapping[str, tuple], seeds: Sequence[int] = (0, 1, 2),
                      processes: int = 2, **recipe) -> dict[str, dict[int, dict[str, SuccessorRun]]]:
    """:func:`compare_successors` for every (data set, seed): ``{data: {seed: runs}}``.

    The runs are independent, so they go to ``processes`` worker processes with one torch
    thread each (:func:`~unet_course.experiments._pool.map_in_processes`); the results do not
    depend on ``processes``. Step and inference times are those of one core.
    """
    tasks = [(data, split, seed, recipe) for data, split in splits.items() for seed in seeds]
    out: dict[str, dict[int, dict[str, SuccessorRun]]] = {data: {} for data in splits}
    for data, seed, runs in map_in_processes(_compare_one, tasks, processes):
        out[data][seed] = runs
    return out


@dataclass
class PrunedScore:
    """UNet++ pruned at ``level`` L (only nodes X[i, j] with i + j <= L are computed).

    ``macs`` per training tile; ``inference_time`` seconds per forward pass over a held-out
    image; ``pixel_error`` and ``rand_error`` means over the held-out images.
    """

    level: int
    macs: int
    inference_time: float
    pixel_error: float
    rand_error: float


def train_pruned_unetpp(train_images, train_masks, test_images, test_masks, seed: int = 0,
                        **recipe) -> tuple[nn.Module, list[PrunedScore]]:
    """Train UNet++ with deep supervision by lesson 10's recipe and score it pruned at each L.

    Arguments as for :func:`compare_successors`. Returns the net (``prune`` reset to its depth)
    and one :class:`PrunedScore` per level L = 1..depth, shallowest first.
    """
    _check_split(train_images, train_masks, test_images, test_masks)
    recipe = {**LESSON10["quick"], **recipe}
    model, _, _ = train_successor("UNet++", train_images, train_masks, seed=seed,
                                  deep_supervision=True, **recipe)
    scores = []
    try:
        for level in range(1, model.depth + 1):
            model.prune = level
            scores.append(PrunedScore(level, sum(count_macs(model, recipe["tile"]).values()),
                                      _inference_time(model, test_images[0]),
                                      *_scores(model, test_images, test_masks)))
    finally:
        model.prune = model.depth
    return model, scores


def lesson10_splits(isbi_images, isbi_masks) -> dict[str, tuple[np.ndarray, ...]]:
    """Lesson 10's two data sets: ``{name: (train_images, train_masks, test_images, test_masks)}``.

    "synthetic EM": four 256-px slices of :func:`~unet_course.data.synthetic_em` to train on
    and two held out (lesson 06's split). "ISBI 2012": ``isbi_images`` / ``isbi_masks``
    (30, 512, 512), e.g. ``ISBI2012().images``: slices 0-23 to train on (whole) and the centre
    256 x 256 of slices 24-29 held out, as lesson 09 splits them; the crops keep scoring cheap.
    """
    if len(isbi_images) != 30 or len(isbi_masks) != 30:
        raise ValueError(f"expected the 30 ISBI 2012 slices and labels, got {len(isbi_images)} "
                         f"and {len(isbi_masks)}")
    synthetic = em_split(n_train=4, n_test=2, size=256, seed=0)
    centre = (slice(None), slice(128, 384), slice(128, 384))
    return {
        "synthetic EM": (synthetic.train_images, synthetic.train_masks,
                         synthetic.test_images, synthetic.test_masks),
        "ISBI 2012": (np.asarray(isbi_images[:24]), np.asarray(isbi_masks[:24]),
                      np.asarray(isbi_images[24:])[centre], np.asarray(isbi_masks[24:])[centre]),
    }

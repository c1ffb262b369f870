"""Lesson 14's experiment: each modality alone, all of them fused early or late, one missing.

The data are :func:`~unet_course.data.multimodal.multimodal_cells`: three channels that each
show part of the target. Every *arm* (:data:`ARMS`) is a small same-padded U-Net trained by one
recipe on the same tiles of the same training scenes, and scored by the Dice coefficient of
the target on held-out scenes:

* ``"outline"``, ``"uptake"``, ``"noisy"``: a :class:`~unet_course.model.UNet` given that one
  channel;
* ``"early"``: a :class:`~unet_course.model.UNet` given all three channels as one image
  (early fusion);
* ``"late"``: a :class:`~unet_course.fusion.LateFusionUNet`, one contracting path per channel
  (late fusion);
* ``"early + dropout"``: the early-fusion net trained with
  :class:`~unet_course.augment.ModalityDropout` (one random channel of half the tiles replaced
  by its training mean).

Every net given all three channels is also scored with each channel in turn *missing*:
replaced by its mean over the training scenes (what a pipeline would feed in its place), and
replaced by zeros. Each arm is a function of its seed alone (the seed sets the initial weights
and the tiles: item k of the tile sampler has its own generator seeded by (seed, k), so every
arm sees the same tiles in the same order), which lets :func:`compare_modalities` run the arms
in parallel processes and the lesson's claims be rerun at several seeds and thread counts.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..augment import ModalityDropout
from ..data import TileDataset
from ..data.multimodal import MODALITIES, multimodal_cells
from ..fusion import LateFusionUNet
from ..metrics import dice
from ..model import UNet
from ..settings import seed_everything
from ..steps import batch_loss
from ._pool import map_in_processes

__all__ = ["ARMS", "LESSON14", "ArmRun", "ModalitySplit", "build_arm", "compare_modalities",
           "modality_split", "run_arm", "score_dice", "train_arm"]

#: The nets lesson 14 compares: name -> (net, the channels it is given, modality dropout).
ARMS: dict[str, tuple[str, tuple[int, ...], bool]] = {
    **{name: ("unet", (k,), False) for k, name in enumerate(MODALITIES)},
    "early": ("unet", (0, 1, 2), False),
    "late": ("late", (0, 1, 2), False),
    "early + dropout": ("unet", (0, 1, 2), True),
}

#: Lesson 14's recipe per profile: scenes, their edge (px), steps, tile edge (px), batch, Adam's
#: learning rate, the nets' depth and width, and the share of tiles with one modality hidden.
LESSON14 = {
    "quick": dict(train=12, test=6, size=128, steps=120, tile=56, batch_size=4, lr=5e-3,
                  depth=3, base_channels=8, dropout_p=0.5),
    "full": dict(train=48, test=16, size=256, steps=1500, tile=128, batch_size=8, lr=1e-3,
                 depth=4, base_channels=16, dropout_p=0.5),
}

_TRAIN_SEED, _TEST_SEED = 0, 1000  # the scenes are fixed; the arms' seeds vary the training


@dataclass
class ModalitySplit:
    """Training and held-out scenes: images float32 (n, 3, H, W), masks int64 (n, H, W), and
    ``means``, each channel's mean over the training images (the fill of a missing one)."""

    train_images: np.ndarray
    train_masks: np.ndarray
    test_images: np.ndarray
    test_masks: np.ndarray
    means: tuple[float, ...] = ()


def modality_split(train: int = 12, test: int = 6, size: int = 128) -> ModalitySplit:
    """``train`` and ``test`` scenes of :func:`multimodal_cells`, from two fixed seeds."""
    train_images, train_masks = multimodal_cells(train, size=size, seed=_TRAIN_SEED)
    test_images, test_masks = multimodal_cells(test, size=size, seed=_TEST_SEED)
    means = tuple(float(m) for m in train_images.mean(axis=(0, 2, 3)))
    return ModalitySplit(train_images, train_masks, test_images, test_masks, means)


def build_arm(name: str, depth: int = 3, base_channels: int = 8) -> nn.Module:
    """The untrained net of arm ``name``: same padding, batch norm, no dropout layer."""
    if name not in ARMS:
        raise ValueError(f"unknown arm {name!r}; choose one of {', '.join(ARMS)}")
    kind, channels, _ = ARMS[name]
    net = UNet if kind == "unet" else LateFusionUNet
    return net(len(channels), 2, depth, base_channels, padding="same", batch_norm=True,
               dropout=0.0)


def train_arm(name: str, split: ModalitySplit, *, seed: int = 0, steps: int = 120,
              tile: int = 56, batch_size: int = 4, lr: float = 5e-3, depth: int = 3,
              base_channels: int = 8, dropout_p: float = 0.5,
              **_: object) -> tuple[nn.Module, float, int]:
    """Train arm ``name`` with Adam on ``steps`` batches of random ``tile`` x ``tile`` crops.

    Returns ``(model in eval mode, median step time in seconds, target checksum)``; the
    checksum counts the target pixels trained on, equal for every arm at one seed.
    """
    _, channels, hide = ARMS[name]
    seed_everything(seed)  # before building: the initial weights depend on it
    model = build_arm(name, depth, base_channels)
    images = split.train_images[:, list(channels)]
    augment = ModalityDropout(dropout_p, fill=split.means) if hide else None
    data = TileDataset(images, split.train_masks, tile, tile, augment=augment,
                       length=batch_size * steps, seed=seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    times, checksum = [], 0
    model.train()
    with torch.enable_grad():
        for x, y in torch.utils.data.DataLoader(data, batch_size=batch_size):
            checksum += int(y.sum())
            start = time.perf_counter()
            optimiser.zero_grad()
            batch_loss(model, x, y, None).backward()
            optimiser.step()
            times.append(time.perf_counter() - start)
    return model.eval(), statistics.median(times[5:] or times), checksum


def score_dice(model: nn.Module, images: np.ndarray, masks: np.ndarray,
               missing: int | None = None, fill: float = 0.0) -> float:
    """Mean Dice of the target over ``images`` (n, C, H, W), each predicted whole.

    ``missing``: the channel to replace by the constant ``fill`` before predicting (a missing
    modality), or None. H and W must be multiples of 2**depth (one forward pass per batch).
    """
    x = torch.as_tensor(np.array(images, dtype=np.float32))
    if missing is not None:
        x[:, missing] = fill
    with torch.no_grad():
        prob = torch.softmax(model(x), dim=1)[:, 1].numpy()
    return float(np.mean([dice(p, m) for p, m in zip(prob, masks)]))


@dataclass
class ArmRun:
    """One arm trained at one seed: ``dice`` on the held-out scenes with every channel it was
    trained on; for the nets given all channels, ``missing_mean[m]`` and ``missing_zero[m]``,
    the Dice with modality ``m`` replaced by its training mean or by zeros."""

    name: str
    seed: int
    model: nn.Module
    parameters: int
    step_time: float
    checksum: int
    dice: float
    missing_mean: dict[str, float] = field(default_factory=dict)
    missing_zero: dict[str, float] = field(default_factory=dict)


def run_arm(name: str, split: ModalitySplit, seed: int = 0, **recipe) -> ArmRun:
    """Train arm ``name`` at ``seed`` (:func:`train_arm`) and score it, with every channel and
    with each channel missing (for the nets given all three)."""
    recipe = {**LESSON14["quick"], **recipe}
    model, step_time, checksum = train_arm(name, split, seed=seed, **recipe)
    channels = list(ARMS[name][1])
    images = split.test_images[:, channels]
    run = ArmRun(name, seed, model, sum(p.numel() for p in model.parameters()), step_time,
                 checksum, score_dice(model, images, split.test_masks))
    if len(channels) > 1:
        for k, modality in enumerate(MODALITIES):
            run.missing_mean[modality] = score_dice(model, images, split.test_masks, k,
                                                    split.means[k])
            run.missing_zero[modality] = score_dice(model, images, split.test_masks, k, 0.0)
    return run


def _run_task(task: tuple) -> ArmRun:
    name, split, seed, recipe = task
    return run_arm(name, split, seed, **recipe)


def compare_modalities(split: ModalitySplit, seeds: Sequence[int] = (0,),
                       arms: Sequence[str] | None = None, processes: int = 2,
                       **recipe) -> dict[int, dict[str, ArmRun]]:
    """Every arm of ``arms`` (default: all of :data:`ARMS`) at every seed: ``{seed: {arm: run}}``.

    ``recipe``: the keywords of :func:`train_arm` (default ``LESSON14["quick"]``). The runs are
    independent and go to ``processes`` worker processes with one torch thread each; the
    results do not depend on ``processes``.
    """
    recipe = {**LESSON14["quick"], **recipe}
    names = list(ARMS if arms is None else arms)
    unknown = [n for n in names if n not in ARMS]
    if unknown:
        raise ValueError(f"unknown arms {unknown}; choose from {', '.join(ARMS)}")
    tasks = [(name, split, seed, recipe) for seed in seeds for name in names]
    out: dict[int, dict[str, ArmRun]] = {seed: {} for seed in seeds}
    for run in map_in_processes(_run_task, tasks, processes):
        out[run.seed][run.name] = run
    return out

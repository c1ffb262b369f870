"""Lesson 12's experiments: U-Net among its neighbours, and the alignment of coarse grids.

:func:`compare_neighbours` trains the course's same-padded U-Net (the ``cpu`` preset's net at
the same width) and the five nets of :mod:`unet_course.neighbours` by one recipe, lesson
10's: :func:`~unet_course.experiments.successors.train_by_recipe` gives every net the same
seed, the same tiles in the same order, Adam with the same learning rate and the same number
of steps. Each is scored on the same held-out images, reported as lesson 10's
:class:`~unet_course.experiments.successors.SuccessorRun` (parameters, MACs per tile,
seconds per step and per inference, pixel and Rand error). :func:`neighbours_at_seed` does
it on ISBI 2012 for one seed, in a form :func:`map_in_processes` can send to a worker.

:func:`line_shifts` measures, on a tensor, what DeepLab's "alignment rules" are for: how far
a one-pixel line moves when a map is downsampled and upsampled back with conventions that
do or do not agree on where a coarse pixel sits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..memory import count_macs
from ..neighbours import NEIGHBOURS, build_neighbour
from ..presets import get_preset
from ..validation import positive_int
from .successors import (
    SuccessorRun,
    _check_split,
    _inference_time,
    _scores,
    lesson10_splits,
    train_by_recipe,
)

__all__ = ["NETS", "LESSON12", "NeighbourRun", "build_net", "compare_neighbours",
           "isbi_split", "neighbours_at_seed", "line_shifts"]

#: The six nets lesson 12 compares, in the order of its tables.
NETS = ("U-Net", *NEIGHBOURS)

#: One recipe for all six, per profile: tile edge (px, a multiple of 32, which every net
#: takes), steps, batch size, Adam's learning rate and the top width. Quick: the six nets at
#: one seed train and are scored in about 40 s of one CPU core; full: wider and longer, for
#: a GPU. 128-px tiles give the stride-32 nets a 4 x 4 map at the bottom; at the same pixels
#: per step, 64-px tiles (batch 4) left every net noisier and U-Net no better than FPN.
LESSON12 = {
    "quick": dict(tile=128, steps=150, batch_size=2, lr=3e-3, base_channels=8),
    "full": dict(tile=256, steps=2000, batch_size=8, lr=1e-3, base_channels=32),
}

#: A run of lesson 12 is a run of lesson 10: the same fields, the same meaning.
NeighbourRun = SuccessorRun


def build_net(name: str, base_channels: int = 8) -> nn.Module:
    """One of :data:`NETS` for one gray channel and two classes, freshly initialised.

    ``"U-Net"`` is the course's :class:`~unet_course.UNet` as the ``cpu`` preset builds it
    (depth 4, same padding, batch norm, 2x2 up-convolutions, no dropout) at this width; the
    others come from :func:`~unet_course.neighbours.build_neighbour`.
    """
    if name == "U-Net":
        # batch norm, as every neighbour here has (the preset's default is now instance norm)
        return get_preset("cpu", base_channels=base_channels, norm="batch").model(1, 2)
    if name not in NEIGHBOURS:
        raise ValueError(f"unknown net {name!r}; choose one of {', '.join(NETS)}")
    return build_neighbour(name, 1, 2, base_channels)


def _fitting(name: str, tile: int, base_channels: int):
    def build() -> nn.Module:
        model = build_net(name, base_channels)
        if model.valid_input_size(tile) != tile:
            raise ValueError(f"{name} cannot take {tile}-pixel tiles; the nearest larger edge "
                             f"it takes is {model.valid_input_size(tile)}")
        return model
    return build


def compare_neighbours(train_images, train_masks, test_images, test_masks, seed: int = 0,
                       names: Sequence[str] | None = None, **recipe) -> dict[str, SuccessorRun]:
    """Train each net of ``names`` (default :data:`NETS`) by one recipe and score it.

    ``train_images`` / ``test_images`` float (n, H, W) in [0, 1], masks int (n, H, W) with
    1 = cell; held-out edges must be multiples of 32 (each net is timed on one whole image).
    ``recipe``: ``tile``, ``steps``, ``batch_size``, ``lr``, ``base_channels`` (default
    ``LESSON12["quick"]``). Held-out images are predicted whole, mirror-extrapolated at the
    borders (:func:`~unet_course.predict.predict_probabilities`). Returns ``{name: run}``.
    """
    _check_split(train_images, train_masks, test_images, test_masks)
    recipe = {**LESSON12["quick"], **recipe}
    base, tile = recipe.pop("base_channels"), recipe["tile"]
    runs = {}
    for name in (NETS if names is None else names):
        model, step_time, checksum = train_by_recipe(_fitting(name, tile, base), train_images,
                                                     train_masks, seed=seed, **recipe)
        runs[name] = SuccessorRun(
            name, seed, model, sum(p.numel() for p in model.parameters()),
            sum(count_macs(model, tile).values()), step_time,
            _inference_time(model, test_images[0]), *_scores(model, test_images, test_masks),
            checksum)
    return runs


def isbi_split(images, masks) -> tuple[np.ndarray, ...]:
    """Lesson 09's ISBI 2012 split, as lesson 10 uses it: slices 0-23 to train on, the centre
    256 x 256 of slices 24-29 held out. ``images``, ``masks``: the 30 slices (30, 512, 512)."""
    return lesson10_splits(images, masks)["ISBI 2012"]


def neighbours_at_seed(task: int | tuple[int, dict]) -> dict[str, SuccessorRun]:
    """:func:`compare_neighbours` on ISBI 2012 (:func:`isbi_split`) at one seed.

    ``task``: a seed, or ``(seed, recipe)``. The data is read here from the data folder
    (:class:`~unet_course.data.ISBI2012`), so that a worker process of
    :func:`~unet_course.experiments.map_in_processes` is sent two numbers, not 40 MB.
    """
    from ..data import ISBI2012  # here, so that importing this module reads no files

    seed, recipe = (task, {}) if isinstance(task, int) else task
    isbi = ISBI2012()
    return compare_neighbours(*isbi_split(isbi.images, isbi.masks), seed=seed, **recipe)


def line_shifts(size: int, stride: int, kernel: int, align_corners: bool,
                columns: Sequence[int]) -> np.ndarray:
    """How far (px) a one-pixel vertical line moves when a map goes down by ``stride`` and up.

    For each column c of ``columns``, an image (size x size) of zeros with ones in column c is
    downsampled log2(``stride``) times by average pooling with stride 2 and then upsampled
    back to ``size`` x ``size`` in one bilinear interpolation with ``align_corners``. The
    result is the centre of mass of the upsampled image along x minus c, in float64.

    ``kernel`` 2: 2x2 windows, a coarse pixel sits *between* the 2 x 2 pixels it averages
    (U-Net's pooling). ``kernel`` 3: 3x3 windows padded by 1 (padding not counted), a coarse
    pixel sits *on* the input pixel at its centre (odd kernels with "same" padding).
    Average pooling stands in for a net's downsampling: it is linear, so the centre of mass
    says exactly where the line went. Within one coarse pixel the shift depends on where the
    line falls, since the coarse grid cannot tell those positions apart; averaged over the
    ``stride`` positions of one coarse pixel it is the grid's systematic shift, 0 when the
    conventions agree. Returns float64 (len(columns),).
    """
    size, stride = positive_int(size, "size"), positive_int(stride, "stride")
    if stride & (stride - 1):
        raise ValueError(f"stride must be a power of 2, got {stride}")
    if kernel not in (2, 3):
        raise ValueError(f"kernel must be 2 (even windows) or 3 (odd, padded), got {kernel!r}")
    columns = [int(c) for c in columns]
    if not columns or min(columns) < 0 or max(columns) >= size:
        raise ValueError(f"columns must be inside the image (0..{size - 1}), got {columns}")
    x = torch.zeros(len(columns), 1, size, size, dtype=torch.float64)
    for i, c in enumerate(columns):
        x[i, 0, :, c] = 1
    for _ in range(int(math.log2(stride))):
        x = (F.avg_pool2d(x, 2) if kernel == 2 else
             F.avg_pool2d(x, 3, 2, 1, count_include_pad=False))
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=align_corners)
    profile = x[:, 0].sum(1)  # (lines, size): the mass in every column
    where = (profile * torch.arange(size, dtype=torch.float64)).sum(1) / profile.sum(1)
    return (where - torch.tensor(columns, dtype=torch.float64)).numpy()

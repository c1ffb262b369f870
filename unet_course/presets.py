"""Training recipes, named: the paper's, and the one this course recommends on a CPU.

A :class:`Preset` gathers every choice that decides how a U-Net is trained: the network's
shape, the tiles, the augmentation, the loss and the optimiser. Two are built in:

* ``paper``: Ronneberger et al. 2015 as written. Valid 3x3 convolutions, 572 x 572 input
  tiles (388 x 388 of them labelled), batch 1, SGD with momentum 0.99, the weight map
  (w0 = 10, sigma = 5 px), elastic deformation on a 3 x 3 grid with sigma 10 px, dropout
  at the end of the contracting path. The paper gives no learning rate; 0.001 is the largest
  of those we measured that did not diverge on ISBI 2012 (0.01 gives a NaN loss there).
* ``cpu``: what measurements on 2 CPU cores chose (lesson 06 shows them). The same U-Net
  parts with three changes. *Same* padding: every pixel of a tile gets a label, so a 256 x 256
  tile supervises 65k pixels instead of the 196 x 196 = 38k centre of a 380 tile, and there
  is no margin to compute and throw away. *Batch norm* after each convolution. *Adam* with a
  polynomial decay instead of SGD with momentum 0.99, whose effective step lr / (1 - m) = 100 lr
  sits so close to divergence that float rounding decides whether a short run trains.
  Narrower (base 16), flips and 90-degree rotations on top of the elastic deformation.
  *Instance norm* (``norm="instance"``) rather than batch norm: with one tile per step, batch
  norm trains on that one tile's statistics but predicts with running averages over many
  tiles; instance norm normalises every tile by its own statistics in training and prediction
  alike. At an equal 4-minute budget on ISBI 2012 it made the held-out Rand error about a third
  smaller (``benchmarks/isbi_budget.py``; lesson 09 shows the numbers). Lessons 06, 09, 12 and
  13 pass ``norm="batch"``: their claims were measured with the earlier default.

Use :func:`train` to run one on arrays, or ``python -m unet_course train --preset NAME``.
Change any field with :func:`dataclasses.replace` or keyword overrides:
``train("cpu", images, masks, steps=500, base_channels=8)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi

from .augment import Compose, ElasticDeform, RandomFlip
from .data import TileDataset
from .model import UNet
from .train import History, fit
from .weights import unet_weight_map

__all__ = ["Preset", "PRESETS", "get_preset", "default_preset", "train"]


@dataclass(frozen=True)
class Preset:
    """One training recipe. Read by attribute; change with ``dataclasses.replace``."""

    name: str
    # the network (see UNet)
    depth: int = 4
    base_channels: int = 64
    padding: str = "valid"
    batch_norm: bool = False
    norm: str = "batch"  # the layer batch_norm inserts: "batch" or "instance"
    dropout: float = 0.5
    # the tiles: input edge in pixels (rounded up to a valid size), tiles per step
    tile: int = 572
    batch_size: int = 1
    # augmentation: the paper's elastic deformation; flips and 90-degree rotations
    elastic: bool = True
    flips: bool = False
    # the loss: the paper's weight map (w0, sigma in px) or plain cross-entropy
    weight_map: bool = True
    w0: float = 10.0
    sigma: float = 5.0
    # the optimiser
    optimizer: str = "sgd"
    lr: float = 0.001
    momentum: float = 0.99
    warmup: int = 0
    grad_clip: float | None = None
    lr_schedule: str = "constant"

    def model(self, in_channels: int = 1, num_classes: int = 2) -> UNet:
        """A freshly initialised :class:`UNet` of this preset's shape."""
        return UNet(in_channels=in_channels, num_classes=num_classes, depth=self.depth,
                    base_channels=self.base_channels, padding=self.padding,
                    batch_norm=self.batch_norm, dropout=self.dropout, norm=self.norm)

    def augmentation(self):
        """The augmentation callable for :class:`TileDataset`, or None."""
        parts = ([RandomFlip()] if self.flips else []) + ([ElasticDeform()] if self.elastic else [])
        return Compose(parts) if parts else None

    def weight_maps(self, masks: Sequence[np.ndarray], instances: Sequence[np.ndarray] | None):
        """One weight map (H, W) float32 per image, or None for plain cross-entropy.

        Without instance labels the cells are the connected components of class 1 (how the
        ISBI 2012 labels are used); with more than two classes the preset trains unweighted.
        """
        if not self.weight_map:
            return None
        if instances is None:
            if any(int(np.max(m)) > 1 for m in masks):
                return None
            instances = [ndi.label(np.asarray(m) == 1)[0] for m in masks]
        return [unet_weight_map(i, w0=self.w0, sigma=self.sigma) for i in instances]

    def fit_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`fit` that this preset sets."""
        return dict(optimizer=self.optimizer, lr=self.lr, momentum=self.momentum,
                    batch_size=self.batch_size, warmup=self.warmup, grad_clip=self.grad_clip,
                    lr_schedule=self.lr_schedule)


PRESETS: dict[str, Preset] = {
    "paper": Preset(name="paper"),
    "cpu": Preset(name="cpu", base_channels=16, padding="same", batch_norm=True, norm="instance",
                  dropout=0.0,
                  tile=256, batch_size=1, flips=True, optimizer="adam", lr=0.002,
                  lr_schedule="poly"),
}


def get_preset(preset: str | Preset, **overrides: Any) -> Preset:
    """The preset called ``preset`` (or the one given) with ``overrides`` applied."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    if not isinstance(preset, Preset):
        raise TypeError(f"preset must be a name or a Preset, got {type(preset).__name__}")
    fields = {f.name for f in dataclasses.fields(Preset)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(f"Preset has no field {', '.join(unknown)}; fields: {', '.join(sorted(fields))}")
    return dataclasses.replace(preset, **overrides)


def default_preset() -> str:
    """``"paper"`` with CUDA, where its 572 tiles are affordable; ``"cpu"`` otherwise."""
    return "paper" if torch.cuda.is_available() else "cpu"


def train(
    preset: str | Preset,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    instances: Sequence[np.ndarray] | None = None,
    *,
    steps: int = 1000,
    time_budget: float | None = None,
    seed: int = 0,
    num_classes: int | None = None,
    val_data: tuple[Sequence[Any], Sequence[Any]] | None = None,
    val_every: int | None = None,
    checkpoint_dir: str | None = None,
    checkpoint_every: int | None = None,
    resume: str | None = None,
    normalize: str | None = None,
    modalities: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
    **overrides: Any,
) -> tuple[UNet, History]:
    """Build the preset's network and tiles from ``images`` and ``masks``, then :func:`fit`.

    ``images``: (H, W) or (C, H, W) float arrays in [0, 1]; ``masks``: (H, W) class indices;
    ``instances``: optional (H, W) instance ids for the weight map. ``steps`` optimisation
    steps, or fewer if ``time_budget`` (seconds) runs out first. The network is built after
    seeding, so the same ``seed`` gives the same weights and tiles. ``normalize``: the intensity
    normalisation ``images`` went through (``"minmax"``, ``"zscore"``, ``"none"``; see
    :func:`unet_course.imageio.prepare_image`), stored in every checkpoint so that ``predict``
    prepares an image the same way; None stores nothing. ``modalities``: the names of the
    images' channels in order, one per channel, kept as ``model.modalities`` and stored in
    every checkpoint (``predict`` checks a new image's files against them). Returns (model,
    history), the model in eval mode.
    """
    p = get_preset(preset, **overrides)
    if len(images) == 0 or len(images) != len(masks):
        raise ValueError(f"train needs as many masks as images, at least one: got {len(images)} "
                         f"images and {len(masks)} masks")
    if instances is not None and len(instances) != len(images):
        raise ValueError(f"instances must hold one label image per image: got {len(instances)} "
                         f"for {len(images)} images (or pass None to label the masks' components)")
    torch.manual_seed(seed)  # weights first: the same seed, the same initial network
    first = np.asarray(images[0])
    in_channels = 1 if first.ndim == 2 else first.shape[0]
    if num_classes is None:
        num_classes = max(2, 1 + max(int(np.max(m)) for m in masks))
    model = p.model(in_channels, num_classes)
    if modalities is not None:
        names = tuple(str(m) for m in modalities)
        if len(names) != in_channels or len(set(names)) != len(names):
            raise ValueError(f"modalities must name each of the images' {in_channels} "
                             f"channel(s) once, got {list(names)}")
        model.modalities = names
    tile = model.valid_input_size(p.tile)
    dataset = TileDataset(images, masks, tile, model.output_size(tile),
                          weight_maps=p.weight_maps(masks, instances),
                          augment=p.augmentation(), seed=seed,
                          length=min(steps, 10_000) * p.batch_size)  # set_epoch: new tiles
    history = fit(model, dataset, val_data, steps=steps, time_budget=time_budget, seed=seed,
                  val_every=val_every, checkpoint_dir=checkpoint_dir,
                  checkpoint_every=checkpoint_every, resume=resume, normalize=normalize,
                  device=device, progress=progress, callbacks=callbacks, **p.fit_options())
    return model, history

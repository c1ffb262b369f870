"""Lesson 04's experiment: what does augmentation buy a net that sees only two training images?

The same small valid U-Net, seed and steps are trained with each of :func:`lesson04_arms`' tile
augmentations (none; the paper's elastic deformation at the paper's scale; flips and rotations)
and each is scored on fixed tiles of its training images and of held-out ones: the gap between
the two errors is how much the net overfits. ``tests/test_lesson_claims.py`` reruns it at
several seeds and thread counts. Re-exported from :mod:`unet_course.experiments`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..augment import Compose, ElasticDeform, RandomFlip, RandomRotation
from ..data import TileDataset
from ..model import UNet
from ..settings import seed_everything

__all__ = ["TileScore", "DeformationRun", "train_tile_net", "tile_pixel_error",
           "compare_deformation", "lesson04_arms"]


@dataclass
class TileScore:
    """Pixel error of a valid net on a fixed set of tiles, with the tiles and its predictions.

    ``inputs`` float32 (tiles, 1, in, in), ``targets`` and ``predictions`` int64 (tiles, out, out).
    """

    error: float
    inputs: torch.Tensor
    targets: torch.Tensor
    predictions: torch.Tensor


def train_tile_net(images, masks, augment: Callable | None = None, steps: int = 200,
                   seed: int = 0, *, tile: int = 92, depth: int = 2, base_channels: int = 16,
                   batch_size: int = 4, lr: float = 3e-3, padding: str = "valid",
                   build: Callable[[], torch.nn.Module] | None = None) -> UNet:
    """Lesson 04's net: a small U-Net (valid unless ``padding="same"``, as lesson 03 trains one)
    trained with Adam on random tiles of ``images``.

    Each of the ``steps`` batches holds ``batch_size`` tiles from :class:`TileDataset`, input
    edge ``model.valid_input_size(tile)``, passed through ``augment`` (None: no augmentation);
    the loss is plain cross-entropy. ``seed`` sets the initial weights and the tiles (which
    image, where, and the augmentation's random numbers). ``build``, if given, makes the net
    instead of ``UNet(depth, base_channels, padding)``. Trains on the CPU and returns the net
    in evaluation mode.
    """
    seed_everything(seed)
    # `build` (lesson 02's skip experiment) makes another net, after the same seeding
    model = build() if build else UNet(depth=depth, base_channels=base_channels, padding=padding)
    n_in = model.valid_input_size(tile)
    data = TileDataset(images, masks, n_in, model.output_size(n_in), augment=augment,
                       length=batch_size * steps, seed=seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.enable_grad():  # also where a lesson turned autograd off for its forward passes
        for x, y in torch.utils.data.DataLoader(data, batch_size=batch_size):
            optimiser.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimiser.step()
    return model.eval()


def tile_pixel_error(model: UNet, images, masks, input_size: int, tiles: int = 48,
                     seed: int = 123) -> TileScore:
    """Pixel error of ``model`` (in evaluation mode) on ``tiles`` tiles drawn from ``images``.

    The tiles depend only on the images, ``input_size`` and ``seed``, so every net is scored on
    the same ones. Not the package's :func:`~unet_course.metrics.pixel_error` of one label map:
    this one runs the net on a batch of tiles first.
    """
    data = TileDataset(images, masks, input_size, model.output_size(input_size), length=tiles,
                       seed=seed)
    x = torch.stack([data[k][0] for k in range(tiles)])
    y = torch.stack([data[k][1] for k in range(tiles)])
    with torch.no_grad():
        pred = model(x).argmax(1)
    return TileScore((pred != y).float().mean().item(), x, y, pred)


@dataclass
class DeformationRun:
    """One arm of lesson 04's experiment: the trained net, its input edge and its two scores."""

    model: UNet
    input_size: int
    train: TileScore
    held_out: TileScore

    @property
    def gap(self) -> float:
        """Held-out minus training pixel error: how much the net overfits its training images."""
        return self.held_out.error - self.train.error


def lesson04_arms() -> dict[str, Callable | None]:
    """The three tile augmentations lesson 04 compares, fresh objects each call.

    ``"elastic deformation"`` is the paper's 3 x 3 grid with sigma 10 px at the paper's scale:
    ``image_size=512``, the ISBI slices' edge, so a 92-pixel tile is stretched as much per pixel
    as a 512-pixel image (sigma about 1.8 px on the tile) and never folds.
    ``"flips and rotations"`` is the 8 flips and quarter turns plus a rotation by any angle.
    """
    return {
        "no augmentation": None,
        "elastic deformation": ElasticDeform(grid=3, sigma=10.0, image_size=512),
        "flips and rotations": Compose([RandomFlip(), RandomRotation(degrees=180.0)]),
    }


def compare_deformation(train_images, train_masks, test_images, test_masks, steps: int = 200,
                        seed: int = 0, tile: int = 92, arms: dict | None = None,
                        **options) -> dict[str, DeformationRun]:
    """Lesson 04's controlled experiment: the same net, seed and steps with each augmentation of
    ``arms`` (default :func:`lesson04_arms`) in the tile sampler, each net scored on tiles of
    the training images and of held-out images.

    Returns ``{arm name: run}`` in the order of ``arms``; ``options`` (depth, base_channels,
    batch_size, lr) go to :func:`train_tile_net`.
    """
    runs = {}
    for name, augment in (lesson04_arms() if arms is None else arms).items():
        model = train_tile_net(train_images, train_masks, augment, steps, seed, tile=tile,
                               **options)
        n_in = model.valid_input_size(tile)
        runs[name] = DeformationRun(model, n_in,
                                    tile_pixel_error(model, train_images, train_masks, n_in),
                                    tile_pixel_error(model, test_images, test_masks, n_in))
    return runs

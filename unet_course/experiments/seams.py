"""Lesson 03's experiment: a *trained* zero-padded U-Net, tile by tile, and the seams in its labels.

Section 6 of lesson 03 shows the seams of naive tiles on the logits of an untrained net. Here a
small same-padded net is trained (lesson 04's loop, :func:`train_tile_net`) and one held-out
slice is segmented four ways: in one pass, in naive tiles, in overlapping windows whose logits
are averaged (what MONAI's ``sliding_window_inference`` does with ``mode="constant"``), and
with the package's halo. Each way is compared, label by label, with the one pass it should
reproduce. ``tests/test_lesson_claims.py`` reruns it at several seeds and thread counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data import synthetic_em
from ..mirror import mirror_pad
from ..model import UNet
from ..predict import predict_tiled
from .deformation import train_tile_net

__all__ = ["SeamRun", "predict_averaged", "seam_distance", "tiled_seams"]


def seam_distance(n: int, tile: int) -> np.ndarray:
    """Distance (pixels) of positions 0..n-1 to the nearest border between tiles of ``tile``."""
    idx, seams = np.arange(n)[:, None], np.arange(tile, n, tile)[None, :]
    if seams.size == 0:
        return np.full(n, n, dtype=np.int64)
    return np.where(idx < seams, seams - 1 - idx, idx - seams).min(axis=1)


def predict_averaged(net: UNet, image: torch.Tensor, window: int, step: int) -> torch.Tensor:
    """Logits (classes, H, W) of ``image`` (C, H, W) from overlapping ``window`` x ``window``
    crops every ``step`` pixels, averaged where they overlap (equal weights).

    No margin or halo: each crop is run as if it were the whole image, and the average is
    meant to hide the crops' borders. ``H - window`` and ``W - window`` must be multiples of
    ``step``, so that the windows cover the image exactly.
    """
    _, H, W = image.shape
    if (H - window) % step or (W - window) % step:
        raise ValueError(f"H - window and W - window must be multiples of step={step}")
    total, count = None, torch.zeros(1, H, W)
    with torch.no_grad():
        for i in range(0, H - window + 1, step):
            for j in range(0, W - window + 1, step):
                logits = net(image[None, :, i:i + window, j:j + window])[0]
                if total is None:
                    total = torch.zeros(logits.shape[0], H, W)
                total[:, i:i + window, j:j + window] += logits
                count[:, i:i + window, j:j + window] += 1
    return total / count


@dataclass
class SeamRun:
    """Labels (H, W) of one slice by each way of tiling, and the one-pass labels each should equal.

    ``whole``: one pass, zero padding at the image border; ``naive``: tiles of ``tile`` side by
    side; ``averaged``: windows of ``tile`` every ``tile // 2``, logits averaged; ``halo`` and
    ``halo_reference``: the package's tiling and one pass over the image mirrored by the halo.
    """

    net: UNet
    image: np.ndarray
    truth: np.ndarray
    tile: int
    whole: np.ndarray
    naive: np.ndarray
    averaged: np.ndarray
    halo: np.ndarray
    halo_reference: np.ndarray

    def flips(self, way: str) -> np.ndarray:
        """Where the labels of ``way`` differ from the one pass they should reproduce."""
        reference = self.halo_reference if way == "halo" else self.whole
        return getattr(self, way) != reference


def tiled_seams(seed: int = 0, steps: int = 200, size: int = 512, tile: int = 128) -> SeamRun:
    """Train lesson 03's same-padded net (depth 2, 16 channels) at ``seed`` on two synthetic
    slices of 256 px, then segment a held-out ``size`` x ``size`` slice each way."""
    images, masks, _ = synthetic_em(2, size=256, seed=1)
    net = train_tile_net(images, masks, None, steps, seed, tile=92, padding="same")
    test, test_masks, _ = synthetic_em(1, size=size, seed=1000)
    image = torch.from_numpy(test[0])[None]  # (1, H, W)
    halo = net.geometry.default_halo
    with torch.no_grad():
        whole = net(image[None])[0]
        naive = torch.cat([torch.cat([net(image[None, :, i:i + tile, j:j + tile])[0]
                                      for j in range(0, size, tile)], dim=2)
                           for i in range(0, size, tile)], dim=1)
        reference = net(mirror_pad(image, halo)[None])[0][:, halo:halo + size, halo:halo + size]
    averaged = predict_averaged(net, image, tile, tile // 2)
    tiled = predict_tiled(net, image, tile_size=tile + 2 * halo)

    def labels(logits: torch.Tensor) -> np.ndarray:
        return logits.argmax(0).numpy()

    return SeamRun(net, test[0], test_masks[0], tile, labels(whole), labels(naive),
                   labels(averaged), labels(tiled), labels(reference))

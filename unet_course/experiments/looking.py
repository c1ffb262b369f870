"""Lesson 13: where a trained U-Net looks when it labels a piece of membrane.

The lesson trains the ``cpu`` preset on ISBI 2012 (as lesson 09 does), picks a small region
of membrane on a held-out slice, and asks which parts of the image the net's answer for that
region depends on, with the maps of :mod:`unet_course.interpret`. The helpers here turn an
occlusion map into its claim: how much a patch moves the region's answer, by the patch's
distance from the region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..interpret import occlusion_map

__all__ = ["LookResult", "membrane_region", "patch_distances", "occlusion_by_distance"]


def membrane_region(mask: np.ndarray, centre: tuple[int, int], radius: int) -> np.ndarray:
    """Membrane pixels (class 0) of ``mask`` within ``radius`` px of ``centre`` (row, col).

    Returns a boolean (H, W) map. Raises ValueError if the disc holds no membrane.
    """
    h, w = mask.shape
    rows, cols = np.ogrid[:h, :w]
    disc = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2
    region = disc & (np.asarray(mask) == 0)
    if not region.any():
        raise ValueError(f"no membrane within {radius} px of {centre}")
    return region


def patch_distances(region: np.ndarray, patch: int, stride: int | None = None) -> np.ndarray:
    """Chessboard distance in px from each occlusion patch to the nearest pixel of ``region``.

    The grid is :func:`~unet_course.interpret.occlusion_map`'s: patch (i, j) covers rows
    ``i*stride .. i*stride+patch-1`` and the same columns. The distance of two pixels is the
    larger of their row and column offsets, the geometry of a square receptive field: a net
    whose output pixel reads a (2r + 1)-square window cannot see a patch farther than r px.
    Returns float32 (rows, cols); 0 where the patch covers a pixel of the region.
    """
    stride = patch if stride is None else stride
    h, w = region.shape
    # per pixel: px to the region, by the larger offset (a diagonal step counts as one)
    to_region = ndi.distance_transform_cdt(~region, metric="chessboard")
    tops = range(0, h - patch + 1, stride)
    lefts = range(0, w - patch + 1, stride)
    return np.array([[to_region[t:t + patch, left:left + patch].min() for left in lefts]
                     for t in tops], np.float32)


@dataclass(frozen=True)
class LookResult:
    """An occlusion map and, for every patch, its chessboard distance to the region (px).

    Both arrays are (rows, cols), indexed like the patches' grid."""

    changes: np.ndarray
    distances: np.ndarray

    def largest_change(self, lo: float, hi: float = np.inf) -> float:
        """The largest change made by a patch whose distance d is in lo <= d < hi (px)."""
        chosen = (self.distances >= lo) & (self.distances < hi)
        return float(self.changes[chosen].max()) if chosen.any() else 0.0

    def mean_change(self, lo: float, hi: float = np.inf) -> float:
        """The mean change made by the patches with lo <= distance < hi (px)."""
        chosen = (self.distances >= lo) & (self.distances < hi)
        return float(self.changes[chosen].mean()) if chosen.any() else 0.0


def occlusion_by_distance(model, image: np.ndarray, region: np.ndarray, patch: int = 16,
                          target_class: int = 0) -> LookResult:
    """:func:`occlusion_map` of ``region`` (class ``target_class``) with each patch's distance."""
    changes = occlusion_map(model, image, region, patch=patch, target_class=target_class)
    return LookResult(changes, patch_distances(region, patch))

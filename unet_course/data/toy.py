"""A tiny, strongly imbalanced segmentation task that trains in seconds on a CPU (lesson 08).

:func:`toy_blobs` draws a few small bright discs on smooth clutter plus noise: about 3 % of the
pixels are foreground, like cells in a wide field, so a net that predicts "background"
everywhere already scores 97 % pixel accuracy. Lesson 08 uses it to show the pitfalls of
imbalanced training quickly.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage as ndi

from ..validation import positive_int

__all__ = ["toy_blobs"]


def toy_blobs(
    n: int,
    size: int = 32,
    blobs: tuple[int, int] = (1, 3),
    radius: tuple[float, float] = (1.5, 3.0),
    contrast: float = 0.35,
    noise: float = 0.15,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A tiny, strongly imbalanced segmentation task: a few small bright discs on clutter.

    Returns ``images`` float32 (n, 1, size, size) in [0, 1] and ``masks`` int64 (n, size, size)
    with 1 inside a disc and 0 elsewhere; with the defaults about 3 % of the pixels are 1.
    Each image has ``blobs[0]``..``blobs[1]`` discs with radii in ``radius`` (pixels), brighter
    than the background by ``contrast``, on smooth clutter plus Gaussian noise of std ``noise``.
    The same ``seed`` gives the same arrays.
    """
    n = positive_int(n, "n (the number of images)")
    # discs are centred at least 4 px from the border, so the image needs 9 px or more
    size = positive_int(size, "size", minimum=9)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.empty((n, 1, size, size), np.float32)
    masks = np.zeros((n, size, size), np.int64)
    for i in range(n):
        disc = np.zeros((size, size), bool)
        for _ in range(rng.integers(blobs[0], blobs[1] + 1)):
            cy, cx = rng.uniform(4, size - 4, 2)
            r = rng.uniform(*radius)
            disc |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        # Smooth clutter makes a single global threshold not quite enough.
        clutter = ndi.gaussian_filter(rng.normal(size=(size, size)), 2.0)
        clutter /= clutter.std()
        image = 0.4 + 0.08 * clutter + contrast * disc + noise * rng.normal(size=(size, size))
        images[i, 0] = np.clip(image, 0.0, 1.0)
        masks[i] = disc
    return torch.from_numpy(images), torch.from_numpy(masks)

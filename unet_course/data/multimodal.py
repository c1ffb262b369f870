"""Synthetic multi-modal images: three co-registered channels, each showing part of the target.

Medical images often come as several *modalities* of one scene: the MRI sequences of a brain
(T1, T2, FLAIR), or the perfusion maps of a CT scan (the ISLES stroke challenge gives CBF,
CBV, MTT and Tmax). No single one shows everything: one shows anatomy and borders, another
where blood flows, another where tissue is damaged, each with its own contrast and noise.
:func:`multimodal_cells` imitates that in 2-D, so lesson 14 can measure what a U-Net gains from
seeing all of them and what it loses when one is missing.

The scene: round objects (ellipses, radii 6-13 px, any image size) that do not touch, on a
faintly textured background. About half of them are *targets* (class 1, think of lesions);
the rest are *mimics* (class 0) of the same sizes and shapes. The three channels, in the
order of :data:`MODALITIES`:

* 0, ``"outline"`` (like a structural sequence): a bright rim, about 2 px wide, along the
  border of *every* object, targets and mimics alike; the insides are at background level. It
  shows exactly where each object ends, and nothing about which objects are targets.
* 1, ``"uptake"`` (like a tracer or perfusion map): a smooth glow (a Gaussian of standard
  deviation 3 px) at the centre of about two targets in three, nothing at the others or at
  the mimics. Its size does not follow the object's, so it tells *which* objects are targets
  (those two in three), not where they end.
* 2, ``"noisy"`` (like a fast, low-signal sequence): about two targets in three filled a
  little brighter (+0.25), blurred by 1 px and buried in Gaussian noise of standard deviation
  0.3. It shows those targets and roughly their extent, but no single pixel can be trusted.

Uptake and noisy share the targets out: a third of them shows in uptake only, a third in
noisy only, a third in both, so that every target shows in one of them at least and no single
channel shows everything that is to be segmented.

Every channel is clipped to [0, 1]; the units are arbitrary intensities, the sizes pixels. The
same ``seed`` gives bit-identical arrays, and image i does not depend on ``n``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..validation import positive_int
from .synthetic import _image_rngs, _smooth_field, _spread_points

__all__ = ["MODALITIES", "multimodal_cells"]

#: the channels of :func:`multimodal_cells`, in order
MODALITIES = ("outline", "uptake", "noisy")

_RIM_SD = 0.9  # px: the rim's half-width profile, about 2 px across
_GLOW_SD = 3.0  # px: the uptake glow, whatever the object's size
_NOISE_SD, _NOISY_CONTRAST = 0.3, 0.25


def _objects(rng: np.random.Generator, size: int):
    """Ellipses that do not touch: per object its centre, per-pixel distance, and a footprint.

    Yields ``(centre, rim_distance, inside, window)``: ``rim_distance`` (px, approximately)
    from the border, ``inside`` bool, both over ``window`` (a pair of slices of the image).
    """
    radii = np.sort(rng.uniform(6.0, 13.0, size=int(size * size / 600)))[::-1]
    centres, radii = _spread_points(rng, size, radii, spacing=1.3, tries=20)
    for (cy, cx), a in zip(centres, radii):
        b = a * rng.uniform(0.7, 1.0)
        t = rng.uniform(0.0, np.pi)
        reach = int(np.ceil(a)) + 4
        y0, y1 = max(int(cy) - reach, 0), min(int(cy) + reach + 1, size)
        x0, x1 = max(int(cx) - reach, 0), min(int(cx) + reach + 1, size)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        u = (yy - cy) * np.cos(t) + (xx - cx) * np.sin(t)
        v = -(yy - cy) * np.sin(t) + (xx - cx) * np.cos(t)
        rho = np.hypot(u / a, v / b)  # 1 on the border
        inside = rho <= 1.0
        if inside.sum() < 20:  # a sliver at the image edge: not an object one could score
            continue
        yield (cy, cx), (rho - 1.0) * b, inside, (slice(y0, y1), slice(x0, x1))


def _one(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: the three channels (3, size, size) float32 and the mask (size, size) int64."""
    rim = np.zeros((size, size))
    glow = np.zeros((size, size))
    target = np.zeros((size, size), bool)
    bright = np.zeros((size, size))  # the targets the noisy channel shows
    yy, xx = np.mgrid[0:size, 0:size]
    for (cy, cx), distance, inside, window in _objects(rng, size):
        rim[window] = np.maximum(rim[window], np.exp(-0.5 * (distance / _RIM_SD) ** 2))
        if rng.random() >= 0.5:  # a mimic: it shows only in the outline
            continue
        target[window] |= inside
        # 0: uptake only, 1: noisy only, 2: both; every target shows in one at least
        shows = int(rng.integers(3))
        if shows != 1:
            glow += np.exp(-0.5 * ((yy - cy) ** 2 + (xx - cx) ** 2) / _GLOW_SD**2)
        if shows != 0:
            bright[window] = np.maximum(bright[window], inside)
    texture = _smooth_field(rng, size, max(2, size // 16))
    outline = 0.3 + 0.5 * rim + 0.04 * texture + 0.03 * rng.standard_normal((size, size))
    uptake = 0.15 + 0.7 * np.minimum(glow, 1.0) + 0.03 * rng.standard_normal((size, size))
    noisy = (0.4 + _NOISY_CONTRAST * ndi.gaussian_filter(bright, 1.0)
             + _NOISE_SD * rng.standard_normal((size, size)))
    images = np.clip(np.stack([outline, uptake, noisy]), 0.0, 1.0).astype(np.float32)
    return images, target.astype(np.int64)


def multimodal_cells(n: int, size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scenes seen in three modalities that each show only part of the target.

    See the module docstring for what each channel shows. About a fifth of a scene is covered
    by objects and half of those are targets (about a tenth of the pixels).

    Args:
        n: the number of scenes (0 or more).
        size: the edge of each image in pixels, 48 or more (objects keep their size in
            pixels, so a larger image holds more of them).
        seed: the same seed gives the same arrays.

    Returns:
        ``(images, masks)``: images float32 (n, 3, size, size) in [0, 1], channels in the
        order of :data:`MODALITIES`; masks int64 (n, size, size), 1 = target, 0 = mimic or
        background.
    """
    n = positive_int(n, "n (the number of images)", minimum=0)
    size = positive_int(size, "size")
    if size < 48:
        raise ValueError(f"size must be >= 48 pixels so that several objects fit, got {size}")
    images = np.empty((n, len(MODALITIES), size, size), np.float32)
    masks = np.empty((n, size, size), np.int64)
    for i, rng in enumerate(_image_rngs(seed, n)):
        images[i], masks[i] = _one(rng, size)
    return images, masks

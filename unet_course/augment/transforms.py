"""The composable augmentations of the paper: elastic deformation, shift, rotation, flips, gray.

:class:`ElasticDeform`, :class:`RandomShift`, :class:`RandomRotation`, :class:`RandomFlip` and
:class:`GrayValue` share one calling convention, ``aug(image, *labels, rng=rng)``, so
:class:`Compose` can chain them. Every geometric one moves the image and its labels with one
transform: cubic for the image, nearest neighbour for labels (through
:func:`~unet_course.augment.elastic.warp`), or exact whole-pixel moves.

Conventions: images are float arrays (H, W) or (C, H, W); labels are (H, W) arrays of any
dtype; displacements are in pixels, ordered (dy, dx), with shape (2, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..mirror import mirror_indices  # one mirroring rule for tiles, training tiles and warps
from ..validation import finite_number, positive_int, probability
from .elastic import as_rng, check_image, check_labels, elastic_deform, grid_shape, warp

__all__ = ["Compose", "ElasticDeform", "GrayValue", "ModalityDropout", "RandomFlip",
           "RandomRotation", "RandomShift"]

# GrayValue expects an image in [0, 1]; a cubic resampling may overshoot by a hair (and is
# clipped), but an image further out is an 8-bit or a standardized one, which clipping would
# silently turn into a flat white or black picture.
_GRAY_RANGE_SLACK = 0.01


class _Augmentation:
    """Base: ``aug(image, *labels, rng=None)`` returns the image, or ``(image, *labels)``.

    ``p`` is the probability that the augmentation is applied at all.
    """

    p: float = 1.0

    def __call__(self, image, *labels, rng: np.random.Generator | int | None = None):
        rng = as_rng(rng)
        image = check_image(image)
        labels = tuple(check_labels(labels, image.shape[-2:]))
        if self.p < 1.0 and rng.random() >= self.p:
            return (image, *labels) if labels else image
        image, labels = self.apply(image, labels, rng)
        return (image, *labels) if labels else image

    def apply(self, image, labels, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def _check_p(p: object) -> float:
    return probability(p, "the probability p")


class ElasticDeform(_Augmentation):
    """:func:`~unet_course.elastic.elastic_deform` as a composable augmentation.

    The paper draws one ``grid`` x ``grid`` field with ``sigma`` pixels for a whole image (the
    ISBI slices are 512 px). Applied as it is to a small training tile, the same grid bends the
    tile as much as it would bend the image, and a tile of 92 px then folds over itself in
    about half of the draws. ``image_size`` (pixels) keeps the paper's scale: on an input of
    edge t, sigma becomes ``sigma * t / image_size``, so that the field stretches the tile as
    much per pixel as the paper's field stretches the image. ``None`` applies ``sigma`` as given.
    """

    def __init__(self, grid: int | Sequence[int] = 3, sigma: float = 10.0, p: float = 1.0,
                 image_size: int | None = None):
        grid_shape(grid)
        sigma = finite_number(sigma, "sigma (standard deviation in pixels)", minimum=0.0)
        self.grid, self.sigma, self.p = grid, sigma, _check_p(p)
        self.image_size = None if image_size is None else positive_int(image_size, "image_size")

    def sigma_for(self, shape: tuple[int, ...]) -> float:
        """The sigma (pixels) used on an input of ``shape`` (..., H, W)."""
        if self.image_size is None:
            return self.sigma
        return self.sigma * (shape[-2] + shape[-1]) / 2 / self.image_size

    def apply(self, image, labels, rng):
        sigma = self.sigma_for(image.shape)
        if not labels:
            return elastic_deform(image, None, self.grid, sigma, rng), ()
        return elastic_deform(image, list(labels), self.grid, sigma, rng)


class RandomShift(_Augmentation):
    """Shift by a whole number of pixels, uniform in [-max_shift, max_shift] per axis.

    Whole pixels: nothing is interpolated, labels and image move exactly; the border is mirrored.
    """

    def __init__(self, max_shift: int = 16, p: float = 1.0):
        self.max_shift = positive_int(max_shift, "max_shift (pixels)", minimum=0)
        self.p = _check_p(p)

    def apply(self, image, labels, rng):
        H, W = image.shape[-2:]
        dy, dx = rng.integers(-self.max_shift, self.max_shift + 1, size=2)
        iy = mirror_indices(np.arange(H) - dy, H)
        ix = mirror_indices(np.arange(W) - dx, W)
        take = np.ix_(iy, ix)
        return image[..., take[0], take[1]], tuple(lab[..., take[0], take[1]] for lab in labels)


class RandomRotation(_Augmentation):
    """Rotate about the image centre by an angle uniform in [-degrees, degrees]; cubic for the
    image, nearest neighbour for labels, mirrored border (one :func:`warp` for all)."""

    def __init__(self, degrees: float = 180.0, p: float = 1.0):
        self.degrees = finite_number(degrees, "degrees", minimum=0.0)
        self.p = _check_p(p)

    def apply(self, image, labels, rng):
        H, W = image.shape[-2:]
        a = np.deg2rad(rng.uniform(-self.degrees, self.degrees))
        cy, cx = (H - 1) / 2, (W - 1) / 2
        y = np.arange(H, dtype=np.float64)[:, None] - cy
        x = np.arange(W, dtype=np.float64)[None, :] - cx
        positions = np.stack([cy + np.cos(a) * y - np.sin(a) * x,
                              cx + np.sin(a) * y + np.cos(a) * x])
        return (warp(image, positions, order=3, absolute=True),
                tuple(warp(lab, positions, order=0, absolute=True) for lab in labels))


class RandomFlip(_Augmentation):
    """One of the 8 flips / 90-degree rotations (the square's symmetries), uniformly; exact.

    For non-square images only the 4 flips that keep the shape are drawn.
    """

    def __init__(self, p: float = 1.0):
        self.p = _check_p(p)

    def apply(self, image, labels, rng):
        H, W = image.shape[-2:]
        k = int(rng.integers(0, 8 if H == W else 4))
        if H != W:
            k *= 2  # 0, 2, 4, 6: identity, rot180 and the two flips

        def move(a):
            a = np.rot90(a, k % 4, axes=(-2, -1))
            return np.ascontiguousarray(np.flip(a, -1) if k >= 4 else a)

        return move(image), tuple(move(lab) for lab in labels)


class GrayValue(_Augmentation):
    """Gray-value variations of the image only (labels pass through unchanged).

    ``out = clip(mean + c * (image**g - mean) + b + noise, 0, 1)`` with contrast
    ``c ~ U(1 - contrast, 1 + contrast)``, brightness ``b ~ U(-brightness, brightness)``,
    gamma ``g = exp(U(-gamma, gamma))`` and Gaussian noise of standard deviation ``noise``.
    Expects an image in [0, 1] (an image clearly outside, such as 0..255, raises ValueError).
    """

    def __init__(self, contrast: float = 0.2, brightness: float = 0.1, gamma: float = 0.3,
                 noise: float = 0.02, p: float = 1.0):
        for name, v in (("contrast", contrast), ("brightness", brightness), ("gamma", gamma),
                        ("noise", noise)):
            finite_number(v, name, minimum=0.0)
        self.contrast, self.brightness, self.gamma, self.noise = contrast, brightness, gamma, noise
        self.p = _check_p(p)

    def apply(self, image, labels, rng):
        lo, hi = float(image.min()), float(image.max())
        if lo < -_GRAY_RANGE_SLACK or hi > 1 + _GRAY_RANGE_SLACK:
            raise ValueError(f"GrayValue expects an image in [0, 1], got values in "
                             f"[{lo:g}, {hi:g}]; scale it first (for 8-bit images: image / 255)")
        img = np.clip(image.astype(np.float32, copy=False), 0.0, 1.0)
        g = np.exp(rng.uniform(-self.gamma, self.gamma))
        c = rng.uniform(1 - self.contrast, 1 + self.contrast)
        b = rng.uniform(-self.brightness, self.brightness)
        img = img ** np.float32(g)
        mean = img.mean()
        img = mean + np.float32(c) * (img - mean) + np.float32(b)
        if self.noise > 0:
            img = img + rng.normal(0.0, self.noise, size=img.shape).astype(np.float32)
        return np.clip(img, 0.0, 1.0).astype(np.float32), labels


class ModalityDropout(_Augmentation):
    """Hide one modality of a multi-modal image (C, H, W), with probability ``p``.

    Not in the paper: a remedy for a modality that may be missing at test time (lesson 14). A
    net that always saw every channel in training may lean on one of them so much that it fails
    without it; hiding a random channel in some of the training tiles teaches it to use what
    is there. The hidden channel is chosen uniformly and filled with ``fill``: one value for
    every channel, or one per channel, best what a missing modality will be replaced with at
    test time (for example each channel's mean over the training images). Labels pass through.
    """

    def __init__(self, p: float = 0.5, fill: float | Sequence[float] = 0.0):
        self.p = _check_p(p)
        values = np.atleast_1d(np.asarray(fill, dtype=np.float64))
        if values.ndim != 1 or not np.all(np.isfinite(values)):
            raise ValueError(f"fill must be a finite number or one per channel, got {fill!r}")
        self.fill = float(values[0]) if np.ndim(fill) == 0 else tuple(map(float, values))

    def apply(self, image, labels, rng):
        if image.ndim != 3 or image.shape[0] < 2:
            raise ValueError(f"ModalityDropout needs an image (C, H, W) of 2 or more channels "
                             f"(modalities), got shape {image.shape}")
        fill = np.asarray(self.fill, dtype=np.float64)
        if fill.ndim == 1 and len(fill) != image.shape[0]:
            raise ValueError(f"fill holds {len(fill)} values for an image of {image.shape[0]} "
                             "channels; give one per channel, or one for all")
        k = int(rng.integers(image.shape[0]))
        out = np.array(image, copy=True)
        out[k] = fill if fill.ndim == 0 else fill[k]
        return out, labels


class Compose(_Augmentation):
    """Apply augmentations in order, all drawing from the one ``rng``:
    ``Compose([RandomFlip(), ElasticDeform(), GrayValue()])(image, mask, rng=rng)``."""

    def __init__(self, augmentations: Sequence[_Augmentation]):
        if callable(augmentations) or not isinstance(augmentations, Sequence):
            raise TypeError(f"Compose takes a list of augmentations, got {augmentations!r}; "
                            "wrap a single one in a list: Compose([aug])")
        for a in augmentations:
            if not callable(a):
                raise TypeError(f"every augmentation must be callable, got {a!r}")
        self.augmentations, self.p = list(augmentations), 1.0

    def apply(self, image, labels, rng):
        for aug in self.augmentations:
            out = aug(image, *labels, rng=rng)
            image, labels = (out[0], tuple(out[1:])) if labels else (out, ())
        return image, labels

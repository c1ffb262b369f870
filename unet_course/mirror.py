"""Extrapolating an image beyond its border by mirroring, as the paper does for its tiles.

Two functions, one rule: :func:`mirror_indices` maps positions outside an axis back into it,
and :func:`mirror_pad` uses it to pad an image. The overlap-tile prediction, the training
tiles and the elastic deformations all mirror with :func:`mirror_indices`, so the net sees
the same border everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeVar

import numpy as np
import torch

from .validation import is_int

__all__ = ["Mode", "mirror_indices", "mirror_pad"]

Mode = Literal["reflect", "symmetric"]
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def mirror_indices(positions: np.ndarray, n: int, mode: Mode = "reflect") -> np.ndarray:
    """Map integer positions on an axis of length ``n`` back into [0, n) by mirroring.

    ``reflect`` mirrors about the first and last pixel (..., 2, 1, 0, 1, 2, ..., n-2, n-1,
    n-2, ...), like ``np.pad(mode="reflect")`` and SciPy's ``mode="mirror"``; ``symmetric``
    repeats the border pixel (..., 1, 0, 0, 1, ..., n-1, n-1, ...). Far-away positions are
    mirrored repeatedly: the extension is periodic with period 2(n - 1), or 2n for symmetric.
    Used by :func:`mirror_pad`, the training tiles and the augmentations alike.
    """
    positions = np.asarray(positions)
    if mode == "symmetric":
        period = 2 * n
        p = np.mod(positions, period)
        return np.where(p >= n, period - 1 - p, p)
    if n == 1:  # nothing to reflect about: the single pixel is the whole extension
        return np.zeros_like(positions)
    if positions.size and positions.min() > -n and positions.max() < 2 * n - 1:
        # at most one reflection on either side: two abs() are cheaper than a modulo
        return (n - 1) - np.abs((n - 1) - np.abs(positions))
    period = 2 * (n - 1)
    p = np.mod(positions, period)
    return np.where(p >= n, period - p, p)


def _pad_widths(pad: int | Sequence[int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) from one int or four; each >= 0."""
    if is_int(pad):
        widths = (int(pad),) * 4  # type: ignore[arg-type]
    elif isinstance(pad, (tuple, list)) and all(is_int(p) for p in pad):
        widths = tuple(int(p) for p in pad)
        if len(widths) != 4:
            raise ValueError(f"pad must be an int or 4 ints (top, bottom, left, right), got {pad!r}")
    else:
        raise TypeError(f"pad must be an int or a sequence of 4 ints (top, bottom, left, right), got {pad!r}")
    if min(widths) < 0:
        raise ValueError(f"pad widths must be >= 0, got {widths} (to crop, slice the array instead)")
    return widths  # type: ignore[return-value]


def mirror_pad(image: ArrayT, pad: int | Sequence[int], mode: Mode = "reflect") -> ArrayT:
    """Extrapolate ``image`` beyond its border by mirroring, as the paper does for its tiles.

    Args:
        image: NumPy array or torch tensor of shape (..., H, W); the last two axes are padded.
        pad: pixels to add, one int for every side or (top, bottom, left, right). A pad may
            be longer than the image: the mirror image is then mirrored again.
        mode: where the mirror stands.

            * ``"reflect"`` (the default): the mirror stands *on* the border pixel, which is
              not repeated: ``a b c d`` -> ``c b | a b c d | c b``.
              NumPy's ``np.pad(mode="reflect")``, PyTorch's ``F.pad(mode="reflect")``,
              SciPy's ``mode="mirror"``.
            * ``"symmetric"``: the mirror stands *between* the border pixel and the outside,
              so the border pixel appears twice: ``a b c d`` -> ``b a | a b c d | d c``.
              NumPy's ``"symmetric"``, SciPy's ``"reflect"`` (beware the clash of names).

            We choose ``"reflect"``: every pixel of the extension is a real pixel at the
            same distance from the border, so nothing the net never saw in an image is
            created. The symmetric copy doubles the border row, which turns a one-pixel
            membrane lying on the border into a two-pixel one, and adds a flat step to
            every intensity gradient crossing the border. For a 1-pixel-wide image reflect
            has nothing to mirror; the pixel is repeated.

    Returns:
        The same type, dtype and device as ``image``, shape (..., H + top + bottom,
        W + left + right).
    """
    if mode not in ("reflect", "symmetric"):
        raise ValueError(f"mode must be 'reflect' (the default) or 'symmetric', got {mode!r}")
    if not isinstance(image, (np.ndarray, torch.Tensor)):
        raise TypeError(f"image must be a NumPy array or a torch tensor, got {type(image).__name__}")
    if image.ndim < 2:
        raise ValueError(f"image must have at least 2 dimensions (..., H, W), got shape {tuple(image.shape)}")
    top, bottom, left, right = _pad_widths(pad)
    H, W = image.shape[-2:]
    if H == 0 or W == 0:
        raise ValueError(f"cannot mirror an empty image of shape {tuple(image.shape)}")
    rows = mirror_indices(np.arange(-top, H + bottom), H, mode)
    cols = mirror_indices(np.arange(-left, W + right), W, mode)
    if isinstance(image, np.ndarray):
        return image[..., rows[:, None], cols[None, :]]
    r = torch.from_numpy(rows).to(image.device)
    c = torch.from_numpy(cols).to(image.device)
    return image.index_select(-2, r).index_select(-1, c)

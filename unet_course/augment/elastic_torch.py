"""The paper's elastic deformation for a batch of tensors, on their device (GPU or CPU).

The same three steps as :mod:`unet_course.elastic`, with the same parts: the node
displacements are N(0, sigma) pixels, the dense field is interpolated with
:func:`~unet_course.elastic.cubic_upsampling_matrix`, images are resampled by cubic
convolution with the same :func:`~unet_course.elastic.keys_kernel` (a = -0.5), labels take the
nearest pixel, and every tap outside the image is mirrored by the rule of
:func:`unet_course.tiling.mirror_indices` (:func:`mirror_indices_torch`).

Only the image kernel differs from NumPy's :func:`~unet_course.elastic.elastic_deform`, which
resamples images with SciPy's cubic B-spline: the two agree to a few thousandths on smooth
images; labels are resampled identically.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..validation import finite_number
from .elastic import cubic_upsampling_matrix, grid_shape, keys_kernel

__all__ = ["dense_field_torch", "elastic_deform_torch", "mirror_indices_torch"]

_TAPS = (-1, 0, 1, 2)  # cubic convolution reads the 4 x 4 pixels around a position


def mirror_indices_torch(positions: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`unet_course.tiling.mirror_indices` (``reflect``) for integer tensors: map positions
    on an axis of length ``n`` into [0, n) by mirroring about the first and last pixel
    (..., 2, 1, 0, 1, 2, ..., n-2, n-1, n-2, ...), periodic with period 2(n - 1)."""
    if n == 1:
        return torch.zeros_like(positions)
    period = 2 * (n - 1)
    p = torch.remainder(positions, period)
    return torch.where(p >= n, period - p, p)


def dense_field_torch(nodes: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """:func:`~unet_course.elastic.dense_field` for a batch: node displacements (N, 2, gh, gw)
    -> (N, 2, H, W) pixels, on the nodes' device and in their dtype."""
    if nodes.ndim != 4 or nodes.shape[1] != 2:
        raise ValueError(f"nodes must have shape (N, 2, gh, gw), got {tuple(nodes.shape)}")
    gh, gw = nodes.shape[-2:]
    H, W = int(shape[0]), int(shape[1])
    A = torch.as_tensor(cubic_upsampling_matrix(gh, H), dtype=nodes.dtype, device=nodes.device)
    B = torch.as_tensor(cubic_upsampling_matrix(gw, W), dtype=nodes.dtype, device=nodes.device)
    # two matrix products; a single three-operand einsum is far slower on the CPU
    return torch.matmul(torch.matmul(A, nodes), B.T)


def _cubic_torch(images: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Cubic convolution (:func:`keys_kernel`) of images (N, C, H, W) at positions ys, xs
    (N, H, W), mirrored at the border; 16 gathers, one per tap of the 4 x 4 neighbourhood."""
    N, C, H, W = images.shape
    y0, x0 = torch.floor(ys), torch.floor(xs)
    ty, tx = (ys - y0).to(images.dtype), (xs - x0).to(images.dtype)
    y0, x0 = y0.long(), x0.long()
    # a tap k pixels from floor(position) lies t - k away from the position itself
    wx = [keys_kernel(tx - k) for k in _TAPS]
    cols = [mirror_indices_torch(x0 + k, W) for k in _TAPS]
    flat = images.flatten(2)  # (N, C, H*W)
    out = torch.zeros_like(flat)
    for i in _TAPS:
        wy = keys_kernel(ty - i)
        row = mirror_indices_torch(y0 + i, H) * W
        for j, col in zip(wx, cols):
            index = (row + col).flatten(1)[:, None].expand(-1, C, -1)
            out += (wy * j).flatten(1)[:, None] * flat.gather(2, index)
    return out.reshape(N, C, H, W)


def _nearest_torch(labels: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Labels (N, H, W) or (N, K, H, W) at the nearest pixel of each position, mirrored."""
    H, W = labels.shape[-2:]
    iy = mirror_indices_torch(torch.round(ys).long(), H)
    ix = mirror_indices_torch(torch.round(xs).long(), W)
    flat = (iy * W + ix).flatten(1)  # (N, H*W)
    lab = labels if labels.ndim == 4 else labels[:, None]
    index = flat[:, None].expand(-1, lab.shape[1], -1)
    warped = lab.flatten(2).gather(2, index).reshape(lab.shape)
    return warped if labels.ndim == 4 else warped[:, 0]


def _check_batch(images: object, labels: object) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = (f"a {images.dtype} tensor of shape {tuple(images.shape)}"
               if isinstance(images, torch.Tensor) else type(images).__name__)
        raise ValueError(f"images must be a float tensor of shape (N, C, H, W), got {got}")
    N, _, H, W = images.shape
    if labels is None:
        return
    if (not isinstance(labels, torch.Tensor) or labels.ndim not in (3, 4)
            or labels.shape[0] != N or tuple(labels.shape[-2:]) != (H, W)):
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a tensor (N, H, W) or (N, K, H, W) with N={N}, H={H}, "
                         f"W={W}, got {got}")
    if labels.device != images.device:
        raise ValueError(f"labels are on {labels.device} but images on {images.device}: "
                         "move both to one device")


def elastic_deform_torch(
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    grid: int | Sequence[int] = 3,
    sigma: float = 10.0,
    generator: torch.Generator | None = None,
):
    """:func:`~unet_course.elastic.elastic_deform` for a batch of tensors, on their device.

    ``images`` (N, C, H, W) float; ``labels`` (N, H, W) or (N, K, H, W) label maps of any
    dtype. Every sample gets its own random field (drawn with ``generator``); images and labels
    of a sample share it. The field is the same bicubic interpolation as in NumPy
    (:func:`dense_field_torch`). Images are resampled by cubic convolution with Keys' kernel
    (a = -0.5, the field's kernel; NumPy resamples images with a cubic B-spline, so results
    differ slightly from :func:`~unet_course.elastic.elastic_deform`) and clamped to the batch's
    value range; labels take the value of the nearest pixel, exactly as in NumPy. Borders are
    mirrored as in NumPy. Returns the images, or ``(images, labels)``.
    """
    _check_batch(images, labels)
    N, _, H, W = images.shape
    gh, gw = grid_shape(grid)
    sigma = finite_number(sigma, "sigma (standard deviation in pixels)", minimum=0.0)
    dev = images.device
    nodes = torch.randn((N, 2, gh, gw), generator=generator, device=dev if generator is None
                        else generator.device, dtype=torch.float32).to(dev) * sigma
    field = dense_field_torch(nodes, (H, W))
    ys = torch.arange(H, device=dev, dtype=torch.float32)[:, None] + field[:, 0]
    xs = torch.arange(W, device=dev, dtype=torch.float32)[None, :] + field[:, 1]
    out = _cubic_torch(images, ys, xs).clamp(images.min(), images.max())
    if labels is None:
        return out
    return out, _nearest_torch(labels, ys, xs)

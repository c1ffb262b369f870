"""Data augmentation as in the U-Net paper: elastic deformation, shift, rotation, flips, gray values.

The paper trains on 30 annotated images. What makes that work (Section 3.1):

    "We generate smooth deformations using random displacement vectors on a coarse 3 by 3
    grid. The displacements are sampled from a Gaussian distribution with 10 pixels standard
    deviation. Per-pixel displacements are then computed using bicubic interpolation."

This module does exactly that, in three small steps that the lesson shows one by one:

* :func:`random_grid`   displacement vectors at the nodes of a coarse grid, N(0, sigma) pixels;
* :func:`dense_field`   bicubic interpolation of the grid to one displacement per pixel;
* :func:`warp`          resampling: ``out[y, x] = in[y + dy(y, x), x + dx(y, x)]``, cubic for
                        images, nearest neighbour for labels (so label values stay in their set),
                        mirrored at the image border.

:func:`elastic_deform` chains them and applies one field to an image and any number of label
maps; :func:`elastic_deform_torch` does the same for a batch of tensors on any device.
The other augmentations (:class:`RandomShift`, :class:`RandomRotation`, :class:`RandomFlip`,
:class:`GrayValue`) and :class:`ElasticDeform` share one calling convention,
``aug(image, *labels, rng=rng)``, so :class:`Compose` can chain them.

Conventions: images are float arrays (H, W) or (C, H, W); labels are (H, W) arrays of any
dtype; displacements are in pixels, ordered (dy, dx), with shape (2, H, W).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from .tiling import mirror_indices  # one mirroring rule for tiles, training tiles and warps

__all__ = [
    "Compose",
    "ElasticDeform",
    "GrayValue",
    "RandomFlip",
    "RandomRotation",
    "RandomShift",
    "bicubic_upsample",
    "cubic_upsampling_matrix",
    "dense_field",
    "dense_field_torch",
    "elastic_deform",
    "elastic_deform_torch",
    "mirror_indices",
    "random_grid",
    "warp",
]

def _keys_kernel(s: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (the classic "bicubic" kernel; a = -0.5)."""
    s = np.abs(s)
    near = ((a + 2) * s - (a + 3)) * s * s + 1
    far = ((a * s - 5 * a) * s + 8 * a) * s - 4 * a
    return np.where(s <= 1, near, np.where(s < 2, far, 0.0))


def cubic_upsampling_matrix(nodes: int, length: int) -> np.ndarray:
    """The (length, nodes) matrix that interpolates ``nodes`` evenly spaced samples, the first
    at pixel 0 and the last at pixel ``length - 1``, to every pixel with cubic convolution.

    ``field = A @ grid @ B.T`` is then the bicubic interpolation of a (nodes_h, nodes_w) grid
    to a (H, W) image. The curve passes through the node values exactly. Beyond the first and
    last node the missing neighbour is extrapolated as ``f(-1) = 3 f(0) - 3 f(1) + f(2)``
    (Keys 1981), which keeps the interpolation exact for quadratics; with 2 nodes it is linear.
    Every row sums to 1, so a constant grid gives a constant field.
    """
    if nodes < 2:
        raise ValueError(f"a cubic interpolation grid needs at least 2 nodes per axis, got {nodes}")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    u = np.linspace(0.0, nodes - 1.0, length) if length > 1 else np.zeros(1)
    i = np.minimum(np.floor(u).astype(int), nodes - 2)
    t = u - i
    # weights on the taps i-1, i, i+1, i+2; column j + 1 of `full` is node j, 0 and -1 are ghosts
    taps = np.stack([_keys_kernel(t + 1), _keys_kernel(t), _keys_kernel(1 - t), _keys_kernel(2 - t)], 1)
    full = np.zeros((length, nodes + 2))
    rows = np.arange(length)[:, None]
    np.add.at(full, (rows, i[:, None] + np.arange(4)), taps)
    ghost = [3.0, -3.0, 1.0] if nodes >= 3 else [2.0, -1.0]
    k = len(ghost)
    out = full[:, 1:-1].copy()
    out[:, :k] += full[:, :1] * ghost
    out[:, nodes - k :] += full[:, -1:] * ghost[::-1]
    return out


def bicubic_upsample(grid: np.ndarray, shape: tuple[int, int], dtype=np.float64) -> np.ndarray:
    """Interpolate a (..., gh, gw) grid of node values to (..., H, W) with :func:`cubic_upsampling_matrix`.

    Computed as a sum of gw outer products rather than a BLAS matrix product: for these tiny
    grids that is as fast and never waits on a busy BLAS thread pool.
    """
    grid = np.asarray(grid, dtype=np.float64)
    A = cubic_upsampling_matrix(grid.shape[-2], shape[0])
    B = cubic_upsampling_matrix(grid.shape[-1], shape[1]).astype(dtype)
    rows = (A[..., :, :, None] * grid[..., None, :, :]).sum(-2).astype(dtype)  # (..., H, gw)
    out = rows[..., :, 0, None] * B[:, 0]
    for k in range(1, grid.shape[-1]):
        out += rows[..., :, k, None] * B[:, k]
    return out


# ----------------------------------------------------------------------------------------------
# the three steps
# ----------------------------------------------------------------------------------------------


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(
        f"rng must be a numpy Generator (np.random.default_rng(seed)), an int seed or None, "
        f"got {type(rng).__name__}"
    )


def _grid_shape(grid: int | Sequence[int]) -> tuple[int, int]:
    g = (grid, grid) if isinstance(grid, (int, np.integer)) else tuple(grid)
    if len(g) != 2 or any(not isinstance(v, (int, np.integer)) or v < 2 for v in g):
        raise ValueError(f"grid must be an int >= 2 or a pair of them (nodes per axis), got {grid!r}")
    return int(g[0]), int(g[1])


def random_grid(
    grid: int | Sequence[int] = 3, sigma: float = 10.0, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Random displacement vectors on a coarse grid: float64 (2, gh, gw), N(0, sigma) pixels.

    ``[0]`` holds the row (y) displacements, ``[1]`` the column (x) displacements. The nodes are
    spread evenly over the image, the first and last on its border (see :func:`dense_field`).
    """
    gh, gw = _grid_shape(grid)
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite standard deviation >= 0 in pixels, got {sigma!r}")
    return _as_rng(rng).standard_normal((2, gh, gw)) * float(sigma)


def dense_field(
    grid_displacements: np.ndarray, shape: tuple[int, int], dtype=np.float64
) -> np.ndarray:
    """Per-pixel displacements (2, H, W) of ``dtype`` from node displacements (2, gh, gw), by bicubic
    interpolation (:func:`cubic_upsampling_matrix`; node (0, 0) sits on pixel (0, 0), the last
    node on pixel (H - 1, W - 1)). At the nodes the field equals the node values exactly."""
    grid_displacements = np.asarray(grid_displacements)
    if grid_displacements.ndim != 3 or grid_displacements.shape[0] != 2:
        raise ValueError(
            f"grid displacements must have shape (2, gh, gw), got {grid_displacements.shape}"
        )
    return bicubic_upsample(grid_displacements, (int(shape[0]), int(shape[1])), dtype)


def _sample_coords(field: np.ndarray) -> np.ndarray:
    H, W = field.shape[-2:]
    coords = np.empty_like(field)
    np.add(field[0], np.arange(H, dtype=field.dtype)[:, None], out=coords[0])
    np.add(field[1], np.arange(W, dtype=field.dtype)[None, :], out=coords[1])
    return coords


def _nearest_flat_index(coords: np.ndarray) -> np.ndarray:
    """Flat indices of the nearest pixel to each sampling position, mirrored at the border."""
    H, W = coords.shape[-2:]
    iy = np.rint(coords[0]).astype(np.int32)
    ix = np.rint(coords[1]).astype(np.int32)
    # mirroring is only needed where a position left the image, which is rare
    if iy.min() < 0 or iy.max() >= H:
        iy = mirror_indices(iy, H)
    if ix.min() < 0 or ix.max() >= W:
        ix = mirror_indices(ix, W)
    flat = iy.astype(np.intp) * W
    flat += ix
    return flat


def _cubic(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Cubic B-spline resampling of (H, W) or (C, H, W) at ``coords``, clipped to the input's
    range: the interpolating spline overshoots a little at sharp edges, and an image in
    [0, 1] should stay there."""
    out_dtype = image.dtype if image.dtype in (np.float32, np.float64) else np.float32
    planes = image.reshape((-1,) + image.shape[-2:])
    out = np.empty(planes.shape, out_dtype)
    for c, plane in enumerate(planes):
        # the spline coefficients in the output precision: float32 halves the prefilter's cost
        coef = ndi.spline_filter(plane, order=3, mode="mirror", output=out_dtype)
        ndi.map_coordinates(coef, coords, output=out[c], order=3, mode="mirror", prefilter=False)
        np.clip(out[c], plane.min(), plane.max(), out=out[c])
    return out.reshape(image.shape)


def _nearest(label: np.ndarray, flat: np.ndarray) -> np.ndarray:
    H, W = label.shape[-2:]
    lead = label.shape[:-2]
    return np.take(label.reshape(lead + (H * W,)), flat, axis=-1)


def _check_image(image: object, name: str = "image") -> np.ndarray:
    if isinstance(image, torch.Tensor):
        raise TypeError(
            f"{name} is a torch tensor; use elastic_deform_torch for tensors or pass image.numpy()"
        )
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"{name} must have shape (H, W) or (C, H, W), got {image.shape}")
    return image


def _check_labels(labels: Sequence[np.ndarray], shape: tuple[int, int]) -> list[np.ndarray]:
    out = []
    for i, label in enumerate(labels):
        label = np.asarray(label)
        if label.shape[-2:] != tuple(shape):
            raise ValueError(
                f"label {i} has shape {label.shape}, but the image is {shape[0]}x{shape[1]}: "
                "every label must cover the image pixel for pixel"
            )
        out.append(label)
    return out


def warp(array: np.ndarray, field: np.ndarray, order: int = 3) -> np.ndarray:
    """Resample ``array`` (H, W) or (C, H, W) along a displacement field (2, H, W):
    ``out[..., y, x] = array[..., y + field[0, y, x], x + field[1, y, x]]``, mirrored at the border.

    ``order=3``: cubic B-spline interpolation (images; float32 result clipped to the input's
    range); ``order=1``: linear; ``order=0``: nearest neighbour (labels; dtype and the set of
    values are kept).
    """
    array = _check_image(array, "array")
    field = np.asarray(field, dtype=np.float64)
    if field.shape != (2,) + array.shape[-2:]:
        raise ValueError(f"field must have shape (2, H, W) = (2, *array.shape[-2:]), got {field.shape}")
    coords = _sample_coords(field)
    if order == 0:
        return _nearest(array, _nearest_flat_index(coords))
    if order == 3:
        return _cubic(array, coords)
    if order == 1:
        planes = array.reshape((-1,) + array.shape[-2:]).astype(np.float32, copy=False)
        out = np.stack([ndi.map_coordinates(p, coords, order=1, mode="mirror") for p in planes])
        return out.reshape(array.shape)
    raise ValueError(f"order must be 0 (nearest), 1 (linear) or 3 (cubic), got {order!r}")


# ----------------------------------------------------------------------------------------------
# the paper's deformation
# ----------------------------------------------------------------------------------------------


def elastic_deform(
    image: np.ndarray,
    label: np.ndarray | Sequence[np.ndarray] | None = None,
    grid: int | Sequence[int] = 3,
    sigma: float = 10.0,
    rng: np.random.Generator | int | None = None,
):
    """The paper's elastic deformation of an image and, with the same field, its labels.

    A coarse ``grid`` x ``grid`` set of displacement vectors is drawn from N(0, ``sigma``)
    pixels and interpolated bicubically to every pixel; the image (H, W) or (C, H, W) is
    resampled with cubic interpolation, each label (H, W) with nearest neighbour, so a label
    keeps its dtype and never gains a value it did not have. Borders are mirrored.

    ``label`` is one array or a list/tuple of arrays (mask, instance labels, weight map, ...):
    every one gets the same field. Returns the warped image alone when ``label`` is None,
    else ``(image, label)`` with ``label`` of the same kind as given (array or list).
    ``sigma=0`` returns the image unchanged (up to float rounding) and the labels exactly.
    """
    image = _check_image(image)
    shape = image.shape[-2:]
    many = isinstance(label, (list, tuple))
    labels = _check_labels(label if many else ([] if label is None else [label]), shape)
    nodes = random_grid(grid, sigma, rng)
    # The sampling positions y + dy(y, x), x + dx(y, x) in one step: cubic interpolation
    # reproduces linear functions exactly, so adding each node's own position to its
    # displacement before interpolating gives the same result as adding y and x afterwards.
    # float32 positions are exact to 1e-4 px on images up to 2048 px: plenty, and faster.
    gh, gw = nodes.shape[1:]
    nodes[0] += np.linspace(0, shape[0] - 1, gh)[:, None]
    nodes[1] += np.linspace(0, shape[1] - 1, gw)[None, :]
    coords = dense_field(nodes, shape, np.float32)
    out = _cubic(image, coords)
    if label is None:
        return out
    flat = _nearest_flat_index(coords)
    warped = [_nearest(lab, flat) for lab in labels]
    return out, (type(label)(warped) if many else warped[0])


def dense_field_torch(nodes: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """:func:`dense_field` for a batch: node displacements (N, 2, gh, gw) -> (N, 2, H, W),
    on the nodes' device and in their dtype."""
    if nodes.ndim != 4 or nodes.shape[1] != 2:
        raise ValueError(f"nodes must have shape (N, 2, gh, gw), got {tuple(nodes.shape)}")
    gh, gw = nodes.shape[-2:]
    H, W = int(shape[0]), int(shape[1])
    A = torch.as_tensor(cubic_upsampling_matrix(gh, H), dtype=nodes.dtype, device=nodes.device)
    B = torch.as_tensor(cubic_upsampling_matrix(gw, W), dtype=nodes.dtype, device=nodes.device)
    # two matrix products; a single three-operand einsum is far slower on the CPU
    return torch.matmul(torch.matmul(A, nodes), B.T)


def elastic_deform_torch(
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    grid: int | Sequence[int] = 3,
    sigma: float = 10.0,
    generator: torch.Generator | None = None,
):
    """:func:`elastic_deform` for a batch of tensors, on their device (GPU or CPU).

    ``images`` (N, C, H, W) float; ``labels`` (N, H, W) or (N, K, H, W) label maps of any
    dtype. Every sample gets its own random field (drawn with ``generator``); images and labels
    of a sample share it. The field is the same bicubic interpolation as in NumPy
    (:func:`dense_field_torch`). Images are resampled with PyTorch's bicubic ``grid_sample``
    (cubic convolution with a = -0.75, where SciPy uses a cubic B-spline, so results differ
    slightly from :func:`elastic_deform`) and clamped to the batch's value range; labels take
    the value of the nearest pixel, exactly as in NumPy. Borders are mirrored.
    Returns the images, or ``(images, labels)``.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError("images must be a float tensor of shape (N, C, H, W)")
    N, _, H, W = images.shape
    if labels is not None and (
        not isinstance(labels, torch.Tensor) or labels.ndim not in (3, 4)
        or labels.shape[0] != N or tuple(labels.shape[-2:]) != (H, W)
    ):
        raise ValueError(f"labels must be a tensor (N, H, W) or (N, K, H, W) with N={N}, H={H}, W={W}")
    gh, gw = _grid_shape(grid)
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite standard deviation >= 0 in pixels, got {sigma!r}")
    dev = images.device
    nodes = torch.randn((N, 2, gh, gw), generator=generator, device=dev if generator is None
                        else generator.device, dtype=torch.float32).to(dev) * float(sigma)
    field = dense_field_torch(nodes, (H, W))
    # grid_sample wants (x, y) in [-1, 1]; with align_corners=True, -1 and 1 are pixel centres
    ys = torch.arange(H, device=dev, dtype=torch.float32)[:, None] + field[:, 0]
    xs = torch.arange(W, device=dev, dtype=torch.float32)[None, :] + field[:, 1]
    norm = torch.stack([xs * (2.0 / max(W - 1, 1)) - 1.0, ys * (2.0 / max(H - 1, 1)) - 1.0], -1)
    out = F.grid_sample(images, norm.to(images.dtype), mode="bicubic", padding_mode="reflection",
                        align_corners=True)
    out = out.clamp(images.min(), images.max())
    if labels is None:
        return out
    # nearest neighbour as in NumPy: round the position, mirror it into the image, gather
    iy = _mirror_torch(torch.round(ys).long(), H)
    ix = _mirror_torch(torch.round(xs).long(), W)
    flat = (iy * W + ix).flatten(1)  # (N, H*W)
    lab = labels if labels.ndim == 4 else labels[:, None]
    index = flat[:, None].expand(-1, lab.shape[1], -1)
    warped = lab.flatten(2).gather(2, index).reshape(lab.shape)
    return out, (warped if labels.ndim == 4 else warped[:, 0])


def _mirror_torch(positions: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`mirror_indices` for tensors."""
    if n == 1:
        return torch.zeros_like(positions)
    period = 2 * (n - 1)
    p = torch.remainder(positions, period)
    return torch.where(p >= n, period - p, p)


# ----------------------------------------------------------------------------------------------
# composable augmentations: aug(image, *labels, rng=rng)
# ----------------------------------------------------------------------------------------------


class _Augmentation:
    """Base: ``aug(image, *labels, rng=None)`` returns the image, or ``(image, *labels)``.

    ``p`` is the probability that the augmentation is applied at all.
    """

    p: float = 1.0

    def __call__(self, image, *labels, rng: np.random.Generator | int | None = None):
        rng = _as_rng(rng)
        image = _check_image(image)
        labels = tuple(_check_labels(labels, image.shape[-2:]))
        if self.p < 1.0 and rng.random() >= self.p:
            return (image, *labels) if labels else image
        image, labels = self.apply(image, labels, rng)
        return (image, *labels) if labels else image

    def apply(self, image, labels, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def _check_p(p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a probability and must lie in [0, 1], got {p!r}")
    return float(p)


class ElasticDeform(_Augmentation):
    """:func:`elastic_deform` as a composable augmentation."""

    def __init__(self, grid: int | Sequence[int] = 3, sigma: float = 10.0, p: float = 1.0):
        _grid_shape(grid)
        self.grid, self.sigma, self.p = grid, float(sigma), _check_p(p)

    def apply(self, image, labels, rng):
        if not labels:
            return elastic_deform(image, None, self.grid, self.sigma, rng), ()
        return elastic_deform(image, list(labels), self.grid, self.sigma, rng)


def _resample(image, labels, coords):
    flat = _nearest_flat_index(coords)
    return _cubic(image, coords), tuple(_nearest(lab, flat) for lab in labels)


class RandomShift(_Augmentation):
    """Shift by a whole number of pixels, uniform in [-max_shift, max_shift] per axis.

    Whole pixels: nothing is interpolated, labels and image move exactly; the border is mirrored.
    """

    def __init__(self, max_shift: int = 16, p: float = 1.0):
        if not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
            raise ValueError(f"max_shift must be a whole number of pixels >= 0, got {max_shift!r}")
        self.max_shift, self.p = int(max_shift), _check_p(p)

    def apply(self, image, labels, rng):
        H, W = image.shape[-2:]
        dy, dx = rng.integers(-self.max_shift, self.max_shift + 1, size=2)
        iy = mirror_indices(np.arange(H) - dy, H)
        ix = mirror_indices(np.arange(W) - dx, W)
        take = np.ix_(iy, ix)
        return image[..., take[0], take[1]], tuple(lab[..., take[0], take[1]] for lab in labels)


class RandomRotation(_Augmentation):
    """Rotate about the image centre by an angle uniform in [-degrees, degrees]; cubic for the
    image, nearest neighbour for labels, mirrored border."""

    def __init__(self, degrees: float = 180.0, p: float = 1.0):
        if not np.isfinite(degrees) or degrees < 0:
            raise ValueError(f"degrees must be a finite angle >= 0, got {degrees!r}")
        self.degrees, self.p = float(degrees), _check_p(p)

    def apply(self, image, labels, rng):
        H, W = image.shape[-2:]
        a = np.deg2rad(rng.uniform(-self.degrees, self.degrees))
        cy, cx = (H - 1) / 2, (W - 1) / 2
        y = np.arange(H, dtype=np.float64)[:, None] - cy
        x = np.arange(W, dtype=np.float64)[None, :] - cx
        coords = np.stack([cy + np.cos(a) * y - np.sin(a) * x, cx + np.sin(a) * y + np.cos(a) * x])
        return _resample(image, labels, coords)


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
    Expects an image in [0, 1].
    """

    def __init__(self, contrast: float = 0.2, brightness: float = 0.1, gamma: float = 0.3,
                 noise: float = 0.02, p: float = 1.0):
        for name, v in (("contrast", contrast), ("brightness", brightness), ("gamma", gamma),
                        ("noise", noise)):
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite amount >= 0, got {v!r}")
        self.contrast, self.brightness, self.gamma, self.noise = contrast, brightness, gamma, noise
        self.p = _check_p(p)

    def apply(self, image, labels, rng):
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


class Compose(_Augmentation):
    """Apply augmentations in order, all drawing from the one ``rng``:
    ``Compose([RandomFlip(), ElasticDeform(), GrayValue()])(image, mask, rng=rng)``."""

    def __init__(self, augmentations: Sequence[_Augmentation]):
        for a in augmentations:
            if not callable(a):
                raise TypeError(f"every augmentation must be callable, got {a!r}")
        self.augmentations, self.p = list(augmentations), 1.0

    def apply(self, image, labels, rng):
        for aug in self.augmentations:
            out = aug(image, *labels, rng=rng)
            image, labels = (out[0], tuple(out[1:])) if labels else (out, ())
        return image, labels

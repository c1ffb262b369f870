"""The paper's elastic deformation in NumPy: a random coarse grid, a dense field, one warp.

The paper trains on 30 annotated images. What makes that work (Section 3.1):

    "We generate smooth deformations using random displacement vectors on a coarse 3 by 3
    grid. The displacements are sampled from a Gaussian distribution with 10 pixels standard
    deviation. Per-pixel displacements are then computed using bicubic interpolation."

:func:`elastic_deform` is exactly these three steps, each a public function that the lesson
shows on its own, so that changing one of them changes the augmentation used in training:

* :func:`random_grid`   displacement vectors at the nodes of a coarse grid, N(0, sigma) pixels;
* :func:`dense_field`   bicubic interpolation of the grid to one displacement per pixel, with
                        Keys' cubic convolution kernel (:func:`keys_kernel`, a = -0.5);
* :func:`warp`          resampling: ``out[y, x] = in[y + dy(y, x), x + dx(y, x)]``, cubic for
                        images, nearest neighbour for labels (so label values stay in their set),
                        mirrored at the image border by the one rule of
                        :func:`unet_course.tiling.mirror_indices`.

:mod:`unet_course.elastic_torch` does the same for a batch of tensors with the same kernel and
the same mirroring rule.

Conventions: images are float arrays (H, W) or (C, H, W); labels are (H, W) arrays of any
dtype; displacements are in pixels, ordered (dy, dx), with shape (2, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage as ndi

from ..mirror import mirror_indices  # one mirroring rule for tiles, training tiles and warps
from ..validation import finite_number, int_pair, is_int, positive_int

__all__ = [
    "bicubic_upsample",
    "cubic_upsampling_matrix",
    "dense_field",
    "elastic_deform",
    "keys_kernel",
    "random_grid",
    "warp",
]

# The missing neighbour beyond the first or last node, f(-1) = 3 f(0) - 3 f(1) + f(2) (Keys
# 1981): the extrapolation that keeps cubic convolution exact for quadratics. With only two
# nodes a quadratic is not determined, and the linear f(-1) = 2 f(0) - f(1) is used.
_GHOST_WEIGHTS = (3.0, -3.0, 1.0)
_GHOST_WEIGHTS_TWO_NODES = (2.0, -1.0)


def keys_kernel(s, a: float = -0.5):
    """Keys' cubic convolution kernel W(s), the classic "bicubic" kernel, at distances ``s``.

    ``W(0) = 1``, ``W(±1) = W(±2) = 0``, zero beyond 2, so interpolation passes through the
    samples; ``a = -0.5`` is the one choice that reproduces quadratics. Written with operators
    only, so the one definition serves NumPy arrays (the field, :func:`cubic_upsampling_matrix`)
    and torch tensors (:func:`unet_course.elastic_torch.elastic_deform_torch`) alike; the result
    has the type and dtype of ``s``.
    """
    s = abs(s)
    near = ((a + 2) * s - (a + 3)) * s * s + 1
    far = ((a * s - 5 * a) * s + 8 * a) * s - 4 * a
    # masks instead of where(): x * 1 and y * 0 are exact, and numpy and torch spell it alike
    return near * (s <= 1) + far * ((s > 1) & (s < 2))


def cubic_upsampling_matrix(nodes: int, length: int) -> np.ndarray:
    """The float64 (length, nodes) matrix that interpolates ``nodes`` evenly spaced samples, the
    first at pixel 0 and the last at pixel ``length - 1``, to every pixel with :func:`keys_kernel`.

    ``field = A @ grid @ B.T`` is then the bicubic interpolation of a (nodes_h, nodes_w) grid
    to a (H, W) image. The curve passes through the node values exactly. Beyond the first and
    last node the missing neighbour is extrapolated as ``f(-1) = 3 f(0) - 3 f(1) + f(2)``
    (Keys 1981), which keeps the interpolation exact for quadratics; with 2 nodes it is linear.
    Every row sums to 1, so a constant grid gives a constant field.
    """
    nodes = positive_int(nodes, "nodes", minimum=0)
    if nodes < 2:
        raise ValueError(f"a cubic interpolation grid needs at least 2 nodes per axis, got {nodes}")
    length = positive_int(length, "length")
    u = np.linspace(0.0, nodes - 1.0, length) if length > 1 else np.zeros(1)
    i = np.minimum(np.floor(u).astype(int), nodes - 2)
    t = u - i
    # weights on the taps i-1, i, i+1, i+2; column j + 1 of `full` is node j, 0 and -1 are ghosts
    taps = np.stack([keys_kernel(t + 1), keys_kernel(t), keys_kernel(1 - t), keys_kernel(2 - t)], 1)
    full = np.zeros((length, nodes + 2))
    rows = np.arange(length)[:, None]
    np.add.at(full, (rows, i[:, None] + np.arange(4)), taps)
    ghost = list(_GHOST_WEIGHTS if nodes >= 3 else _GHOST_WEIGHTS_TWO_NODES)
    k = len(ghost)
    out = full[:, 1:-1].copy()
    out[:, :k] += full[:, :1] * ghost
    out[:, nodes - k :] += full[:, -1:] * ghost[::-1]
    return out


def bicubic_upsample(grid: np.ndarray, shape: tuple[int, int], dtype=np.float64) -> np.ndarray:
    """Interpolate a (..., gh, gw) grid of node values to (..., H, W) of ``dtype`` with
    :func:`cubic_upsampling_matrix`.

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
# step 1: the random grid
# ----------------------------------------------------------------------------------------------


def as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A NumPy Generator from a Generator (used as is), an int seed or None (fresh entropy)."""
    if rng is None or is_int(rng):
        return np.random.default_rng(rng)  # type: ignore[arg-type]
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(
        f"rng must be a numpy Generator (np.random.default_rng(seed)), an int seed or None, "
        f"got {type(rng).__name__}"
    )


def grid_shape(grid: object) -> tuple[int, int]:
    """Nodes per axis (gh, gw) from an int or a pair; at least 2 nodes, for a cubic curve."""
    return int_pair(grid, "grid (nodes per axis)", minimum=2)


def random_grid(
    grid: int | Sequence[int] = 3, sigma: float = 10.0, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Random displacement vectors on a coarse grid: float64 (2, gh, gw), N(0, sigma) pixels.

    ``[0]`` holds the row (y) displacements, ``[1]`` the column (x) displacements. The nodes are
    spread evenly over the image, the first and last on its border (see :func:`dense_field`).
    """
    gh, gw = grid_shape(grid)
    sigma = finite_number(sigma, "sigma (standard deviation in pixels)", minimum=0.0)
    return as_rng(rng).standard_normal((2, gh, gw)) * sigma


# ----------------------------------------------------------------------------------------------
# step 2: the dense field
# ----------------------------------------------------------------------------------------------


def dense_field(
    grid_displacements: np.ndarray, shape: tuple[int, int], dtype=np.float64, *,
    absolute: bool = False,
) -> np.ndarray:
    """Per-pixel displacements (2, H, W) of ``dtype`` from node displacements (2, gh, gw), in
    pixels, by bicubic interpolation (:func:`cubic_upsampling_matrix`; node (0, 0) sits on
    pixel (0, 0), the last node on pixel (H - 1, W - 1)). At the nodes the field equals the
    node values exactly.

    ``absolute=True`` returns the sampling positions ``(y + dy, x + dx)`` instead, for
    ``warp(..., absolute=True)``. They are computed by adding each node's own position to its
    displacement before interpolating: cubic interpolation reproduces linear functions, so this
    is the same as adding y and x afterwards, but with a single rounding, which makes float32
    positions exact to 1e-4 px on images up to 2048 px (and float32 halves the warp's time).
    """
    nodes = np.asarray(grid_displacements)
    if nodes.ndim != 3 or nodes.shape[0] != 2:
        raise ValueError(f"grid displacements must have shape (2, gh, gw), got {nodes.shape}")
    shape = int_pair(tuple(shape), "shape (H, W)")
    if absolute:
        gh, gw = nodes.shape[1:]
        nodes = nodes.astype(np.float64)  # a copy: the caller's nodes stay displacements
        nodes[0] += np.linspace(0, shape[0] - 1, gh)[:, None]
        nodes[1] += np.linspace(0, shape[1] - 1, gw)[None, :]
    return bicubic_upsample(nodes, shape, dtype)


# ----------------------------------------------------------------------------------------------
# step 3: the warp
# ----------------------------------------------------------------------------------------------


def _sample_coords(field: np.ndarray) -> np.ndarray:
    """Sampling positions (y + dy, x + dx) of a displacement field, in the field's dtype."""
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


def _nearest(label: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """The value of the nearest pixel: dtype and the set of values are kept (labels)."""
    H, W = label.shape[-2:]
    lead = label.shape[:-2]
    return np.take(label.reshape(lead + (H * W,)), _nearest_flat_index(coords), axis=-1)


def _linear(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Bilinear resampling of (..., H, W) at ``coords``, float32, mirrored at the border."""
    planes = image.reshape((-1,) + image.shape[-2:]).astype(np.float32, copy=False)
    out = np.stack([ndi.map_coordinates(p, coords, order=1, mode="mirror") for p in planes])
    return out.reshape(image.shape)


def _cubic(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Cubic B-spline resampling of (..., H, W) at ``coords``, clipped to the input's
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


_RESAMPLERS = {0: _nearest, 1: _linear, 3: _cubic}


def check_image(image: object, name: str = "image", *, any_lead: bool = False) -> np.ndarray:
    """``image`` as a NumPy array (H, W) or (C, H, W), or (..., H, W) with ``any_lead``;
    a torch tensor is refused with advice."""
    if isinstance(image, torch.Tensor):
        raise TypeError(
            f"{name} is a torch tensor; use elastic_deform_torch for tensors or pass image.numpy()"
        )
    image = np.asarray(image)
    if image.ndim < 2 or (image.ndim > 3 and not any_lead):
        expected = "(..., H, W)" if any_lead else "(H, W) or (C, H, W)"
        raise ValueError(f"{name} must have shape {expected}, got {image.shape}")
    return image


def check_labels(labels: Sequence[np.ndarray], shape: tuple[int, int]) -> list[np.ndarray]:
    """Every label as an array whose last two axes are the image's (H, W)."""
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


def warp(
    array: np.ndarray, field: np.ndarray, order: int = 3, *, absolute: bool = False
) -> np.ndarray:
    """Resample ``array`` (..., H, W) along a displacement field (2, H, W):
    ``out[..., y, x] = array[..., y + field[0, y, x], x + field[1, y, x]]``, mirrored at the border.

    ``order=3``: cubic B-spline interpolation (images; float32 result clipped to the input's
    range); ``order=1``: linear; ``order=0``: nearest neighbour (labels; dtype and the set of
    values are kept). ``absolute=True``: ``field`` holds the sampling positions (y + dy, x + dx)
    themselves, as ``dense_field(..., absolute=True)`` returns them, used in their own float
    dtype (float32 is twice as fast); a displacement field is used in float64.
    """
    if order not in _RESAMPLERS:
        raise ValueError(f"order must be 0 (nearest), 1 (linear) or 3 (cubic), got {order!r}")
    array = check_image(array, "array", any_lead=True)
    field = np.asarray(field)
    if field.shape != (2,) + array.shape[-2:]:
        raise ValueError(
            f"field must have shape (2, H, W) = (2, *array.shape[-2:]), got {field.shape}"
        )
    if not absolute or field.dtype not in (np.float32, np.float64):
        field = field.astype(np.float64, copy=False)
    # a NaN or an infinite displacement would pick an arbitrary pixel without a word
    if not (np.isfinite(field.min()) and np.isfinite(field.max())):
        raise ValueError("field must be finite everywhere, but it holds NaN or infinite values")
    coords = field if absolute else _sample_coords(field)
    return _RESAMPLERS[order](array, coords)


# ----------------------------------------------------------------------------------------------
# the paper's deformation: the three steps in a row
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
    image = check_image(image)
    shape = image.shape[-2:]
    many = isinstance(label, (list, tuple))
    labels = check_labels(label if many else ([] if label is None else [label]), shape)
    nodes = random_grid(grid, sigma, rng)                                # step 1
    positions = dense_field(nodes, shape, np.float32, absolute=True)     # step 2, as y+dy, x+dx
    out = warp(image, positions, order=3, absolute=True)                 # step 3: the image
    if label is None:
        return out
    warped = [warp(lab, positions, order=0, absolute=True) for lab in labels]  # and each label
    return out, (type(label)(warped) if many else warped[0])

"""The paper's weight map: class balance plus a strong weight on the borders between cells.

Ronneberger et al. (2015), Section 3, weight every pixel's loss with

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

where ``w_c`` balances the class frequencies, ``d1`` and ``d2`` are the distances (in pixels) to
the border of the nearest and the second-nearest cell, ``w0 = 10`` and ``sigma ~ 5`` px. The
second term is large only on the thin background gaps between two cells that (almost) touch,
so the network is pushed hard to keep them background: that is what separates touching cells
in the binary output.

The pieces:

* :func:`separation_border`   the pixels where two different cells meet (morphology);
* :func:`separated_mask`      the binary training target with those borders made background;
* :func:`class_balance_weights`  ``w_c`` from the class frequencies of a mask;
* :func:`unet_weight_map`     ``w`` for one instance-label image, fast.

Conventions: instance labels are an integer array (H, W), 0 = background and one positive id per
cell (the ``instances`` array of :func:`unet_course.data.touching_cells`); masks are class
indices, 0 = background, 1 = cell. All maps are float32 (H, W).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
from scipy import ndimage as ndi

from .postprocess import relabel_sequential
from .validation import finite_number

__all__ = [
    "border_cutoff",
    "class_balance_weights",
    "separated_mask",
    "separation_border",
    "unet_weight_map",
]

_SQUARE = np.ones((3, 3), bool)  # 8-connectivity for the binary-mask check


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------


def _as_instance_labels(instance_labels: object, name: str = "instance_labels") -> np.ndarray:
    """Validate an instance-label image and return it as an int32 (or int64) array (H, W)."""
    if hasattr(instance_labels, "detach"):  # a torch tensor: bring it to NumPy first
        instance_labels = instance_labels.detach().cpu().numpy()
    labels = np.asarray(instance_labels)
    if labels.ndim != 2:
        hint = " (for a batch, call it once per image)" if labels.ndim == 3 else ""
        raise ValueError(f"{name} must be one image (H, W), got shape {labels.shape}{hint}")
    if labels.dtype == bool:
        raise TypeError(
            f"{name} is a boolean mask, but the weight map needs one id per cell. Pass instance "
            "labels (int, 0 = background, 1..k one id per cell), e.g. the `instances` array of "
            "touching_cells; scipy.ndimage.label(mask)[0] works only if no two cells touch"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        hint = ""
        if np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)):
            if np.all(labels == np.round(labels)):
                hint = "; its values are whole numbers, so labels.astype(np.int32) is what you want"
            else:
                hint = "; its values are not whole numbers, so it is not a label image at all"
        raise TypeError(
            f"{name} must be an integer array (0 = background, 1..k one id per cell), "
            f"got dtype {labels.dtype}{hint}"
        )
    if labels.size and labels.min() < 0:
        raise ValueError(
            f"{name} has negative ids (min {labels.min()}); use 0 for background and positive "
            "ids for cells"
        )
    top = int(labels.max()) if labels.size else 0
    if top >= 2**63:  # uint64 ids past int64 would wrap to negatives: keep only their identity
        return relabel_sequential(labels)
    # int32 when the ids fit: the comparisons and find_objects below run faster on it
    labels = labels.astype(np.int32 if top < 2**31 else np.int64, copy=False)
    if top == 1:
        # only one id: either one cell or a binary mask passed by mistake. A single cell is
        # one connected region; a binary mask of several cells is not.
        _, regions = ndi.label(labels, structure=_SQUARE)
        if regions > 1:
            warnings.warn(
                f"{name} has the single id 1 spread over {regions} separate regions: this looks "
                "like a binary mask, so every cell counts as the same cell and no border gets "
                "weight. Pass one id per cell: the `instances` array of touching_cells, or "
                "scipy.ndimage.label(mask)[0] if no two cells touch",
                UserWarning,
                stacklevel=3,
            )
    return labels


# ----------------------------------------------------------------------------------------------
# morphology: where two cells meet
# ----------------------------------------------------------------------------------------------


def separation_border(instance_labels: np.ndarray) -> np.ndarray:
    """The separation border: the cell pixels that touch a *different* cell.

    A pixel belongs to the border if it is part of a cell and one of its 8 neighbours is part
    of another cell. Where two cells share an edge this marks the pixels on both sides of it, a
    line 2 px wide; cells with background between them get no border. Removing the border from
    the cells (:func:`separated_mask`) leaves no two cells adjacent, not even diagonally, so no
    connected component of the binary mask (4- or 8-connected) spans two cells.

    The morphology is done with shifted copies of the image, one comparison per neighbour
    direction: far cheaper than a grey-level dilation and erosion of the whole image.

    Args:
        instance_labels: int (H, W), 0 = background, 1..k one id per cell.

    Returns:
        bool (H, W), True on border pixels (always a subset of the cells).
    """
    return _border(_as_instance_labels(instance_labels))


def _border(labels: np.ndarray) -> np.ndarray:
    border = np.zeros(labels.shape, bool)
    # four directions cover all 8 neighbours: each pair of pixels is compared once
    for a, b in (
        ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),  # right
        ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),  # down
        ((slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None))),  # down-right
        ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))),  # down-left
    ):
        p, q = labels[a], labels[b]
        meet = (p != q) & (p > 0) & (q > 0)
        border[a] |= meet
        border[b] |= meet
    return border


def separated_mask(instance_labels: np.ndarray) -> np.ndarray:
    """The binary training target that can separate touching cells: int64 (H, W).

    1 = cell, 0 = background *or* separation border (:func:`separation_border`). This is the
    target the weight map of :func:`unet_weight_map` belongs to.
    """
    labels = _as_instance_labels(instance_labels)
    return ((labels > 0) & ~_border(labels)).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# w_c: class balance
# ----------------------------------------------------------------------------------------------


def class_balance_weights(mask: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """``w_c(x)``: a weight per pixel that gives every class present the same total weight.

    Normalisation: class k with pixel frequency ``f_k`` gets ``w_k = 1 / (K * f_k)``, where K
    is the number of classes present in ``mask``. Then every present class contributes the same
    total weight (``n_k * w_k = N / K``) and the weights average to exactly 1 over the image, so
    balancing changes the mix of the loss, not its scale. A mask with a single class gets 1
    everywhere.

    Args:
        mask: int (H, W) (or any shape) of class indices >= 0; for cells 0 = background, 1 = cell.
        num_classes: optional check that no index is >= num_classes.

    Returns:
        float32 array of the mask's shape.
    """
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.dtype == bool:
        mask = mask.astype(np.int64)
    if not np.issubdtype(mask.dtype, np.integer):
        raise TypeError(f"mask must hold integer class indices, got dtype {mask.dtype}")
    if mask.size == 0:
        return np.zeros(mask.shape, np.float32)
    if mask.min() < 0:
        raise ValueError(f"mask must hold class indices >= 0, got min {mask.min()}")
    if num_classes is not None and mask.max() >= num_classes:
        raise ValueError(f"mask has class index {mask.max()} but num_classes={num_classes}")
    if mask.max() >= mask.size:  # sparse indices: count them without a table up to the largest
        mask = relabel_sequential(mask)
    counts = np.bincount(mask.ravel()).astype(np.float64)
    present = counts > 0
    per_class = np.zeros_like(counts)
    per_class[present] = mask.size / (present.sum() * counts[present])  # 1 / (K f_k)
    return per_class[mask].astype(np.float32)


def _class_weight_map(mask: np.ndarray, class_weights: object) -> np.ndarray:
    if class_weights is None:
        return np.ones(mask.shape, np.float32)
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(
                f"class_weights must be 'balanced', a dict {{class: weight}} or None, "
                f"got {class_weights!r}"
            )
        return class_balance_weights(mask)
    if isinstance(class_weights, Mapping):
        missing = [k for k in (0, 1) if k not in class_weights]
        if missing:
            raise ValueError(
                f"class_weights needs a weight for class 0 (background) and class 1 (cell); "
                f"missing {missing}"
            )
        w0, w1 = (finite_number(class_weights[k], f"class_weights[{k}]", 0.0) for k in (0, 1))
        return np.where(mask > 0, w1, w0).astype(np.float32)
    raise TypeError(
        f"class_weights must be 'balanced', a dict {{class: weight}} or None, "
        f"got {type(class_weights).__name__}"
    )


# ----------------------------------------------------------------------------------------------
# the weight map
# ----------------------------------------------------------------------------------------------


def border_cutoff(w0: float = 10.0, sigma: float = 5.0, tol: float = 1e-3) -> int:
    """The distance D (px) beyond which a cell's distance need not be computed.

    If the second-nearest cell is further than D, then ``d1 + d2 > D`` and the border term is
    below ``w0 * exp(-D**2 / (2 sigma**2))``; D is the smallest integer that makes this at most
    ``tol``: ``D = ceil(sigma * sqrt(2 ln(w0 / tol)))`` (0 when w0 <= tol).
    For w0 = 10, sigma = 5, tol = 1e-3: D = 22 px.
    """
    w0 = finite_number(w0, "w0", 0.0)
    sigma = finite_number(sigma, "sigma (px)", 0.0, strict=True)
    tol = finite_number(tol, "tol", 0.0, strict=True)
    if w0 <= tol:
        return 0
    return math.ceil(sigma * math.sqrt(2.0 * math.log(w0 / tol)))


def unet_weight_map(
    instance_labels: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: str | Mapping[int, float] | None = "balanced",
    tol: float = 1e-3,
) -> np.ndarray:
    """The paper's weight map ``w = w_c + w0 exp(-(d1 + d2)^2 / (2 sigma^2))`` for one image.

    Cells are the instance labels with their separation border removed
    (:func:`separated_mask`); the background is everything else. On background pixels, d1 and
    d2 are the Euclidean distances (px) to the nearest pixel of the nearest and of the
    second-nearest cell; on cell pixels the border term is 0. With fewer than two cells there is
    no second cell, the border term is 0 everywhere and ``w = w_c``.

    Speed: instead of one full-image distance transform per cell, each cell's distances are
    computed only in its bounding box grown by ``D = border_cutoff(w0, sigma, tol)`` pixels.
    The result is exact wherever the second-nearest cell is within D; elsewhere both the exact
    and the computed border terms lie in [0, w0 exp(-D^2 / (2 sigma^2))], so

        max |unet_weight_map(...) - exact| <= w0 * exp(-D**2 / (2 sigma**2)) <= tol.

    Args:
        instance_labels: int (H, W), 0 = background, 1..k one id per cell (ids need not be
            consecutive, and may be as large as the dtype holds; any size, 0 x 0 included).
            Not a binary mask: that makes all cells one cell.
        w0: weight of the border term (10 in the paper).
        sigma: its width in pixels (about 5 in the paper).
        class_weights: ``"balanced"`` (:func:`class_balance_weights` of the separated mask),
            a dict ``{0: w_background, 1: w_cell}``, or None (w_c = 1 everywhere).
        tol: the largest allowed absolute error of the border term (see above).

    Returns:
        float32 (H, W), >= w_c everywhere and equal to it on cells.
    """
    labels = _as_instance_labels(instance_labels)
    w0 = finite_number(w0, "w0", 0.0)
    sigma = finite_number(sigma, "sigma (px)", 0.0, strict=True)
    cells = np.where(_border(labels), 0, labels)
    weights = _class_weight_map((cells > 0).astype(np.int64), class_weights)
    cutoff = border_cutoff(w0, sigma, tol)
    if cells.size == 0 or w0 == 0 or cutoff == 0:
        return weights
    if cells.max() >= cells.size:  # sparse ids: find_objects would allocate one entry per id
        cells = relabel_sequential(cells)
    boxes = ndi.find_objects(cells)
    present = [(i + 1, box) for i, box in enumerate(boxes) if box is not None]
    if len(present) < 2:
        return weights
    s1, s2 = _two_nearest_squared(cells, present, cutoff)
    far = np.iinfo(np.int32).max
    near = (s2 < far) & (cells == 0)  # a second cell within the cut-off, on background
    d_sum = np.sqrt(s1[near], dtype=np.float64) + np.sqrt(s2[near], dtype=np.float64)
    term = np.zeros(cells.shape)
    term[near] = w0 * np.exp(-(d_sum**2) / (2.0 * sigma**2))
    return (weights + term).astype(np.float32)


def _two_nearest_squared(
    cells: np.ndarray, present: list[tuple[int, tuple[slice, slice]]], cutoff: int
) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances (px^2, int32 (H, W)) to the nearest and the second-nearest cell.

    ``present`` lists (id, bounding box) of the cells; each cell's distances are computed in
    its box grown by ``cutoff`` px only. Pixels with no (second) cell within that reach keep
    ``np.iinfo(np.int32).max``, which stands for "far".
    """
    H, W = cells.shape
    rows, cols = np.arange(H, dtype=np.int32)[:, None], np.arange(W, dtype=np.int32)[None, :]
    # the two smallest *squared* distances seen so far: integers, so the updates are cheap
    far = np.iinfo(np.int32).max
    s1 = np.full((H, W), far, np.int32)
    s2 = np.full((H, W), far, np.int32)
    for cell_id, (rs, cs) in present:
        r0, r1 = max(rs.start - cutoff, 0), min(rs.stop + cutoff, H)
        c0, c1 = max(cs.start - cutoff, 0), min(cs.stop + cutoff, W)
        # the window holds the whole cell, so distances to it inside the window are exact;
        # the feature transform gives each pixel's nearest cell pixel, from which the squared
        # distance follows in integers
        nearest = ndi.distance_transform_edt(
            cells[r0:r1, c0:c1] != cell_id, return_distances=False, return_indices=True
        )
        nearest[0] -= rows[: r1 - r0]  # offsets in window coordinates, in place
        nearest[1] -= cols[:, : c1 - c0]
        np.square(nearest, out=nearest)
        sq = nearest[0]
        sq += nearest[1]
        win1, win2 = s1[r0:r1, c0:c1], s2[r0:r1, c0:c1]
        np.minimum(win2, np.maximum(win1, sq), out=win2)
        np.minimum(win1, sq, out=win1)
    return s1, s2

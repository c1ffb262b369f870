"""From the net's probability map to a mask, and from the mask to one label per cell.

The U-Net predicts, per pixel, the probability of "cell". Counting or measuring cells needs
*instances*: one id per cell. Three steps, each usable alone:

1. :func:`probability_to_mask`: threshold the probabilities (int64 mask, 1 = cell);
2. :func:`mask_to_instances`: connected components of the mask, small specks removed. This is
   what the paper relies on: its weighted loss teaches the net to leave a gap of background
   between touching cells, so the components *are* the cells;
3. :func:`split_touching` (optional): where the net did not leave such a gap, a watershed on the
   distance transform cuts a blob of touching round cells at its necks.

:func:`instances` chains them. Everything uses NumPy and SciPy only (no scikit-image).
"""

from __future__ import annotations

import heapq
import math
import numbers

import numpy as np
from scipy import ndimage as ndi

from .validation import finite_number, positive_int

__all__ = ["instances", "mask_to_instances", "probability_to_mask", "relabel_sequential",
           "split_touching"]

# 4-connectivity: two cells that meet only at a corner stay two components
_CROSS = ndi.generate_binary_structure(2, 1)
_SQUARE = ndi.generate_binary_structure(2, 2)


def _to_numpy(array: object) -> np.ndarray:
    if hasattr(array, "detach"):  # a torch tensor
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _check_probabilities(prob: object) -> np.ndarray:
    prob = _to_numpy(prob)
    if not (np.issubdtype(prob.dtype, np.floating)):
        raise TypeError(f"prob must be a float array of probabilities, got dtype {prob.dtype}")
    if np.isnan(prob).any():
        raise ValueError(f"prob has {int(np.isnan(prob).sum())} NaN value(s); a probability map "
                         "must be finite (check the net's input for NaNs)")
    # a softmax in float32 can land a rounding step above 1, never further
    if prob.size and (prob.min() < 0 or prob.max() > 1 + 1e-6):
        raise ValueError(
            f"prob must lie in [0, 1], got values in [{prob.min():.4g}, {prob.max():.4g}]: "
            "these look like logits, apply a softmax (or sigmoid) first"
        )
    return prob


def _check_threshold(threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold must be a number in [0, 1], got {threshold!r}")
    if math.isnan(threshold) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}")
    return float(threshold)


def _foreground(mask: object, name: str = "mask") -> np.ndarray:
    """A mask (bool or integer, non-zero = cell) as bool (H, W)."""
    mask = _to_numpy(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be one image (H, W), got shape {mask.shape}")
    if mask.dtype != bool and not np.issubdtype(mask.dtype, np.integer):
        raise TypeError(
            f"{name} must be a bool or integer mask (non-zero = cell), got dtype {mask.dtype}; "
            "for a probability map use probability_to_mask first"
        )
    return mask != 0


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Ids renumbered 1..k in increasing order, 0 (background) kept: int32 of ``labels``' shape.

    Any integer ids work, however large (a uint64 id of 2**64 - 1 included): tables indexed
    by id (``np.bincount``, ``ndi.find_objects``) then need k + 1 entries, not max id + 1.

    >>> relabel_sequential(np.array([[0, 7], [2**40, 7]])).tolist()
    [[0, 1], [2, 1]]
    """
    labels = _to_numpy(labels)
    if labels.dtype != bool and not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integer ids (0 = background), got dtype {labels.dtype}")
    if labels.size == 0:
        return np.zeros(labels.shape, np.int32)
    ids, inverse = np.unique(labels, return_inverse=True)
    if ids[0] < 0:
        raise ValueError(f"labels must be ids >= 0 (0 = background), got min {ids[0]}")
    inverse = inverse.reshape(labels.shape)
    if ids[0] != 0:  # no background pixel: the smallest id must become 1, not 0
        inverse += 1
    return inverse.astype(np.int32)


def _relabel_sizes(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Drop labels with fewer than ``min_size`` pixels, renumber the rest 1..n in order; int32.

    An empty map (0 x W or H x 0) gives an empty int32 map of its shape.
    """
    sizes = np.bincount(labels.ravel(), minlength=1)  # an empty map still has background 0
    keep = sizes >= max(min_size, 1)
    keep[0] = False
    lut = np.cumsum(keep).astype(np.int32)
    lut[~keep] = 0
    return lut[labels]


def probability_to_mask(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Threshold a probability map: int64 of ``prob``'s shape, 1 where ``prob > threshold``.

    Strictly greater, so ``threshold=1`` gives an empty mask and a pixel at exactly 0.5 is
    background at the default threshold (as in the CLI's ``predict``).

    Args:
        prob: float array, typically (H, W), of cell probabilities in [0, 1] (no NaN).
        threshold: a probability in [0, 1].
    """
    threshold = _check_threshold(threshold)
    prob = _check_probabilities(prob)
    return (prob > threshold).astype(np.int64)


def mask_to_instances(mask: np.ndarray, min_size: int = 0) -> np.ndarray:
    """Connected components of a mask: int32 (H, W), 0 = background, 1..n one id per component.

    Components are 4-connected (pixels sharing an edge), so cells that meet only at a corner
    stay apart. Components of fewer than ``min_size`` pixels (noise specks) are removed; the
    others are numbered 1..n in raster order of their first pixel.

    Args:
        mask: bool or integer (H, W), non-zero = cell (e.g. :func:`probability_to_mask`).
            An empty mask (H or W = 0) gives an empty map of its shape.
        min_size: the smallest component kept, in pixels.
    """
    min_size = positive_int(min_size, "min_size (pixels)", minimum=0)
    labels, _ = ndi.label(_foreground(mask), structure=_CROSS)
    return _relabel_sizes(labels, min_size)


def _peaks(distance: np.ndarray, fg: np.ndarray, min_distance: int) -> np.ndarray:
    """Markers int32: the local maxima of the distance map, one label per connected plateau."""
    size = 2 * min_distance + 1
    top = ndi.maximum_filter(distance, size=size, mode="constant", cval=0.0)
    peak = fg & (distance == top)
    # a flat top (a ridge of equal distances, or the 2x2 centre of an even disc) is one peak
    markers, n = ndi.label(peak, structure=_SQUARE)
    # a small cell next to a bigger one may hold no maximum of its own (the big one's higher
    # values fall in its window): give every such component a marker of its own
    components, n_comp = ndi.label(fg, structure=_CROSS)
    has_marker = np.zeros(n_comp + 1, bool)
    has_marker[components[markers > 0]] = True
    orphans = np.flatnonzero(~has_marker[1:]) + 1
    if len(orphans):
        new_id = np.zeros(n_comp + 1, np.int32)
        new_id[orphans] = np.arange(n + 1, n + 1 + len(orphans), dtype=np.int32)
        markers = np.where(markers > 0, markers, new_id[components])
    return markers.astype(np.int32)


def _flood(cost: np.ndarray, markers: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """Meyer's priority flood: grow the markers over ``fg`` in increasing order of ``cost``.

    A pixel takes the label of the first labelled 4-neighbour that reaches it; pixels wait in
    a heap ordered by their cost, ties first-in first-out. So each basin (a low region of
    ``cost``) fills from its own marker, and two floods meet where their basins meet.

    ``scipy.ndimage.watershed_ift`` would be the library call, but on a smooth cost such as a
    distance map it does not respect the basins (one of two equal touching discs took almost
    all of the other in our test), so this small flood is used instead. It visits each pixel
    once: O(N log N), about a second for a full 512 x 512 mask.

    Args:
        cost: float (H, W); markers: int (H, W), > 0 on the seeds; fg: bool (H, W), where to
            grow. Returns int32 (H, W), 0 outside ``fg`` and where no marker reaches.
    """
    width = fg.shape[1] + 2
    # one pixel of padding (not fg) around the image: neighbours never fall off an edge
    labels = np.pad(np.where(fg, markers, 0).astype(np.int64), 1).ravel()
    free = (np.pad(fg, 1).ravel() & (labels == 0)).tolist()
    costs = np.pad(cost.astype(np.float64), 1).ravel().tolist()
    label = labels.tolist()
    heap = [(costs[i], n, i) for n, i in enumerate(np.flatnonzero(labels > 0).tolist())]
    heapq.heapify(heap)
    order = len(heap)
    offsets = (1, -1, width, -width)
    while heap:
        _, _, p = heapq.heappop(heap)
        for q in (p + offsets[0], p + offsets[1], p + offsets[2], p + offsets[3]):
            if free[q]:
                free[q] = False
                label[q] = label[p]
                order += 1
                heapq.heappush(heap, (costs[q], order, q))
    out = np.asarray(label, np.int64).reshape(fg.shape[0] + 2, width)[1:-1, 1:-1]
    return out.astype(np.int32)


def _merge_shallow(regions: np.ndarray, height: np.ndarray, h: float) -> np.ndarray:
    """Merge neighbouring regions whose lower peak rises less than ``h`` above their saddle.

    The saddle of two 4-adjacent regions is the highest ``height`` at which one can step from
    one into the other (the larger of min(height[p], height[q]) over touching pixel pairs).
    Pairs are visited from the highest saddle down, so a merged region carries the higher of
    its peaks into the next comparison, as in flooding from h-maxima markers.
    """
    if h <= 0 or regions.max() < 2:
        return regions
    lo_parts, hi_parts, saddle_parts = [], [], []
    for a, b, ha, hb in (
        (regions[:, :-1], regions[:, 1:], height[:, :-1], height[:, 1:]),
        (regions[:-1], regions[1:], height[:-1], height[1:]),
    ):
        touch = (a != b) & (a > 0) & (b > 0)
        lo_parts.append(np.minimum(a, b)[touch])
        hi_parts.append(np.maximum(a, b)[touch])
        saddle_parts.append(np.minimum(ha, hb)[touch])
    lo, hi, saddle = (np.concatenate(x) for x in (lo_parts, hi_parts, saddle_parts))
    if lo.size == 0:
        return regions
    n = int(regions.max())
    peak = ndi.maximum(height, regions, index=np.arange(n + 1)).astype(np.float64)
    # one saddle per pair of regions: the highest of its touching pixel pairs
    key = lo.astype(np.int64) * (n + 1) + hi
    order = np.lexsort((saddle, key))
    key, saddle = key[order], saddle[order]
    last = np.r_[key[1:] != key[:-1], True]
    pairs = sorted(zip(saddle[last].tolist(), key[last].tolist()), reverse=True)

    parent = list(range(n + 1))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for s, k in pairs:
        ra, rb = root(k // (n + 1)), root(k % (n + 1))
        if ra != rb and min(peak[ra], peak[rb]) - s < h:
            parent[rb] = ra
            peak[ra] = max(peak[ra], peak[rb])
    lut = np.array([root(i) for i in range(n + 1)], np.int32)
    return lut[regions]


def split_touching(
    prob_or_mask: np.ndarray,
    min_distance: int = 3,
    threshold: float = 0.5,
    min_size: int = 0,
    h: float = 1.0,
) -> np.ndarray:
    """Split touching round cells with a watershed on the distance transform: int32 (H, W).

    1. The mask: ``prob > threshold`` for a float probability map, non-zero for a mask.
    2. Its Euclidean distance transform: for each cell pixel, the distance (px) to the nearest
       background pixel. A round cell has one maximum at its centre; two touching cells have
       two maxima with a saddle at the neck between them.
    3. Markers: pixels equal to the maximum of the distance in their (2 min_distance + 1)^2
       window (peak_local_max written with ``maximum_filter``; touching pixels of a flat top
       form one marker). So two maxima closer than ``min_distance`` px yield one cell.
       Then two neighbouring pieces merge when the lower of their two maxima rises less than
       ``h`` px above the neck between them (the h-maxima rule): the tiny bumps that a
       digital distance map has along the ridge of an elongated cell do not split it.
    4. A watershed of the negative distance from those markers, restricted to the mask (a
       priority flood: cell centres are the lowest points, necks are ridges): every cell pixel
       goes to the marker whose basin it lies in, and the cells end at the necks.

    Over-splitting is the risk: an elongated or irregular cell has several maxima along its
    ridge; raise ``min_distance`` (about the radius of the smallest cell) to merge them.
    Without touching cells, use :func:`mask_to_instances`, which cannot over-split.

    Args:
        prob_or_mask: float (H, W) probabilities in [0, 1], or a bool / integer mask (H, W).
        min_distance: the smallest distance between two cell centres, in px (>= 1).
        threshold: the probability threshold for a float input.
        min_size: pieces smaller than this (px) are removed.
        h: the least depth of a neck that separates two cells, in px of distance (0 keeps
            every marker's piece).

    Returns:
        int32 (H, W): 0 = background, 1..n one id per cell (touching cells share an edge).
    """
    min_distance = positive_int(min_distance, "min_distance (pixels)")
    min_size = positive_int(min_size, "min_size (pixels)", minimum=0)
    h = finite_number(h, "h", 0.0)
    array = _to_numpy(prob_or_mask)
    if np.issubdtype(array.dtype, np.floating):
        array = probability_to_mask(array, threshold)
    fg = _foreground(array, "prob_or_mask")
    if not fg.any():
        return np.zeros(fg.shape, np.int32)

    distance = ndi.distance_transform_edt(fg)
    markers = _peaks(distance, fg, min_distance)
    regions = _merge_shallow(_flood(-distance, markers, fg), distance, h)
    return _relabel_sizes(regions, min_size)


def instances(
    prob: np.ndarray,
    threshold: float = 0.5,
    min_size: int = 0,
    split: bool = False,
    min_distance: int = 3,
) -> np.ndarray:
    """Probability map -> instance labels, in one call: int32 (H, W), 0 = background.

    ``split=False``: :func:`probability_to_mask` then :func:`mask_to_instances` (the paper's
    way: the net separates the cells). ``split=True``: :func:`split_touching` with
    ``min_distance`` on the thresholded mask, for touching cells the net did not separate.
    Either way, pieces smaller than ``min_size`` pixels are removed and the ids are 1..n.

    Args:
        prob: float (H, W), cell probabilities in [0, 1].
        threshold: a probability in [0, 1]; cell where ``prob > threshold``.
        min_size: the smallest instance kept, in pixels.
        split: whether to cut touching cells with the watershed.
        min_distance: see :func:`split_touching` (px).
    """
    mask = probability_to_mask(prob, threshold)
    if split:
        return split_touching(mask, min_distance=min_distance, min_size=min_size)
    return mask_to_instances(mask, min_size=min_size)

"""Segmentation metrics of the ISBI 2012 challenge and two overlap scores.

Conventions: a *label map* is an integer array (H, W) with 1 = cell (foreground) and 0 =
membrane / background; a *probability map* is a float array (H, W) in [0, 1] giving the
probability of "cell". Tensors and arrays are both accepted. Every metric refuses, with a
``ValueError``, what would give a meaningless number: an empty (0 x 0) map, and a probability
map holding NaN or infinite values.

* :func:`pixel_error`  fraction of pixels whose class is wrong.
* :func:`rand_error`   1 - the maximal F-score of the foreground-restricted Rand index over
  cell segments (the challenge's main ranking metric, Arganda-Carreras et al. 2015).
* :func:`iou`, :func:`dice`  overlap of the foreground with the true foreground.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage as ndi

from .postprocess import relabel_sequential
from .validation import probability

__all__ = ["pixel_error", "rand_error", "rand_f_score", "segments", "iou", "dice",
           "DEFAULT_THRESHOLDS"]

# Thresholds swept over a probability map for the Rand score (the challenge reports the best).
DEFAULT_THRESHOLDS = tuple(np.round(np.linspace(0.1, 0.9, 9), 2))


def _as_array(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D map (H, W), got shape {x.shape}; "
                         "evaluate one image at a time")
    return x


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` and ``target`` as arrays (H, W), checked to be scoreable: same shape, at least
    one pixel, an integer target and, for a float ``pred``, finite probabilities in [0, 1]."""
    pred, target = _as_array(pred, "pred"), _as_array(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} must have the same shape")
    if not np.issubdtype(target.dtype, np.integer) and not np.issubdtype(target.dtype, np.bool_):
        raise TypeError(f"target must be an integer label map (1 = cell, 0 = membrane), got {target.dtype}")
    if pred.size == 0:  # a mean over no pixels is NaN, which would read as a score
        raise ValueError(f"pred and target are empty ({pred.shape[0]}x{pred.shape[1]}): "
                         "there is no pixel to score; pass images of at least 1x1")
    if np.issubdtype(pred.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(pred)))
        if bad:
            raise ValueError(f"pred has {bad} NaN or infinite value(s); a probability map must be "
                             "finite (a network with NaN weights gives NaN: was the learning rate "
                             "too high?)")
        if pred.min() < 0 or pred.max() > 1:
            raise ValueError("a float pred must be a probability map in [0, 1]; "
                             "apply softmax to logits first, or pass integer labels")
    return pred, target


def _binary(pred: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Cell mask from a label map (> 0) or a checked probability map (> threshold)."""
    if np.issubdtype(pred.dtype, np.floating):
        return pred > probability(threshold, "threshold")
    return pred > 0


def _cells(pred, target, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The predicted and the true cell pixels, bool (H, W) each, after :func:`_pair`'s checks."""
    pred, target = _pair(pred, target)
    return _binary(pred, threshold), target > 0


def pixel_error(pred, target, threshold: float = 0.5) -> float:
    """Fraction of pixels whose class differs from ``target`` (0 is perfect, 1 all wrong).

    ``pred``: label map or probability map (thresholded at ``threshold``); ``target``: label map.
    Empty maps and NaN or infinite probabilities raise a ``ValueError``.
    """
    p, t = _cells(pred, target, threshold)
    return float(np.mean(p != t))


def segments(cell_mask: np.ndarray) -> np.ndarray:
    """Cell segments: 4-connected components of the cell pixels, 1..K; membrane pixels 0.

    4-connectivity because a one-pixel diagonal membrane must still separate two cells.
    """
    labels, _ = ndi.label(np.asarray(cell_mask, dtype=bool))
    return labels


def rand_f_score(pred_segments: np.ndarray, true_segments: np.ndarray) -> float:
    """F-score of the foreground-restricted Rand index between two segmentations.

    Only pixels inside a true segment (``true_segments > 0``) count. Predicted segment 0
    (predicted membrane) is not one big segment: each of its pixels counts as a segment of its
    own, so predicting membrane inside a cell splits it instead of being free. With the
    contingency p_ij of predicted segment i and true segment j (as fractions of the counted
    pixels), precision = sum p_ij^2 / sum_i (sum_j p_ij)^2 and recall = sum p_ij^2 / sum_j
    (sum_i p_ij)^2; the score is their harmonic mean.
    """
    pred_segments, true_segments = np.asarray(pred_segments), np.asarray(true_segments)
    inside = true_segments > 0
    t, p = _dense(true_segments[inside]), _dense(pred_segments[inside])
    n = t.size
    if n == 0:
        return 1.0 if not np.any(pred_segments > 0) else 0.0
    singletons = p == 0
    # Joint counts of (pred, true) pairs among pixels that lie in a predicted segment.
    pairs = p[~singletons] * (int(t.max()) + 1) + t[~singletons]
    if (int(p.max()) + 1) * (int(t.max()) + 1) <= 4 * pairs.size + 1024:
        joint = np.bincount(pairs).astype(np.float64)
    else:  # many segments on both sides: a dense table would be (pred x true) entries, GBs
        joint = np.unique(pairs, return_counts=True)[1].astype(np.float64)
    pred_sizes = np.bincount(p[~singletons]).astype(np.float64)
    true_sizes = np.bincount(t).astype(np.float64)
    # Each singleton pixel contributes 1 to sum p_ij^2 and to sum_i s_i^2 (its own segment).
    both = (joint ** 2).sum() + singletons.sum()
    precision = both / ((pred_sizes ** 2).sum() + singletons.sum())
    recall = both / (true_sizes ** 2).sum()
    return float(2 * precision * recall / (precision + recall))


def _dense(ids: np.ndarray) -> np.ndarray:
    """Segment ids as int64, renumbered 1..k (0 kept) when they are sparse, so that the
    ``bincount`` tables of :func:`rand_f_score` stay as small as the pixel count."""
    if ids.size and int(ids.max()) >= ids.size:
        return relabel_sequential(ids).astype(np.int64)
    return ids.astype(np.int64)


def rand_error(pred, target, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> float:
    """ISBI 2012 Rand error: 1 - the maximal foreground-restricted Rand F-score.

    Segments are formed as follows. Prediction: the pixels classified as cell (label > 0, or
    probability > t) are split into 4-connected components; each component is a segment. A
    probability map is thresholded at every t in ``thresholds`` and the best score is kept, as
    the challenge does. Truth: the 4-connected components of ``target > 0``, or, if ``target``
    holds instance ids (more than two values), those ids. The score is then
    :func:`rand_f_score`. The error is invariant to relabelling the segments; 0 is perfect.
    """
    pred, target = _pair(pred, target)
    if len(thresholds) == 0:
        raise ValueError("thresholds must hold at least one probability, e.g. DEFAULT_THRESHOLDS")
    truth = target if np.unique(target).size > 2 else segments(target > 0)
    if np.issubdtype(pred.dtype, np.floating):
        best = max(rand_f_score(segments(_binary(pred, t)), truth) for t in thresholds)
    else:
        best = rand_f_score(segments(pred > 0), truth)
    return 1.0 - best


def iou(pred, target, threshold: float = 0.5) -> float:
    """Intersection over union of the predicted and true cell pixels (1 if both are empty)."""
    p, t = _cells(pred, target, threshold)
    union = np.logical_or(p, t).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, t).sum() / union)


def dice(pred, target, threshold: float = 0.5) -> float:
    """Dice coefficient 2|P & T| / (|P| + |T|) of the cell pixels (1 if both are empty)."""
    p, t = _cells(pred, target, threshold)
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(p, t).sum() / total)

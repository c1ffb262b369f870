"""Scores for instances (one id per cell), not pixels: which cells were found, and how well.

A pixel error cannot tell one cell split in two from two cells found correctly: every pixel
has the right class in both. An instance score compares the cells themselves. The Cell
Tracking Challenge's SEG measure (Ulman et al. 2017) does it in the simplest way:

* a predicted cell *matches* a true cell when it covers more than half of the true cell's
  pixels, so each true cell has at most one match;
* SEG is the mean, over the true cells, of the matched pair's intersection over union
  (0 for a true cell without a match).

A cell split in two by the watershed keeps its larger half as the match and loses the other
half's pixels from the IoU; two cells merged into one keep at most one match. Label maps are
integer arrays (H, W) with 0 = background and 1..n the cells.
"""

from __future__ import annotations

import numpy as np

from .validation import label_image

__all__ = ["match_instances", "seg_score"]


def _labels(x, name: str) -> np.ndarray:
    array = label_image(x, name)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D label map (H, W), got shape "
                         f"{array.shape}")
    return array


def match_instances(pred, truth) -> dict[int, tuple[int, float]]:
    """For every true cell id, its matching predicted id and their IoU (id 0: no match, IoU 0).

    ``pred`` and ``truth`` are label maps (H, W) of one shape, 0 = background. A predicted cell
    matches a true cell when it covers more than half of the true cell's pixels.
    """
    pred, truth = _labels(pred, "pred"), _labels(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth must have one shape, got {pred.shape} and {truth.shape}")
    # One table of pair counts: rows true ids, columns predicted ids.
    t_ids, t_idx = np.unique(truth, return_inverse=True)
    p_ids, p_idx = np.unique(pred, return_inverse=True)
    counts = np.zeros((len(t_ids), len(p_ids)), dtype=np.int64)
    np.add.at(counts, (t_idx.ravel(), p_idx.ravel()), 1)
    t_size, p_size = counts.sum(1), counts.sum(0)
    matches = {}
    for row, t in enumerate(t_ids):
        if t == 0:
            continue
        cover = counts[row].copy()
        cover[p_ids == 0] = 0  # background never matches a cell
        col = int(cover.argmax())
        if 2 * cover[col] > t_size[row]:
            union = t_size[row] + p_size[col] - cover[col]
            matches[int(t)] = (int(p_ids[col]), float(cover[col] / union))
        else:
            matches[int(t)] = (0, 0.0)
    return matches


def seg_score(pred, truth) -> float:
    """SEG: the mean IoU of each true cell with its match (0 if unmatched); 1.0 = every cell exact.

    Returns 1.0 when ``truth`` has no cells and ``pred`` has none either, 0.0 when ``truth``
    has none but ``pred`` has some.
    """
    matches = match_instances(pred, truth)
    if not matches:
        return 1.0 if not np.any(_labels(pred, "pred")) else 0.0
    return float(np.mean([iou for _, iou in matches.values()]))

"""Figures of results for the lessons: error overlays, training curves, label colour maps."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap

from ..validation import is_int, positive_int
from .legibility import LOG_VARIABLE, record_figure_text

__all__ = ["error_overlay", "label_colors", "matched_label_images", "plot_history"]

# Label colours are drawn from [0.25, 1] per RGB channel: never so dark that a cell could be
# mistaken for the black background.
_DARKEST = 0.25


def error_overlay(image, pred, truth) -> np.ndarray:
    """RGB (H, W, 3) float image: the gray slice dimmed, red = false cell, blue = false membrane.

    ``image`` (H, W) in [0, 1]; ``pred`` and ``truth`` (H, W) with 1 (or True) = cell.
    """
    image, pred, truth = (np.asarray(a) for a in (image, pred, truth))
    if not image.shape == pred.shape == truth.shape or image.ndim != 2:
        raise ValueError(f"image, pred and truth must be (H, W) of one shape, got {image.shape}, "
                         f"{pred.shape}, {truth.shape}")
    rgb = np.repeat(np.clip(image, 0, 1)[..., None], 3, axis=2).astype(np.float32) * 0.8
    pred, truth = pred.astype(bool), truth.astype(bool)
    rgb[pred & ~truth] = (1.0, 0.1, 0.1)
    rgb[~pred & truth] = (0.1, 0.3, 1.0)
    return rgb


def label_colors(labels, seed: int = 1) -> ListedColormap:
    """A colour map for instance labels: every id its own random colour, 0 (background) black.

    ``labels`` is the highest id (an int) or a label array (its maximum is used), so both
    ``label_colors(instances)`` and ``label_colors(n_cells)`` work. Ids 0..highest map to the
    colour map's entries one to one: show the labels with
    ``imshow(labels, cmap=label_colors(labels), interpolation="nearest")``. The same ``seed``
    gives the same colours.
    """
    if is_int(labels):
        highest = positive_int(labels, "labels (the highest id)", minimum=0)
    else:
        arr = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
        if arr.dtype.kind not in "iub" or arr.size == 0:
            raise TypeError(f"labels must be an int (the highest id) or a non-empty array of "
                            f"integer ids, got {arr.dtype} array of shape {arr.shape}")
        if arr.min() < 0:
            raise ValueError(f"label ids must be >= 0 (0 = background), found {arr.min()}")
        highest = int(arr.max())
    colors = np.random.default_rng(seed).uniform(_DARKEST, 1.0, size=(highest + 1, 3))
    colors[0] = 0.0
    return ListedColormap(colors)


def matched_label_images(pred, truth, matches: dict[int, tuple[int, float]],
                         seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """RGB (H, W, 3) images of ``truth`` and ``pred`` in which a matched pair shares one colour.

    ``matches`` is :func:`unet_course.instance_metrics.match_instances` (true id -> (predicted
    id, IoU)). Background is black; a true cell without a match is white in the truth panel, and
    a predicted cell that matches no true cell (an extra piece of a split, a false cell) is gray
    in the prediction panel, so a reader sees at a glance what was missed and what was added.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    colors = np.random.default_rng(seed).uniform(_DARKEST, 1.0, size=(int(truth.max()) + 1, 3))
    truth_rgb, pred_rgb = np.zeros(truth.shape + (3,)), np.zeros(pred.shape + (3,))
    pred_rgb[pred > 0] = 0.5  # unmatched predictions stay gray
    for t, (p, _) in matches.items():
        truth_rgb[truth == t] = colors[t] if p else 1.0
        if p:
            pred_rgb[pred == p] = colors[t]
    return truth_rgb, pred_rgb


def plot_history(history, ax=None, smooth: int = 10):
    """Plot the training loss of a :class:`unet_course.train.History` (and validation metrics).

    The raw per-step loss is drawn faintly, its running mean over ``smooth`` steps boldly; the
    validation Rand and pixel errors, if any, go on a second axis. Returns the Axes.
    """
    smooth = positive_int(smooth, "smooth (steps)")
    steps, loss = list(history.steps), list(history.loss)
    if not steps:
        raise ValueError("the history is empty: nothing was trained")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(steps, loss, color="tab:blue", alpha=0.25, lw=0.8, label="loss per step")
    k = max(1, min(smooth, len(loss)))
    kernel = torch.ones(k) / k
    mean = torch.nn.functional.conv1d(torch.tensor(loss)[None, None], kernel[None, None])[0, 0]
    ax.plot(steps[k - 1:], mean.tolist(), color="tab:blue", lw=2, label=f"mean of {k} steps")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if history.val:
        ax2 = ax.twinx()
        vs = [v["step"] for v in history.val]
        for key, color in (("rand_error", "tab:red"), ("pixel_error", "tab:orange")):
            ax2.plot(vs, [v[key] for v in history.val], "o-", color=color,
                     label=f"validation {key}")
        ax2.set_ylabel("validation error")
        ax2.set_ylim(bottom=0)
        lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        ax.legend(lines, [h.get_label() for h in lines], loc="upper right")
    else:
        ax.legend(loc="upper right")
    return ax


#: Text sizes (points) for figures shown at the book's column width. At 100 dpi (the notebooks')
#: text of s pt is drawn s * 100 / 72 px high; a PNG wider than the column (676 px at a 1280-px
#: window) is shrunk to it, so 11-pt text stays at 11 px or more only in figures at most
#: 11 * 100 / 72 * 676 / 11 = 939 px, about 9.3 inches, wide. The lessons keep their figures
#: within that width and their text at 11 pt or more (tests/test_figure_text.py measures it).
BOOK_FONT_SIZES = {"font.size": 12.0, "axes.titlesize": 13.0, "axes.labelsize": 12.0,
                   "legend.fontsize": 11.0, "figure.titlesize": 14.0}


def book_style() -> None:
    """Set matplotlib's text sizes so that the lessons' figures stay legible in the book.

    Changes only :data:`BOOK_FONT_SIZES` in ``matplotlib.rcParams``, for the running session;
    call it once after importing pyplot. Figures made before the call keep their sizes. When the
    environment variable ``UNET_COURSE_FIGURE_TEXT_LOG`` names a file (``make notebooks`` sets
    it), the smallest text of every figure shown from now on is logged there
    (:func:`unet_course.viz.legibility.record_figure_text`).
    """
    plt.rcParams.update(BOOK_FONT_SIZES)
    log = os.environ.get(LOG_VARIABLE)
    if log:
        record_figure_text(log)

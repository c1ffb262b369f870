"""Lesson 05's experiment: does the paper's weight map make a net separate touching cells?

The same small same-padded U-Net and crops are trained once per pixel weighting (none, class
balance only, the paper's map with its separation-border term), and each net is scored by the
held-out cells it separates (one predicted component matching one true cell with IoU > 0.5).
``tests/test_lesson_claims.py`` reruns it. Re-exported from :mod:`unet_course.experiments`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi

from ..data import touching_cells
from ..losses import weighted_cross_entropy
from ..model import UNet
from ..settings import device as default_device
from ..settings import seed_everything
from ..weights import class_balance_weights, separated_mask, unet_weight_map

__all__ = ["CellSplit", "touching_split", "separation_weights", "train_separation_net",
           "separated_cells", "SeparationScore", "compare_weightings"]


@dataclass
class CellSplit:
    """``touching_cells`` images for training and held out, with instance labels and targets.

    Images float32 (n, H, W); instances int32 (one id per cell); targets int64, the
    :func:`~unet_course.weights.separated_mask` of each (1 = cell, 0 = background and the
    separation borders between touching cells).
    """

    train_images: np.ndarray
    train_instances: np.ndarray
    train_targets: np.ndarray
    test_images: np.ndarray
    test_instances: np.ndarray
    test_targets: np.ndarray

    @property
    def test_cells(self) -> int:
        """The number of cells in the held-out images: the most a net can separate."""
        return int(sum(i.max() for i in self.test_instances))


def touching_split(n_train: int = 24, n_test: int = 8, size: int = 128, seed: int = 1,
                   test_seed: int = 2) -> CellSplit:
    """Lesson 05's data: ``touching_cells(n_train, size, seed)`` to train on and
    ``touching_cells(n_test, size, test_seed)`` held out."""
    train_images, _, train_instances = touching_cells(n_train, size=size, seed=seed)
    test_images, _, test_instances = touching_cells(n_test, size=size, seed=test_seed)
    return CellSplit(train_images, train_instances,
                     np.stack([separated_mask(i) for i in train_instances]),
                     test_images, test_instances,
                     np.stack([separated_mask(i) for i in test_instances]))


def separation_weights(split: CellSplit) -> dict[str, np.ndarray]:
    """The three pixel weightings lesson 05 compares, float32 (n_train, H, W) each.

    ``"no weights"``: 1 everywhere (plain cross-entropy); ``"w_c only"``: the class balance of
    the separated masks, no border term; ``"w (paper)"``: the paper's map
    ``w_c + w0 exp(-(d1 + d2)^2 / (2 sigma^2))`` with w0 = 10, sigma = 5.
    """
    return {
        "no weights": np.ones(split.train_targets.shape, np.float32),
        "w_c only": np.stack([class_balance_weights(t) for t in split.train_targets]),
        "w (paper)": np.stack([unet_weight_map(i) for i in split.train_instances]),
    }


def train_separation_net(images, targets, weights, steps: int = 200, seed: int = 0, *,
                         crop: int = 64, batch_size: int = 4, lr: float = 3e-3,
                         loss_fn: Callable = weighted_cross_entropy, device=None) -> UNet:
    """Lesson 05's net: a small same-padded U-Net (depth 3, 8 base channels, batch norm, no
    dropout) trained with Adam on random crops, each pixel's loss multiplied by ``weights``.

    Every step takes ``batch_size`` images at random and the same ``crop`` x ``crop`` window of
    each. ``seed`` sets the initial weights and the crops, so two calls with the same seed see
    the same crops and differ only in ``weights``. ``loss_fn(logits, targets, weights)`` is the
    paper's weighted cross-entropy unless replaced. ``device`` defaults to
    :func:`unet_course.device`. Returns the net in evaluation mode.
    """
    dev = default_device() if device is None else torch.device(device)
    seed_everything(seed)
    net = UNet(depth=3, base_channels=8, padding="same", batch_norm=True, dropout=0.0).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x_all = torch.from_numpy(np.asarray(images, np.float32))[:, None].to(dev)
    y_all = torch.from_numpy(np.asarray(targets, np.int64)).to(dev)
    w_all = torch.from_numpy(np.asarray(weights, np.float32)).to(dev)
    n, height, width = y_all.shape
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, n, (batch_size,), generator=gen)
        r = int(torch.randint(0, height - crop + 1, (1,), generator=gen))
        c = int(torch.randint(0, width - crop + 1, (1,), generator=gen))
        rows, cols = slice(r, r + crop), slice(c, c + crop)
        loss = loss_fn(net(x_all[idx][..., rows, cols]), y_all[idx][:, rows, cols],
                       w_all[idx][:, rows, cols])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


def separated_cells(pred, instances) -> int:
    """The number of true cells matched by one connected component of ``pred`` with IoU > 0.5.

    ``pred``: a binary cell mask (H, W); ``instances``: the true instance labels. A match with
    IoU above 0.5 is unique, so no component counts twice. A blob that covers two cells of
    similar size has an IoU below 0.5 with each and counts for neither.
    """
    comps, n_comps = ndi.label(pred)  # 4-connected components of the predicted cell mask
    instances = np.asarray(instances).astype(np.int64)
    n_true = int(instances.max())
    pairs = np.bincount(instances.ravel() * (n_comps + 1) + comps.ravel(),
                        minlength=(n_true + 1) * (n_comps + 1)).reshape(n_true + 1, n_comps + 1)
    inter = pairs[1:, 1:]
    union = pairs[1:].sum(1)[:, None] + pairs[:, 1:].sum(0)[None, :] - inter
    return int((inter / np.maximum(union, 1) > 0.5).any(axis=1).sum())


@dataclass
class SeparationScore:
    """One net's result on lesson 05's held-out images.

    ``predictions`` int64 (n, H, W) class indices; ``accuracy`` their pixel accuracy against the
    separated masks; ``blobs`` the connected components of all predicted masks; ``separated``
    the cells matched with IoU > 0.5 (:func:`separated_cells`), summed over the images.
    """

    predictions: np.ndarray
    accuracy: float
    blobs: int
    separated: int


def compare_weightings(split: CellSplit, steps: int = 200, seed: int = 0,
                       weightings: dict[str, np.ndarray] | None = None,
                       **options) -> dict[str, SeparationScore]:
    """Lesson 05's experiment: train the net once per weighting, all with the same ``seed``
    (the same initial weights and crops), and score each on the held-out images.

    ``weightings`` defaults to :func:`separation_weights`; ``options`` go to
    :func:`train_separation_net`.
    """
    weightings = separation_weights(split) if weightings is None else weightings
    x_test = torch.from_numpy(np.asarray(split.test_images, np.float32))[:, None]
    scores = {}
    for name, weights in weightings.items():
        net = train_separation_net(split.train_images, split.train_targets, weights, steps, seed,
                                   **options)
        with torch.no_grad():
            pred = net(x_test.to(next(net.parameters()).device)).argmax(1).cpu().numpy()
        scores[name] = SeparationScore(
            pred, float((pred == split.test_targets).mean()),
            int(sum(ndi.label(p)[1] for p in pred)),
            int(sum(separated_cells(p, i) for p, i in zip(pred, split.test_instances))))
    return scores

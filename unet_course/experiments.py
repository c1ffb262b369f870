"""The small training experiments that lessons show and tests rerun.

A lesson states a claim about training ("the cpu preset halves the Rand error of a threshold
on held-out slices"); float rounding differs between processors and thread counts, so one run
proves little. Each experiment here is one function of a seed: the lesson calls it once and
shows the result, and ``tests/test_training_claims.py`` calls it at several seeds with torch at
1 and 2 threads and asserts the same claim every time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from torch import nn

from .augment import ElasticDeform
from .baseline import threshold_segmentation
from .data import TileDataset, synthetic_em, touching_cells
from .losses import weighted_cross_entropy
from .metrics import iou, pixel_error, rand_error
from .model import UNet
from .presets import get_preset, train
from .settings import device as default_device
from .settings import seed_everything
from .train import History, evaluate
from .weights import class_balance_weights, separated_mask, unet_weight_map

__all__ = ["Split", "em_split", "otsu_scores", "RunResult", "train_and_score", "LESSON06",
           "torch_threads",
           # lesson 04
           "TileScore", "DeformationRun", "train_tile_net", "tile_pixel_error",
           "compare_deformation",
           # lesson 05
           "CellSplit", "touching_split", "separation_weights", "train_separation_net",
           "separated_cells", "SeparationScore", "compare_weightings",
           # lesson 07
           "predict_classes", "pixel_accuracy", "foreground_iou", "train_tiny"]

#: The lesson-06 scale of each preset: small enough for a laptop CPU in seconds. Same parts,
#: fewer channels and levels; the paper preset keeps valid padding, SGD 0.99 and batch 1.
LESSON06 = {
    "paper": dict(depth=3, base_channels=8, dropout=0.0, tile=124, lr=0.002),
    "cpu": dict(depth=3, base_channels=8, tile=128),
}


@dataclass
class Split:
    """Training and held-out slices: images float32 (n, H, W), masks int64, instances int32."""

    train_images: np.ndarray
    train_masks: np.ndarray
    train_instances: np.ndarray
    test_images: np.ndarray
    test_masks: np.ndarray


def em_split(n_train: int = 4, n_test: int = 2, size: int = 256, seed: int = 0) -> Split:
    """``synthetic_em`` slices: the first ``n_train`` to train on, the last ``n_test`` held out."""
    images, masks, instances = synthetic_em(n_train + n_test, size=size, seed=seed)
    return Split(images[:n_train], masks[:n_train], instances[:n_train],
                 images[n_train:], masks[n_train:])


def otsu_scores(images, masks) -> dict[str, float]:
    """Mean pixel and Rand error of Otsu's threshold + morphology on the same images."""
    preds = [threshold_segmentation(im) for im in images]
    return {"pixel_error": float(np.mean([pixel_error(p, m) for p, m in zip(preds, masks)])),
            "rand_error": float(np.mean([rand_error(p, m) for p, m in zip(preds, masks)]))}


@dataclass
class RunResult:
    """One training run: the trained net, its losses and held-out scores (None if it diverged)."""

    model: object
    history: History
    scores: dict[str, float] | None
    diverged_at: int | None = None

    @property
    def trained(self) -> bool:
        return self.scores is not None

    def beats(self, baseline: dict[str, float]) -> bool:
        """Trained, with lower pixel AND Rand error than ``baseline`` (e.g. :func:`otsu_scores`).

        The lessons' meaning of "learnt something useful".
        """
        return self.trained and all(self.scores[k] < baseline[k]
                                    for k in ("pixel_error", "rand_error"))


def train_and_score(preset: str, split: Split, steps: int, seed: int = 0,
                    **overrides) -> RunResult:
    """Train ``preset`` at its lesson-06 scale (plus ``overrides``) and score the held-out slices.

    A run whose loss becomes NaN or infinite is reported with ``diverged_at`` (the step) and no
    scores instead of raising, so a lesson can show it beside the runs that trained.
    """
    options = {**LESSON06.get(preset, {}), **overrides}
    p = get_preset(preset, **options)
    try:
        model, history = train(p, split.train_images, split.train_masks, split.train_instances,
                               steps=steps, seed=seed, progress=False)
    except FloatingPointError as err:
        return RunResult(None, err.history, None, diverged_at=err.step)
    return RunResult(model, history, evaluate(model, split.test_images, split.test_masks))


# ---------------------------------------------------------------------------------------------
# Lessons 04, 05 and 07: their experiments, rerun by tests/test_lesson_claims.py


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with torch limited to ``n`` CPU threads, then restore the previous count.

    Layers as small as the lessons' are often faster on one thread than split over two. The
    count also changes the order of float additions, so the tests of the lessons' claims run
    every experiment at 1 and at 2 threads.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# Lesson 04: does elastic deformation help a net that sees only two training images?


@dataclass
class TileScore:
    """Pixel error of a valid net on a fixed set of tiles, with the tiles and its predictions.

    ``inputs`` float32 (tiles, 1, in, in), ``targets`` and ``predictions`` int64 (tiles, out, out).
    """

    error: float
    inputs: torch.Tensor
    targets: torch.Tensor
    predictions: torch.Tensor


def train_tile_net(images, masks, augment: Callable | None = None, steps: int = 200,
                   seed: int = 0, *, tile: int = 92, depth: int = 2, base_channels: int = 16,
                   batch_size: int = 4, lr: float = 3e-3) -> UNet:
    """Lesson 04's net: a small valid U-Net trained with Adam on random tiles of ``images``.

    Each of the ``steps`` batches holds ``batch_size`` tiles from :class:`TileDataset`, input
    edge ``model.valid_input_size(tile)``, passed through ``augment`` (None: no augmentation);
    the loss is plain cross-entropy. ``seed`` sets the initial weights and the tiles (which
    image, where, and the augmentation's random numbers). Trains on the CPU and returns the net
    in evaluation mode.
    """
    seed_everything(seed)
    model = UNet(depth=depth, base_channels=base_channels)
    n_in = model.valid_input_size(tile)
    data = TileDataset(images, masks, n_in, model.output_size(n_in), augment=augment,
                       length=batch_size * steps, seed=seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for x, y in torch.utils.data.DataLoader(data, batch_size=batch_size):
        optimiser.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimiser.step()
    return model.eval()


def tile_pixel_error(model: UNet, images, masks, input_size: int, tiles: int = 48,
                     seed: int = 123) -> TileScore:
    """Pixel error of ``model`` (in evaluation mode) on ``tiles`` tiles drawn from ``images``.

    The tiles depend only on the images, ``input_size`` and ``seed``, so every net is scored on
    the same ones. Not the package's :func:`~unet_course.metrics.pixel_error` of one label map:
    this one runs the net on a batch of tiles first.
    """
    data = TileDataset(images, masks, input_size, model.output_size(input_size), length=tiles,
                       seed=seed)
    x = torch.stack([data[k][0] for k in range(tiles)])
    y = torch.stack([data[k][1] for k in range(tiles)])
    with torch.no_grad():
        pred = model(x).argmax(1)
    return TileScore((pred != y).float().mean().item(), x, y, pred)


@dataclass
class DeformationRun:
    """One arm of lesson 04's experiment: the trained net, its input edge and its two scores."""

    model: UNet
    input_size: int
    train: TileScore
    held_out: TileScore

    @property
    def gap(self) -> float:
        """Held-out minus training pixel error: how much the net overfits its training images."""
        return self.held_out.error - self.train.error


def compare_deformation(train_images, train_masks, test_images, test_masks, steps: int = 200,
                        seed: int = 0, tile: int = 92, **options) -> dict[str, DeformationRun]:
    """Lesson 04's controlled experiment: the same net, seed and steps, without and with
    ``ElasticDeform()`` in the tile sampler, each scored on tiles of the training images and of
    held-out images.

    Returns ``{"no augmentation": run, "elastic deformation": run}``; ``options`` (depth,
    base_channels, batch_size, lr) go to :func:`train_tile_net`.
    """
    runs = {}
    for name, augment in (("no augmentation", None), ("elastic deformation", ElasticDeform())):
        model = train_tile_net(train_images, train_masks, augment, steps, seed, tile=tile,
                               **options)
        n_in = model.valid_input_size(tile)
        runs[name] = DeformationRun(model, n_in,
                                    tile_pixel_error(model, train_images, train_masks, n_in),
                                    tile_pixel_error(model, test_images, test_masks, n_in))
    return runs


# ---------------------------------------------------------------------------------------------
# Lesson 05: does the paper's weight map make a net separate touching cells?


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


# ---------------------------------------------------------------------------------------------
# Lesson 07: all-black predictions from class imbalance, and why accuracy does not show them


def predict_classes(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Class indices (N, H, W) on the CPU, computed in evaluation mode without autograd.

    The net is put back in training mode afterwards, as a training loop that evaluates along
    the way must do.
    """
    net.eval()
    with torch.no_grad():
        pred = net(images.to(next(net.parameters()).device)).argmax(dim=1).cpu()
    net.train()
    return pred


def pixel_accuracy(pred, target) -> float:
    """1 - the package's pixel error, averaged over a batch of label maps (N, H, W)."""
    return float(np.mean([1 - pixel_error(p, t) for p, t in zip(pred, target)]))


def foreground_iou(pred, target) -> float:
    """The package's foreground IoU, averaged over a batch of label maps (N, H, W)."""
    return float(np.mean([iou(p, t) for p, t in zip(pred, target)]))


def train_tiny(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
               test_y: torch.Tensor, class_weight: torch.Tensor | None = None, steps: int = 100,
               seed: int = 0, *, batch_size: int = 8, lr: float = 3e-3, eval_every: int = 10,
               device=None) -> tuple[UNet, np.ndarray]:
    """Lesson 07's tiny padded U-Net (depth 2, 8 base channels, no dropout), trained with Adam.

    The loss is ``nn.CrossEntropyLoss(weight=class_weight)``. With ``class_weight=None`` every
    pixel counts the same, so on data with 3 % foreground, calling everything background is the
    first thing the net learns: the pitfall of lesson 07. ``seed`` sets the initial weights and
    the batches (``batch_size`` images drawn at random each step). Every ``eval_every`` steps
    the net is scored on the test images; returns the net (in training mode) and the curve, an
    array of rows (step, pixel accuracy, foreground IoU, fraction of pixels called foreground).
    """
    dev = default_device() if device is None else torch.device(device)
    seed_everything(seed)
    net = UNet(padding="same", depth=2, base_channels=8, dropout=0.0).to(dev)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss(weight=None if class_weight is None else class_weight.to(dev))
    batches = torch.Generator().manual_seed(seed)
    curve = []
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(train_x), (batch_size,), generator=batches)
        loss = loss_fn(net(train_x[idx].to(dev)), train_y[idx].to(dev))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % eval_every == 0:
            pred = predict_classes(net, test_x)
            curve.append((step, pixel_accuracy(pred, test_y), foreground_iou(pred, test_y),
                          (pred == 1).float().mean().item()))
    return net, np.array(curve)

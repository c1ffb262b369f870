"""What each training step of :func:`~unet_course.train.fit` draws, and how fast it learns.

* :class:`EpochSampler`: which dataset items, without replacement, in a seeded order;
* :func:`unpack_item` and :func:`stack_batch`: dataset items to (N, C, H, W) tensors;
* :func:`make_optimizer`: the paper's SGD with momentum 0.99, or Adam;
* :func:`lr_factor`: the multiplier of the base learning rate (linear warm-up, poly decay);
* :func:`batch_loss`: the loss of one batch, over every head of a deeply supervised net.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .losses import dice_ce_loss, weighted_cross_entropy

__all__ = ["EpochSampler", "LOSSES", "OPTIMIZERS", "LR_SCHEDULES", "batch_loss", "lr_factor",
           "make_optimizer",
           "stack_batch", "unpack_item"]

#: The optimisers :func:`make_optimizer` builds, by name, and the schedules of :func:`lr_factor`.
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "poly")
#: The losses of :func:`batch_loss`: the paper's (weighted) cross-entropy, nnU-Net's Dice + CE.
LOSSES = ("ce", "dice_ce")


class EpochSampler:
    """Indices without replacement: epoch e is a permutation seeded by (seed, e).

    The k-th item ever drawn depends only on k, so a resumed run draws the same items. A
    dataset with ``set_epoch`` (such as :class:`~unet_course.data.TileDataset`) is told each
    new epoch, so that it draws new tiles.
    """

    def __init__(self, dataset: Any, seed: int):
        self.dataset, self.seed, self.n = dataset, seed, len(dataset)
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> list[int]:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g).tolist()
            set_epoch = getattr(self.dataset, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)
        return self._perm

    def indices(self, first: int, count: int) -> list[int]:
        """Dataset indices of draws ``first`` .. ``first + count - 1`` (0-based, all epochs)."""
        return [self._permutation(k // self.n)[k % self.n] for k in range(first, first + count)]


def unpack_item(item: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A dataset item as (image float32 (C, H, W), target int64 (h, w), weight float32 | None)."""
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise TypeError("a training item must be (image, target) or (image, target, weight_map), "
                        f"got {type(item).__name__}")
    image, target = torch.as_tensor(item[0]), torch.as_tensor(item[1])
    weight = torch.as_tensor(item[2]) if len(item) == 3 and item[2] is not None else None
    if image.dim() != 3:
        raise ValueError(f"a training image must be (C, H, W), got shape {tuple(image.shape)}")
    return image.float(), target.long(), None if weight is None else weight.float()


def stack_batch(items: list[tuple], device: torch.device, channels_last: bool = False):
    """Unpacked items as (N, C, H, W) images, (N, h, w) targets and weights (or None) on ``device``.

    Either every item carries a weight map or none does (a mix raises ValueError).
    """
    images = torch.stack([i[0] for i in items]).to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.stack([i[1] for i in items]).to(device)
    weighted = [i[2] is not None for i in items]
    if any(weighted) and not all(weighted):
        raise ValueError("some training items carry a weight map and some do not: give every "
                         "item one, or none")
    weights = None
    if weighted[0]:
        weights = torch.stack([i[2] for i in items]).to(device)
    return images, targets, weights


def make_optimizer(name: str, params, lr: float | None, momentum: float, weight_decay: float,
                   nesterov: bool = False):
    """``"sgd"`` (default lr 0.01, the paper's momentum; ``nesterov`` as nnU-Net) or ``"adam"``
    (default lr 1e-3)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01 if lr is None else lr, momentum=momentum,
                               weight_decay=weight_decay, nesterov=nesterov)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3 if lr is None else lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' (the paper: momentum 0.99) or 'adam', got {name!r}")


def lr_factor(step: int, warmup: int, schedule: str, progress: float) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based).

    ``warmup`` steps ramp it linearly from 1/warmup to 1; ``schedule="poly"`` multiplies it by
    ``(1 - progress) ** 0.9`` with ``progress`` in [0, 1] the fraction of training done.
    """
    factor = 1.0
    if warmup and step < warmup:
        factor = (step + 1) / warmup
    if schedule == "poly":
        factor *= max(0.0, 1.0 - progress) ** 0.9
    return factor


def batch_loss(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
               weights: torch.Tensor | None, loss: str = "ce") -> torch.Tensor:
    """The training loss of one batch: (N, C, H, W) images, (N, h, w) targets, weights or None.

    ``"ce"``: the paper's weighted cross-entropy with weight maps, plain cross-entropy
    without; ``"dice_ce"``: nnU-Net's Dice + cross-entropy. A net trained with deep
    supervision (``model.deep_supervision`` true and a ``forward_all`` method, as
    :class:`~unet_course.variants.NestedUNet` and ``PlainConvUNet``) gets the weighted sum
    over all its heads (``model.deep_supervision_weights``); a head coarser than the target
    is scored against the target (and weight map) subsampled to its size, as nnU-Net does.
    """
    if getattr(model, "deep_supervision", False) and hasattr(model, "forward_all"):
        outputs = model.forward_all(images)
        pairs = zip(outputs, model.deep_supervision_weights)
        return sum(w * _one_loss(out.float(), targets, weights, loss) for out, w in pairs if w)
    return _one_loss(model(images).float(), targets, weights, loss)


def _one_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
              loss: str) -> torch.Tensor:
    if logits.shape[-2:] != targets.shape[-2:]:  # a coarser head: nearest subsampling
        sy, sx = targets.shape[-2] // logits.shape[-2], targets.shape[-1] // logits.shape[-1]
        targets = targets[..., sy // 2::sy, sx // 2::sx]
        weights = None if weights is None else weights[..., sy // 2::sy, sx // 2::sx]
    if loss == "dice_ce":
        return dice_ce_loss(logits, targets, weights)
    if weights is not None:
        return weighted_cross_entropy(logits, targets, weights)
    return F.cross_entropy(logits, targets)

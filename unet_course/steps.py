"""What each training step of :func:`~unet_course.train.fit` draws, and how fast it learns.

* :class:`EpochSampler`: which dataset items, without replacement, in a seeded order;
* :func:`unpack_item` and :func:`stack_batch`: dataset items to (N, C, H, W) tensors;
* :func:`make_optimizer`: the paper's SGD with momentum 0.99, or Adam;
* :func:`lr_factor`: the multiplier of the base learning rate (linear warm-up, poly decay).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["EpochSampler", "OPTIMIZERS", "LR_SCHEDULES", "lr_factor", "make_optimizer",
           "stack_batch", "unpack_item"]

#: The optimisers :func:`make_optimizer` builds, by name, and the schedules of :func:`lr_factor`.
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "poly")


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


def make_optimizer(name: str, params, lr: float | None, momentum: float, weight_decay: float):
    """``"sgd"`` (default lr 0.01, the paper's momentum) or ``"adam"`` (default lr 1e-3)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01 if lr is None else lr, momentum=momentum,
                               weight_decay=weight_decay)
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

"""Small helpers for the pitfalls of lessons 07 and 08.

:func:`suggest_nn_name` for misspelled layer names, :func:`check_mask` for masks that are not
class indices, :func:`saved_activation_bytes` for the memory autograd keeps, and
:class:`AugmentationDraws` with :func:`reseed_worker` for DataLoader workers that share a
random state.
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, get_worker_info

from ..validation import positive_int

__all__ = ["AugmentationDraws", "check_mask", "reseed_worker", "saved_activation_bytes",
           "suggest_nn_name"]


# ----------------------------------------------------------------------------- small helpers
def suggest_nn_name(name: str, namespace: Any = nn, n: int = 3) -> list[str]:
    """Close matches for a misspelled layer name in ``torch.nn`` (or ``namespace``).

    ``suggest_nn_name("Relu") == ["ReLU", ...]``; a name that exists only in
    ``torch.nn.functional`` (a function, not a layer) is suggested as ``"functional.<name>"``.
    Case-insensitive exact matches come first.
    """
    public = [a for a in dir(namespace) if not a.startswith("_")]
    exact = [a for a in public if a.lower() == name.lower()]
    close = difflib.get_close_matches(name, public, n=n, cutoff=0.6)
    found = exact + [c for c in close if c not in exact]
    if namespace is nn and hasattr(F, name):
        found.append(f"functional.{name}")
    return found[:n]


def check_mask(mask: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Check that ``mask`` holds integer class indices 0 .. num_classes-1; return it unchanged.

    Raises TypeError for a floating point or boolean mask and ValueError for values out of
    range, with a hint for the common cause (a mask stored as an 8-bit image, 0 and 255).
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"a mask must be a torch.Tensor of class indices, got {type(mask).__name__}")
    if mask.dtype.is_floating_point or mask.dtype == torch.bool:
        raise TypeError(f"a mask must hold integer class indices (torch.int64), got {mask.dtype}; "
                        "check its values, then convert with mask.long()")
    values = torch.unique(mask).tolist()
    bad = [v for v in values if not 0 <= v < num_classes]
    if bad:
        hint = ""
        if values and max(values) == 255:
            hint = ("; it looks like an 8-bit image (0 = black, 255 = white): "
                    "use (mask > 127).long() to get indices 0 and 1")
        shown = values if len(values) <= 8 else [*values[:4], "...", *values[-2:]]
        raise ValueError(f"mask values must be class indices 0..{num_classes - 1} for "
                         f"{num_classes} classes, found {shown}{hint}")
    return mask


def saved_activation_bytes(model: nn.Module, *inputs: Any, **kwargs: Any) -> int:
    """Bytes of tensors autograd keeps alive for the backward pass of ``model(*inputs)``.

    Counts each storage once and leaves out the model's own parameters (they exist anyway).
    Under ``torch.no_grad()`` nothing is kept, so the result is 0.
    """
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in param_storages:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(*inputs, **kwargs)
    del out
    return sum(seen.values())


class AugmentationDraws(Dataset):
    """Lesson 08's pitfall: a data set that draws its augmentation from a generator it owns.

    Item ``i`` is the random number (an int in [0, 10**6)) that an augmentation would use for
    image ``i``, say its rotation. ``per_item=False`` keeps one ``np.random.Generator`` in the
    data set, drawn from in turn, the natural way to write it. A ``DataLoader`` with workers
    copies the data set, generator and all, into every worker process, so each worker replays
    the *same* draws: with two workers, items 0 and 1 get the same rotation, 2 and 3 too.
    ``per_item=True`` derives the generator from ``(seed, i)`` as ``TileDataset`` does, so an
    item's draw no longer depends on which process makes it.
    """

    def __init__(self, n: int, seed: int = 0, per_item: bool = False):
        self.n, self.seed, self.per_item = positive_int(n, "n"), seed, per_item
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        rng = np.random.default_rng([self.seed, i]) if self.per_item else self.rng
        return int(rng.integers(10**6))


def reseed_worker(worker_id: int) -> None:
    """``worker_init_fn`` for :class:`AugmentationDraws`: a generator of each worker's own.

    PyTorch gives every worker a different ``torch.initial_seed()``; a generator built from it
    differs between workers (and between epochs, and runs seeded alike stay reproducible).
    """
    info = get_worker_info()
    info.dataset.rng = np.random.default_rng(torch.initial_seed() % 2**32)

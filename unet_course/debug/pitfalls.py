"""Small helpers for the pitfalls of lesson 07.

:func:`suggest_nn_name` for misspelled layer names, :func:`check_mask` for masks that are not
class indices, and :func:`saved_activation_bytes` for the memory autograd keeps.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["check_mask", "saved_activation_bytes", "suggest_nn_name"]


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

"""Run-time settings shared by every lesson: the profile, the device and the seed.

The *profile* decides how big the lessons' experiments are:

* ``quick``: small images, few steps; every notebook runs in under 2 minutes on 2 CPU cores
  and still shows a result that works;
* ``full``: the paper's sizes and longer training, meant for a GPU (e.g. in Colab).

Set it with the environment variable ``UNET_COURSE_PROFILE=quick|full``; without it the
profile is ``full`` when CUDA is available and ``quick`` otherwise.
"""

from __future__ import annotations

import os
import random
from typing import TypeVar

import numpy as np
import torch

__all__ = ["PROFILES", "profile", "by_profile", "device", "seed_everything"]

PROFILES = ("quick", "full")
_DEVICE_TYPES = ("cpu", "cuda", "mps")  # where a U-Net of this course can train
T = TypeVar("T")


def profile() -> str:
    """The active profile, ``"quick"`` or ``"full"`` (see the module docstring)."""
    value = os.environ.get("UNET_COURSE_PROFILE", "").strip().lower()
    if not value:
        return "full" if torch.cuda.is_available() else "quick"
    if value not in PROFILES:
        raise ValueError(
            f"UNET_COURSE_PROFILE={value!r} is not a profile; use one of {', '.join(PROFILES)}"
        )
    return value


def by_profile(quick: T, full: T) -> T:
    """Pick the value for the active profile: ``steps = by_profile(quick=200, full=5000)``."""
    return quick if profile() == "quick" else full


def device(name: str | torch.device | None = None, option: str = "device") -> torch.device:
    """The device to compute on, checked to exist on this machine.

    ``name`` (for example ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; the CLI's ``--device``)
    wins; without it the environment variable ``UNET_COURSE_DEVICE`` is used if set, else CUDA
    if present, else the CPU. ``option`` is how an error names ``name`` (``"--device"``).

    Raises:
        ValueError: one line naming where the device came from (``option`` or the variable)
            when it is not a device name, or names a CUDA/MPS device this machine lacks.
    """
    source = option
    if isinstance(name, torch.device):
        name = str(name)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"{option} must be a device name such as 'cpu' or 'cuda:0', got {name!r}")
    if name is None:
        name, source = os.environ.get("UNET_COURSE_DEVICE", ""), "UNET_COURSE_DEVICE"
    if not name.strip():
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return _available_device(name.strip().lower(), f"{source}={name!r}")


def _available_device(name: str, shown: str) -> torch.device:
    """``torch.device(name)`` if this machine has it; a ValueError starting with ``shown`` if not."""
    usable = "use cpu, cuda, cuda:N (N counts from 0) or mps"
    try:
        dev = torch.device(name)
    except RuntimeError:  # torch's message lists twenty device types no lesson can use
        raise ValueError(f"{shown} is not a device name; {usable}") from None
    if dev.type not in _DEVICE_TYPES:
        raise ValueError(f"{shown}: the course computes on cpu, cuda or mps, not {dev.type}; {usable}")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            why = "this PyTorch is built without CUDA" if torch.version.cuda is None else \
                "no GPU or driver was found"
            raise ValueError(f"{shown} asks for CUDA, but no CUDA device is available ({why}); "
                             "use cpu, or leave the device unset to choose automatically")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"{shown} asks for CUDA device {dev.index}, but this machine has "
                             f"{count} (cuda:0 to cuda:{count - 1})")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{shown} asks for Apple's MPS, which this machine does not have; use cpu")
    return dev


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python's, NumPy's and PyTorch's global generators; return a fresh NumPy Generator.

    The same seed gives the same numbers on the same device and library versions. The
    returned ``np.random.Generator`` is the preferred way to pass randomness on explicitly.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)

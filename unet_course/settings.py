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


def device() -> torch.device:
    """The device the lessons compute on: ``UNET_COURSE_DEVICE`` if set, else CUDA if present, else CPU."""
    name = os.environ.get("UNET_COURSE_DEVICE", "").strip()
    if name:
        dev = torch.device(name)  # raises RuntimeError with torch's own message on a bad name
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"UNET_COURSE_DEVICE={name!r} asks for CUDA, but no CUDA device is available")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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

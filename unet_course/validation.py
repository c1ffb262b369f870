"""Argument checks shared by every module, so that each function shows its logic, not its guards.

Every check raises ``TypeError`` for a value of the wrong kind and ``ValueError`` for a value
of the right kind out of range, with a message that names the argument, shows what was given
and says what would work (the course's error convention, see ``DESIGN.md``).

* :func:`is_int`            a true integer (Python or NumPy), never a bool;
* :func:`positive_int`      an int >= ``minimum`` (1 by default; 0 for counts that may be empty);
* :func:`int_pair`          an int or a pair of ints (h, w), each checked like :func:`positive_int`;
* :func:`finite_number`     a finite real number inside optional bounds;
* :func:`probability`       a number in [0, 1] (or [0, 1) with ``below_one=True``);
* :func:`label_image`       an array (H, W) of bool or integer labels (a torch tensor is moved to
                            the CPU first), for masks and instance ids;
* :func:`kept_mode`         a context manager that restores a model's train/eval mode, module by
                            module, after code that switches it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from torch import nn

__all__ = [
    "finite_number",
    "int_pair",
    "is_int",
    "kept_mode",
    "label_image",
    "positive_int",
    "probability",
]


def is_int(value: object) -> bool:
    """True for Python and NumPy integers; False for bools (``True`` is not a size)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_int(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int, checked to be an integer >= ``minimum``.

    >>> positive_int(3, "depth")
    3
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__})")
    if int(value) < minimum:  # type: ignore[call-overload]
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def int_pair(value: object, name: str, minimum: int = 1) -> tuple[int, int]:
    """An int ``n`` (meaning (n, n)) or a pair (h, w) of ints, each >= ``minimum``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints (h, w), got {value!r}")
        return (positive_int(value[0], f"{name}[0]", minimum),
                positive_int(value[1], f"{name}[1]", minimum))
    if not is_int(value):
        raise TypeError(f"{name} must be an int or a pair of ints (h, w), got {value!r}")
    n = positive_int(value, name, minimum)
    return n, n


def finite_number(
    value: object,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    strict: bool = False,
) -> float:
    """``value`` as a float, checked to be finite and inside [minimum, maximum].

    ``strict=True`` excludes the bounds themselves (for example a learning rate > 0).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    lo_bad = minimum is not None and (v <= minimum if strict else v < minimum)
    hi_bad = maximum is not None and (v >= maximum if strict else v > maximum)
    if lo_bad or hi_bad:
        lo = "(" if strict else "["
        hi = ")" if strict else "]"
        span = f"{lo}{'-inf' if minimum is None else minimum}, {'inf' if maximum is None else maximum}{hi}"
        raise ValueError(f"{name} must be in {span}, got {value!r}")
    return v


def probability(value: object, name: str, *, below_one: bool = False) -> float:
    """A probability in [0, 1], or in [0, 1) with ``below_one=True`` (a dropout rate)."""
    v = finite_number(value, name, 0.0, 1.0)
    if below_one and v >= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
    return v


def label_image(value: object, name: str, hint: str = "") -> np.ndarray:
    """``value`` as a NumPy array (H, W) of bool or integer labels: a mask or instance ids.

    A torch tensor is detached and copied to the CPU. Raises ``ValueError`` for an array that
    is not 2-D and ``TypeError`` for a float (or other non-integer) dtype; ``hint``, if given,
    ends that message with what to do instead (e.g. which function makes labels from
    probabilities). Values are not checked: callers decide which labels they accept.
    """
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.ndim != 2:
        raise ValueError(f"{name} must be one image (H, W), got shape {array.shape}")
    if array.dtype != bool and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be a bool or integer array, got dtype {array.dtype}"
                        + (f"; {hint}" if hint else ""))
    return array


@contextmanager
def kept_mode(model: nn.Module, train: bool | None = None) -> Iterator[nn.Module]:
    """Run a block with ``model`` in train (``True``) or eval (``False``) mode, then restore it.

    The previous mode is restored module by module, so a model whose batch-norm layers were
    frozen in eval mode inside a training model comes back exactly as it was, also when the
    block raises. ``train=None`` leaves the mode alone and only restores it afterwards.
    """
    modes = [(m, m.training) for m in model.modules()]
    if train is not None:
        model.train(train)
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training

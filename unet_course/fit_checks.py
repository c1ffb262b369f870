"""The checks of :func:`~unet_course.train.fit`'s arguments, made before anything is built.

A wrong argument must fail at the call with a message that says what would work, not after an
hour of training (a ``log_every`` of 0 used to fail at the first step, a bad ``val_data`` at
the first validation), and an argument that would do nothing (``val_every`` without
``val_data``, ``checkpoint_every`` without ``checkpoint_dir``) is an error, not a silent no-op.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .steps import LOSSES, LR_SCHEDULES, OPTIMIZERS
from .validation import finite_number, positive_int

__all__ = ["check_fit_arguments"]


def check_fit_arguments(model, train_data, val_data, *, steps, optimizer, lr, momentum,
                         weight_decay, batch_size, nesterov=False, loss="ce", warmup, grad_clip, lr_schedule, time_budget,
                         seed, log_every, val_every, callbacks, checkpoint_dir,
                         checkpoint_every) -> None:
    """Raise TypeError or ValueError for an argument of ``fit`` that would fail later or do nothing.

    Ranges: steps, batch_size, log_every >= 1; warmup, seed >= 0; lr, grad_clip, time_budget
    > 0 (or None); momentum in [0, 1]; weight_decay >= 0; val_every and checkpoint_every >= 0
    (or None), each useful only with val_data / checkpoint_dir.
    """
    if not isinstance(model, nn.Module) or next(model.parameters(), None) is None:
        raise TypeError(f"model must be an nn.Module with parameters, got {type(model).__name__}")
    if not (hasattr(train_data, "__len__") and hasattr(train_data, "__getitem__")):
        raise TypeError("train_data must be a map-style Dataset (with __len__ and __getitem__), "
                        f"got {type(train_data).__name__}")
    positive_int(steps, "steps")
    positive_int(batch_size, "batch_size")  # the paper uses 1
    if len(train_data) == 0:
        raise ValueError("train_data is empty")
    if optimizer not in OPTIMIZERS:
        raise ValueError("optimizer must be 'sgd' (the paper: momentum 0.99) or 'adam', "
                         f"got {optimizer!r}")
    if lr is not None:
        finite_number(lr, "lr", 0.0, strict=True)
    finite_number(momentum, "momentum", 0.0, 1.0)
    if nesterov and (optimizer != "sgd" or momentum == 0):
        raise ValueError("nesterov=True needs optimizer='sgd' with momentum > 0 "
                         f"(got optimizer={optimizer!r}, momentum={momentum})")
    if loss not in LOSSES:
        raise ValueError(f"loss must be 'ce' (the paper's, weighted by the items' weight maps) "
                         f"or 'dice_ce' (nnU-Net's), got {loss!r}")
    finite_number(weight_decay, "weight_decay", 0.0)
    positive_int(warmup, "warmup", minimum=0)  # a number of steps
    if grad_clip is not None:
        finite_number(grad_clip, "grad_clip", 0.0, strict=True)  # the largest gradient L2 norm
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be 'constant' or 'poly', got {lr_schedule!r}")
    if time_budget is not None:
        finite_number(time_budget, "time_budget", 0.0, strict=True)  # seconds
    positive_int(seed, "seed", minimum=0)
    positive_int(log_every, "log_every")
    pairs = ((val_every, "val_every", val_data, "val_data=(images, masks)"),
             (checkpoint_every, "checkpoint_every", checkpoint_dir, "checkpoint_dir"))
    for every, name, needed, what in pairs:
        if every is not None:
            positive_int(every, name, minimum=0)  # 0 or None: never
        if every and needed is None:
            raise ValueError(f"{name}={every} does nothing without {what}: pass both, or neither")
    if val_data is not None:
        _check_val_data(val_data, val_every)
    for cb in callbacks if isinstance(callbacks, (list, tuple)) else ():
        if not callable(cb):
            raise TypeError(f"each callback must be a function of one event dict, got {cb!r}")


def _check_val_data(val_data: Any, val_every: int | None) -> None:
    """``val_data`` is a non-empty pair (images, masks) of equal lengths, and is used."""
    if not val_every:
        raise ValueError("val_data is given but val_every is not: pass val_every=N to validate "
                         "every N steps (and at the end), or leave val_data out")
    if not isinstance(val_data, (tuple, list)) or len(val_data) != 2:
        raise TypeError(f"val_data must be a pair (images, masks), got {type(val_data).__name__}")
    if len(val_data[0]) != len(val_data[1]) or len(val_data[0]) == 0:
        raise ValueError(f"val_data must hold as many masks as images, at least one: got "
                         f"{len(val_data[0])} images and {len(val_data[1])} masks")

"""Watch a training loop step by step: the loss, the gradient's size, the first NaN (lesson 08).

A learning rate that is far too large rarely fails at once. The gradient norm grows for a few
steps, a weight overflows, and from then on every loss is NaN; a loop that only prints the
loss every hundred steps shows a column of ``nan`` and no hint of when or why it started.
:class:`TrainingMonitor` records two numbers after every ``backward()``: the loss and the
global L2 norm of the gradient over all parameters, and notes the first step at which either
stops being finite. With ``raise_on_nonfinite=True`` it stops the loop there, with a message
that says how large the gradient had grown and what to change.

:func:`sgd_lr_sweep` is lesson 08's demonstration: one small U-Net, trained with the paper's
SGD (momentum 0.99) at several learning rates on the same batches, each run watched by a monitor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..model import UNet
from ..settings import seed_everything

__all__ = ["TrainingMonitor", "gradient_norm", "sgd_lr_sweep"]


def gradient_norm(model: nn.Module) -> float:
    """The L2 norm of all of ``model``'s gradients as one vector (0.0 before any backward)."""
    norms = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


class TrainingMonitor:
    """Record the loss and gradient norm of every step; find the first non-finite one.

    Call :meth:`record` after ``loss.backward()`` and before ``optimizer.step()``, so the
    gradient that is about to be applied is the one measured.

    Attributes:
        losses, grad_norms: one float per recorded step, in order.
        first_nonfinite: index of the first step whose loss or gradient norm was NaN or
            infinite, or None while all are finite.
    """

    def __init__(self, model: nn.Module, raise_on_nonfinite: bool = False) -> None:
        self.model = model
        self.raise_on_nonfinite = raise_on_nonfinite
        self.losses: list[float] = []
        self.grad_norms: list[float] = []
        self.first_nonfinite: int | None = None

    def record(self, loss: torch.Tensor | float) -> None:
        """Store this step's loss and gradient norm; raise FloatingPointError if asked to."""
        value = float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
        norm = gradient_norm(self.model)
        step = len(self.losses)
        self.losses.append(value)
        self.grad_norms.append(norm)
        if self.first_nonfinite is None and not (math.isfinite(value) and math.isfinite(norm)):
            self.first_nonfinite = step
            if self.raise_on_nonfinite:
                raise FloatingPointError(self.explain())

    def explain(self) -> str:
        """One line on what went wrong and where (empty while every step is finite)."""
        if self.first_nonfinite is None:
            return ""
        step = self.first_nonfinite
        finite = [g for g in self.grad_norms[:step] if math.isfinite(g)]
        growth = (f"; the gradient norm went from {finite[0]:.3g} at step 0 to {finite[-1]:.3g} "
                  f"at step {len(finite) - 1}") if finite else ""
        return (f"step {step}: loss {self.losses[step]:.3g}, gradient norm "
                f"{self.grad_norms[step]:.3g}{growth}: training diverged; lower the learning "
                "rate (a tenth of it) or clip the gradient")


def sgd_lr_sweep(images: torch.Tensor, masks: torch.Tensor, lrs: Sequence[float],
                 steps: int = 40, batch_size: int = 8, seed: int = 0,
                 momentum: float = 0.99) -> dict[float, TrainingMonitor]:
    """Train one small same-padded U-Net per learning rate with SGD; return each run's monitor.

    ``images`` (N, 1, H, W) float in [0, 1], ``masks`` (N, H, W) int64. Every run starts from
    the same weights (``seed``) and sees the same batches in the same order, so the learning
    rate is the only difference. A run stops early at its first non-finite step: after a NaN
    nothing more can be learnt from it.
    """
    monitors = {}
    for lr in lrs:
        seed_everything(seed)
        net = UNet(padding="same", depth=2, base_channels=8, dropout=0.0)
        optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
        monitor = TrainingMonitor(net)
        for step in range(steps):
            start = (step * batch_size) % len(images)
            batch = slice(start, start + batch_size)
            loss = nn.functional.cross_entropy(net(images[batch]), masks[batch])
            optimizer.zero_grad()
            loss.backward()
            monitor.record(loss)
            if monitor.first_nonfinite is not None:
                break
            optimizer.step()
        monitors[lr] = monitor
    return monitors


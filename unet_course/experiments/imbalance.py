"""Lesson 08's experiments: all-black predictions from class imbalance; overfitting one batch.

A tiny padded U-Net trained with plain cross-entropy on 3 % foreground first learns to call
every pixel background, with a pixel accuracy near 97 %; the foreground IoU shows it, and class
weights in the loss cure it. ``tests/test_lesson_claims.py`` reruns it. Re-exported from
:mod:`unet_course.experiments`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..metrics import iou, pixel_error
from ..model import UNet
from ..settings import device as default_device
from ..settings import seed_everything

__all__ = ["predict_classes", "pixel_accuracy", "foreground_iou", "train_tiny"]


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
    """Lesson 08's tiny padded U-Net (depth 2, 8 base channels, no dropout), trained with Adam.

    The loss is ``nn.CrossEntropyLoss(weight=class_weight)``. With ``class_weight=None`` every
    pixel counts the same, so on data with 3 % foreground, calling everything background is the
    first thing the net learns: the pitfall of lesson 08. ``seed`` sets the initial weights and
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


def overfit_batch(net: nn.Module, images: torch.Tensor, masks: torch.Tensor, steps: int = 200,
                  lr: float = 3e-3, optimizer: torch.optim.Optimizer | None = None) -> np.ndarray:
    """Lesson 08's habit: train on one fixed batch, ``steps`` times; returns the loss per step.

    ``images`` (N, C, H, W) and ``masks`` (N, H, W) are one small batch. A correct model, loss
    and optimiser fit a handful of images almost perfectly, so a net that cannot is broken
    somewhere, whatever the rest of the loop does. ``optimizer`` defaults to Adam over
    ``net``'s parameters; pass another to reproduce the bug of an optimiser that holds the
    parameters of a different model (the loss then never moves).
    """
    optimizer = optimizer if optimizer is not None else torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    net.train()
    losses = []
    for _ in range(steps):
        loss = loss_fn(net(images), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return np.array(losses)

"""Losses for pixel-wise segmentation: the paper's weighted cross-entropy and a soft Dice loss.

The paper's energy (Ronneberger et al. 2015, Section 3) is a pixel-wise soft-max over the class
maps followed by a cross-entropy in which every pixel x carries its own weight w(x):

    E = sum_x w(x) * -log p_{l(x)}(x),    p_k(x) = exp(a_k(x)) / sum_k' exp(a_k'(x))

with l(x) the true class of pixel x and w the weight map of :mod:`unet_course.weights`. The
paper prints E without the minus sign, a log-likelihood to maximise; written as here it is a
loss to minimise, which is what an optimiser does.
``log p`` is computed with ``log_softmax`` (the log-sum-exp trick), never as ``log(softmax)``,
which would give ``-inf`` as soon as one probability underflows to 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .validation import finite_number

__all__ = ["dice_ce_loss", "soft_dice_loss", "weighted_cross_entropy"]

_REDUCTIONS = ("mean", "sum", "weighted_mean", "none")


def _check_logits_target(logits: object, target: object, fn: str) -> None:
    for name, value in (("logits", logits), ("target", target)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"{fn}: {name} must be a torch.Tensor, got {type(value).__name__}; "
                "convert NumPy arrays with torch.from_numpy(...)"
            )
    if logits.dim() != 4:
        raise ValueError(
            f"{fn}: logits must be the network's output (N, C, H, W), got shape "
            f"{tuple(logits.shape)}" + (" (add the batch axis: logits.unsqueeze(0))"
                                        if logits.dim() == 3 else "")
        )
    if not logits.is_floating_point():
        raise TypeError(f"{fn}: logits must be a float tensor, got {logits.dtype}")
    if target.dim() == 4 and target.shape[1] == 1:
        raise ValueError(
            f"{fn}: target must be class indices (N, H, W) without a channel axis, got shape "
            f"{tuple(target.shape)}; pass target[:, 0]"
        )
    if target.dim() != 3:
        raise ValueError(
            f"{fn}: target must be class indices (N, H, W), got shape {tuple(target.shape)}"
        )
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(
            f"{fn}: target must hold integer class indices (int64), got {target.dtype}; "
            "pass target.long()"
        )
    n, c, h, w = logits.shape
    if target.shape[0] != n:
        raise ValueError(f"{fn}: logits hold {n} images but target holds {target.shape[0]}")
    if tuple(target.shape[1:]) != (h, w):
        raise ValueError(
            f"{fn}: logits are {h}x{w} but target is {target.shape[1]}x{target.shape[2]}. "
            "A valid-padding U-Net's output is smaller than its input: crop the target to the "
            f"output with unet_course.center_crop(target, ({h}, {w}))"
        )
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= c):
        raise ValueError(
            f"{fn}: target has class indices in [{int(target.min())}, {int(target.max())}] but "
            f"logits have {c} classes; indices must lie in [0, {c - 1}]"
        )


def _check_weight_map(weight_map: object, target: torch.Tensor, reduction: str) -> None:
    """Refuse a weight map that is not float (N, H, W) like ``target``, or not finite and >= 0."""
    fn = "weighted_cross_entropy"
    if not isinstance(weight_map, torch.Tensor):
        raise TypeError(
            f"{fn}: weight_map must be a torch.Tensor (N, H, W), got "
            f"{type(weight_map).__name__}; convert with torch.from_numpy(w) and stack a batch"
        )
    if tuple(weight_map.shape) != tuple(target.shape):
        hint = " (drop the channel axis: weight_map[:, 0])" if (
            weight_map.dim() == 4 and weight_map.shape[1] == 1) else ""
        raise ValueError(
            f"{fn}: weight_map must have the target's shape "
            f"{tuple(target.shape)}, got {tuple(weight_map.shape)}{hint}"
        )
    if not weight_map.is_floating_point():
        raise TypeError(f"{fn}: weight_map must be a float tensor, got {weight_map.dtype}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be one of {', '.join(_REDUCTIONS)}, got {reduction!r}")
    # a negative weight rewards the wrong class and makes the loss unbounded below; NaN and
    # inf poison every gradient. `~(w >= 0)` is True for negatives and NaN alike.
    bad = ~(weight_map >= 0) | torch.isinf(weight_map)
    if bool(bad.any()):
        counts = [int(c.sum()) for c in (weight_map < 0, torch.isnan(weight_map), torch.isinf(weight_map))]
        raise ValueError(
            f"{fn}: weight_map must be finite and >= 0 (a weight per pixel), got {counts[0]} "
            f"negative, {counts[1]} NaN and {counts[2]} infinite value(s); check how the map was "
            "made (unet_weight_map gives finite weights > 0)"
        )


def weighted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight_map: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """The paper's energy: pixel-wise soft-max, then a cross-entropy weighted by w(x).

    Per pixel the loss is ``w(x) * -log_softmax(logits)[l(x)](x)``, exactly
    ``F.cross_entropy(logits, target, reduction="none") * weight_map``.

    Args:
        logits: float (N, C, H, W), the network's raw class scores (no soft-max applied).
        target: int64 (N, H, W), class indices in [0, C), cropped to the logits' size.
        weight_map: float (N, H, W), w(x) >= 0 and finite per pixel, e.g. stacked
            ``torch.from_numpy(unet_weight_map(instances))``, cropped like the target.
            Negative, NaN or infinite weights raise a ``ValueError``.
        reduction: how the per-pixel losses are combined:

            * ``"mean"`` (default): the sum divided by the number of pixels N*H*W, i.e.
              ``(F.cross_entropy(..., reduction="none") * w).mean()``. The paper's E up to a
              constant factor; with w = 1 it is the plain cross-entropy;
            * ``"sum"``: the paper's E itself (grows with the tile size);
            * ``"weighted_mean"``: the sum divided by the sum of the weights, as
              ``F.cross_entropy(weight=...)`` normalises; its scale does not depend on w.
              If every weight is 0 no pixel counts: the loss is 0 with a zero gradient
              (a tile with nothing to learn), not 0 / 0 = NaN;
            * ``"none"``: the per-pixel losses (N, H, W).

    Returns:
        a scalar tensor, or (N, H, W) for ``reduction="none"``.
    """
    _check_logits_target(logits, target, "weighted_cross_entropy")
    _check_weight_map(weight_map, target, reduction)
    log_p = F.log_softmax(logits, dim=1)  # numerically stable log of the pixel-wise soft-max
    nll = -log_p.gather(1, target.unsqueeze(1)).squeeze(1)  # -log p_{l(x)}(x), (N, H, W)
    loss = weight_map.to(nll.dtype) * nll
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "weighted_mean":
        total = weight_map.sum().to(loss.dtype)
        # all weights 0: the sum is exactly 0, and dividing it by 1 keeps it 0 (and its gradient)
        return loss.sum() / torch.where(total > 0, total, torch.ones_like(total))
    return loss.mean()


def soft_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    smooth: float = 1e-5,
    include_background: bool = True,
    reduction: str = "mean",
    batch_dice: bool = False,
) -> torch.Tensor:
    """Soft Dice loss: one minus the Dice overlap of the soft-max probabilities and the target.

    The common modern alternative (or complement) to a weighted cross-entropy: it scores the
    overlap of whole regions, so a rare class is not drowned by a frequent one without any
    weight map. Per image n and class k, with p the soft-max probabilities and t the one-hot
    target:

        dice[n, k] = (2 sum_x p t + smooth) / (sum_x p + sum_x t + smooth)

    Args:
        logits: float (N, C, H, W) raw class scores.
        target: int64 (N, H, W) class indices in [0, C).
        smooth: added to numerator and denominator so that a class absent from both the
            prediction and the target scores 1 rather than 0/0; a finite number > 0.
        include_background: if False, class 0 is left out of the average.
        reduction: ``"mean"`` (of 1 - dice over images and classes) or ``"none"`` ((N, K)).
        batch_dice: sum over the whole batch before dividing, one Dice per class (nnU-Net's
            choice in 2-D: a patch without a class then does not score 0 or 1 on its own);
            with ``reduction="none"`` the result is (1, K).

    Returns:
        a scalar in [0, 1], or (N, K) for ``reduction="none"``.
    """
    _check_logits_target(logits, target, "soft_dice_loss")
    # smooth = 0 would make a class absent from prediction and target score 0 / 0 = NaN
    smooth = finite_number(smooth, "soft_dice_loss: smooth", 0.0, strict=True)
    if reduction not in ("mean", "none"):
        raise ValueError(f"soft_dice_loss: reduction must be 'mean' or 'none', got {reduction!r}")
    num_classes = logits.shape[1]
    if not include_background and num_classes < 2:
        raise ValueError("soft_dice_loss: include_background=False needs at least 2 classes")
    probs = F.softmax(logits, dim=1)
    onehot = F.one_hot(target, num_classes).permute(0, 3, 1, 2).to(probs.dtype)
    if not include_background:
        probs, onehot = probs[:, 1:], onehot[:, 1:]
    axes = (0, 2, 3) if batch_dice else (2, 3)
    inter = (probs * onehot).sum(dim=axes, keepdim=batch_dice).flatten(1)
    denom = (probs.sum(dim=axes, keepdim=batch_dice)
             + onehot.sum(dim=axes, keepdim=batch_dice)).flatten(1)
    loss = 1.0 - (2.0 * inter + smooth) / (denom + smooth)
    return loss if reduction == "none" else loss.mean()


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor,
                 weight_map: torch.Tensor | None = None) -> torch.Tensor:
    """nnU-Net's loss: soft Dice (batch Dice, background left out) + cross-entropy, 1:1.

    (N, C, H, W) logits, (N, H, W) int64 target; a (N, H, W) ``weight_map`` weights the
    cross-entropy term (the paper's map), the Dice term is unweighted. nnU-Net adds the
    negative Dice (the loss goes below 0); 1 - Dice here has the same gradient and stays >= 0.
    """
    if weight_map is None:
        _check_logits_target(logits, target, "dice_ce_loss")
        ce = F.cross_entropy(logits, target)
    else:
        ce = weighted_cross_entropy(logits, target, weight_map)
    return ce + soft_dice_loss(logits, target, include_background=False, batch_dice=True)

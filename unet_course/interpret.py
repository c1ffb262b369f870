"""Where a U-Net looks: its feature maps, a class activation map for a region, occlusion.

Three ways to ask a trained net what its answer for a region of the image depends on:

* :func:`level_features`: the feature maps each block computes, level by level (what the
  contracting path's coarse levels respond to is lesson 13's first picture);
* :func:`region_grad_cam`: Grad-CAM (Selvaraju et al. 2017) adapted to segmentation as by
  Vinogradova et al. (2020): the score is the class's logit summed over a *region* of the output
  (not one image label); each channel of a chosen block's output is weighted by the mean
  gradient of that score, and the weighted sum, clipped at 0, is the map;
* :func:`occlusion_map`: grey out a square patch at every position of a grid and record how
  much the region's mean probability of the class moves (Zeiler and Fergus 2014). It needs no
  gradients and no choice of block, and it is exact about what "depends on" means: a patch
  outside the region's receptive field moves nothing at all (with batch norm, or none; instance
  norm normalises by the whole image's statistics, so every pixel moves every answer a little).

All three take a same-padded :class:`~unet_course.model.UNet` (its output has the input's size,
so a region is given in image pixels) and one image (H, W) or (C, H, W) float32, as the net was
trained on it. The net is put in eval mode for the call and left as it was.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .model import UNet
from .validation import kept_mode

__all__ = ["level_features", "occlusion_map", "region_grad_cam"]


def _prepare(model: nn.Module, image: object, region: object | None = None):
    if not isinstance(model, UNet) or model.padding != "same":
        raise ValueError("interpretation maps need a same-padded UNet (e.g. the cpu preset's): "
                         "its output has the input's size, so a region is in image pixels")
    x = torch.as_tensor(np.asarray(image, dtype=np.float32))
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3 or x.shape[0] != model.in_channels:
        raise ValueError(f"image must be (H, W) or ({model.in_channels}, H, W) for this net, "
                         f"got shape {tuple(np.shape(image))}")
    model.geometry.check(int(x.shape[-2]))
    model.geometry.check(int(x.shape[-1]))
    x = x[None].to(next(model.parameters()).device)
    if region is None:
        return x, None
    mask = torch.as_tensor(np.asarray(region, dtype=bool), device=x.device)
    if tuple(mask.shape) != tuple(x.shape[-2:]):
        raise ValueError(f"region must be a boolean (H, W) mask of the image's size "
                         f"{tuple(x.shape[-2:])}, got {tuple(mask.shape)}")
    if not mask.any():
        raise ValueError("region is empty: give at least one pixel")
    return x, mask


def _blocks(model: UNet) -> list[tuple[str, nn.Module]]:
    """(name, block) from the first double convolution down the U and back up."""
    down = [("level 0 (down)", model.inc)] + [(f"level {i + 1} (down)", d)
                                               for i, d in enumerate(model.downs)]
    up = [(f"level {model.depth - 1 - i} (up)", u) for i, u in enumerate(model.ups)]
    return down + up


@torch.no_grad()
def level_features(model: UNet, image: object) -> list[tuple[str, np.ndarray]]:
    """Every block's output for ``image``: [(name, float32 array (C, h, w))], input to output.

    Names read "level L (down)" for the contracting path (level 0 is full resolution) and
    "level L (up)" for the expanding path; h and w halve with each level.
    """
    x, _ = _prepare(model, image)
    seen: list[tuple[str, np.ndarray]] = []
    hooks = [block.register_forward_hook(
        lambda _m, _i, out, name=name: seen.append((name, out[0].float().cpu().numpy())))
        for name, block in _blocks(model)]
    try:
        with kept_mode(model, train=False):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def region_grad_cam(model: UNet, image: object, region: object, block: str,
                    target_class: int = 1) -> np.ndarray:
    """Grad-CAM of ``block``'s output for the class-``target_class`` logits summed over ``region``.

    ``region``: boolean (H, W) mask in image pixels; ``block``: a name from
    :func:`level_features` (e.g. "level 2 (down)"). Returns float32 (H, W) in [0, 1] (the map
    upsampled bilinearly to the image and divided by its maximum; all zeros if nothing in the
    block raises the score).
    """
    x, mask = _prepare(model, image, region)
    names = dict(_blocks(model))
    if block not in names:
        raise ValueError(f"no block {block!r}; choose from {list(names)}")
    if not 0 <= target_class < model.num_classes:
        raise ValueError(f"target_class must be in 0..{model.num_classes - 1}")
    kept: list[torch.Tensor] = []
    hook = names[block].register_forward_hook(lambda _m, _i, out: kept.append(out))
    try:
        with kept_mode(model, train=False), torch.enable_grad():
            logits = model(x)
            activation = kept[0]
            score = logits[0, target_class][mask].sum()
            (grad,) = torch.autograd.grad(score, activation)
    finally:
        hook.remove()
    weights = grad[0].mean(dim=(1, 2))                     # one weight per channel
    cam = F.relu((weights[:, None, None] * activation[0]).sum(0)).detach()
    cam = F.interpolate(cam[None, None], size=tuple(x.shape[-2:]), mode="bilinear",
                        align_corners=False)[0, 0]
    peak = cam.max()
    return (cam / peak if peak > 0 else cam).cpu().numpy().astype(np.float32)


@torch.no_grad()
def occlusion_map(model: UNet, image: object, region: object, patch: int = 16,
                  stride: int | None = None, target_class: int = 1,
                  fill: float | None = None, batch: int = 16) -> np.ndarray:
    """How far the region's mean P(``target_class``) moves when each patch is greyed out.

    A ``patch`` x ``patch`` square (px) is set to ``fill`` (default: the image's mean) at every
    position of a grid with step ``stride`` (default: ``patch``, no overlap). Returns float32
    (rows, cols): entry (i, j) is |P(occluded at i*stride, j*stride) - P(original)|, P being
    the class probability averaged over ``region``, in [0, 1]. ``batch`` occluded images are
    predicted at once.
    """
    x, mask = _prepare(model, image, region)
    stride = patch if stride is None else stride
    if patch < 1 or stride < 1:
        raise ValueError("patch and stride must be positive pixel counts")
    H, W = x.shape[-2:]
    if patch > min(H, W):
        raise ValueError(f"patch {patch} px does not fit in the {H} x {W} image")
    fill = float(x.mean()) if fill is None else float(fill)
    tops = list(range(0, H - patch + 1, stride))
    lefts = list(range(0, W - patch + 1, stride))

    def region_probability(batch_x: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(model(batch_x), dim=1)[:, target_class]
        return probs[:, mask].mean(dim=1)

    with kept_mode(model, train=False):
        positions = [(t, left) for t in tops for left in lefts]
        changes = []
        for k in range(0, len(positions), batch):
            chunk = positions[k:k + batch]
            # the untouched image rides in every batch: a convolution may round differently
            # for another batch size, and an unseen patch must read exactly 0
            xs = x.repeat(len(chunk) + 1, 1, 1, 1)
            for n, (t, left) in enumerate(chunk, start=1):
                xs[n, :, t:t + patch, left:left + patch] = fill
            p = region_probability(xs)
            changes.append((p[1:] - p[0]).abs())
    return torch.cat(changes).reshape(len(tops), len(lefts)).cpu().numpy().astype(np.float32)

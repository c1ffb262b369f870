"""Trace a U-Net's feature maps: one forward pass, recorded by hooks, for the diagram.

:func:`unet_feature_maps` is what :func:`unet_course.diagram.draw_unet` draws from, so the
figure shows the network's real sizes, whatever its depth, width, padding or input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..model import UNet, Up
from ..validation import kept_mode

__all__ = ["FeatureMap", "unet_feature_maps"]

Kind = Literal["input", "conv", "pool", "upconv", "crop", "output"]


@dataclass(frozen=True)
class FeatureMap:
    """One feature map seen during a traced forward pass of a :class:`~unet_course.UNet`.

    Attributes:
        side: ``"down"`` on the contracting path (the bottom level included), ``"up"`` on the
            expanding path.
        level: 0 at full resolution, ``model.depth`` at the bottom of the U.
        kind: ``"input"`` the image tile; ``"conv"`` after a 3x3 convolution and its ReLU;
            ``"pool"`` after a 2x2 max pooling; ``"upconv"`` after the 2x2 up-convolution (or
            the bilinear upsampling); ``"crop"`` the centre-cropped copy of the contracting
            path's map that is concatenated to it; ``"output"`` after the final 1x1 convolution.
        channels, height, width: the map's shape without the batch axis, in channels and pixels.
    """

    side: Literal["down", "up"]
    level: int
    kind: Kind
    channels: int
    height: int
    width: int

    @property
    def size_label(self) -> str:
        """The spatial size as the figure writes it, e.g. ``"572×572"``."""
        return f"{self.height}×{self.width}"


def _edges(input_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(input_size, (tuple, list)):
        if len(input_size) != 2:
            raise ValueError(
                f"input_size must be an int or a pair (height, width), got {input_size!r}"
            )
        return input_size[0], input_size[1]  # the model checks that both are ints
    if not isinstance(input_size, int) or isinstance(input_size, bool):
        raise TypeError(f"input_size must be an int or a pair (height, width), got {input_size!r}")
    return input_size, input_size


def _record_shapes(model: UNet, events: list[tuple[str, torch.Size]]) -> list:
    """Hooks that append (kind, shape) to ``events``; returns their handles, to remove."""

    def after(kind: str):
        return lambda module, args, output: events.append((kind, output.shape))

    def before(kind: str):
        return lambda module, args: events.append((kind, args[0].shape))

    handles = [model.register_forward_pre_hook(before("input"))]
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            handles.append(m.register_forward_hook(after("conv")))
        elif isinstance(m, nn.MaxPool2d):
            handles.append(m.register_forward_hook(after("pool")))
        elif isinstance(m, Up):
            handles.append(m.up.register_forward_hook(after("upconv")))
            handles.append(m.conv.register_forward_pre_hook(before("concat")))
    handles.append(model.head.register_forward_hook(after("output")))
    return handles


def unet_feature_maps(model: UNet, input_size: int | tuple[int, int]) -> list[FeatureMap]:
    """Trace one forward pass of ``model`` on an input of ``input_size`` and list its feature maps.

    ``input_size`` is an edge in pixels (a square tile) or a pair (height, width). The model
    runs once, in eval mode and without gradients, on a zero tensor (1, C_in, H, W) with its
    parameters' device and dtype; its training flag is restored afterwards. An invalid size
    raises the model's own ``ValueError`` (naming the nearest valid sizes) before any work.

    Returns the maps in the order the network computes them (see :class:`FeatureMap`).
    """
    if not isinstance(model, UNet):
        raise TypeError(f"expected a unet_course.UNet, got {type(model).__name__}")
    height, width = _edges(input_size)
    model.output_size(height)  # the model's own check: same error, same message
    model.output_size(width)

    events: list[tuple[str, torch.Size]] = []
    handles = _record_shapes(model, events)
    param = next(model.parameters())
    x = torch.zeros(1, model.in_channels, height, width, device=param.device, dtype=param.dtype)
    # Eval mode so that dropout is off and batch norm statistics are not updated; each
    # module's own flag comes back afterwards (a user may have frozen some of them).
    try:
        with kept_mode(model, train=False), torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()

    maps: list[FeatureMap] = []
    side, level = "down", 0
    for kind, shape in events:
        c, h, w = (int(v) for v in shape[1:])
        if kind == "pool":
            level += 1
        elif kind == "upconv":
            side, level = "up", level - 1
        if kind == "concat":
            # The concatenation is [cropped copy, up-conv output]; the copy's channels are the rest.
            maps.insert(len(maps) - 1, FeatureMap(side, level, "crop", c - maps[-1].channels, h, w))
        else:
            maps.append(FeatureMap(side, level, kind, c, h, w))  # type: ignore[arg-type]
    return maps

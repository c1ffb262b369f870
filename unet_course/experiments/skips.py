"""Lesson 02's experiment: what do the skip connections buy? None, summed, or concatenated.

:class:`SkipUNet` is a small U-Net whose expanding path joins the copied contracting map in one
of three ways: not at all (an encoder-decoder that must rebuild every detail from the bottom),
summed (as FusionNet and residual-style decoders do), or concatenated (the paper). Everything
else, and every training tile, is the same; :func:`compare_skips` trains one net per way with
lesson 04's loop and scores it on held-out synthetic EM. ``tests/test_lesson_claims.py``
reruns it at several seeds and thread counts. Same padding keeps the three nets the same size
and needs no crop, so the only difference is the skip.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..data import synthetic_em
from ..model import DoubleConv, Down
from .deformation import DeformationRun, tile_pixel_error, train_tile_net

__all__ = ["SKIP_MODES", "SkipUNet", "compare_skips"]

SkipMode = Literal["none", "sum", "concat"]
SKIP_MODES: tuple[SkipMode, ...] = ("none", "sum", "concat")


class SkipUNet(nn.Module):
    """A same-padded U-Net of ``depth`` levels whose skips are ``skip`` ("none", "sum", "concat").

    (N, 1, H, W) -> (N, 2, H, W) logits, H and W multiples of 2**depth. The up-convolution
    halves the channels to the skip's count c; "concat" then convolves 2c channels, "sum" and
    "none" convolve c.
    """

    def __init__(self, skip: SkipMode = "concat", depth: int = 2, base_channels: int = 8):
        super().__init__()
        if skip not in SKIP_MODES:
            raise ValueError(f"skip must be one of {', '.join(SKIP_MODES)}, got {skip!r}")
        self.skip, self.depth = skip, depth
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.inc = DoubleConv(1, widths[0], "same")
        self.downs = nn.ModuleList(Down(a, b, "same") for a, b in zip(widths, widths[1:]))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, stride=2)
                                 for a, b in zip(widths, widths[1:]))
        joined = 2 if skip == "concat" else 1
        self.convs = nn.ModuleList(DoubleConv(joined * a, a, "same") for a in widths[:-1])
        self.head = nn.Conv2d(widths[0], 2, kernel_size=1)

    def valid_input_size(self, n: int) -> int:
        """The smallest edge >= n the poolings accept (a multiple of 2**depth)."""
        return -(-n // 2**self.depth) * 2**self.depth

    def output_size(self, n: int) -> int:
        return n  # same padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        copies = [self.inc(x)]
        for down in self.downs:
            copies.append(down(copies[-1]))
        x = copies.pop()
        for level in reversed(range(self.depth)):
            x, copy = self.ups[level](x), copies[level]
            if self.skip == "concat":
                x = torch.cat([copy, x], dim=1)
            elif self.skip == "sum":
                x = x + copy
            x = self.convs[level](x)
        return self.head(x)


def compare_skips(steps: int = 200, seed: int = 0, tile: int = 64, depth: int = 3,
                  base_channels: int = 8) -> dict[str, DeformationRun]:
    """One :class:`SkipUNet` per skip mode, trained ``steps`` steps at ``seed`` on two synthetic
    slices of 256 px and scored on 48 tiles of them and of four held-out slices. Depth 3: the
    bottom map is 8 x 8 for a 64-pixel tile, so without skips every membrane must be redrawn
    from an eighth of the resolution.

    Returns ``{mode: run}``; ``run.held_out.error`` is the held-out pixel error.
    """
    images, masks, _ = synthetic_em(2, size=256, seed=1)
    test_images, test_masks, _ = synthetic_em(4, size=256, seed=1000)
    runs = {}
    for mode in SKIP_MODES:
        net = train_tile_net(images, masks, None, steps, seed, tile=tile,
                             build=lambda mode=mode: SkipUNet(mode, depth, base_channels))
        runs[mode] = DeformationRun(net, tile, tile_pixel_error(net, images, masks, tile),
                                    tile_pixel_error(net, test_images, test_masks, tile))
    return runs

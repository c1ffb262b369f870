"""Late fusion: one contracting path per modality, one expanding path for all of them.

A U-Net given several modalities as the channels of one image (``UNet(in_channels=C)``) fuses
them *early*: its first 3x3 convolution already mixes them, and everything after sees the mix.
:class:`LateFusionUNet` keeps them apart for longer. Each modality gets a contracting path of
its own, the course's :class:`~unet_course.model.DoubleConv` and
:class:`~unet_course.model.Down` blocks fed with that one channel, so the features of one
modality are computed without looking at the others. At every level the C paths' feature
maps are *fused* into one map of the level's width, and the single expanding path (the
course's :class:`~unet_course.model.Up` blocks) copies the fused maps across, as U-Net copies
its one contracting path's maps.

Two ways to fuse (``fusion``):

* ``"concat"`` (default): concatenate the C maps along the channels and mix them with a 1x1
  convolution back to the level's width. The net learns, per level and per feature, how much
  of each modality to pass on; the expanding path then has exactly the widths of the
  single-path U-Net's, so the two nets differ only in their contracting paths.
* ``"sum"``: add the C maps. No weights, and a fixed share for every modality; a modality
  filled with a constant at test time then shifts every fused feature by the same amount.

Same forward contract as :class:`~unet_course.model.UNet`: (N, C, H, W) -> logits
(N, num_classes, out, out), ``output_size`` and ``valid_input_size`` as UNet's (the fusion
adds only 1x1 convolutions, so the size arithmetic is the same), and ``predict_tiled`` drives
it as it drives a UNet.
"""

from __future__ import annotations

import torch
from torch import nn

from .model import DoubleConv, Down, UNetConfig, Up, he_init_

__all__ = ["FUSIONS", "LateFusionUNet"]

#: the ways :class:`LateFusionUNet` can join its paths' feature maps
FUSIONS = ("concat", "sum")


class _Fuse(nn.Module):
    """C feature maps of one level, (N, width, H, W) each -> one (N, width, H, W)."""

    def __init__(self, paths: int, width: int, fusion: str):
        super().__init__()
        self.mix = nn.Conv2d(paths * width, width, kernel_size=1) if fusion == "concat" else None

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        if self.mix is None:
            return torch.stack(maps).sum(0)
        # no activation: the 3x3 convolution after the copy follows at once
        return self.mix(torch.cat(maps, dim=1))


class LateFusionUNet(nn.Module):
    """A U-Net with one contracting path per input channel (modality), fused at every level.

    Args:
        in_channels: the number of modalities C, 2 or more (one path each; for one channel
            use :class:`~unet_course.model.UNet`).
        num_classes, depth, base_channels, padding, batch_norm, up_mode, dropout, norm: as for
            :class:`~unet_course.model.UNet`; every path has the widths
            ``base_channels * 2**level``.
        fusion: ``"concat"`` (concatenate, then a 1x1 convolution) or ``"sum"`` (see the
            module docstring).

    Attributes:
        encoders: C contracting paths; ``encoders[k]`` sees channel k only.
        fuse: one fusion per level, top first (depth + 1 of them; the last is the bottom).
        config: the constructor's arguments as a plain dict (``LateFusionUNet(**config)``).

    Input (N, C, H, W) with H and W valid sizes; output logits
    (N, num_classes, output_size(H), output_size(W)).
    """

    def __init__(self, in_channels: int = 2, num_classes: int = 2, depth: int = 4,
                 base_channels: int = 64, padding: str = "valid", batch_norm: bool = False,
                 up_mode: str = "transpose", dropout: float = 0.5, fusion: str = "concat",
                 norm: str = "batch"):
        super().__init__()
        spec = UNetConfig(in_channels, num_classes, depth, base_channels, padding, batch_norm,
                          up_mode, dropout, norm)  # the same checks and types as UNet's
        if spec.in_channels < 2:
            raise ValueError(f"LateFusionUNet needs 2 or more input channels, one contracting "
                             f"path per modality, got in_channels={spec.in_channels}; for a "
                             "single channel use UNet")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be 'concat' (1x1 convolution over the concatenated "
                             f"maps) or 'sum', got {fusion!r}")
        self.config = {**dict(spec), "fusion": fusion}
        self.spec, self.geometry = spec, spec.geometry
        self.in_channels, self.num_classes = spec.in_channels, spec.num_classes
        self.depth, self.padding = spec.depth, spec.padding
        blocks, widths = (spec.padding, spec.batch_norm), spec.widths
        self.encoders = nn.ModuleList(
            nn.ModuleList([DoubleConv(1, widths[0], *blocks, norm=spec.norm)]
                          + [Down(widths[i], widths[i + 1], *blocks, norm=spec.norm)
                             for i in range(spec.depth)])
            for _ in range(spec.in_channels))
        self.fuse = nn.ModuleList(_Fuse(spec.in_channels, w, fusion) for w in widths)
        self.dropout = nn.Dropout(spec.dropout) if spec.dropout > 0 else nn.Identity()
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i], *blocks, spec.up_mode,
                                    norm=spec.norm) for i in reversed(range(spec.depth)))
        self.head = nn.Conv2d(widths[0], spec.num_classes, kernel_size=1)
        he_init_(self)

    def output_size(self, input_size: int) -> int:
        """Edge of the output map for an input edge ``input_size`` (as :class:`UNet`'s)."""
        return self.geometry.output_size(input_size)

    def valid_input_size(self, n: int) -> int:
        """The smallest valid input edge >= n (as :class:`UNet`'s)."""
        return self.geometry.valid_input_size(n)

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"LateFusionUNet expects a batch (N, C, H, W), got {shape}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"LateFusionUNet expects {self.in_channels} input channels, one per modality "
                f"(one contracting path each), but got {x.shape[1]} (input shape "
                f"{tuple(x.shape)})")
        for edge in x.shape[-2:]:
            self.geometry.check(int(edge))

    def encode(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Every path's feature maps: ``[path k][level l]``, (N, width_l, h_l, w_l) each.

        Path k is computed from ``x[:, k:k+1]`` alone.
        """
        self._check_input(x)
        features = []
        for k, path in enumerate(self.encoders):
            maps = [path[0](x[:, k : k + 1])]
            for down in path[1:]:
                maps.append(down(maps[-1]))
            features.append(maps)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> logits (N, num_classes, output_size(H), output_size(W))."""
        per_path = self.encode(x)
        fused = [fuse([maps[level] for maps in per_path])
                 for level, fuse in enumerate(self.fuse)]
        y = self.dropout(fused.pop())  # the fused bottom of the U
        for up in self.ups:
            y = up(y, fused.pop())
        return self.head(y)

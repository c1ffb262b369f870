"""The U-Net of Ronneberger, Fischer and Brox (MICCAI 2015), built from the paper's own parts.

Shapes follow PyTorch: a batch is (N, C, H, W). With the paper's choices (``padding="valid"``)
every 3x3 convolution loses one pixel on each side, so a 572 x 572 input tile gives a
388 x 388 output map; the skip connections are centre-cropped before they are concatenated.

The parts, named as in the paper's Section 2:

* :class:`DoubleConv`  two 3x3 convolutions, each followed by a ReLU;
* :class:`Down`        2x2 max pooling with stride 2, then a :class:`DoubleConv` that doubles
                       the feature channels (one step of the contracting path);
* :class:`Up`          a 2x2 up-convolution that halves the channels, concatenation with the
                       centre-cropped skip feature map, then a :class:`DoubleConv`
                       (one step of the expanding path);
* :class:`UNetConfig`  the constructor's arguments, checked, read by attribute;
* :class:`UNet`        the whole network; its size arithmetic is a
                       :class:`~unet_course.geometry.UNetGeometry` (``model.geometry``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
from torch import nn

from .geometry import Padding, UNetGeometry, check_padding
from .validation import positive_int, probability

__all__ = ["DoubleConv", "Down", "Up", "UNet", "UNetConfig", "center_crop", "he_init_", "norm_layer"]

UpMode = Literal["transpose", "bilinear"]
Norm = Literal["batch", "instance"]


def center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop the centre ``size = (h, w)`` out of ``x`` of shape (N, C, H, W).

    This is the paper's "copy and crop": the contracting path's feature map is larger than
    the expanding path's because every valid 3x3 convolution since then removed a border.
    An odd difference cannot be split evenly; it never happens for valid input sizes.
    """
    h, w = size
    H, W = x.shape[-2:]
    if h > H or w > W:
        raise ValueError(f"cannot crop a {H}x{W} feature map to the larger size {h}x{w}")
    top, left = (H - h) // 2, (W - w) // 2
    return x[..., top : top + h, left : left + w]


def norm_layer(norm: Norm, channels: int) -> nn.Module:
    """The normalisation layer after a convolution of ``channels`` outputs.

    ``"batch"``: BatchNorm2d, statistics over the batch in training and running averages in
    eval mode. ``"instance"``: InstanceNorm2d with a learned scale and shift, the statistics of
    each tile alone in training and in eval mode alike (so a batch of one tile trains the same
    normalisation that prediction uses).
    """
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    raise ValueError(f"norm must be 'batch' or 'instance', got {norm!r}")


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by a ReLU (and optionally a norm layer before it).

    (N, in_channels, H, W) -> (N, out_channels, H - 4, W - 4) with ``padding="valid"``,
    or (N, out_channels, H, W) with ``padding="same"``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, padding: Padding = "valid", batch_norm: bool = False,
        bias: bool | None = None, norm: Norm = "batch",
    ):
        pad = 0 if padding == "valid" else 1
        # With batch norm the conv bias is redundant: the norm's shift replaces it. ``bias=True``
        # keeps it anyway, as the widely copied reference implementations of the successors do
        # (unet_course.variants, whose parameter counts match theirs).
        bias = not batch_norm if bias is None else bool(bias)
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers.append(nn.Conv2d(c_in, out_channels, 3, padding=pad, bias=bias))
            if batch_norm:
                layers.append(norm_layer(norm, out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Down(nn.Sequential):
    """One contracting step: 2x2 max pooling with stride 2, then :class:`DoubleConv`.

    (N, in_channels, H, W) -> (N, out_channels, H/2 - 4, W/2 - 4) for valid padding.
    H and W must be even, otherwise the pooling silently drops a row or column.
    """

    def __init__(
        self, in_channels: int, out_channels: int, padding: Padding = "valid", batch_norm: bool = False,
        norm: Norm = "batch",
    ):
        super().__init__(
            nn.MaxPool2d(kernel_size=2, stride=2),
            DoubleConv(in_channels, out_channels, padding, batch_norm, norm=norm),
        )


class Up(nn.Module):
    """One expanding step: up-convolution, copy-and-crop, concatenation, :class:`DoubleConv`.

    ``forward(x, skip)``: x is (N, in_channels, h, w) from the level below, skip is
    (N, in_channels // 2, H, W) from the contracting path with H >= 2h. The result is
    (N, out_channels, 2h - 4, 2w - 4) for valid padding.

    ``up_mode="transpose"`` is the paper's 2x2 up-convolution (a transposed convolution with
    stride 2) that halves the channels. ``"bilinear"`` is a common modern alternative: a fixed
    bilinear 2x upsampling followed by a learned 1x1 convolution that halves the channels.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        padding: Padding = "valid",
        batch_norm: bool = False,
        up_mode: UpMode = "transpose",
        norm: Norm = "batch",
    ):
        super().__init__()
        half = in_channels // 2
        if up_mode == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, half, kernel_size=2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, half, kernel_size=1),
            )
        # After the concatenation the channels are the up-path's half plus the skip's half.
        self.conv = DoubleConv(half + half, out_channels, padding, batch_norm, norm=norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        skip = center_crop(skip, x.shape[-2:])
        return self.conv(torch.cat([skip, x], dim=1))


def he_init_(module: nn.Module) -> None:
    """The paper's initialisation, in place: Gaussian weights of mean 0 and *standard deviation*
    sqrt(2/N) (a variance of 2/N), biases 0.

    N is the number of incoming nodes of one neuron. For a k x k convolution that is
    k * k * C_in. For the 2x2 up-convolution with stride 2 each output pixel is touched by
    exactly one kernel tap per input channel, so N = C_in there (PyTorch's own kaiming
    helper would count the *output* channels of a transposed convolution instead).
    """
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose2d):
            taps = math.prod(k // s for k, s in zip(m.kernel_size, m.stride)) or 1
            fan_in = m.in_channels * taps
        elif isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * math.prod(m.kernel_size) // m.groups
        else:
            continue
        nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / fan_in))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


@dataclass(frozen=True)
class UNetConfig(Mapping):
    """The arguments of :class:`UNet`, checked; read them by attribute (``config.depth``).

    It is also a read-only mapping, so ``dict(config)`` is the plain dict of constructor
    arguments that a checkpoint stores (``UNet(**dict(config))`` rebuilds the net). The checks
    raise TypeError for a value of the wrong kind and ValueError for one out of range.
    """

    in_channels: int = 1
    num_classes: int = 2
    depth: int = 4
    base_channels: int = 64
    padding: Padding = "valid"
    batch_norm: bool = False
    up_mode: UpMode = "transpose"
    dropout: float = 0.5
    norm: Norm = "batch"

    def __post_init__(self) -> None:
        # Plain Python values, so that a checkpoint of dict(config) loads with weights_only=True.
        for name in ("in_channels", "num_classes", "depth", "base_channels"):
            object.__setattr__(self, name, positive_int(getattr(self, name), name))
        check_padding(self.padding)
        if not isinstance(self.batch_norm, bool):
            raise TypeError(f"batch_norm must be True or False, got {self.batch_norm!r}")
        if self.up_mode not in ("transpose", "bilinear"):
            raise ValueError(f"up_mode must be 'transpose' (the paper) or 'bilinear', got {self.up_mode!r}")
        object.__setattr__(self, "dropout", probability(self.dropout, "dropout", below_one=True))
        if self.norm not in ("batch", "instance"):
            raise ValueError(f"norm must be 'batch' or 'instance', got {self.norm!r}")

    @property
    def geometry(self) -> UNetGeometry:
        """The size arithmetic of this net."""
        return UNetGeometry(self.depth, self.padding)

    @property
    def widths(self) -> list[int]:
        """Feature channels per level, top to bottom: [64, 128, 256, 512, 1024] in the paper."""
        return [self.base_channels * 2**level for level in range(self.depth + 1)]

    # The read-only mapping: the field names are its keys, in the constructor's order.
    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in fields(self)}:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return (f.name for f in fields(self))

    def __len__(self) -> int:
        return len(fields(self))


# Method names that cast a tensor or a module to a dtype, for error messages.
_CASTS = {torch.float32: "float", torch.float64: "double", torch.float16: "half",
          torch.bfloat16: "bfloat16"}


class UNet(nn.Module):
    """U-Net: a contracting path for context and a symmetric expanding path for localisation.

    Args:
        in_channels: channels of the input image (1 for gray EM slices).
        num_classes: output maps; a pixel-wise soft-max over them gives class probabilities.
        depth: number of 2x2 poolings (4 in the paper: 64 -> 128 -> 256 -> 512 -> 1024 channels).
        base_channels: feature channels at the top level (64 in the paper).
        padding: ``"valid"`` (the paper: unpadded 3x3 convs, output smaller than input) or
            ``"same"`` (zero padding, output as large as the input).
        batch_norm: insert a normalisation layer after every 3x3 conv (not in the paper; a
            modern option).
        norm: which one ``batch_norm`` inserts: ``"batch"`` (BatchNorm2d) or ``"instance"``
            (InstanceNorm2d with affine scale and shift; each tile normalised by its own
            statistics, in training and in eval mode alike). Ignored without ``batch_norm``.
        up_mode: ``"transpose"`` (the paper's 2x2 up-conv) or ``"bilinear"``.
        dropout: probability of the dropout layer at the end of the contracting path
            (the paper's "implicit data augmentation"); 0 disables it.

    Attributes:
        spec: the arguments as a :class:`UNetConfig` (``model.spec.base_channels``).
        config: the same as a plain dict, for checkpoints: ``UNet(**model.config)`` rebuilds it.
        geometry: the size arithmetic, a :class:`~unet_course.geometry.UNetGeometry`.

    Input (N, in_channels, H, W) with H and W valid sizes (see :meth:`valid_input_size`) and the
    dtype of the weights (float32 unless converted); output logits
    (N, num_classes, output_size(H), output_size(W)).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        depth: int = 4,
        base_channels: int = 64,
        padding: Padding = "valid",
        batch_norm: bool = False,
        up_mode: UpMode = "transpose",
        dropout: float = 0.5,
        norm: Norm = "batch",
    ):
        super().__init__()
        spec = UNetConfig(in_channels, num_classes, depth, base_channels, padding, batch_norm,
                          up_mode, dropout, norm)
        self.spec = spec
        self.config = dict(spec)
        self.geometry = spec.geometry
        self.in_channels, self.num_classes = spec.in_channels, spec.num_classes
        self.depth, self.padding = spec.depth, spec.padding

        blocks = (spec.padding, spec.batch_norm)
        widths = spec.widths  # 64, 128, 256, 512, 1024
        self.inc = DoubleConv(spec.in_channels, widths[0], *blocks, norm=spec.norm)
        self.downs = nn.ModuleList(Down(widths[i], widths[i + 1], *blocks, norm=spec.norm)
                                   for i in range(spec.depth))
        self.dropout = nn.Dropout(spec.dropout) if spec.dropout > 0 else nn.Identity()
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], *blocks, spec.up_mode, norm=spec.norm)
            for i in reversed(range(spec.depth))
        )
        self.head = nn.Conv2d(widths[0], spec.num_classes, kernel_size=1)
        he_init_(self)

    # ----------------------------------------------------------------- size arithmetic
    def _sizes(self, n: int) -> list[int] | None:
        """Edge after every stage for an input edge ``n``, or None if n is invalid."""
        return self.geometry.sizes(n)

    def output_size(self, input_size: int) -> int:
        """Edge of the output map for an input edge ``input_size`` (572 -> 388 in the paper).

        Raises ValueError naming the nearest valid sizes when ``input_size`` is not valid.
        """
        return self.geometry.output_size(input_size)

    def valid_input_size(self, n: int) -> int:
        """The smallest valid input edge >= n (for the paper's net: 188 + 16k)."""
        return self.geometry.valid_input_size(n)

    # ----------------------------------------------------------------- forward
    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"UNet expects a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
        if x.dim() == 3:
            raise ValueError(
                f"UNet expects a batch (N, C, H, W) but got a 3-D tensor of shape {tuple(x.shape)}: "
                "the batch dimension is missing; use x.unsqueeze(0)"
            )
        if x.dim() != 4:
            raise ValueError(f"UNet expects a 4-D tensor (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"UNet expects {self.in_channels} input channel(s) but got {x.shape[1]} "
                f"(input shape {tuple(x.shape)})"
            )
        for edge in x.shape[-2:]:
            self.geometry.check(int(edge))
        self._check_dtype(x)

    def _check_dtype(self, x: torch.Tensor) -> None:
        """TypeError naming both dtypes and the cast that fixes it, instead of torch's message.

        Under ``torch.autocast`` the convolutions cast their inputs themselves: nothing to check.
        """
        weights = self.head.weight.dtype
        if x.dtype == weights or torch.is_autocast_enabled(x.device.type):
            return
        fix = f"x.{_CASTS[weights]}()" if weights in _CASTS else f"x.to({weights})"
        if x.dtype == torch.uint8:
            fix += " / 255 (8-bit values 0..255 to 0..1)"
        elif x.dtype in _CASTS:
            fix += f", or the model with model.{_CASTS[x.dtype]}()"
        raise TypeError(f"UNet got an input of dtype {x.dtype} but its weights are {weights}: "
                        f"convert the input with {fix}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> logits (N, num_classes, output_size(H), output_size(W))."""
        self._check_input(x)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = self.dropout(skips.pop())              # the end of the contracting path
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)

"""U-Net's neighbours: five encoder-decoder nets of 2015-2017, small and same-padded.

Each answers the question U-Net answers, how to bring coarse features that know the context
back to full resolution without losing where things are, and differs in *what crosses from
the encoder to the decoder*:

* :class:`FCN8s` (Long et al. 2015): only class scores. A 1x1 score layer reads the features
  at strides 32, 16 and 8; the scores are upsampled and combined by element-wise *sum*.
* :class:`SegNet` (Badrinarayanan et al. 2017): only *where* each maximum was. The encoder
  keeps its max-pooling indices and the decoder's ``MaxUnpool2d`` puts every value back there.
* :class:`LinkNet` (Chaurasia and Culurciello 2017): features, *added*. A residual (ResNet-18
  style) encoder; each decoder block's output is added to its encoder block's input.
* :class:`FPN` (Lin et al. 2017): features, *added* top-down. Lateral 1x1 convolutions plus
  the upsampled coarser level make a pyramid of equally wide maps; the segmentation heads on
  the levels are summed at stride 4 and upsampled to full size.
* :class:`PSPNet` (Zhao et al. 2017): no skips; global context instead. An encoder to
  stride 8, then pyramid pooling with bins 1, 2, 3 and 6, concatenated, upsampled bilinearly.

U-Net (:class:`~unet_course.model.UNet`) sends whole feature maps and *concatenates* them.

All five take the course's interface, ``(in_channels, num_classes, base_channels,
batch_norm)``, map (N, C, H, W) to logits (N, num_classes, H, W), and are initialised like
the course's UNet (He et al., :func:`~unet_course.model.he_init_`). Widths grow from
``base_channels`` like U-Net's and stop at 8 x base (VGG's 64 ... 512 at base 64).

Alignment: FCN-8s, SegNet, FPN and PSPNet downsample with 2x2 windows, whose coarse pixel
sits between the pixels it pooled, and upsample onto that same grid (bilinear with
``align_corners=False``, 2x2 unpooling, learnt x2 kernels of 4 taps), so no map is shifted
against another. LinkNet, as its paper, downsamples with odd kernels and stride 2, whose
coarse pixel sits *on* an input pixel; lesson 12 measures what mixing the two does.
Each net states the input edges it takes (``divisor``, ``minimum``) and refuses others with
a ValueError naming the nearest ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .geometry import UNetGeometry
from .model import DoubleConv, he_init_
from .validation import positive_int

__all__ = ["FCN8s", "FPN", "LinkNet", "NEIGHBOURS", "PSPNet", "SegNet", "build_neighbour"]


def _conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
          relu: bool = True, batch_norm: bool = True) -> nn.Sequential:
    """Convolution (odd kernel, padded to keep the size at stride 1), batch norm, ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, dilation * (kernel // 2),
                                         dilation, bias=not batch_norm)]
    layers += [nn.BatchNorm2d(c_out)] if batch_norm else []
    layers += [nn.ReLU(inplace=True)] if relu else []
    return nn.Sequential(*layers)


def _up(x: torch.Tensor, size) -> torch.Tensor:
    # align_corners=False: coarse pixel j sits at the centre of the 2x2 ... block it pooled
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class _Neighbour(nn.Module):
    """What the five share: the interface, the size check and the size arithmetic.

    ``divisor``: input edges must be multiples of it (the coarsest stride); ``minimum``: the
    smallest edge. ``geometry`` is a same-padded :class:`UNetGeometry` with the same grid,
    so :func:`~unet_course.predict.predict_tiled` can tile and mirror-extrapolate for it.
    """

    divisor = 32
    minimum = 32

    def _setup(self, in_channels: int, num_classes: int, base_channels: int,
               batch_norm: bool) -> list[int]:
        self.in_channels = positive_int(in_channels, "in_channels")
        self.num_classes = positive_int(num_classes, "num_classes")
        base = positive_int(base_channels, "base_channels")
        self.config = dict(in_channels=in_channels, num_classes=num_classes,
                           base_channels=base_channels, batch_norm=bool(batch_norm))
        self.geometry = UNetGeometry(int(math.log2(self.divisor)), "same")
        return [base * 2**level for level in range(4)]  # VGG: 64 .. 512, then 512 again

    @staticmethod
    def _vgg_blocks(widths: list[int], batch_norm: bool) -> nn.ModuleList:
        """The VGG-like encoder: one same-padded double 3x3 convolution per pair of widths."""
        return nn.ModuleList(DoubleConv(a, b, "same", batch_norm)
                             for a, b in zip(widths, widths[1:]))

    def valid_input_size(self, n: int) -> int:
        """The smallest edge >= n that the net accepts."""
        return max(self.minimum, -(-positive_int(n, "n") // self.divisor) * self.divisor)

    def check_size(self, edge: int) -> None:
        """ValueError unless ``edge`` is a multiple of ``divisor`` and at least ``minimum``."""
        if edge % self.divisor == 0 and edge >= self.minimum:
            return
        lower = max(self.minimum, edge // self.divisor * self.divisor)
        upper = self.valid_input_size(edge)
        nearest = f"{lower} or {upper}" if lower < upper else f"{upper}"
        raise ValueError(
            f"{type(self).__name__} takes edges that are multiples of {self.divisor} (its "
            f"coarsest map is 1/{self.divisor} of the input) and at least {self.minimum}; "
            f"got {edge}, the nearest valid edges are {nearest}")

    def _check_input(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} expects a batch (N, {self.in_channels}, H, W), got {shape}")
        for edge in x.shape[-2:]:
            self.check_size(int(edge))


class FCN8s(_Neighbour):
    """FCN-8s: (N, C, H, W) -> (N, K, H, W), H and W multiples of 32.

    A VGG-like encoder (five double 3x3 convolutions, each followed by 2x2 max pooling; the
    pooled maps ``pool3`` .. ``pool5`` are at strides 8, 16, 32) and VGG's fully connected
    layers as convolutions (``fc``: 3x3 then 1x1). 1x1 ``score`` layers turn ``fc``,
    ``pool4`` and ``pool3`` into K class maps; the coarsest is upsampled x2 by a learnt
    transposed convolution (initialised to bilinear) and *added* to the next, twice, and the
    sum at stride 8 is upsampled x8 by fixed bilinear interpolation.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base_channels: int = 8,
                 batch_norm: bool = True):
        super().__init__()
        w = self._setup(in_channels, num_classes, base_channels, batch_norm)
        widths = [in_channels, w[0], w[1], w[2], w[3], w[3]]  # VGG: 64 128 256 512 512
        self.blocks = self._vgg_blocks(widths, batch_norm)
        fc = 2 * w[3]  # VGG's fc6 and fc7 are 8 times wider still (4096); we take 2 times
        self.fc = nn.Sequential(_conv(w[3], fc, 3, batch_norm=batch_norm),
                                _conv(fc, fc, 1, batch_norm=batch_norm))
        self.score32 = nn.Conv2d(fc, num_classes, 1)
        self.score16 = nn.Conv2d(w[3], num_classes, 1)
        self.score8 = nn.Conv2d(w[2], num_classes, 1)
        self.up32 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, 1, bias=False)
        self.up16 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, 1, bias=False)
        he_init_(self)
        for up in (self.up32, self.up16):
            _bilinear_(up)

    def score_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three score maps (N, K, H/s, W/s) at strides s = 32, 16, 8, before any sum."""
        self._check_input(x)
        pooled = []
        for block in self.blocks:
            x = F.max_pool2d(block(x), 2)
            pooled.append(x)
        return self.score32(self.fc(pooled[4])), self.score16(pooled[3]), self.score8(pooled[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s32, s16, s8 = self.score_maps(x)
        fused = self.up16(self.up32(s32) + s16) + s8  # element-wise sums, not concatenation
        return _up(fused, x.shape[-2:])


def _bilinear_(up: nn.ConvTranspose2d) -> None:
    """Set a (K, K, 4, 4) stride-2 transposed convolution to x2 bilinear upsampling per channel.

    Taps 1/4, 3/4, 3/4, 1/4 along each axis: away from the border this equals
    ``F.interpolate(scale_factor=2, mode="bilinear", align_corners=False)``.
    """
    taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
    with torch.no_grad():
        up.weight.zero_()
        for k in range(min(up.in_channels, up.out_channels)):
            up.weight[k, k] = taps[:, None] * taps[None, :]


class SegNet(_Neighbour):
    """SegNet: (N, C, H, W) -> (N, K, H, W), H and W multiples of 32.

    The encoder is FCN's VGG-like one: five double 3x3 convolutions, each followed by 2x2 max
    pooling that also returns *where* each maximum was. The decoder mirrors it: ``MaxUnpool2d``
    writes every value back at its maximum's position in a map of zeros, and 3x3
    convolutions fill in the rest. No features cross from the encoder, only the indices.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base_channels: int = 8,
                 batch_norm: bool = True):
        super().__init__()
        w = self._setup(in_channels, num_classes, base_channels, batch_norm)
        widths = [in_channels, w[0], w[1], w[2], w[3], w[3]]
        self.encoders = self._vgg_blocks(widths, batch_norm)
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        # decoder k mirrors encoder k: widths[k + 1] -> widths[k] (the top one keeps w[0])
        self.decoders = nn.ModuleList(
            nn.Sequential(_conv(b, b, batch_norm=batch_norm),
                          _conv(b, a if k else w[0], batch_norm=batch_norm))
            for k, (a, b) in enumerate(zip(widths, widths[1:])))
        self.head = nn.Conv2d(w[0], num_classes, 1)
        he_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        indices = []
        for encoder in self.encoders:
            x, where = self.pool(encoder(x))
            indices.append(where)
        for decoder, where in zip(reversed(self.decoders), reversed(indices)):
            x = decoder(self.unpool(x, where))  # values back at their maxima, zeros elsewhere
        return self.head(x)


class _Residual(nn.Module):
    """ResNet's basic block: two 3x3 convolutions plus the input (1x1-projected if needed)."""

    def __init__(self, c_in: int, c_out: int, stride: int, batch_norm: bool):
        super().__init__()
        self.body = nn.Sequential(_conv(c_in, c_out, 3, stride, batch_norm=batch_norm),
                                  _conv(c_out, c_out, 3, relu=False, batch_norm=batch_norm))
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out else
                         _conv(c_in, c_out, 1, stride, relu=False, batch_norm=batch_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


def _up_conv(c_in: int, c_out: int, batch_norm: bool) -> nn.Sequential:
    """3x3 transposed convolution with stride 2 (x2: 16 -> 32 pixels), batch norm, ReLU."""
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, output_padding=1,
                                            bias=not batch_norm),
                         nn.BatchNorm2d(c_out) if batch_norm else nn.Identity(),
                         nn.ReLU(inplace=True))


def _linknet_decoder(m: int, n: int, stride: int, batch_norm: bool) -> nn.Sequential:
    """LinkNet's decoder block: 1x1 to m/4, 3x3 (transposed if stride 2), 1x1 to n."""
    q = max(m // 4, 1)  # the paper's m/4 keeps the decoder cheap
    middle = _up_conv(q, q, batch_norm) if stride == 2 else _conv(q, q, batch_norm=batch_norm)
    return nn.Sequential(_conv(m, q, 1, batch_norm=batch_norm), middle,
                         _conv(q, n, 1, batch_norm=batch_norm))


class LinkNet(_Neighbour):
    """LinkNet: (N, C, H, W) -> (N, K, H, W), H and W multiples of 32.

    Initial block: 7x7 convolution with stride 2 and 3x3 max pooling with stride 2 (stride
    4). Four encoder blocks of two residual blocks each, at strides 4, 8, 16, 32 (the first
    keeps the size, as ResNet-18's first stage). Decoder block k maps encoder block k's output
    back to its input's size and width, and the two are *added*. Final block: a 3x3
    transposed convolution (x2), a 3x3 convolution and a 2x2 transposed convolution (x2) to K.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base_channels: int = 8,
                 batch_norm: bool = True):
        super().__init__()
        w = self._setup(in_channels, num_classes, base_channels, batch_norm)
        self.initial = nn.Sequential(_conv(in_channels, w[0], 7, 2, batch_norm=batch_norm),
                                     nn.MaxPool2d(3, 2, 1))
        widths, strides = [w[0], w[0], w[1], w[2], w[3]], [1, 2, 2, 2]  # ResNet-18's
        self.encoders = nn.ModuleList(
            nn.Sequential(_Residual(a, b, s, batch_norm), _Residual(b, b, 1, batch_norm))
            for a, b, s in zip(widths, widths[1:], strides))
        self.decoders = nn.ModuleList(_linknet_decoder(b, a, s, batch_norm)
                                      for a, b, s in zip(widths, widths[1:], strides))
        half = max(w[0] // 2, 1)
        self.final = nn.Sequential(
            _up_conv(w[0], half, batch_norm), _conv(half, half, batch_norm=batch_norm),
            nn.ConvTranspose2d(half, num_classes, 2, 2))
        he_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        x = self.initial(x)
        inputs = []
        for encoder in self.encoders:
            inputs.append(x)
            x = encoder(x)
        for decoder, skip in zip(reversed(self.decoders), reversed(inputs)):
            x = decoder(x) + skip  # added, so the decoder stays as narrow as the encoder
        return self.final(x)


class FPN(_Neighbour):
    """Feature Pyramid Network for segmentation: (N, C, H, W) -> (N, K, H, W), H, W % 32 == 0.

    Bottom-up: FCN's VGG-like encoder; its pooled maps C2 .. C5 at strides 4 .. 32.
    Top-down: P5 = lateral(C5), P_k = lateral(C_k) + nearest x2 upsampling of P_{k+1}, each
    lateral a 1x1 convolution to ``pyramid`` channels (4 x base), each P then smoothed by a 3x3
    convolution. Segmentation: a 3x3 head on every level, upsampled bilinearly to stride 4 and
    *summed*, a 1x1 classifier, and bilinear x4 upsampling to full size.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base_channels: int = 8,
                 batch_norm: bool = True):
        super().__init__()
        w = self._setup(in_channels, num_classes, base_channels, batch_norm)
        widths = [in_channels, w[0], w[1], w[2], w[3], w[3]]
        self.blocks = self._vgg_blocks(widths, batch_norm)
        d = w[2]  # the pyramid's one width (256 at base 64, as in the paper)
        self.laterals = nn.ModuleList(nn.Conv2d(c, d, 1) for c in widths[2:])  # C2 .. C5
        self.smooth = nn.ModuleList(nn.Conv2d(d, d, 3, padding=1) for _ in widths[2:])
        self.heads = nn.ModuleList(_conv(d, d // 2 or 1, batch_norm=batch_norm)
                                   for _ in widths[2:])
        self.classifier = nn.Conv2d(d // 2 or 1, num_classes, 1)
        he_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        size, pooled = x.shape[-2:], []
        for block in self.blocks:
            x = F.max_pool2d(block(x), 2)
            pooled.append(x)
        levels = pooled[1:]  # C2 .. C5
        p = self.laterals[-1](levels[-1])
        pyramid = [self.smooth[-1](p)]
        for k in reversed(range(len(levels) - 1)):  # top-down: coarse context added to detail
            p = self.laterals[k](levels[k]) + F.interpolate(p, scale_factor=2, mode="nearest")
            pyramid.insert(0, self.smooth[k](p))
        fine = pyramid[0].shape[-2:]
        merged = sum(_up(head(p), fine) for head, p in zip(self.heads, pyramid))
        return _up(self.classifier(merged), size)


class PSPNet(_Neighbour):
    """PSPNet: (N, C, H, W) -> (N, K, H, W), H and W multiples of 8 and at least 48.

    Encoder to stride 8: four double 3x3 convolutions with 2x2 max pooling after the first
    three, then a double convolution dilated by 2 (PSPNet's dilated ResNet widens the view
    instead of pooling further). Pyramid pooling: the map is average-pooled to 1x1, 2x2, 3x3
    and 6x6 bins, each reduced by a 1x1 convolution to a quarter of the width, upsampled
    bilinearly back and *concatenated* with the map; a 3x3 convolution, a 1x1 classifier and
    bilinear x8 upsampling give the logits. The 6 bins need a stride-8 map of at least 6
    pixels, hence the minimum of 48. In training, the 1x1 bin's batch norm sees one value per
    image and channel, so a training batch needs at least 2 images.
    """

    divisor = 8
    minimum = 48
    bins = (1, 2, 3, 6)

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base_channels: int = 8,
                 batch_norm: bool = True):
        super().__init__()
        w = self._setup(in_channels, num_classes, base_channels, batch_norm)
        widths = [in_channels, w[0], w[1], w[2], w[3]]
        self.blocks = self._vgg_blocks(widths, batch_norm)
        self.dilated = nn.Sequential(_conv(w[3], w[3], dilation=2, batch_norm=batch_norm),
                                     _conv(w[3], w[3], dilation=2, batch_norm=batch_norm))
        q = w[3] // len(self.bins) or 1
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), _conv(w[3], q, 1, batch_norm=batch_norm))
            for b in self.bins)
        self.fuse = _conv(w[3] + q * len(self.bins), w[2], batch_norm=batch_norm)
        self.classifier = nn.Conv2d(w[2], num_classes, 1)
        he_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if self.training and self.config["batch_norm"] and x.shape[0] < 2:
            raise ValueError("PSPNet in training mode needs a batch of at least 2 images: the "
                             "1x1 bin's batch norm sees one value per image and channel; call "
                             "model.eval() to predict a single image")
        size, x = x.shape[-2:], self.blocks[0](x)
        for block in self.blocks[1:]:  # three poolings: stride 8
            x = block(F.max_pool2d(x, 2))
        x = self.dilated(x)
        pyramid = [x] + [_up(stage(x), x.shape[-2:]) for stage in self.stages]
        return _up(self.classifier(self.fuse(torch.cat(pyramid, 1))), size)


#: The five neighbours by the name lesson 12's tables show.
NEIGHBOURS: dict[str, Callable[..., nn.Module]] = {
    "FCN-8s": FCN8s, "SegNet": SegNet, "LinkNet": LinkNet, "FPN": FPN, "PSPNet": PSPNet,
}


def build_neighbour(name: str, in_channels: int = 1, num_classes: int = 2,
                    base_channels: int = 8, batch_norm: bool = True) -> nn.Module:
    """The net ``name`` of :data:`NEIGHBOURS` (for example ``"SegNet"``), freshly initialised."""
    if name not in NEIGHBOURS:
        raise ValueError(f"unknown net {name!r}; choose one of {', '.join(NEIGHBOURS)}")
    return NEIGHBOURS[name](in_channels, num_classes, base_channels, batch_norm)

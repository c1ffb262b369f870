"""U-Net's successors, built from the course's parts, one idea each.

* :class:`AttentionUNet` (Oktay et al. 2018): an additive attention gate on every skip; the
  coarser level decides which pixels of the copied map pass, ``psi = sigmoid(conv1x1(relu(
  W_g g + W_x x)))``, and the copy is multiplied by ``psi`` (kept in ``model.attention``).
* :class:`R2UNet` (Alom et al. 2018): every double convolution becomes a recurrent residual
  block: a 1x1 entry convolution, then two recurrent units that each apply one 3x3 convolution
  ``t + 1`` times with shared weights (``x1 = f(x); x1 = f(x + x1)`` ...), plus the entry.
* :class:`R2AttUNet`: both.
* :class:`NestedUNet` (UNet++, Zhou et al. 2018): nested, dense skip pathways
  ``X[i, j] = H(cat(X[i, 0..j-1], up(X[i+1, j-1])))``, optional deep supervision (a 1x1 head
  on every ``X[0, j]``) and pruning at inference (``prune=L`` keeps the nodes with i + j <= L).
* :class:`PlainConvUNet` (nnU-Net, Isensee et al. 2021): no new idea in the network, a plain
  U-Net whose every size is read from a plan (:mod:`unet_course.plan`): kernel and pooling
  sizes per stage and axis, widths, and deep supervision on every decoder resolution.

All are same-padded, like the reference implementations most readers meet, and configured like
them by default: batch norm after every convolution, convolutions with biases, and for the
first three nearest-neighbour x2 upsampling followed by a 3x3 convolution in the decoder. Their
parameter counts then equal the references' (``tests/test_variants.py``). Each accepts only
input edges that are multiples of 2**depth and says so with the course's message, instead of
PyTorch's ``torch.cat`` size mismatch deep inside the forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .geometry import UNetGeometry
from .model import DoubleConv
from .validation import positive_int

__all__ = ["AttentionGate", "AttentionUNet", "NestedUNet", "PlainConvUNet", "R2AttUNet",
           "R2UNet", "RecurrentResidualBlock", "ReferenceUNet", "VARIANTS"]


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class AttentionGate(nn.Module):
    """Additive attention on a skip: ``x * sigmoid(psi(relu(W_g g + W_x x)))``.

    ``g`` (N, gate_channels, H, W) is the gating signal from the coarser level (already
    upsampled to the skip's size), ``x`` (N, skip_channels, H, W) the copied map. The last
    coefficients, (N, 1, H, W) in [0, 1], are kept in ``self.coefficients`` for inspection.
    """

    def __init__(self, gate_channels: int, skip_channels: int, inner_channels: int,
                 batch_norm: bool = True):
        super().__init__()
        self.w_g = nn.Sequential(nn.Conv2d(gate_channels, inner_channels, 1),
                                 _norm(inner_channels, batch_norm))
        self.w_x = nn.Sequential(nn.Conv2d(skip_channels, inner_channels, 1),
                                 _norm(inner_channels, batch_norm))
        self.psi = nn.Sequential(nn.Conv2d(inner_channels, 1, 1), _norm(1, batch_norm),
                                 nn.Sigmoid())
        self.coefficients: torch.Tensor | None = None

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        psi = self.psi(F.relu(self.w_g(g) + self.w_x(x)))
        self.coefficients = psi.detach()
        return x * psi


class _RecurrentConv(nn.Module):
    """One 3x3 conv (+ norm + ReLU) applied t + 1 times with the same weights."""

    def __init__(self, channels: int, t: int, batch_norm: bool):
        super().__init__()
        self.t = positive_int(t, "t (recurrent steps)")
        self.conv = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1),
                                  _norm(channels, batch_norm), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        for _ in range(self.t):  # feed the input back in with the growing state
            out = self.conv(x + out)
        return out


class RecurrentResidualBlock(nn.Module):
    """R2U-Net's replacement of the double convolution: (N, C_in, H, W) -> (N, C_out, H, W).

    A 1x1 entry convolution to C_out channels, two recurrent units, and the entry added back.
    The weights are shared across the ``t`` steps, so the parameter count does not depend on t.
    """

    def __init__(self, in_channels: int, out_channels: int, t: int = 2, batch_norm: bool = True):
        super().__init__()
        self.entry = nn.Conv2d(in_channels, out_channels, 1)
        self.recurrent = nn.Sequential(_RecurrentConv(out_channels, t, batch_norm),
                                       _RecurrentConv(out_channels, t, batch_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.entry(x)
        return x + self.recurrent(x)


class _SameSizeNet(nn.Module):
    """What the variants share: sizes, the input check, and the attributes the course reads."""

    def _setup(self, in_channels: int, num_classes: int, depth: int, base_channels: int):
        self.in_channels = positive_int(in_channels, "in_channels")
        self.num_classes = positive_int(num_classes, "num_classes")
        self.depth = positive_int(depth, "depth")
        self.geometry = UNetGeometry(self.depth, "same")  # predict_tiled reads this
        self.widths = [positive_int(base_channels, "base_channels") * 2**level
                       for level in range(self.depth + 1)]

    def output_size(self, input_size: int) -> int:
        return self.geometry.output_size(input_size)

    def valid_input_size(self, n: int) -> int:
        return self.geometry.valid_input_size(n)

    def _check_input(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} expects a batch (N, C, H, W), got {shape}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{name} expects {self.in_channels} input channel(s), got "
                             f"{x.shape[1]} (input shape {tuple(x.shape)})")
        for edge in x.shape[-2:]:
            self.geometry.check(int(edge))


class ReferenceUNet(_SameSizeNet):
    """The plain U-Net of the reference implementations; the base of the next three.

    (N, in_channels, H, W) -> (N, num_classes, H, W), H and W multiples of 2**depth. Encoder:
    ``block`` per level and 2x2 max pooling; decoder: nearest x2 upsampling + 3x3 conv (+ norm +
    ReLU) halving the channels, an optional attention gate on the copy, concatenation (copy
    first) and ``block``; a 1x1 head. ``block`` is "double" (two 3x3 convolutions) or
    "recurrent" (:class:`RecurrentResidualBlock`).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1, depth: int = 4,
                 base_channels: int = 64, batch_norm: bool = True, *, block: str = "double",
                 attention: bool = False, t: int = 2):
        super().__init__()
        self._setup(in_channels, num_classes, depth, base_channels)
        self.config = dict(in_channels=in_channels, num_classes=num_classes, depth=depth,
                           base_channels=base_channels, batch_norm=batch_norm, block=block,
                           attention=attention, t=t)
        if block not in ("double", "recurrent"):
            raise ValueError(f"block must be 'double' or 'recurrent', got {block!r}")

        def make(c_in: int, c_out: int) -> nn.Module:
            if block == "double":
                return DoubleConv(c_in, c_out, "same", batch_norm, bias=True)
            return RecurrentResidualBlock(c_in, c_out, t, batch_norm)

        w = self.widths
        self.encoders = nn.ModuleList([make(in_channels, w[0])] +
                                      [make(a, b) for a, b in zip(w, w[1:])])
        self.ups = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                          nn.Conv2d(b, a, 3, padding=1), _norm(a, batch_norm),
                          nn.ReLU(inplace=True))
            for a, b in zip(w, w[1:]))
        self.gates = nn.ModuleList(AttentionGate(a, a, max(a // 2, 1), batch_norm)  # >= 1 channel
                                   for a in w[:-1]) if attention else None
        self.decoders = nn.ModuleList(make(2 * a, a) for a in w[:-1])
        self.head = nn.Conv2d(w[0], num_classes, 1)

    @property
    def attention(self) -> list[torch.Tensor | None]:
        """The last forward pass's attention coefficients, top level first (attention nets)."""
        return [] if self.gates is None else [gate.coefficients for gate in self.gates]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        copies = [self.encoders[0](x)]
        for encoder in self.encoders[1:]:
            copies.append(encoder(F.max_pool2d(copies[-1], 2)))
        x = copies.pop()
        for level in reversed(range(self.depth)):
            x, copy = self.ups[level](x), copies[level]
            if self.gates is not None:
                copy = self.gates[level](x, copy)
            x = self.decoders[level](torch.cat([copy, x], dim=1))
        return self.head(x)


class AttentionUNet(ReferenceUNet):
    """:class:`ReferenceUNet` with an :class:`AttentionGate` on every skip (Oktay et al. 2018)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, depth: int = 4,
                 base_channels: int = 64, batch_norm: bool = True):
        super().__init__(in_channels, num_classes, depth, base_channels, batch_norm,
                         attention=True)
        self.config = dict(in_channels=in_channels, num_classes=num_classes, depth=depth,
                           base_channels=base_channels, batch_norm=batch_norm)


class R2UNet(ReferenceUNet):
    """:class:`ReferenceUNet` with :class:`RecurrentResidualBlock` s (Alom et al. 2018)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, depth: int = 4,
                 base_channels: int = 64, batch_norm: bool = True, t: int = 2):
        super().__init__(in_channels, num_classes, depth, base_channels, batch_norm,
                         block="recurrent", t=t)
        self.config = dict(in_channels=in_channels, num_classes=num_classes, depth=depth,
                           base_channels=base_channels, batch_norm=batch_norm, t=t)


class R2AttUNet(ReferenceUNet):
    """Recurrent residual blocks and attention gates together."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, depth: int = 4,
                 base_channels: int = 64, batch_norm: bool = True, t: int = 2):
        super().__init__(in_channels, num_classes, depth, base_channels, batch_norm,
                         block="recurrent", attention=True, t=t)
        self.config = dict(in_channels=in_channels, num_classes=num_classes, depth=depth,
                           base_channels=base_channels, batch_norm=batch_norm, t=t)


class NestedUNet(_SameSizeNet):
    """UNet++ (Zhou et al. 2018): (N, in_channels, H, W) -> (N, num_classes, H, W).

    Node X[i, j] (level i, column j) is a double convolution of the concatenation of
    X[i, 0..j-1] and the bilinear x2 upsampling of X[i+1, j-1]; X[i, 0] is the encoder.
    ``forward`` returns the head on X[0, prune] (``prune`` defaults to ``depth``: the whole
    net), computing only the nodes with i + j <= prune. With ``deep_supervision`` there is a
    head on every X[0, j] and :meth:`forward_all` returns all of them, for a loss on each.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1, depth: int = 4,
                 base_channels: int = 32, batch_norm: bool = True,
                 deep_supervision: bool = False, prune: int | None = None):
        super().__init__()
        self._setup(in_channels, num_classes, depth, base_channels)
        self.config = dict(in_channels=in_channels, num_classes=num_classes, depth=depth,
                           base_channels=base_channels, batch_norm=batch_norm,
                           deep_supervision=bool(deep_supervision))
        w, self.deep_supervision = self.widths, bool(deep_supervision)
        self.prune = self.depth if prune is None else prune
        self.nodes = nn.ModuleDict()
        for j in range(depth + 1):
            for i in range(depth + 1 - j):
                c_in = (in_channels if i == 0 else w[i - 1]) if j == 0 else w[i] * j + w[i + 1]
                self.nodes[f"{i}_{j}"] = DoubleConv(c_in, w[i], "same", batch_norm, bias=True)
        columns = range(1, depth + 1) if self.deep_supervision else [depth]
        self.heads = nn.ModuleDict({str(j): nn.Conv2d(w[0], num_classes, 1) for j in columns})
        # the heads' losses are averaged (Zhou et al. 2018); fit reads these weights
        self.deep_supervision_weights = tuple(1 / len(columns) for _ in columns)

    @property
    def prune(self) -> int:
        """The column whose head ``forward`` returns (1..depth), given or set; kept in config."""
        return self._prune

    @prune.setter  # kept in config, which checkpoints store and load_model rebuilds from
    def prune(self, level: int) -> None:
        if positive_int(level, "prune") > self.depth:
            raise ValueError(f"prune must be in 1..{self.depth}, got {level}")
        self._prune = self.config["prune"] = int(level)

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every head, columns 1..prune (deep supervision) or the last one only."""
        self._check_input(x)
        X: dict[tuple[int, int], torch.Tensor] = {}
        for i in range(self.prune + 1):  # the encoder column, as deep as pruning needs
            below = x if i == 0 else F.max_pool2d(X[i - 1, 0], 2)
            X[i, 0] = self.nodes[f"{i}_0"](below)
        for j in range(1, self.prune + 1):
            for i in range(self.prune + 1 - j):
                up = F.interpolate(X[i + 1, j - 1], scale_factor=2, mode="bilinear",
                                   align_corners=True)
                X[i, j] = self.nodes[f"{i}_{j}"](torch.cat([X[i, k] for k in range(j)] + [up], 1))
        return [head(X[0, int(j)]) for j, head in self.heads.items() if int(j) <= self.prune]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self.forward_all(x)
        if not outputs:
            raise ValueError(f"no head at column {self.prune}: train with deep_supervision=True "
                             "to prune, or keep prune = depth")
        return outputs[-1]


def _conv_norm_act(c_in: int, c_out: int, kernel: tuple[int, int], stride: tuple[int, int]):
    """nnU-Net's unit: convolution (with bias, padded to keep the size), instance norm, leaky ReLU."""
    padding = (kernel[0] // 2, kernel[1] // 2)
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding),
                         nn.InstanceNorm2d(c_out, eps=1e-5, affine=True),
                         nn.LeakyReLU(0.01, inplace=True))


class PlainConvUNet(_SameSizeNet):
    """nnU-Net's plain U-Net, every size read from a plan: (N, C, H, W) -> (N, K, H, W).

    ``features[s]``, ``conv_kernel_sizes[s]`` ((ky, kx), odd, so that a k // 2 padding keeps the
    size) and ``pool_kernel_sizes[s]`` ((sy, sx), (1, 1) for stage 0) describe stage s, as
    :class:`unet_course.plan.Plan2D` holds them. Each stage has two convolution units; the first
    of stages 1.. pools with its stride. The decoder upsamples with a transposed convolution of
    kernel = stride, concatenates (upsampled first, then the copy) and applies two units. H (W)
    must be a multiple of the product of the strides along y (x). With ``deep_supervision``,
    :meth:`forward_all` returns a head's logits at every decoder resolution, finest first (loss
    weights ``deep_supervision_weights``); ``forward`` the finest. He init (leaky slope), bias 0.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, *,
                 features: Sequence[int] = (32, 64, 128, 256, 512),
                 conv_kernel_sizes: Sequence[Sequence[int]] | None = None,
                 pool_kernel_sizes: Sequence[Sequence[int]] | None = None,
                 deep_supervision: bool = False):
        super().__init__()
        stages = len(features)
        kernels = _pairs(conv_kernel_sizes or [(3, 3)] * stages, "conv_kernel_sizes", stages)
        pools = _pairs(pool_kernel_sizes or [(1, 1)] + [(2, 2)] * (stages - 1),
                       "pool_kernel_sizes", stages)
        self._setup(in_channels, num_classes, stages - 1, int(features[0]))
        self.widths = [positive_int(f, "features") for f in features]
        self.divisor = (math.prod(p[0] for p in pools), math.prod(p[1] for p in pools))
        self.config = dict(in_channels=in_channels, num_classes=num_classes,
                           features=list(self.widths), conv_kernel_sizes=[list(k) for k in kernels],
                           pool_kernel_sizes=[list(p) for p in pools],
                           deep_supervision=bool(deep_supervision))
        f = self.widths
        self.encoder = nn.ModuleList(
            nn.Sequential(_conv_norm_act(in_channels if s == 0 else f[s - 1], f[s], kernels[s],
                                         pools[s]),
                          _conv_norm_act(f[s], f[s], kernels[s], (1, 1)))
            for s in range(stages))
        self.up = nn.ModuleList(nn.ConvTranspose2d(f[s + 1], f[s], pools[s + 1], pools[s + 1])
                                for s in range(stages - 1))
        self.decoder = nn.ModuleList(
            nn.Sequential(_conv_norm_act(2 * f[s], f[s], kernels[s], (1, 1)),
                          _conv_norm_act(f[s], f[s], kernels[s], (1, 1)))
            for s in range(stages - 1))
        self.deep_supervision = bool(deep_supervision)
        levels = range(stages - 1) if self.deep_supervision else [0]
        self.heads = nn.ModuleDict({str(s): nn.Conv2d(f[s], num_classes, 1) for s in levels})
        self.deep_supervision_weights = deep_supervision_weights(stages) \
            if self.deep_supervision else (1.0,)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, a=1e-2)
                nn.init.zeros_(m.bias)

    def _check_input(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} expects a batch (N, {self.in_channels}, H, W), got {shape}")
        for edge, d, axis in zip(x.shape[-2:], self.divisor, "HW"):
            if edge % d:
                raise ValueError(f"{name}: {axis} = {edge} is not a multiple of {d} (the "
                                 f"product of the strides along {axis}); use "
                                 f"{-(-edge // d) * d} or {max(d, edge // d * d)}")

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every head, finest resolution first (one head without deep supervision)."""
        self._check_input(x)
        copies = []
        for stage in self.encoder:
            x = stage(x)
            copies.append(x)
        x = copies.pop()
        outputs = []
        for s in reversed(range(len(self.decoder))):
            x = self.decoder[s](torch.cat([self.up[s](x), copies[s]], dim=1))
            if str(s) in self.heads:
                outputs.append(self.heads[str(s)](x))
        return outputs[::-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)[0]


def deep_supervision_weights(stages: int) -> tuple[float, ...]:
    """nnU-Net's loss weight of each decoder output, finest first: 1/2**i, the coarsest 0,
    normalised to sum 1 (``stages`` resolution stages give ``stages - 1`` outputs)."""
    w = [1 / 2**i for i in range(stages - 1)]
    if len(w) > 1:
        w[-1] = 0.0  # nnU-Net gives the coarsest output no weight
    return tuple(x / sum(w) for x in w)


def _pairs(values: Sequence[Sequence[int]], name: str, stages: int) -> list[tuple[int, int]]:
    pairs = [tuple(int(v) for v in value) for value in values]
    odd = " odd" if name == "conv_kernel_sizes" else ""  # k // 2 padding keeps odd sizes only
    if len(pairs) != stages or any(len(p) != 2 or min(p) < 1 or odd and not p[0] * p[1] % 2
                                   for p in pairs):
        raise ValueError(f"{name} needs {stages} pairs of positive{odd} ints (one per stage), "
                         f"got {values}")
    return pairs


#: Every network class a checkpoint may name, by class name (see ``checkpoint.load_model``).
VARIANTS = {cls.__name__: cls for cls in (ReferenceUNet, AttentionUNet, R2UNet, R2AttUNet,
                                          NestedUNet, PlainConvUNet)}

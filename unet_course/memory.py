"""How much memory one tile of a U-Net needs, and how much a prediction may use by default.

:func:`estimate_tile_memory` is the model of the activations of one forward pass that the
tiling uses to choose tile sizes within :data:`DEFAULT_MEMORY_BUDGET`.
"""

from __future__ import annotations

import torch
from torch import nn

from .model import UNetConfig
from .validation import int_pair

__all__ = ["DEFAULT_MEMORY_BUDGET", "count_macs", "estimate_tile_memory", "format_bytes"]

#: Bytes of activations one forward pass may use when ``tile_size`` is chosen automatically:
#: 4 GiB, a quarter of a 16 GB GPU (Colab's T4) or of a 16 GB laptop. It fits the paper's full
#: net on a 1024 x 1024 image in one tile; larger images are split into as few and as tightly
#: fitting tiles as the budget allows. Pass ``memory_budget=`` to change it.
DEFAULT_MEMORY_BUDGET = 4 * 2**30


def _first_width(model: nn.Module) -> int:
    """Channels of the top level: a UNet's base_channels, else the first convolution's."""
    spec = getattr(model, "spec", None)
    if isinstance(spec, UNetConfig):
        return spec.base_channels
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.out_channels)
    raise TypeError(f"cannot find a convolution in {type(model).__name__}")


def estimate_tile_memory(
    model: nn.Module, tile_shape: tuple[int, int], dtype: torch.dtype | None = None
) -> int:
    """Bytes of activations one (h, w) input tile needs in an inference forward pass.

    At the peak (the last up-step) the top level holds about six feature maps of the first
    width w0 at once: the skip, the up-convolved map, their concatenation (two maps' worth) and
    the two 3x3 convolution outputs; the deeper levels add a small geometric tail and the
    input, output and workspace a few maps more. The estimate is itemsize x h x w x
    (6 w0 + 32); measured peaks on CPU (PyTorch 2, float32, batch 1) are 0.8-0.95 times it
    for w0 = 16 ... 64.
    """
    if dtype is None:
        p = next(model.parameters(), None)
        dtype = p.dtype if p is not None else torch.float32
    itemsize = torch.empty((), dtype=dtype).element_size()
    h, w = tile_shape
    return int(itemsize * h * w * (6 * _first_width(model) + 32))


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit that is at most ``n``, for messages: '4.0 GiB'."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} bytes"


def count_macs(model: nn.Module, input_size: int | tuple[int, int]) -> dict[str, int]:
    """Multiply-accumulates of every convolution in one forward pass of one tile, by module name.

    A MAC (one multiplication and one addition) is the unit of a convolution's work. A 3 x 3
    convolution that writes a (C_out, h, w) map from C_in channels costs h * w * C_out * C_in * 9;
    a 2 x 2 stride-2 up-convolution costs h_in * w_in * C_in * C_out * 4, each input pixel
    writing one 2 x 2 block. Counted by running ``model`` once on zeros of (1, C, H, W), with
    ``input_size`` the tile's (H, W) in pixels and C the model's ``in_channels`` (1 without one).
    Pooling, ReLU and copies cost comparisons and moves, not MACs, and are left out.
    """
    h, w = int_pair(input_size, "input_size")
    macs: dict[str, int] = {}

    def counter(name: str):
        def count(module, inputs, output):
            taps = module.kernel_size[0] * module.kernel_size[1]
            if isinstance(module, nn.ConvTranspose2d):  # every input pixel writes a block
                macs[name] = inputs[0][0].numel() * module.out_channels // module.groups * taps
            else:  # every output value reads C_in * taps inputs
                macs[name] = output[0].numel() * (module.in_channels // module.groups) * taps
        return count

    convs = [(n, m) for n, m in model.named_modules()
             if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    if not convs:
        raise ValueError("count_macs needs a model with at least one Conv2d or ConvTranspose2d")
    handles = [m.register_forward_hook(counter(n)) for n, m in convs]
    param = next(model.parameters())
    x = torch.zeros(1, int(getattr(model, "in_channels", 1)), h, w, dtype=param.dtype,
                    device=param.device)
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return macs

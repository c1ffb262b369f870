"""How much memory a U-Net needs, for one tile or one training step, and how much there is.

* :func:`estimate_tile_memory`: the activations of one inference forward pass, the model the
  tiling uses to choose tile sizes within :data:`DEFAULT_MEMORY_BUDGET`;
* :func:`estimate_training_memory`: weights, gradients, optimiser state and the activations of
  one batch of tiles, counted on PyTorch's "meta" device, where nothing is allocated;
* :func:`available_memory`: the bytes a new allocation can use now (CUDA or the system);
* :func:`training_tile` and :func:`check_training_memory`: the training CLI's refusals, made
  before anything is allocated, of a tile too small for the depth and of a net that cannot fit;
* :func:`count_macs`: the multiply-accumulates of one forward pass.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .geometry import Padding, UNetGeometry
from .model import UNetConfig
from .validation import int_pair

__all__ = ["DEFAULT_MEMORY_BUDGET", "MIN_BOTTOM_EDGE", "TrainingMemory", "available_memory",
           "check_training_memory", "count_macs", "estimate_tile_memory",
           "estimate_training_memory", "format_bytes", "training_tile"]

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
    A module applied several times in the pass (a recurrent convolution) is counted at every
    application. Pooling, ReLU and copies cost comparisons and moves, not MACs, and are left out.
    """
    h, w = int_pair(input_size, "input_size")
    macs: dict[str, int] = {}

    def counter(name: str):
        def count(module, inputs, output):
            taps = module.kernel_size[0] * module.kernel_size[1]
            if isinstance(module, nn.ConvTranspose2d):  # every input pixel writes a block
                work = inputs[0][0].numel() * module.out_channels // module.groups * taps
            else:  # every output value reads C_in * taps inputs
                work = output[0].numel() * (module.in_channels // module.groups) * taps
            # a module run several times in one pass (R2U-Net's recurrent convolution, t + 1
            # times) does its work every time: add, do not overwrite
            macs[name] = macs.get(name, 0) + work
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


# --------------------------------------------------------------------------- what there is
def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _system_available() -> int | None:
    """Bytes the system can give a new allocation now, or None where it cannot be read.

    Linux's ``MemAvailable`` (free memory plus the page cache it can reclaim), else
    ``os.sysconf``'s free pages; inside a container with a cgroup v2 memory limit, the smaller
    of that and the limit minus the container's use (its reclaimable file cache counted free).
    """
    found = []
    meminfo = re.search(r"^MemAvailable:\s+(\d+) kB", _read("/proc/meminfo") or "", re.M)
    if meminfo:
        found.append(int(meminfo.group(1)) * 1024)
    else:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):  # not on macOS, nor on Windows
            pass
    limit = (_read("/sys/fs/cgroup/memory.max") or "max").strip()
    used = _read("/sys/fs/cgroup/memory.current")
    if limit.isdigit() and used is not None:
        cache = re.search(r"^inactive_file (\d+)", _read("/sys/fs/cgroup/memory.stat") or "", re.M)
        found.append(int(limit) - int(used) + (int(cache.group(1)) if cache else 0))
    return min(found) if found else None


def available_memory(device: torch.device | str | None = None) -> int | None:
    """Bytes a new allocation on ``device`` can use now; None where that cannot be known.

    CUDA: the device's free memory (``torch.cuda.mem_get_info``; None if CUDA cannot be
    queried). Anything else (the CPU, and Apple's MPS, which shares the system's memory):
    :func:`_system_available`.
    """
    device = torch.device("cpu" if device is None else device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except RuntimeError:  # no driver, or a device it cannot open: the run will say which
            return None
    return _system_available()


# --------------------------------------------------------------------------- training
#: The smallest edge, in pixels, of the bottom feature map of the U that training accepts:
#: nnU-Net's ``UNet_featuremap_min_edge_length``. A 3x3 convolution on less sees mostly padding.
MIN_BOTTOM_EDGE = 4

# Optimiser state tensors per parameter: Adam's two moments, SGD's momentum buffer.
_STATE = {"adam": 2, "sgd": 1}


def _bottom(geometry: UNetGeometry, tile: int) -> int:
    """Edge (px) of the map that enters the bottom level's convolutions, for a valid tile."""
    sizes = geometry.sizes(tile)
    assert sizes is not None  # callers pass valid tiles only
    # sizes[depth] is after the bottom's two convolutions, which take 4 px off a valid net
    return sizes[geometry.depth] + (4 if geometry.padding == "valid" else 0)


def _smallest_tile(depth: int, padding: Padding) -> int:
    """The smallest valid tile edge (px) that leaves MIN_BOTTOM_EDGE px at the bottom."""
    g = UNetGeometry(depth, padding)
    return next(g.valid_sizes(accept=lambda n: _bottom(g, n) >= MIN_BOTTOM_EDGE))


def training_tile(depth: int, padding: Padding, tile: int) -> int:
    """The edge (px) of the tiles training uses: ``tile`` rounded up to a valid input size.

    A ValueError, naming the ``--tile`` and ``--depth`` that would work, when that tile leaves
    fewer than :data:`MIN_BOTTOM_EDGE` pixels at the bottom of the U: every pooling halves it,
    so a same-padded net needs a tile of at least 4 * 2**depth (4096 px at depth 10, where the
    rounding alone would give 1024 px and a 1 x 1 bottom). A valid (unpadded) net's smallest
    valid tile already leaves 7 px or more there, so only its rounding applies.
    """
    g = UNetGeometry(depth, padding)
    used = g.valid_input_size(tile)
    bottom = _bottom(g, used)
    if bottom >= MIN_BOTTOM_EDGE:
        return used
    deepest = max((d for d in range(1, depth) if _smallest_tile(d, padding) <= tile), default=0)
    fewer = f", or --depth {deepest} or less" if deepest else ""
    raise ValueError(
        f"--tile {tile} is too small for --depth {depth}: a U-Net of depth {depth} halves the "
        f"tile {depth} times, so even rounded up to {used} px it leaves {bottom} x {bottom} px "
        f"at the bottom of the U, and the bottom needs at least "
        f"{MIN_BOTTOM_EDGE} x {MIN_BOTTOM_EDGE}; use --tile {_smallest_tile(depth, padding)} "
        f"or more{fewer}")


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes one training step needs (:func:`estimate_training_memory`), by what holds them."""

    parameters: int  # how many weights
    parameter_bytes: int  # weights, their gradients, the optimiser's state, one temporary
    activation_bytes: int  # one batch of tiles: the forward pass's outputs and their gradients

    @property
    def total(self) -> int:
        return self.parameter_bytes + self.activation_bytes


def estimate_training_memory(build: Callable[[], nn.Module], tile_shape: tuple[int, int],
                             batch_size: int = 1, optimizer: str = "adam",
                             dtype: torch.dtype = torch.float32) -> TrainingMemory:
    """Bytes of one training step of the net ``build()`` on a batch of (h, w) tiles.

    ``build`` is called on PyTorch's "meta" device, which keeps shapes and no data, so a net
    far too large to allocate is measured without allocating it. Parameters: weights,
    gradients, the optimiser's state (``"adam"``: 2 tensors, ``"sgd"``: 1) and one temporary
    (the update's), each the size of the weights. Activations: every module's output in one
    forward pass of ``batch_size`` tiles of ``tile_shape`` (h, w) px, twice (the forward pass
    keeps it for the backward pass, which writes a gradient as large); an output that is its
    input (an in-place ReLU, an Identity) shares its memory and is not counted again. Peaks
    measured on the CPU (PyTorch 2, float32; widths 4-64, depths 2-6, tiles 128-572) were
    0.85-1.3 times this estimate.
    """
    if optimizer not in _STATE:
        raise ValueError(f"optimizer must be one of {', '.join(_STATE)}, got {optimizer!r}")
    with torch.device("meta"):
        model = build()
    values = 0

    def count(module, inputs, output):
        nonlocal values
        if isinstance(output, torch.Tensor) and not (inputs and output is inputs[0]):
            values += output.numel()

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    h, w = tile_shape
    x = torch.zeros(batch_size, int(getattr(model, "in_channels", 1)), h, w, device="meta")
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    itemsize = torch.empty((), dtype=dtype).element_size()
    parameters = sum(p.numel() for p in model.parameters())
    return TrainingMemory(parameters, itemsize * parameters * (3 + _STATE[optimizer]),
                          itemsize * 2 * values)


def check_training_memory(preset, in_channels: int, num_classes: int,
                          device: torch.device) -> TrainingMemory:
    """The estimate of one training step of ``preset``, or a ValueError if it cannot fit.

    ``preset`` is a :class:`~unet_course.presets.Preset` (its net, tile, batch and optimiser).
    The error, worded for the training CLI, names the estimate, the memory available on
    ``device`` and the options to lower: ``--base-channels`` or ``--depth`` when the
    parameters hold more, ``--tile`` or ``--batch-size`` when the activations do. Where the
    available memory cannot be read the estimate is returned unchecked.
    """
    tile = training_tile(preset.depth, preset.padding, preset.tile)
    est = estimate_training_memory(lambda: preset.model(in_channels, num_classes), (tile, tile),
                                   preset.batch_size, preset.optimizer)
    free = available_memory(device)
    if free is None or est.total <= free:
        return est
    lower = ("--base-channels or --depth" if est.parameter_bytes > est.activation_bytes
             else "--tile or --batch-size")
    raise ValueError(
        f"training needs about {format_bytes(est.total)} but only {format_bytes(free)} is "
        f"available on {device}: {est.parameters / 1e6:,.1f} million parameters with their "
        f"gradients and {preset.optimizer}'s state take {format_bytes(est.parameter_bytes)}, "
        f"the activations of a batch of {preset.batch_size} tile(s) of {tile} x {tile} px "
        f"{format_bytes(est.activation_bytes)}; lower {lower}")

"""The overlap-tile strategy: segment an image of any size, tile by tile, without seams.

The paper's network maps a 572 x 572 input tile to a 388 x 388 output tile: every output pixel
needs a *margin* of (572 - 388) / 2 = 92 pixels of context on each side. To segment a large
image, the output is cut into tiles, each computed from an input tile that is larger by that
margin on every side; where the margin falls outside the image, the missing context is
extrapolated by mirroring the image at its border (the paper's Figure 2).

Three functions:

* :func:`mirror_pad`     extrapolate an image by mirroring, by any amount;
* :func:`tile_grid`      the arithmetic: which input tile feeds which part of the output;
* :func:`predict_tiled`  the logits of a whole image of any size, computed tile by tile.

Exactness. Two details make the tiled result *equal* (up to float rounding) to one forward
pass over the whole mirror-padded image, not just close to it:

1. Every tile starts on the pooling grid. Each 2x2 max pooling groups pixels in pairs, so a
   net of depth d is shift-equivariant only for shifts that are multiples of 2**d (16 in the
   paper). Tiles therefore step by a multiple of 2**d: a 572 tile yields 388 output rows, of
   which the first 384 = 24 * 16 are kept; the next tile starts 384 rows further.
2. Same-padded nets (``padding="same"``) see invented zeros at every tile border. Those zeros
   spoil a band of 6 * 2**d - 2 output pixels along the border (94 for depth 4; the band
   doubles at every up-convolution), so each tile is read with a *halo* of 6 * 2**d pixels
   of real context on each side and only its centre is kept.

Exactness needs the paper's up-convolution (``up_mode="transpose"``); bilinear upsampling
clamps at the tile border, which a whole-image pass does not, so it is only approximately
tile-independent.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "Tile",
    "TileGrid",
    "estimate_tile_memory",
    "mirror_indices",
    "mirror_pad",
    "predict_tiled",
    "tile_grid",
]

#: Bytes of activations one forward pass may use when ``tile_size`` is chosen automatically:
#: 4 GiB, a quarter of a 16 GB GPU (Colab's T4) or of a 16 GB laptop. It fits the paper's full
#: net on a 1024 x 1024 image in one tile; larger images are split into as few and as tightly
#: fitting tiles as the budget allows. Pass ``memory_budget=`` to change it.
DEFAULT_MEMORY_BUDGET = 4 * 2**30

# Above this many pixels predict_tiled shows a progress bar (progress=None): 2048 x 2048.
_PROGRESS_PIXELS = 2**22

Mode = Literal["reflect", "symmetric"]
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


# ---------------------------------------------------------------------------- mirroring
def mirror_indices(positions: np.ndarray, n: int, mode: Mode = "reflect") -> np.ndarray:
    """Map integer positions on an axis of length ``n`` back into [0, n) by mirroring.

    ``reflect`` mirrors about the first and last pixel (..., 2, 1, 0, 1, 2, ..., n-2, n-1,
    n-2, ...), like ``np.pad(mode="reflect")`` and SciPy's ``mode="mirror"``; ``symmetric``
    repeats the border pixel (..., 1, 0, 0, 1, ..., n-1, n-1, ...). Far-away positions are
    mirrored repeatedly: the extension is periodic with period 2(n - 1), or 2n for symmetric.
    Used by :func:`mirror_pad`, the training tiles and the augmentations alike.
    """
    positions = np.asarray(positions)
    if mode == "symmetric":
        period = 2 * n
        p = np.mod(positions, period)
        return np.where(p >= n, period - 1 - p, p)
    if n == 1:  # nothing to reflect about: the single pixel is the whole extension
        return np.zeros_like(positions)
    if positions.size and positions.min() > -n and positions.max() < 2 * n - 1:
        # at most one reflection on either side: two abs() are cheaper than a modulo
        return (n - 1) - np.abs((n - 1) - np.abs(positions))
    period = 2 * (n - 1)
    p = np.mod(positions, period)
    return np.where(p >= n, period - p, p)


def _pad_widths(pad: int | Sequence[int]) -> tuple[int, int, int, int]:
    def is_int(p: object) -> bool:
        return isinstance(p, (int, np.integer)) and not isinstance(p, bool)

    if is_int(pad):
        widths = (int(pad),) * 4  # type: ignore[arg-type]
    elif isinstance(pad, (tuple, list)) and all(is_int(p) for p in pad):
        widths = tuple(int(p) for p in pad)
        if len(widths) != 4:
            raise ValueError(f"pad must be an int or 4 ints (top, bottom, left, right), got {pad!r}")
    else:
        raise TypeError(f"pad must be an int or a sequence of 4 ints (top, bottom, left, right), got {pad!r}")
    if min(widths) < 0:
        raise ValueError(f"pad widths must be >= 0, got {widths} (to crop, slice the array instead)")
    return widths  # type: ignore[return-value]


def mirror_pad(image: ArrayT, pad: int | Sequence[int], mode: Mode = "reflect") -> ArrayT:
    """Extrapolate ``image`` beyond its border by mirroring, as the paper does for its tiles.

    Args:
        image: NumPy array or torch tensor of shape (..., H, W); the last two axes are padded.
        pad: pixels to add, one int for every side or (top, bottom, left, right). A pad may
            be longer than the image: the mirror image is then mirrored again.
        mode: where the mirror stands.

            * ``"reflect"`` (the default): the mirror stands *on* the border pixel, which is
              not repeated: ``a b c d`` -> ``c b | a b c d | c b``.
              NumPy's ``np.pad(mode="reflect")``, PyTorch's ``F.pad(mode="reflect")``,
              SciPy's ``mode="mirror"``.
            * ``"symmetric"``: the mirror stands *between* the border pixel and the outside,
              so the border pixel appears twice: ``a b c d`` -> ``b a | a b c d | d c``.
              NumPy's ``"symmetric"``, SciPy's ``"reflect"`` (beware the clash of names).

            We choose ``"reflect"``: every pixel of the extension is a real pixel at the
            same distance from the border, so nothing the net never saw in an image is
            created. The symmetric copy doubles the border row, which turns a one-pixel
            membrane lying on the border into a two-pixel one, and adds a flat step to
            every intensity gradient crossing the border. For a 1-pixel-wide image reflect
            has nothing to mirror; the pixel is repeated.

    Returns:
        The same type, dtype and device as ``image``, shape (..., H + top + bottom,
        W + left + right).
    """
    if mode not in ("reflect", "symmetric"):
        raise ValueError(f"mode must be 'reflect' (the default) or 'symmetric', got {mode!r}")
    if not isinstance(image, (np.ndarray, torch.Tensor)):
        raise TypeError(f"image must be a NumPy array or a torch tensor, got {type(image).__name__}")
    if image.ndim < 2:
        raise ValueError(f"image must have at least 2 dimensions (..., H, W), got shape {tuple(image.shape)}")
    top, bottom, left, right = _pad_widths(pad)
    H, W = image.shape[-2:]
    if H == 0 or W == 0:
        raise ValueError(f"cannot mirror an empty image of shape {tuple(image.shape)}")
    rows = mirror_indices(np.arange(-top, H + bottom), H, mode)
    cols = mirror_indices(np.arange(-left, W + right), W, mode)
    if isinstance(image, np.ndarray):
        return image[..., rows[:, None], cols[None, :]]
    r = torch.from_numpy(rows).to(image.device)
    c = torch.from_numpy(cols).to(image.device)
    return image.index_select(-2, r).index_select(-1, c)


# ---------------------------------------------------------------------------- arithmetic
def _check_model(model: nn.Module) -> None:
    needed = ("output_size", "valid_input_size", "padding", "depth", "in_channels")
    missing = [a for a in needed if not hasattr(model, a)]
    if not isinstance(model, nn.Module) or missing:
        raise TypeError(
            "predict_tiled needs a unet_course.UNet (or a module with its size arithmetic: "
            f"{', '.join(needed)}); got {type(model).__name__} lacking {', '.join(missing) or 'nn.Module'}"
        )


def _default_halo(depth: int) -> int:
    """Context a same-padded net of this depth needs at a tile border to be exact.

    Zero padding corrupts 2 pixels per double convolution; pooling halves the band, every
    up-convolution doubles it, which adds up to 6 * 2**depth - 2 pixels at the top level for
    depth >= 2 (94 for depth 4, close to the 92-pixel margin of the valid net; 8 for depth 1).
    6 * 2**depth is the next multiple of 2**(depth - 1), which keeps every tile and step on
    the pooling grid.
    """
    return 6 * 2**depth


@dataclass(frozen=True)
class _Axis:
    """Tiling of one axis of length ``length``."""

    length: int
    size: int      # input tile edge fed to the net
    out: int       # net output edge for that input
    step: int      # kept output rows per tile (a multiple of 2**depth, or the whole image)
    count: int     # tiles along the axis


class _Plan:
    """The model-dependent arithmetic shared by :func:`tile_grid` and :func:`predict_tiled`."""

    def __init__(self, model: nn.Module, halo: int | None):
        _check_model(model)
        self.model = model
        self.q = 2 ** int(model.depth)  # the pooling grid
        if model.padding == "valid":
            if halo is not None:
                raise ValueError(
                    "halo applies to same-padded nets only: a valid U-Net's context is fixed by "
                    "its size arithmetic (the margin); leave halo=None"
                )
            n0 = model.valid_input_size(1)
            self.margin = (n0 - model.output_size(n0)) // 2  # 92 for the paper's net
            self.context = self.margin  # mirrored context on each side of a kept block
            self.keep_offset = 0        # output row k of a tile is image row origin + k
        else:
            half = max(self.q // 2, 1)
            if halo is None:
                halo = _default_halo(int(model.depth))
            if not isinstance(halo, (int, np.integer)) or isinstance(halo, bool) or halo < 0 \
                    or halo % half:
                lo = (max(int(halo), 0) // half) * half if isinstance(halo, (int, float)) else 0
                raise ValueError(
                    f"halo must be a non-negative multiple of 2**(depth-1) = {half} so tiles stay "
                    f"on the pooling grid, got {halo!r}; e.g. {lo} or {lo + half} "
                    f"(the default {_default_halo(int(model.depth))} makes tiling exact)"
                )
            self.margin = 0
            self.context = int(halo)
            self.keep_offset = int(halo)  # keep the tile's centre, drop the halo

    def out(self, n: int) -> int:
        return self.model.output_size(n)

    def step(self, n: int) -> int:
        """Output rows a tile contributes when more tiles follow: a multiple of 2**depth."""
        usable = self.out(n) - 2 * self.keep_offset
        return max(usable // self.q * self.q, 0)

    def reach(self, n: int) -> int:
        """Output rows the *last* tile may contribute (all it computes with full context)."""
        return self.out(n) - 2 * self.keep_offset

    def count(self, n: int, length: int) -> int | None:
        """Tiles of edge ``n`` needed along an axis of ``length`` pixels; None if impossible."""
        reach = self.reach(n)
        if reach >= length:
            return 1
        s = self.step(n)
        if s < 1:
            return None
        return 1 + math.ceil((length - reach) / s)

    def single(self, length: int) -> int:
        """The smallest input edge whose one tile covers ``length`` output pixels."""
        n = self.model.valid_input_size(length + 2 * self.context)
        while self.reach(n) < length:
            n = self.model.valid_input_size(n + 1)
        return n

    def smallest(self) -> int:
        """The smallest input edge that can be stepped (its step is >= 2**depth)."""
        n = self.model.valid_input_size(2 * self.context + 1)
        while self.step(n) < self.q:
            n = self.model.valid_input_size(n + 1)
        return n

    def valid_below(self, n: int) -> int | None:
        k = n
        while k >= 1:
            if self.model.valid_input_size(k) == k and self.step(k) >= self.q:
                return k
            k -= 1
        return None

    def check_tile(self, n: object, length: int) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"tile_size must be an int or a pair of ints (h, w), got {n!r}")
        n = int(n)
        ok = n >= 1 and self.model.valid_input_size(n) == n and self.count(n, length) is not None
        if ok:
            return
        k = max(n, 1)
        if self.model.valid_input_size(k) == k:
            k += 1  # n itself is a valid input size but cannot step: look further up
        above = self.model.valid_input_size(k)
        while self.step(above) < self.q:
            above = self.model.valid_input_size(above + 1)
        below = self.valid_below(n - 1)
        nearest = f"{below} or {above}" if below is not None else f"{above}"
        if self.model.padding == "valid":
            rule = (f"{self.model.valid_input_size(1)} + {self.q}k (valid sizes of this depth-"
                    f"{self.model.depth} net) whose output of {self.out(self.smallest())} or more "
                    f"pixels can step on the {self.q}-pixel pooling grid")
        else:
            rule = (f"multiples of {self.q} of at least {self.smallest()} (2 x halo {self.context} "
                    f"+ {self.q})")
        raise ValueError(
            f"tile_size {n} does not work for this U-Net ({self.model.padding} padding, depth "
            f"{self.model.depth}) on an axis of {length} pixels: tile sizes are {rule}; the nearest "
            f"are {nearest}; or pass tile_size=None to choose one from the memory budget"
        )

    def axis(self, n: int, length: int) -> _Axis:
        count = self.count(n, length)
        assert count is not None
        step = self.step(n) if count > 1 else self.reach(n)
        return _Axis(length, n, self.out(n), step, count)

    def candidates(self, length: int) -> list[_Axis]:
        """Per tile count the smallest tile edge that achieves it (larger edges only waste)."""
        best: dict[int, _Axis] = {}
        largest = self.single(length)
        n = min(self.smallest(), largest)
        while n <= largest:
            c = self.count(n, length)
            if c is not None and c not in best:
                best[c] = self.axis(n, length)
            n = self.model.valid_input_size(n + 1)
        return sorted(best.values(), key=lambda a: a.count)


def _first_width(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    if isinstance(config, dict) and "base_channels" in config:
        return int(config["base_channels"])
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


# ---------------------------------------------------------------------------- the grid
@dataclass(frozen=True)
class Tile:
    """One tile of a :class:`TileGrid`.

    Attributes:
        index: (row, column) of the tile in the grid.
        origin: image coordinates (y, x) of the input tile's top-left pixel; negative, or
            beyond the image, where the input tile reaches into the mirrored border.
        out: (rows, cols) slices of the image (and of the logits) that this tile writes.
        keep: (rows, cols) slices of the net's output for this tile that are written there.
    """

    index: tuple[int, int]
    origin: tuple[int, int]
    out: tuple[slice, slice]
    keep: tuple[slice, slice]


@dataclass(frozen=True)
class TileGrid:
    """How an (H, W) image is cut into tiles for a given net. Iterate it for the tiles.

    Attributes:
        image_size: (H, W) of the image.
        input_size: (h, w) of every input tile fed to the net.
        output_size: (h, w) of the net's output for one input tile.
        step: (h, w) output pixels between neighbouring tiles, a multiple of 2**depth.
        context: mirrored context on each side of a kept block: the margin
            (input - output) / 2 of a valid net, or the halo of a same-padded net.
        shape: (rows, columns) of tiles.
        batch_size: tiles per forward pass (the requested batch, capped by the memory budget).
        tile_memory: estimated activation bytes of one tile (:func:`estimate_tile_memory`).
        tiles: the tiles, row by row.
    """

    image_size: tuple[int, int]
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    step: tuple[int, int]
    context: int
    shape: tuple[int, int]
    batch_size: int
    tile_memory: int
    tiles: tuple[Tile, ...]

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self) -> Iterator[Tile]:
        return iter(self.tiles)

    @property
    def input_pixels(self) -> int:
        """Pixels fed to the net in total (all input tiles)."""
        return len(self.tiles) * self.input_size[0] * self.input_size[1]

    @property
    def efficiency(self) -> float:
        """Image pixels per input pixel fed to the net (1.0 would mean no margin at all)."""
        return self.image_size[0] * self.image_size[1] / self.input_pixels


def _pair(value: object, name: str) -> tuple[object, object]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}")
        return value[0], value[1]
    return value, value


def _axis_tiles(ax: _Axis, context: int, keep_offset: int) -> list[tuple[int, slice, slice]]:
    """(origin, out slice, keep slice) along one axis."""
    parts = []
    for t in range(ax.count):
        start = t * ax.step
        stop = ax.length if t == ax.count - 1 else start + ax.step
        parts.append((start - context, slice(start, stop),
                      slice(keep_offset, keep_offset + stop - start)))
    return parts


def tile_grid(
    model: nn.Module,
    image_size: tuple[int, int],
    tile_size: int | tuple[int, int] | None = None,
    *,
    batch_size: int = 4,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    halo: int | None = None,
    dtype: torch.dtype | None = None,
) -> TileGrid:
    """Cut an (H, W) image into output tiles for ``model``; each input tile = output + 2 x context.

    The output tiles cover every image pixel exactly once. Each tile's input starts on the
    net's pooling grid (a multiple of 2**depth from the first tile), which is what makes the
    stitched result equal to one whole-image pass.

    Args:
        model: a :class:`unet_course.UNet` (valid or same padding).
        image_size: (H, W) of the image in pixels.
        tile_size: edge of the input tile fed to the net, an int or (h, w); it must be a valid
            input size of the net (188 + 16k for the paper's net; a multiple of 16 that leaves
            room for the halo for a same-padded net). ``None`` chooses, per axis, the tile
            shape that feeds the fewest pixels to the net while one tile's activations
            (:func:`estimate_tile_memory`) fit into ``memory_budget``; when even the smallest
            tile does not fit, the smallest is used.
        batch_size: the most tiles per forward pass; fewer when a batch would exceed the budget.
        memory_budget: bytes of activations for one forward pass (default 4 GiB, see
            :data:`DEFAULT_MEMORY_BUDGET`).
        halo: same-padded nets only: context kept around each tile's centre, a multiple of
            2**(depth-1); default 6 * 2**depth (96 for depth 4), enough to be exact. 0 gives
            naive non-overlapping tiles (seams).
        dtype: dtype for the memory estimate (default: the model's).

    Returns:
        A :class:`TileGrid`.
    """
    plan = _Plan(model, halo)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, float)) or memory_budget <= 0:
        raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
    H, W = (int(s) for s in image_size)
    if H < 1 or W < 1:
        raise ValueError(f"image_size must be positive (H, W), got {tuple(image_size)}")

    def memory(shape: tuple[int, int]) -> int:
        return estimate_tile_memory(model, shape, dtype)

    if tile_size is None:
        rows, cols = plan.candidates(H), plan.candidates(W)
        best: tuple[tuple[int, int], _Axis, _Axis] | None = None
        smallest: tuple[int, _Axis, _Axis] | None = None
        for ay in rows:
            for ax in cols:
                mem = memory((ay.size, ax.size))
                if smallest is None or mem < smallest[0]:
                    smallest = (mem, ay, ax)
                if mem <= memory_budget:
                    key = (ay.count * ax.count * ay.size * ax.size, ay.count * ax.count)
                    if best is None or key < best[0]:
                        best = (key, ay, ax)
        assert smallest is not None
        ay, ax = (best[1], best[2]) if best is not None else (smallest[1], smallest[2])
    else:
        ty, tx = _pair(tile_size, "tile_size")
        plan.check_tile(ty, H)
        plan.check_tile(tx, W)
        ay, ax = plan.axis(int(ty), H), plan.axis(int(tx), W)

    tile_memory = memory((ay.size, ax.size))
    batch = max(1, min(int(batch_size), ay.count * ax.count, int(memory_budget // max(tile_memory, 1))))
    ys = _axis_tiles(ay, plan.context, plan.keep_offset)
    xs = _axis_tiles(ax, plan.context, plan.keep_offset)
    tiles = tuple(
        Tile((i, j), (oy, ox), (out_y, out_x), (keep_y, keep_x))
        for i, (oy, out_y, keep_y) in enumerate(ys)
        for j, (ox, out_x, keep_x) in enumerate(xs)
    )
    return TileGrid(
        image_size=(H, W), input_size=(ay.size, ax.size), output_size=(ay.out, ax.out),
        step=(ay.step, ax.step), context=plan.context, shape=(ay.count, ax.count),
        batch_size=batch, tile_memory=tile_memory, tiles=tiles,
    )


# ---------------------------------------------------------------------------- prediction
def _as_image(model: nn.Module, image: object, dtype: torch.dtype) -> torch.Tensor:
    """Validate ``image`` and return it as a (C, H, W) tensor of ``dtype`` on its own device."""
    if isinstance(image, np.ndarray):
        if image.dtype.kind not in "f":
            raise TypeError(
                f"image has dtype {image.dtype}; predict_tiled expects floating point values "
                "(in [0, 1] for this course), e.g. image.astype(np.float32) / 255"
            )
        arr = np.ascontiguousarray(image)
        if not arr.flags.writeable:  # torch warns about read-only memory; copy instead
            arr = arr.copy()
        x = torch.from_numpy(arr)
    elif isinstance(image, torch.Tensor):
        if not image.is_floating_point():
            raise TypeError(
                f"image has dtype {image.dtype}; predict_tiled expects floating point values "
                "(in [0, 1] for this course), e.g. image.float() / 255"
            )
        x = image.detach()
    else:
        raise TypeError(
            f"image must be a NumPy array or a torch tensor of shape (C, H, W), got {type(image).__name__}"
        )
    c = int(model.in_channels)
    shape = tuple(x.shape)
    if x.dim() == 2:
        raise ValueError(
            f"image has shape {shape}, (H, W) without a channel axis; predict_tiled expects "
            f"(C, H, W) with C = {c} for this net: add the axis with image[None] (NumPy) or "
            "image.unsqueeze(0) (torch)"
        )
    if x.dim() == 4:
        raise ValueError(
            f"image has shape {shape}, a batch; predict_tiled takes one image (C, H, W): call it "
            "once per image, e.g. predict_tiled(model, images[i])"
        )
    if x.dim() != 3:
        raise ValueError(f"image must have shape (C, H, W) with C = {c}, got shape {shape}")
    if shape[0] != c:
        hint = ""
        if shape[2] == c:
            hint = ("; it looks channels-last (H, W, C): use image.transpose(2, 0, 1) (NumPy) or "
                    "image.permute(2, 0, 1) (torch)")
        raise ValueError(
            f"this net expects {c} input channel(s), but the image of shape {shape} has "
            f"{shape[0]} on its first axis (C, H, W){hint}"
        )
    if shape[1] < 1 or shape[2] < 1:
        raise ValueError(f"image is empty: shape {shape}")
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"image contains {bad} non-finite value(s) (NaN or +-inf) of {x.numel()}; the net "
            "would spread them over every tile that sees them: replace them first, e.g. "
            "np.nan_to_num(image) or torch.nan_to_num(image)"
        )
    return x.to(dtype)


def _extract(x: torch.Tensor, origin: tuple[int, int], size: tuple[int, int],
             cache: dict[tuple[int, int, int], torch.Tensor | slice]) -> torch.Tensor:
    """The (C, h, w) input tile at image coordinates ``origin``, mirrored where it leaves the image."""
    parts: list[torch.Tensor | slice] = []
    for axis, (o, n) in enumerate(zip(origin, size)):
        length = x.shape[1 + axis]
        key = (axis, o, n)
        if key not in cache:
            if 0 <= o and o + n <= length:
                cache[key] = slice(o, o + n)  # inside the image: a plain view
            else:
                cache[key] = torch.from_numpy(mirror_indices(np.arange(o, o + n), length)).to(x.device)
        parts.append(cache[key])
    rows, cols = parts
    t = x[:, rows] if isinstance(rows, slice) else x.index_select(1, rows)
    return t[:, :, cols] if isinstance(cols, slice) else t.index_select(2, cols)


def predict_tiled(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    tile_size: int | tuple[int, int] | None = None,
    batch_size: int = 4,
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    halo: int | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Logits of a whole image of any size, predicted tile by tile (the overlap-tile strategy).

    The result equals one forward pass of ``model`` over the image extrapolated by
    :func:`mirror_pad` (reflect) by the net's context on each side, cropped back to the image
    (to float rounding, about 1e-6 in float32). Memory is bounded: only one batch of tiles is
    on the model's device at a time; the image and the logits stay where the image is.

    Args:
        model: a :class:`unet_course.UNet`, valid (the paper) or same padding. It is run in
            eval mode under ``torch.no_grad()``; its previous mode is restored afterwards.
        image: (C_in, H, W) float NumPy array or tensor, any H and W, C_in =
            ``model.in_channels``. Values are cast to the model's dtype.
        tile_size: edge of the input tile fed to the net (an int or (h, w)), a valid input
            size (e.g. 572 for the paper's net); ``None`` picks the shape that feeds the fewest
            pixels within ``memory_budget``. See :func:`tile_grid`.
        batch_size: the most tiles per forward pass (capped by the memory budget).
        memory_budget: bytes of activations one forward pass may use (default 4 GiB).
        halo: same-padded nets only: context around each kept tile centre (default
            6 * 2**depth, exact); 0 gives naive non-overlapping tiles.
        progress: show a tqdm bar on stderr; ``None`` shows one for images of 2048 x 2048
            pixels or more that need more than one batch.

    Returns:
        Logits, a float tensor (num_classes, H, W) of the model's dtype, on the image's
        device (CPU for a NumPy array).

    Raises:
        TypeError: the image is not a float array or tensor, or the model lacks the size
            arithmetic of a UNet.
        ValueError: the image has no channel axis, a batch axis, the wrong number of
            channels, non-finite values; or the tile size does not fit the net (the message
            names the nearest sizes that do).
    """
    _check_model(model)
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    dev = param.device if param is not None else torch.device("cpu")
    x = _as_image(model, image, dtype)
    H, W = x.shape[-2:]
    grid = tile_grid(model, (H, W), tile_size, batch_size=batch_size,
                     memory_budget=memory_budget, halo=halo, dtype=dtype)
    if progress is None:
        progress = H * W >= _PROGRESS_PIXELS and len(grid) > grid.batch_size

    out: torch.Tensor | None = None
    cache: dict[tuple[int, int, int], torch.Tensor | slice] = {}
    modes = [(m, m.training) for m in model.modules()]  # restored exactly, module by module
    model.eval()
    try:
        with torch.no_grad(), tqdm(total=len(grid), desc="predict_tiled", unit="tile",
                                   disable=not progress, leave=False, file=sys.stderr) as bar:
            for b in range(0, len(grid), grid.batch_size):
                batch = grid.tiles[b : b + grid.batch_size]
                inp = torch.stack([_extract(x, t.origin, grid.input_size, cache) for t in batch])
                y = model(inp.to(dev))
                if out is None:
                    out = torch.empty((y.shape[1], H, W), dtype=y.dtype, device=x.device)
                for t, yt in zip(batch, y):
                    out[:, t.out[0], t.out[1]] = yt[:, t.keep[0], t.keep[1]].to(x.device)
                bar.update(len(batch))
    finally:
        for m, training in modes:
            m.training = training
    assert out is not None
    return out

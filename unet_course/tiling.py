"""The overlap-tile strategy: segment an image of any size, tile by tile, without seams.

The paper's network maps a 572 x 572 input tile to a 388 x 388 output tile: every output pixel
needs a *margin* of (572 - 388) / 2 = 92 pixels of context on each side. To segment a large
image, the output is cut into tiles, each computed from an input tile that is larger by that
margin on every side; where the margin falls outside the image, the missing context is
extrapolated by mirroring the image at its border (the paper's Figure 2).

The pieces: :func:`~unet_course.mirror.mirror_pad` extrapolates an image by mirroring;
:func:`tile_grid` (here) says which input tile feeds which part of the output, within a memory
budget; :func:`~unet_course.predict.predict_tiled` computes the logits of a whole image tile by
tile. All three can still be imported from here. The net's own size arithmetic (valid sizes,
margin, pooling grid) is its :class:`~unet_course.geometry.UNetGeometry`.

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

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .geometry import UNetGeometry
from .memory import DEFAULT_MEMORY_BUDGET, estimate_tile_memory, format_bytes
from .mirror import mirror_indices, mirror_pad
from .validation import finite_number, int_pair, is_int, positive_int

__all__ = ["DEFAULT_MEMORY_BUDGET", "Tile", "TileGrid", "estimate_tile_memory", "mirror_indices",
           "mirror_pad", "predict_tiled", "tile_grid", "unet_geometry"]  # noqa: F822 (__getattr__)

MemoryOf = Callable[[tuple[int, int]], int]  # bytes of activations of one (h, w) input tile


def __getattr__(name: str) -> object:
    # predict_tiled lives in unet_course.predict, which imports this module; fetching it on
    # first use keeps `from unet_course.tiling import predict_tiled` working without a cycle.
    if name == "predict_tiled":
        from .predict import predict_tiled

        return predict_tiled
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def unet_geometry(model: nn.Module, caller: str = "predict_tiled") -> UNetGeometry:
    """``model.geometry``, after checking that ``model`` is a U-Net that tiling can drive.

    A U-Net here is an ``nn.Module`` with a ``geometry`` (a
    :class:`~unet_course.geometry.UNetGeometry`) and ``in_channels``, as :class:`UNet` has.
    """
    geometry = getattr(model, "geometry", None)
    missing = [what for what, ok in (("nn.Module", isinstance(model, nn.Module)),
                                     ("geometry", isinstance(geometry, UNetGeometry)),
                                     ("in_channels", hasattr(model, "in_channels"))) if not ok]
    if missing:
        raise TypeError(
            f"{caller} needs a unet_course.UNet (or a module with its size arithmetic: a "
            f"`geometry` (UNetGeometry) and `in_channels`); got {type(model).__name__} "
            f"lacking {', '.join(missing)}"
        )
    return geometry  # type: ignore[return-value]


# ---------------------------------------------------------------------------- arithmetic
def _check_halo(geometry: UNetGeometry, halo: object) -> int:
    """The halo of a same-padded net: the default 6 * 2**depth, or ``halo`` if it is on the grid."""
    if halo is None:
        return geometry.default_halo
    half = max(geometry.grid // 2, 1)  # tile edge = kept step + 2 * halo must be on the grid
    if not is_int(halo) or halo < 0 or halo % half:  # type: ignore[operator]
        lo = (max(int(halo), 0) // half) * half if isinstance(halo, (int, float)) else 0
        raise ValueError(
            f"halo must be a non-negative multiple of 2**(depth-1) = {half} so tiles stay "
            f"on the pooling grid, got {halo!r}; e.g. {lo} or {lo + half} "
            f"(the default {geometry.default_halo} makes tiling exact)"
        )
    return int(halo)  # type: ignore[call-overload]


@dataclass(frozen=True)
class _Axis:
    """Tiling of one axis of length ``length``."""

    length: int
    size: int      # input tile edge fed to the net
    out: int       # net output edge for that input
    step: int      # kept output pixels per tile (a multiple of 2**depth, or the whole axis)
    count: int     # tiles along the axis


@dataclass(frozen=True)
class _Overlap:
    """How the tiles of one net overlap (Figure 2), along one axis at a time.

    Each block of kept output pixels is computed from an input tile that reaches ``context``
    pixels beyond it on either side: the margin of a valid net (92 in the paper), or the halo
    of a same-padded one. A same-padded net's output has the input's size, so its first and
    last ``keep_offset`` (= halo) output pixels are dropped; a valid net's output already
    lacks its margin, so it keeps from 0.
    """

    geometry: UNetGeometry
    context: int
    keep_offset: int

    @classmethod
    def of(cls, model: nn.Module, halo: object, caller: str) -> _Overlap:
        geometry = unet_geometry(model, caller)
        if geometry.padding == "same":
            halo = _check_halo(geometry, halo)
            return cls(geometry, context=halo, keep_offset=halo)
        if halo is not None:
            raise ValueError(
                "halo applies to same-padded nets only: a valid U-Net's context is fixed by "
                "its size arithmetic (the margin); leave halo=None"
            )
        return cls(geometry, context=geometry.margin, keep_offset=0)

    def output(self, n: int) -> int:
        return self.geometry.output_size(n)

    def usable(self, n: int) -> int:
        """Output pixels of a tile of edge ``n`` computed with full context (the last tile's share)."""
        return self.output(n) - 2 * self.keep_offset

    def step(self, n: int) -> int:
        """Output pixels a tile keeps when more tiles follow: :meth:`usable` rounded down to
        the pooling grid, so that the next tile starts on it."""
        grid = self.geometry.grid
        return max(self.usable(n) // grid * grid, 0)

    def can_step(self, n: int) -> bool:
        return self.step(n) >= self.geometry.grid

    def tiles_needed(self, n: int, length: int) -> int | None:
        """Tiles of edge ``n`` that cover an axis of ``length`` pixels; None if they cannot step."""
        usable = self.usable(n)
        if usable >= length:
            return 1
        if not self.can_step(n):
            return None
        return 1 + math.ceil((length - usable) / self.step(n))

    def covering_tile(self, length: int) -> int:
        """The smallest tile edge whose one tile covers ``length`` output pixels."""
        return next(self.geometry.valid_sizes(length + 2 * self.context,
                                              accept=lambda n: self.usable(n) >= length))

    def smallest_tile(self) -> int:
        """The smallest tile edge that can step (keeps at least 2**depth pixels)."""
        return next(self.geometry.valid_sizes(2 * self.context + 1, accept=self.can_step))

    def axis(self, n: int, length: int) -> _Axis:
        count = self.tiles_needed(n, length)
        assert count is not None
        step = self.step(n) if count > 1 else self.usable(n)
        return _Axis(length, n, self.output(n), step, count)

    def candidates(self, length: int) -> list[_Axis]:
        """Per tile count the smallest tile edge that achieves it (larger edges only waste)."""
        best: dict[int, _Axis] = {}
        largest = self.covering_tile(length)
        sizes = self.geometry.valid_sizes(min(self.smallest_tile(), largest))
        for n in itertools.takewhile(lambda n: n <= largest, sizes):
            count = self.tiles_needed(n, length)
            if count is not None and count not in best:
                best[count] = self.axis(n, length)
        return sorted(best.values(), key=lambda a: a.count)

    def check_tile(self, n: int, length: int) -> None:
        """ValueError naming the nearest tile edges that work, unless ``n`` works on ``length``."""
        if self.geometry.is_valid(n) and self.tiles_needed(n, length) is not None:
            return
        g = self.geometry
        below, above = g.nearest_valid(n, accept=self.can_step)
        nearest = f"{below} or {above}" if below is not None else f"{above}"
        if g.padding == "valid":
            rule = (f"{g.first_valid} + {g.grid}k (valid sizes of this depth-{g.depth} net) whose "
                    f"output of {self.output(self.smallest_tile())} or more pixels can step on "
                    f"the {g.grid}-pixel pooling grid")
        else:
            rule = (f"multiples of {g.grid} of at least {self.smallest_tile()} (2 x halo "
                    f"{self.context} + {g.grid})")
        raise ValueError(
            f"tile_size {n} does not work for this U-Net ({g.padding} padding, depth {g.depth}) "
            f"on an axis of {length} pixels: tile sizes are {rule}; the nearest are {nearest}; "
            "or pass tile_size=None to choose one from the memory budget"
        )


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


def _cheapest_tiles(
    overlap: _Overlap, image_size: tuple[int, int], memory: MemoryOf, budget: float
) -> tuple[_Axis, _Axis]:
    """The tile shape that feeds the fewest pixels to the net (then: the fewest tiles) while one
    tile fits ``budget``; when none fits, the one that needs the least memory."""
    def pixels_fed_then_tiles(pair: tuple[_Axis, _Axis]) -> tuple[int, int]:
        ay, ax = pair
        return ay.count * ax.count * ay.size * ax.size, ay.count * ax.count

    def tile_memory(pair: tuple[_Axis, _Axis]) -> int:
        return memory((pair[0].size, pair[1].size))

    H, W = image_size
    pairs = [(ay, ax) for ay in overlap.candidates(H) for ax in overlap.candidates(W)]
    fitting = [pair for pair in pairs if tile_memory(pair) <= budget]
    if fitting:
        return min(fitting, key=pixels_fed_then_tiles)
    return min(pairs, key=tile_memory)


def _given_tiles(
    overlap: _Overlap, image_size: tuple[int, int], tile_size: object, memory: MemoryOf,
    budget: float,
) -> tuple[_Axis, _Axis]:
    """The axes for an explicit ``tile_size``, checked against the net and the memory budget.

    A tile over the budget is refused, not run: unchecked, a tile far larger than the image
    needs (tile_size=20004 for a 64 x 80 image) would allocate tens of GB.
    """
    ty, tx = int_pair(tile_size, "tile_size")
    overlap.check_tile(ty, image_size[0])
    overlap.check_tile(tx, image_size[1])
    need = memory((ty, tx))
    if need > budget:
        ay, ax = _cheapest_tiles(overlap, image_size, memory, budget)
        fit, shape = memory((ay.size, ax.size)), (ay.size, ax.size)
        if fit <= budget:
            hint = (f"tile_size={shape} fits ({format_bytes(fit)}, {ay.count * ax.count} tile(s) "
                    f"for this {image_size[0]} x {image_size[1]} image; tile_size=None chooses it)")
        else:
            hint = f"even the smallest tile, {shape}, needs {format_bytes(fit)}"
        raise ValueError(
            f"tile_size {(ty, tx)} needs about {format_bytes(need)} of activations "
            f"(estimate_tile_memory), more than memory_budget = {format_bytes(budget)}: {hint}; "
            "or pass a larger memory_budget if the device has the memory"
        )
    return overlap.axis(ty, image_size[0]), overlap.axis(tx, image_size[1])


def _axis_tiles(ax: _Axis, context: int, keep_offset: int) -> list[tuple[int, slice, slice]]:
    """(origin, out slice, keep slice) of every tile along one axis."""
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
            room for the halo for a same-padded net), and one tile's activations must fit into
            ``memory_budget`` (ValueError otherwise, naming a tile that fits). ``None``
            chooses, per axis, the tile shape that feeds the fewest pixels to the net while one
            tile's activations (:func:`estimate_tile_memory`) fit into ``memory_budget``; when
            even the smallest tile does not fit, the smallest is used.
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
    overlap = _Overlap.of(model, halo, "tile_grid")
    batch_size = positive_int(batch_size, "batch_size")
    budget = finite_number(memory_budget, "memory_budget", minimum=0, strict=True)
    H, W = int_pair(image_size, "image_size")

    def memory(shape: tuple[int, int]) -> int:
        return estimate_tile_memory(model, shape, dtype)

    if tile_size is None:
        ay, ax = _cheapest_tiles(overlap, (H, W), memory, budget)
    else:
        ay, ax = _given_tiles(overlap, (H, W), tile_size, memory, budget)
    tile_memory = memory((ay.size, ax.size))
    ys = _axis_tiles(ay, overlap.context, overlap.keep_offset)
    xs = _axis_tiles(ax, overlap.context, overlap.keep_offset)
    tiles = tuple(
        Tile((i, j), (oy, ox), (out_y, out_x), (keep_y, keep_x))
        for i, (oy, out_y, keep_y) in enumerate(ys)
        for j, (ox, out_x, keep_x) in enumerate(xs)
    )
    return TileGrid(
        image_size=(H, W), input_size=(ay.size, ax.size), output_size=(ay.out, ax.out),
        step=(ay.step, ax.step), context=overlap.context, shape=(ay.count, ax.count),
        batch_size=max(1, min(batch_size, len(tiles), int(budget // max(tile_memory, 1)))),
        tile_memory=tile_memory, tiles=tiles,
    )

"""The U-Net's size arithmetic: which input edges it accepts, what comes out, how much context it needs.

A U-Net of depth d pools d times by 2 and up-convolves d times by 2. With the paper's unpadded
("valid") 3x3 convolutions every double convolution also removes 4 pixels, so an edge only
works if every pooling meets an even size; a 572-pixel edge gives a 388-pixel output, and the
output pixel k sees input pixels k ... k + 184, a *margin* of 92 on each side. With zero-padded
("same") convolutions the size is kept, and an edge works if it is a multiple of 2**d.

Either way the valid edges form one arithmetic sequence, ``first + 2**d * k`` for k = 0, 1, 2,
... (188 + 16k for the paper's net, 16k for a same-padded depth-4 net): :meth:`UNetGeometry.
valid_sizes` walks it, and every "nearest valid size" in the package comes from there.

:class:`UNetGeometry` is all a model or the tiling code needs to know about sizes; the model
exposes one as ``model.geometry`` and delegates ``output_size`` and ``valid_input_size`` to it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from .validation import is_int, positive_int

__all__ = ["Padding", "UNetGeometry", "check_padding"]

Padding = Literal["valid", "same"]


def check_padding(padding: object) -> None:
    """Raise ValueError unless ``padding`` is ``"valid"`` (the paper) or ``"same"``."""
    if padding not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' (the paper) or 'same', got {padding!r}")


@dataclass(frozen=True)
class UNetGeometry:
    """The sizes of a U-Net with ``depth`` poolings and ``padding`` ("valid" or "same").

    All sizes are edges in pixels (one axis of an (H, W) image; the axes are independent).

    >>> paper = UNetGeometry(depth=4, padding="valid")
    >>> paper.output_size(572), paper.margin, paper.valid_input_size(570), paper.grid
    (388, 92, 572, 16)
    """

    depth: int = 4
    padding: Padding = "valid"

    def __post_init__(self) -> None:
        # A plain int, so that NumPy integers compare, hash and print like Python ones.
        object.__setattr__(self, "depth", positive_int(self.depth, "depth"))
        check_padding(self.padding)

    # ------------------------------------------------------------------ the arithmetic
    @property
    def grid(self) -> int:
        """The pooling grid 2**depth: valid edges are this far apart, and a net is
        shift-equivariant only for shifts that are multiples of it (16 in the paper)."""
        return 2**self.depth

    def sizes(self, n: int) -> list[int] | None:
        """Edges at every stage of the U for an input edge ``n``, or None if ``n`` is invalid.

        The list is the input edge, then the edge after each contracting step, then after each
        expanding step; the last entry is the output edge. For the paper's 572:
        [572, 280, 136, 64, 28, 52, 100, 196, 388] (its Figure 1).
        """
        if self.padding == "same":
            if n < self.grid or n % self.grid:
                return None
            down = [n // 2**level for level in range(self.depth + 1)]
            return down + down[-2::-1]
        sizes = [n]
        s = n - 4                        # the first double convolution
        for _ in range(self.depth):
            if s < 2 or s % 2:           # 2x2 pooling needs an even edge, or it drops a row
                return None
            s = s // 2 - 4               # pool, then a double convolution
            sizes.append(s)
        if s < 1:
            return None
        for _ in range(self.depth):
            s = 2 * s - 4                # the up-convolution doubles, the double convolution removes 4
            sizes.append(s)
        return sizes if s >= 1 else None

    def is_valid(self, n: object) -> bool:
        """True if the net accepts an input edge ``n`` (an int)."""
        return is_int(n) and self.sizes(int(n)) is not None  # type: ignore[call-overload]

    @cached_property
    def first_valid(self) -> int:
        """The smallest valid input edge (188 for the paper's net, 2**depth for a same net)."""
        n = 1
        while self.sizes(n) is None:
            n += 1
        return n

    @cached_property
    def margin(self) -> int:
        """Context (input - output) / 2 that a valid net eats on each side (92 in the paper);
        0 for a same-padded net."""
        if self.padding == "same":
            return 0
        return (self.first_valid - self.output_size(self.first_valid)) // 2

    @property
    def default_halo(self) -> int:
        """Context a same-padded net reads beyond each tile border by default: 6 * 2**depth.

        Zero padding corrupts 2 pixels per double convolution; pooling halves that band and
        every up-convolution doubles it, which adds up to 6 * 2**depth - 2 pixels at the top
        level for depth >= 2 (94 for depth 4, close to the valid net's margin of 92; 8 for
        depth 1). Any halo that covers the band and is a multiple of 2**(depth - 1) makes
        tiling exact (22 at depth 2). The default is the smallest *multiple of 2**depth* that
        covers it, for one reason: a whole number of bottom-level pixels puts the image's first
        pixel on the pooling grid of every tile, so the tiles compute what one pass over the
        unpadded image's grid would (at depth 4 both rules give 96).
        """
        return 6 * self.grid

    # ------------------------------------------------------------------ the one search
    def valid_sizes(
        self, start: int = 1, *, downward: bool = False, accept: Callable[[int], bool] | None = None
    ) -> Iterator[int]:
        """The valid input edges from ``start`` on, upward (endless) or downward, in order.

        ``accept`` keeps only the edges for which it is true (the tiling asks for edges whose
        output can step on the pooling grid). The valid edges are ``first_valid + grid * k``,
        so the walk jumps from one to the next.
        """
        first, grid = self.first_valid, self.grid
        start = int(start)
        if downward:
            n = first + (start - first) // grid * grid  # round down onto the sequence
            candidates: Iterator[int] = iter(range(n, first - 1, -grid))
        else:
            n = first + max(-(-(start - first) // grid), 0) * grid  # round up onto it
            candidates = itertools.count(n, grid)
        return (k for k in candidates if accept is None or accept(k))

    def valid_input_size(self, n: int) -> int:
        """The smallest valid input edge >= ``n`` (for the paper's net: 188 + 16k)."""
        return next(self.valid_sizes(max(int(n), 1)))

    def nearest_valid(
        self, n: int, accept: Callable[[int], bool] | None = None
    ) -> tuple[int | None, int]:
        """(largest valid edge <= n or None, smallest valid edge >= n), both passing ``accept``."""
        below = next(self.valid_sizes(n, downward=True, accept=accept), None)
        above = next(self.valid_sizes(max(n, 1), accept=accept))
        return below, above

    # ------------------------------------------------------------------ checks and messages
    def rule(self) -> str:
        """The valid edges in words, e.g. ``188 + 16k for k = 0, 1, 2, ...``."""
        if self.padding == "same":
            return f"a multiple of 2**depth = {self.grid}"
        return f"{self.first_valid} + {self.grid}k for k = 0, 1, 2, ..."

    def invalid_message(self, n: int) -> str:
        """Why ``n`` is not a valid input edge, with the rule and the nearest valid edges."""
        below, above = self.nearest_valid(n)
        nearest = f"{below} or {above}" if below is not None else f"{above}"
        return (f"input size {n} is not valid for this U-Net ({self.padding} padding, depth "
                f"{self.depth}); valid sizes are {self.rule()}; the nearest valid sizes are {nearest}")

    def check(self, n: object) -> int:
        """``n`` as an int if it is a valid input edge; TypeError or ValueError otherwise."""
        if not is_int(n):
            raise TypeError(f"an input size must be an int, got {type(n).__name__}")
        n = int(n)  # type: ignore[call-overload]
        if self.sizes(n) is None:
            raise ValueError(self.invalid_message(n))
        return n

    def output_size(self, n: int) -> int:
        """Output edge for a valid input edge ``n`` (572 -> 388 in the paper).

        Raises ValueError naming the nearest valid edges when ``n`` is not valid.
        """
        sizes = self.sizes(self.check(n))
        assert sizes is not None  # check() has ruled that out
        return sizes[-1]

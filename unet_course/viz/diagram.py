"""The U-Net diagram of the paper's Figure 1, redrawn from a live model.

:func:`draw_unet` never computes a size by formula: it draws what
:func:`~unet_course.feature_maps.unet_feature_maps` saw in one forward pass through the model
(every feature map, recorded by hooks). So the picture cannot disagree with the network,
whatever its depth, width, padding or input size.

The drawing goes in named steps: place the rows (:func:`_row_layout`), place the boxes
(:func:`_place_boxes`, one :class:`_Box` per feature map), then draw boxes, arrows, the legend
(which also names the two ends, "input image tile" and "output segmentation map") and the
title. Every length is in points (1 data unit = 1 pt).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
from torch import nn

from ..model import UNet
from .feature_maps import FeatureMap, unet_feature_maps

__all__ = ["FeatureMap", "draw_unet", "unet_feature_maps"]  # the first and last re-exported


# ----------------------------------------------------------------------------- layout
# Font sizes (pt): channel counts above the boxes, rotated sizes beside them, legend and title.
# The figure is drawn 1 pt = 1 data unit, about 750 pt wide for the paper's net (1040 px at
# 100 dpi), so a 676-px book column shows its smallest text, 13.5 pt, at about 12 px.
_FS_CHANNELS, _FS_SIZE, _FS_LEGEND = 14.0, 13.5, 14.0
_COLUMN_GAP = 22.0   # between neighbouring boxes of a row: room for a size label and an arrow
_ROW_GAP = 32.0      # between rows: a channel label and a vertical arrow
_TOP_HEIGHT = 132.0  # box height of the largest map
_BOX_MIN_WIDTH, _BOX_WIDTH_SPAN = 3.0, 21.0  # a 1-channel map stays visible; the widest is 24 pt
_SIZE_LABEL_ROOM = 12.0  # a box is at least its rotated size label long, plus this
_ARROW_CLEARANCE = 4.0   # horizontal arrows pass this far above a size label's end, and
                         # vertical ones stop this far beyond a channel label
_LABEL_GAP = 1.5     # from a box's edge to its channel label (above) and size label (left)
_LABEL_ROOM = 3.0    # extra room counted around labels when sizing the figure
_LEGEND_GAP = 16.0     # the legend keeps this far from the boxes and labels around it
_LEGEND_ROW_GAP = 7.0  # between legend lines (added to the font size)
_LEGEND_ARROW, _LEGEND_TEXT_AT = 24.0, 30.0  # sample arrow length; where its text starts
_LEGEND_EM_PER_CHAR = 0.55  # average width of a legend character, in em
_TITLE_GAP = 10.0    # between the drawing and the title
_MARGIN = 10.0       # around everything
_POINTS_PER_INCH = 72
_COLORS = {
    "box": "#a9cbe8", "edge": "#23405e", "input": "#e3e3e3", "output": "#cfe8d4",
    "conv": "#1f4e79", "pool": "#c0392b", "upconv": "#2e9e4f", "copy": "#8a9499", "head": "#0f8c9c",
}


def _text_length(text: str, fontsize: float) -> float:
    """Approximate length in points of ``text`` in DejaVu Sans (digits 0.64 em, × and + 0.84)."""
    return fontsize * sum(0.84 if ch in "×+" else 0.64 for ch in text)


def _box_width(channels: int, most: int) -> float:
    # Square-root scaling relative to the widest map: 64 and 1024 channels look clearly
    # different, and the whole U still fits on one page.
    return _BOX_MIN_WIDTH + _BOX_WIDTH_SPAN * math.sqrt(channels / most)


def _box_height(m: FeatureMap, biggest: int) -> float:
    # Area-like (square-root) scaling keeps the 28-pixel bottom visible next to 572 pixels;
    # the floor leaves room for the rotated size label below the row's arrows.
    scaled = _TOP_HEIGHT * math.sqrt(m.height / biggest)
    return max(scaled, _text_length(m.size_label, _FS_SIZE) + _SIZE_LABEL_ROOM)


@dataclass(frozen=True)
class _Box:
    """A feature map's rectangle in the figure, in points: left edge, width, height and the
    centre line of its row."""

    fmap: FeatureMap
    left: float
    width: float
    height: float
    row_y: float = 0.0

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.row_y - self.height / 2

    @property
    def top(self) -> float:
        return self.row_y + self.height / 2

    @property
    def middle(self) -> float:
        return (self.left + self.right) / 2


class _Extent:
    """The bounding box (points) of everything drawn so far, grown by each artist."""

    def __init__(self) -> None:
        self.x0 = self.x1 = self.y0 = self.y1 = 0.0

    def grow(self, x0: float, x1: float, y0: float, y1: float) -> None:
        self.x0, self.x1 = min(self.x0, x0), max(self.x1, x1)
        self.y0, self.y1 = min(self.y0, y0), max(self.y1, y1)


def _row_layout(
    maps: list[FeatureMap], depth: int, biggest: int
) -> tuple[list[float], list[float]]:
    """Centre line y of each level's row, and the height of its horizontal arrows."""
    half = [max(_box_height(m, biggest) for m in maps if m.level == lv) / 2
            for lv in range(depth + 1)]
    y = [0.0]
    for lv in range(1, depth + 1):
        y.append(y[-1] - half[lv - 1] - _ROW_GAP - _FS_CHANNELS - half[lv])
    # Horizontal arrows run above the size labels, which start at a box's lower left.
    arrow_y = []
    for lv in range(depth + 1):
        need = max(_text_length(m.size_label, _FS_SIZE) + _ARROW_CLEARANCE
                   - _box_height(m, biggest) / 2 for m in maps if m.level == lv)
        arrow_y.append(y[lv] + max(0.0, need))
    return y, arrow_y


def _place_boxes(maps: list[FeatureMap], biggest: int, y: list[float]) -> list[_Box]:
    """One box per map, left to right following the data through the network. A crop and the
    up-conv output that follows it form one concatenated box: the copy, then the up-conv half."""
    most = max(m.channels for m in maps)  # the bottom's, or a concatenation's (as wide)
    boxes: list[_Box] = []
    pending_crop: FeatureMap | None = None
    for m in maps:
        if m.kind == "crop":
            pending_crop = m
            continue
        w, h = _box_width(m.channels, most), _box_height(m, biggest)
        if m.kind == "upconv":  # the pair is as wide as a map of both halves' channels
            assert pending_crop is not None
            both = pending_crop.channels + m.channels
            w_total = _box_width(both, most)
            w = w_total * m.channels / both
        if m.kind == "input":
            left = 0.0
        elif m.kind in ("pool", "upconv"):  # centred below or above the previous box
            left = boxes[-1].left + boxes[-1].width / 2 - w / 2
        else:
            left = boxes[-1].left + boxes[-1].width + _COLUMN_GAP
            if boxes[-1].fmap.kind == "upconv":  # after a pair labelled "128+128": keep clear
                crop, up = boxes[-2], boxes[-1]
                labels = (f"{crop.fmap.channels}+{up.fmap.channels}", str(m.channels))
                half = sum(_text_length(t, _FS_CHANNELS) for t in labels) / 2
                left = max(left, crop.left + (crop.width + up.width) / 2 + half + 4 - w / 2)
        if m.kind == "upconv":
            w_crop = w_total - w
            boxes.append(_Box(pending_crop, left - w_crop, w_crop, h, y[m.level]))
            pending_crop = None
        boxes.append(_Box(m, left, w, h, y[m.level]))
    return boxes


def _arrow(ax: Axes, x0: float, y0: float, x1: float, y1: float, kind: str, lw: float = 1.5):
    ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=9,
                                 color=_COLORS[kind], lw=lw, shrinkA=0, shrinkB=0,
                                 gid=f"arrow:{kind}", zorder=3))


def _draw_boxes(ax: Axes, boxes: list[_Box], extent: _Extent) -> None:
    """Rectangles with their channel count on top and their size at the lower left."""
    face = {"input": _COLORS["input"], "output": _COLORS["output"], "crop": "white"}
    for i, b in enumerate(boxes):
        m = b.fmap
        ax.add_patch(Rectangle((b.left, b.bottom), b.width, b.height,
                               facecolor=face.get(m.kind, _COLORS["box"]),
                               edgecolor=_COLORS["edge"], lw=0.9, zorder=2,
                               gid=f"fmap:{m.side}:{m.level}:{m.kind}"))
        extent.grow(b.left, b.left + b.width, b.bottom, b.top)
        if m.kind == "upconv":
            continue  # the concatenated pair is labelled once, at its copy half
        if m.kind == "crop":
            up = boxes[i + 1]
            # "copy+up": the concatenation keeps both halves' channels side by side.
            channels, label_w = f"{m.channels}+{up.fmap.channels}", b.width + up.width
        else:
            channels, label_w = str(m.channels), b.width
        ax.text(b.left + label_w / 2, b.top + _LABEL_GAP, channels, ha="center", va="bottom",
                fontsize=_FS_CHANNELS, color="#111111", gid="channels")
        ax.text(b.left - _LABEL_GAP, b.bottom, m.size_label, ha="right", va="bottom", rotation=90,
                fontsize=_FS_SIZE, color="#333333", gid="size")
        extent.grow(b.left - _FS_SIZE - _LABEL_ROOM, b.left + label_w, b.bottom,
                    b.top + _FS_CHANNELS + _LABEL_ROOM)


def _draw_copy(ax: Axes, src: _Box, crop: _Box, arrow_y: float) -> None:
    """The copy arrow into a crop box, and dashed lines marking the copied part of the source."""
    _arrow(ax, src.right, arrow_y, crop.left, arrow_y, "copy", lw=1.3)
    if crop.fmap.height < src.fmap.height:
        keep = (src.top - src.bottom) * crop.fmap.height / src.fmap.height
        ax.add_patch(Rectangle((src.left, src.row_y - keep / 2), src.right - src.left, keep,
                               fill=False, ls=(0, (2, 1.5)), lw=0.8, edgecolor=_COLORS["edge"],
                               zorder=2.5, gid="crop-region"))


def _draw_arrows(ax: Axes, boxes: list[_Box], arrow_y: list[float]) -> None:
    """One arrow into every box from the box that feeds it."""
    last_down = {b.fmap.level: i for i, b in enumerate(boxes) if b.fmap.side == "down"}
    for i in range(1, len(boxes)):
        prev, b = boxes[i - 1], boxes[i]
        kind, ay = b.fmap.kind, arrow_y[b.fmap.level]
        if kind in ("conv", "output"):  # after a concatenation from the pair's up-conv half
            _arrow(ax, prev.right, ay, b.left, ay, "conv" if kind == "conv" else "head")
        elif kind == "pool":  # into the box below, stopping short of its channel label
            _arrow(ax, prev.middle, prev.bottom, b.middle, b.top + _FS_CHANNELS + _ARROW_CLEARANCE,
                   "pool")
        elif kind == "crop":
            _draw_copy(ax, boxes[last_down[b.fmap.level]], b, ay)
        elif kind == "upconv":
            # From above the channel label of the level below's last map (two boxes back:
            # the crop half sits in between) up into the up-conv half of the pair.
            start = boxes[i - 2].top + _FS_CHANNELS + _ARROW_CLEARANCE
            _arrow(ax, b.middle, start, b.middle, b.bottom, "upconv")


def _legend_entries(model: UNet) -> list[tuple[str, str]]:
    """(kind, meaning) per legend line, in the order the data flow: the input tile, the arrows
    (operations), the output map. ``input`` and ``output`` are box colours, the rest arrows."""
    first = model.inc[0]
    conv = "conv 3x3" + (", zero-padded" if first.padding != (0, 0) else "")
    conv += ", BN, ReLU" if any(isinstance(m, nn.BatchNorm2d) for m in model.inc) else ", ReLU"
    up = model.ups[0].up
    upconv = "up-conv 2x2" if isinstance(up, nn.ConvTranspose2d) else "bilinear up 2x, conv 1x1"
    return [("input", "input image tile"), ("conv", conv), ("copy", "copy and crop"),
            ("pool", "max pool 2x2"), ("upconv", upconv), ("head", "conv 1x1"),
            ("output", "output segmentation map")]


def _row_left(boxes: list[_Box], level: int) -> float:
    """Where a row's leftmost box begins, with the size label on its left."""
    return min(b.left for b in boxes if b.fmap.level == level) - _FS_SIZE - _LABEL_ROOM


def _draw_legend(ax: Axes, model: UNet, boxes: list[_Box], extent: _Extent) -> None:
    """A sample (box colour or arrow) and its meaning per line, in the empty lower-left corner.

    The paper writes "input image tile" and "output segmentation map" beside the two ends of the
    U; here they are legend lines, which keeps the figure narrow enough for the book's column.
    The U steps to the right as it goes down, so below the top rows and left of the deeper ones
    there is room: the legend goes below the highest row whose deeper rows all begin to its
    right (below the whole U if there is no such row).
    """
    entries = _legend_entries(model)
    width = _LEGEND_TEXT_AT + _LEGEND_EM_PER_CHAR * _FS_LEGEND * max(len(t) for _, t in entries)
    lx = extent.x0 + _LABEL_ROOM
    depth = max(b.fmap.level for b in boxes)
    above = depth  # the legend sits below the row of this level
    for level in range(1, depth + 1):
        if all(_row_left(boxes, lv) >= lx + width + _LEGEND_GAP
               for lv in range(level, depth + 1)):
            above = level - 1
            break
    ly = min(b.bottom for b in boxes if b.fmap.level == above) - _LEGEND_GAP - _FS_LEGEND / 2
    for k, (kind, text) in enumerate(entries):
        yy = ly - k * (_FS_LEGEND + _LEGEND_ROW_GAP)
        if kind in ("input", "output"):  # a small box in the colour of the end maps
            ax.add_patch(Rectangle((lx + _LEGEND_ARROW / 2 - 4, yy - _FS_LEGEND / 2), 8,
                                   _FS_LEGEND, facecolor=_COLORS[kind],
                                   edgecolor=_COLORS["edge"], lw=0.9, gid=f"legend:{kind}"))
        else:
            _arrow(ax, lx, yy, lx + _LEGEND_ARROW, yy, kind)
        ax.text(lx + _LEGEND_TEXT_AT, yy, text, ha="left", va="center", fontsize=_FS_LEGEND)
        extent.grow(lx, lx + width, yy - _FS_LEGEND, yy)


def _default_title(model: UNet, maps: list[FeatureMap]) -> str:
    n_params = sum(p.numel() for p in model.parameters())
    # two lines: one line would be wider than the U, and the figure would have to shrink
    return (f"U-Net, depth {model.depth}, {model.spec.base_channels} base channels, "
            f"{model.padding} padding\n{maps[0].size_label} → {maps[-1].size_label}, "
            f"{n_params:,} parameters")


def _finish(fig: Figure, ax: Axes, title: str, extent: _Extent) -> None:
    """Add the title, then size the figure so that one data unit is one point."""
    if title:
        ax.text((extent.x0 + extent.x1) / 2, extent.y1 + _TITLE_GAP, title, ha="center",
                va="bottom", fontsize=_FS_LEGEND + 1.5, linespacing=1.25)
        extent.y1 += _TITLE_GAP + (title.count("\n") + 1) * 1.4 * (_FS_LEGEND + 1.5)
    x0, x1 = extent.x0 - _MARGIN, extent.x1 + _MARGIN
    y0, y1 = extent.y0 - _MARGIN, extent.y1 + _MARGIN
    fig.set_size_inches((x1 - x0) / _POINTS_PER_INCH, (y1 - y0) / _POINTS_PER_INCH)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")


def draw_unet(
    model: UNet,
    input_size: int | tuple[int, int] = 572,
    *,
    title: str | None = None,
) -> Figure:
    """Draw the U of ``model`` for an input tile of ``input_size``, like the paper's Figure 1.

    Every box is a feature map traced from a real forward pass (see :func:`unet_feature_maps`):
    its channel count is written on top, its spatial size (height × width, pixels) at the lower
    left; its height grows with the spatial size, its width with the number of channels.
    White boxes are the cropped copies from the contracting path; dashed lines inside a
    contracting-path box mark the part that is copied. Arrows: conv 3x3 + ReLU, max pool 2x2,
    up-conv 2x2, copy and crop, conv 1x1, explained in a legend in the lower-left corner, which
    also shows the colours of the input tile (gray) and the output segmentation map (green).

    Args:
        model: a :class:`~unet_course.UNet` of any depth, width, padding or up-sampling mode.
        input_size: the input tile's edge in pixels, or (height, width). An invalid size raises
            the model's own ``ValueError`` naming the nearest valid sizes.
        title: figure title; ``None`` for a description of the model, ``""`` for none.

    Returns:
        The matplotlib Figure (created with pyplot; close it when done, or ``plt.show()`` it).
    """
    maps = unet_feature_maps(model, input_size)
    biggest = max(max(m.height for m in maps), 1)
    y, arrow_y = _row_layout(maps, model.depth, biggest)
    boxes = _place_boxes(maps, biggest, y)

    fig = plt.figure()
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    extent = _Extent()
    _draw_boxes(ax, boxes, extent)
    _draw_arrows(ax, boxes, arrow_y)
    _draw_legend(ax, model, boxes, extent)
    _finish(fig, ax, _default_title(model, maps) if title is None else title, extent)
    return fig

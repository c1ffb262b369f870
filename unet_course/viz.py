"""Figures for the lessons: the U-Net diagram of the paper's Figure 1, redrawn from a live model.

:func:`draw_unet` never computes a size by formula: it runs one forward pass through the
model, records every feature map with forward hooks, and draws what it saw. So the picture
cannot disagree with the network, whatever its depth, width, padding or input size.
"""

from __future__ import annotations

import math
import socket
import urllib.parse
import warnings
from dataclasses import dataclass
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
from torch import nn

from .model import UNet, Up

__all__ = ["FeatureMap", "VisdomLogger", "draw_unet", "error_overlay", "plot_history", "unet_feature_maps"]

Kind = Literal["input", "conv", "pool", "upconv", "crop", "output"]


@dataclass(frozen=True)
class FeatureMap:
    """One feature map seen during a traced forward pass of a :class:`~unet_course.UNet`.

    Attributes:
        side: ``"down"`` on the contracting path (the bottom level included), ``"up"`` on the
            expanding path.
        level: 0 at full resolution, ``model.depth`` at the bottom of the U.
        kind: ``"input"`` the image tile; ``"conv"`` after a 3x3 convolution and its ReLU;
            ``"pool"`` after a 2x2 max pooling; ``"upconv"`` after the 2x2 up-convolution (or
            the bilinear upsampling); ``"crop"`` the centre-cropped copy of the contracting
            path's map that is concatenated to it; ``"output"`` after the final 1x1 convolution.
        channels, height, width: the map's shape without the batch axis, in channels and pixels.
    """

    side: Literal["down", "up"]
    level: int
    kind: Kind
    channels: int
    height: int
    width: int

    @property
    def size_label(self) -> str:
        """The spatial size as the figure writes it, e.g. ``"572×572"``."""
        return f"{self.height}×{self.width}"


def _edges(input_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(input_size, (tuple, list)):
        if len(input_size) != 2:
            raise ValueError(
                f"input_size must be an int or a pair (height, width), got {input_size!r}"
            )
        return input_size[0], input_size[1]  # the model checks that both are ints
    if not isinstance(input_size, int) or isinstance(input_size, bool):
        raise TypeError(f"input_size must be an int or a pair (height, width), got {input_size!r}")
    return input_size, input_size


def unet_feature_maps(model: UNet, input_size: int | tuple[int, int]) -> list[FeatureMap]:
    """Trace one forward pass of ``model`` on an input of ``input_size`` and list its feature maps.

    ``input_size`` is an edge in pixels (a square tile) or a pair (height, width). The model
    runs once, in eval mode and without gradients, on a zero tensor (1, C_in, H, W) with its
    parameters' device and dtype; its training flag is restored afterwards. An invalid size
    raises the model's own ``ValueError`` (naming the nearest valid sizes) before any work.

    Returns the maps in the order the network computes them (see :class:`FeatureMap`).
    """
    if not isinstance(model, UNet):
        raise TypeError(f"expected a unet_course.UNet, got {type(model).__name__}")
    height, width = _edges(input_size)
    model.output_size(height)  # the model's own check: same error, same message
    model.output_size(width)

    events: list[tuple[str, torch.Size]] = []

    def record(kind: str):
        def hook(module, args, output):
            events.append((kind, output.shape))
        return hook

    def record_input(kind: str):
        def hook(module, args):
            events.append((kind, args[0].shape))
        return hook

    handles = [model.register_forward_pre_hook(record_input("input"))]
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            handles.append(m.register_forward_hook(record("conv")))
        elif isinstance(m, nn.MaxPool2d):
            handles.append(m.register_forward_hook(record("pool")))
        elif isinstance(m, Up):
            handles.append(m.up.register_forward_hook(record("upconv")))
            handles.append(m.conv.register_forward_pre_hook(record_input("concat")))
    handles.append(model.head.register_forward_hook(record("output")))

    param = next(model.parameters())
    x = torch.zeros(1, model.in_channels, height, width, device=param.device, dtype=param.dtype)
    # Eval mode so that dropout is off and batch norm statistics are not updated; each
    # module's own flag is restored afterwards (a user may have frozen some of them).
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for m, flag in flags:
            m.training = flag
        for h in handles:
            h.remove()

    maps: list[FeatureMap] = []
    side, level = "down", 0
    for kind, shape in events:
        c, h, w = (int(v) for v in shape[1:])
        if kind == "pool":
            level += 1
        elif kind == "upconv":
            side, level = "up", level - 1
        if kind == "concat":
            # The concatenation is [cropped copy, up-conv output]; the copy's channels are the rest.
            maps.insert(len(maps) - 1, FeatureMap(side, level, "crop", c - maps[-1].channels, h, w))
        else:
            maps.append(FeatureMap(side, level, kind, c, h, w))  # type: ignore[arg-type]
    return maps


# ----------------------------------------------------------------------------- drawing
# The layout is computed in points (1 data unit = 1 pt), so font sizes and box sizes agree
# whatever the depth: the figure simply grows with the network.
_FS_CHANNELS, _FS_SIZE, _FS_LEGEND = 10.0, 8.5, 10.5
_COLUMN_GAP = 22.0   # between neighbouring boxes of a row: room for a size label and an arrow
_ROW_GAP = 32.0      # between rows: a channel label and a vertical arrow
_TOP_HEIGHT = 132.0  # box height of the largest map
_COLORS = {
    "box": "#a9cbe8", "edge": "#23405e", "input": "#e3e3e3", "output": "#cfe8d4",
    "conv": "#1f4e79", "pool": "#c0392b", "upconv": "#2e9e4f", "copy": "#8a9499", "head": "#0f8c9c",
}


def _text_length(text: str, fontsize: float) -> float:
    """Approximate length in points of ``text`` in DejaVu Sans (digits 0.64 em, × 0.84 em)."""
    return fontsize * sum(0.84 if ch == "×" else 0.64 for ch in text)


def _box_width(channels: int, most: int) -> float:
    # Square-root scaling relative to the widest map: 64 and 1024 channels look clearly
    # different, and the whole U still fits on one page.
    return 3.0 + 29.0 * math.sqrt(channels / most)


def _legend_entries(model: UNet) -> list[tuple[str, str]]:
    first = model.inc[0]
    conv = "conv 3x3" + (", zero-padded" if first.padding != (0, 0) else "")
    conv += ", BN, ReLU" if any(isinstance(m, nn.BatchNorm2d) for m in model.inc) else ", ReLU"
    up = model.ups[0].up
    upconv = "up-conv 2x2" if isinstance(up, nn.ConvTranspose2d) else "bilinear up 2x, conv 1x1"
    return [("conv", conv), ("copy", "copy and crop"), ("pool", "max pool 2x2"),
            ("upconv", upconv), ("head", "conv 1x1")]


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
    up-conv 2x2, copy and crop, conv 1x1, explained in a legend.

    Args:
        model: a :class:`~unet_course.UNet` of any depth, width, padding or up-sampling mode.
        input_size: the input tile's edge in pixels, or (height, width). An invalid size raises
            the model's own ``ValueError`` naming the nearest valid sizes.
        title: figure title; ``None`` for a description of the model, ``""`` for none.

    Returns:
        The matplotlib Figure (created with pyplot; close it when done, or ``plt.show()`` it).
    """
    maps = unet_feature_maps(model, input_size)
    depth = model.depth
    biggest = max(max(m.height for m in maps), 1)
    # The widest box is the bottom's (or a concatenation, which is as wide as the level below).
    most = max(m.channels for m in maps)

    def height_of(m: FeatureMap) -> float:
        # Area-like (square-root) scaling keeps the 28-pixel bottom visible next to 572 pixels;
        # the floor leaves room for the rotated size label below the row's arrows.
        scaled = _TOP_HEIGHT * math.sqrt(m.height / biggest)
        return max(scaled, _text_length(m.size_label, _FS_SIZE) + 12)

    # ---- vertical placement: one row per level, centre lines y[level]
    half = [max(height_of(m) for m in maps if m.level == lv) / 2 for lv in range(depth + 1)]
    y = [0.0]
    for lv in range(1, depth + 1):
        y.append(y[-1] - half[lv - 1] - _ROW_GAP - _FS_CHANNELS - half[lv])
    # Horizontal arrows run above the size labels, which start at a box's lower left.
    arrow_y = []
    for lv in range(depth + 1):
        need = max(_text_length(m.size_label, _FS_SIZE) + 4 - height_of(m) / 2
                   for m in maps if m.level == lv)
        arrow_y.append(y[lv] + max(0.0, need))

    # ---- horizontal placement, following the data through the network
    boxes: list[tuple[FeatureMap, float, float, float]] = []  # map, left x, width, height
    pending_crop: FeatureMap | None = None
    for m in maps:
        w, h = _box_width(m.channels, most), height_of(m)
        if m.kind == "input":
            left = 0.0
        elif m.kind == "crop":
            pending_crop = m
            continue
        elif m.kind in ("pool", "upconv"):
            prev = boxes[-1]
            if m.kind == "upconv":
                assert pending_crop is not None
                # The concatenated map is one box: the copy (white) then the up-conv output (blue).
                w_total = _box_width(pending_crop.channels + m.channels, most)
                w = w_total * m.channels / (pending_crop.channels + m.channels)
                w_crop = w_total - w
                left = prev[1] + prev[2] / 2 - w / 2
                boxes.append((pending_crop, left - w_crop, w_crop, h))
                pending_crop = None
            else:
                left = prev[1] + prev[2] / 2 - w / 2
        else:
            prev = boxes[-1]
            left = prev[1] + prev[2] + _COLUMN_GAP
        boxes.append((m, left, w, h))

    fig = plt.figure()
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    extent = [0.0, 0.0, 0.0, 0.0]  # xmin, xmax, ymin, ymax of everything drawn

    def grow(x0, x1, y0, y1):
        extent[0], extent[1] = min(extent[0], x0), max(extent[1], x1)
        extent[2], extent[3] = min(extent[2], y0), max(extent[3], y1)

    def arrow(x0, y0, x1, y1, kind, lw=1.5):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=9,
                                     color=_COLORS[kind], lw=lw, shrinkA=0, shrinkB=0,
                                     gid=f"arrow:{kind}", zorder=3))

    # ---- boxes and labels
    where: dict[int, tuple[float, float, float, float]] = {}  # index in boxes -> l, r, bottom, top
    for i, (m, left, w, h) in enumerate(boxes):
        bottom, top = y[m.level] - h / 2, y[m.level] + h / 2
        where[i] = (left, left + w, bottom, top)
        face = {"input": _COLORS["input"], "output": _COLORS["output"], "crop": "white"}
        ax.add_patch(Rectangle((left, bottom), w, h, facecolor=face.get(m.kind, _COLORS["box"]),
                               edgecolor=_COLORS["edge"], lw=0.9, zorder=2,
                               gid=f"fmap:{m.side}:{m.level}:{m.kind}"))
        grow(left, left + w, bottom, top)
        if m.kind == "upconv":
            continue  # the concatenated pair is labelled once, at its copy half
        if m.kind == "crop":
            up = boxes[i + 1][0]
            # "copy+up": the concatenation keeps both halves' channels side by side.
            channels, label_w = f"{m.channels}+{up.channels}", w + boxes[i + 1][2]
        else:
            channels, label_w = str(m.channels), w
        ax.text(left + label_w / 2, top + 1.5, channels, ha="center", va="bottom",
                fontsize=_FS_CHANNELS, color="#111111", gid="channels")
        ax.text(left - 1.5, bottom, m.size_label, ha="right", va="bottom", rotation=90,
                fontsize=_FS_SIZE, color="#333333", gid="size")
        grow(left - _FS_SIZE - 3, left + label_w, bottom, top + _FS_CHANNELS + 3)

    # ---- arrows
    last_down: dict[int, int] = {}  # level -> index of the contracting path's last box
    for i, (m, *_rest) in enumerate(boxes):
        if m.side == "down":
            last_down[m.level] = i
    for i in range(1, len(boxes)):
        m = boxes[i][0]
        l0, r0, b0, _ = where[i - 1]
        l1, r1, b1, t1 = where[i]
        if m.kind == "conv":  # after a concatenation it starts at the pair's up-conv half
            arrow(r0, arrow_y[m.level], l1, arrow_y[m.level], "conv")
        elif m.kind == "output":
            arrow(r0, arrow_y[m.level], l1, arrow_y[m.level], "head")
        elif m.kind == "pool":
            arrow((l0 + r0) / 2, b0, (l1 + r1) / 2, t1 + _FS_CHANNELS + 4, "pool")
        elif m.kind == "crop":
            src = last_down[m.level]
            ls, rs, bs, ts = where[src]
            arrow(rs, arrow_y[m.level], l1, arrow_y[m.level], "copy", lw=1.3)
            src_map = boxes[src][0]
            if m.height < src_map.height:  # dashed lines: the part of the map that is copied
                keep = (ts - bs) * m.height / src_map.height
                ax.add_patch(Rectangle((ls, y[m.level] - keep / 2), rs - ls, keep, fill=False,
                                       ls=(0, (2, 1.5)), lw=0.8, edgecolor=_COLORS["edge"],
                                       zorder=2.5, gid="crop-region"))
        elif m.kind == "upconv":
            # From above the channel label of the level below's last map (two boxes back:
            # the crop half sits in between) up into the up-conv half of the pair.
            top_below = where[i - 2][3]
            arrow((l1 + r1) / 2, top_below + _FS_CHANNELS + 4, (l1 + r1) / 2, b1, "upconv")

    # ---- the paper's annotations of the two ends
    first, last = where[0], where[len(boxes) - 1]
    ax.text(first[0] - _FS_SIZE - 8, y[0], "input\nimage\ntile", ha="right", va="center",
            fontsize=_FS_LEGEND, linespacing=1.15)
    ax.text(last[1] + 8, y[0], "output\nsegmentation\nmap", ha="left", va="center",
            fontsize=_FS_LEGEND, linespacing=1.15)
    grow(first[0] - _FS_SIZE - 8 - _FS_LEGEND * 3.0, last[1] + 8 + _FS_LEGEND * 7.2, y[0], y[0])

    # ---- legend, in the empty corner right of the U's lower levels
    right_of_level1 = max(where[i][1] for i, (m, *_r) in enumerate(boxes) if m.level >= 1)
    lx = right_of_level1 + 30
    ly = min(where[i][2] for i, (m, *_r) in enumerate(boxes) if m.level == 0) - 22
    for k, (kind, text) in enumerate(_legend_entries(model)):
        yy = ly - k * (_FS_LEGEND + 7)
        arrow(lx, yy, lx + 24, yy, kind)
        ax.text(lx + 30, yy, text, ha="left", va="center", fontsize=_FS_LEGEND)
        grow(lx, lx + 30 + 0.55 * _FS_LEGEND * len(text), yy - _FS_LEGEND, yy)

    # ---- title and the point-for-point scale
    if title is None:
        out = maps[-1]
        n_params = sum(p.numel() for p in model.parameters())
        title = (f"U-Net, depth {depth}, {model.config['base_channels']} base channels, "
                 f"{model.padding} padding: {maps[0].size_label} → {out.size_label} "
                 f"({n_params:,} parameters)")
    if title:
        ax.text((extent[0] + extent[1]) / 2, extent[3] + 10, title, ha="center", va="bottom",
                fontsize=_FS_LEGEND + 1.5)
        extent[3] += 10 + 2 * _FS_LEGEND
    margin = 10.0
    x0, x1 = extent[0] - margin, extent[1] + margin
    y0, y1 = extent[2] - margin, extent[3] + margin
    fig.set_size_inches((x1 - x0) / 72, (y1 - y0) / 72)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    return fig


# --------------------------------------------------------------------------- results
def error_overlay(image, pred, truth) -> np.ndarray:
    """RGB (H, W, 3) float image: the gray slice dimmed, red = false cell, blue = false membrane.

    ``image`` (H, W) in [0, 1]; ``pred`` and ``truth`` (H, W) with 1 (or True) = cell.
    """
    image, pred, truth = (np.asarray(a) for a in (image, pred, truth))
    if not image.shape == pred.shape == truth.shape or image.ndim != 2:
        raise ValueError(f"image, pred and truth must be (H, W) of one shape, got {image.shape}, "
                         f"{pred.shape}, {truth.shape}")
    rgb = np.repeat(np.clip(image, 0, 1)[..., None], 3, axis=2).astype(np.float32) * 0.8
    pred, truth = pred.astype(bool), truth.astype(bool)
    rgb[pred & ~truth] = (1.0, 0.1, 0.1)
    rgb[~pred & truth] = (0.1, 0.3, 1.0)
    return rgb


# --------------------------------------------------------------------------- training curves
def plot_history(history, ax=None, smooth: int = 10):
    """Plot the training loss of a :class:`unet_course.train.History` (and validation metrics).

    The raw per-step loss is drawn faintly, its running mean over ``smooth`` steps boldly; the
    validation Rand and pixel errors, if any, go on a second axis. Returns the Axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.6))
    steps, loss = list(history.steps), list(history.loss)
    if not steps:
        raise ValueError("the history is empty: nothing was trained")
    ax.plot(steps, loss, color="tab:blue", alpha=0.25, lw=0.8, label="loss per step")
    k = max(1, min(smooth, len(loss)))
    kernel = torch.ones(k) / k
    mean = torch.nn.functional.conv1d(torch.tensor(loss)[None, None], kernel[None, None])[0, 0]
    ax.plot(steps[k - 1:], mean.tolist(), color="tab:blue", lw=2, label=f"mean of {k} steps")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if history.val:
        ax2 = ax.twinx()
        vs = [v["step"] for v in history.val]
        for key, color in (("rand_error", "tab:red"), ("pixel_error", "tab:orange")):
            ax2.plot(vs, [v[key] for v in history.val], "o-", color=color, label=f"validation {key}")
        ax2.set_ylabel("validation error")
        ax2.set_ylim(bottom=0)
        lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
        ax.legend(lines, [h.get_label() for h in lines], loc="upper right")
    else:
        ax.legend(loc="upper right")
    return ax


class VisdomLogger:
    """A :func:`unet_course.train.fit` callback that draws live curves in a visdom server.

    Start a server with ``python -m visdom.server`` (``pip install "unet-course[visdom]"``),
    then ``fit(..., callbacks=[VisdomLogger()])`` and open http://localhost:8097. The loss goes
    to the window ``"<prefix>loss"``, validation metrics to ``"<prefix>val"``.

    If visdom is not installed or no server answers, the logger prints one line saying so and
    does nothing afterwards: training goes on.
    """

    def __init__(self, server: str = "http://127.0.0.1", port: int = 8097, env: str = "unet_course",
                 prefix: str = "", timeout_s: float = 3.0):
        self.env, self.prefix, self.vis = env, prefix, None
        self._windows: set[str] = set()
        try:
            import visdom
        except ImportError:
            print('visdom is not installed (pip install "unet-course[visdom]"); live curves are off')
            return
        # Ask the port first: visdom's client prints several lines of tracebacks when no server
        # answers, and we promise one clear line instead.
        host = urllib.parse.urlparse(server).hostname or server
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except OSError:
            print(f"no visdom server at {server}:{port} (start one with `python -m visdom.server`); "
                  "live curves are off, training goes on")
            return
        with warnings.catch_warnings():
            # visdom 0.2.4 calls the deprecated Logger.warn to say there is no incoming socket,
            # which is what we ask for: we only send curves.
            warnings.simplefilter("ignore", DeprecationWarning)
            client = visdom.Visdom(server=server, port=port, env=env, use_incoming_socket=False,
                                   raise_exceptions=False)
        self.vis = client

    @property
    def active(self) -> bool:
        return self.vis is not None

    def _append(self, win: str, x: float, y: float, name: str, title: str) -> None:
        # The first point creates the window; later ones append to (or start) the named trace.
        self.vis.line(X=[x], Y=[y], win=win, env=self.env, name=name,
                      update="append" if win in self._windows else None,
                      opts=dict(title=title, xlabel="step", showlegend=True))
        self._windows.add(win)

    def __call__(self, event: dict) -> None:
        if self.vis is None:
            return
        if "loss" in event:
            self._append(self.prefix + "loss", event["step"], event["loss"], "train", "training loss")
        for key, value in event.get("val", {}).items():
            self._append(self.prefix + "val", event["step"], value, key, "validation")

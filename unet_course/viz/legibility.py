"""How large a figure's text looks in the book, and a recorder that measures it while notebooks run.

A figure's text is drawn into its PNG at ``size_pt * dpi / 72`` pixels. The book then shows the
PNG at its own width or, when it is wider, shrunk to the column's width, so the text a reader
sees is ``text_px * min(1, column_px / png_width_px)``. The column widths below were measured in
headless Chromium on the built book (``benchmarks/book_legibility.py`` measures them again):

* a 1280-pixel-wide window shows images at most 676 px wide;
* below 720 px (a phone) ``book/_static/custom.css`` shows figures at 0.72 of their own size,
  however wide, and lets them scroll sideways: 11-pt text, 15.3 px at 100 dpi, stays at 11 px.

:func:`record_figure_text` is switched on by ``make notebooks`` through the environment variable
``UNET_COURSE_FIGURE_TEXT_LOG`` (read by :func:`unet_course.viz.book_style`). While it is on,
every PNG that a figure is saved to is logged with the smallest text drawn in it, keyed by the
PNG's sha256, which is what the notebook stores; ``tests/test_figure_text.py`` reads the log.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from pathlib import Path

from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.backends.backend_agg import RendererAgg

__all__ = ["COLUMN_PX", "LOG_VARIABLE", "MIN_TEXT_PX", "PHONE_ZOOM", "displayed_text_px",
           "png_size", "record_figure_text"]

#: Per window width (px): the widest image the column shows (px), or, for a phone, the scale at
#: which custom.css shows every figure whatever its width. Measured in headless Chromium.
COLUMN_PX: dict[int, int] = {1280: 676}
PHONE_ZOOM: dict[int, float] = {420: 0.72}
#: The smallest text, in CSS pixels, that a figure may show at a 1280- and a 420-pixel window.
MIN_TEXT_PX = 11.0
#: Environment variable naming the log file (JSON lines) that :func:`record_figure_text` fills.
LOG_VARIABLE = "UNET_COURSE_FIGURE_TEXT_LOG"

_active: list[list[tuple[float, str]]] = []  # one list of (px, text) per print in progress
_installed: list[Path] = []


def displayed_text_px(text_px: float, png_width: int, window: int) -> float:
    """Size (CSS px) at which text drawn ``text_px`` high in a ``png_width``-px PNG is seen in a
    ``window``-px-wide browser window (one of :data:`COLUMN_PX` or :data:`PHONE_ZOOM`)."""
    if window in PHONE_ZOOM:
        return float(text_px) * PHONE_ZOOM[window]
    column = COLUMN_PX[window]
    return float(text_px) * min(1.0, column / png_width)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels of a PNG, read from its header."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    return struct.unpack(">II", data[16:24])


def record_figure_text(log_path: str | os.PathLike) -> None:
    """Log, for every figure saved as PNG from now on, the smallest text drawn into it.

    Appends one JSON line per PNG to ``log_path``: ``sha256`` of the PNG's bytes, ``width`` and
    ``height`` (px), ``min_text_px`` (the smallest drawn text's size in the PNG's pixels) and
    ``text`` (that text). Only text that is really drawn counts: tick labels outside the axes'
    range and the dry run that ``bbox_inches="tight"`` makes are not drawn. Calling it twice
    keeps the first log.
    """
    if _installed:
        return
    _installed.append(Path(log_path))
    draw_text = RendererAgg.draw_text
    print_figure = FigureCanvasBase.print_figure

    def recording_draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if _active and str(s).strip():
            _active[-1].append((prop.get_size_in_points() * self.dpi / 72.0, str(s)))
        return draw_text(self, gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    def recording_print_figure(self, filename, *args, **kwargs):
        _active.append([])
        try:
            result = print_figure(self, filename, *args, **kwargs)
        finally:
            drawn = _active.pop()
        data = filename.getvalue() if isinstance(filename, io.BytesIO) else None
        if data and data[:8] == b"\x89PNG\r\n\x1a\n" and drawn:
            px, text = min(drawn)
            width, height = png_size(data)
            entry = {"sha256": hashlib.sha256(data).hexdigest(), "width": width,
                     "height": height, "min_text_px": round(px, 2), "text": text[:60]}
            with open(_installed[0], "a", encoding="utf-8") as log:
                log.write(json.dumps(entry) + "\n")
        return result

    RendererAgg.draw_text = recording_draw_text
    FigureCanvasBase.print_figure = recording_print_figure

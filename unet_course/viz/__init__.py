"""Figures for the lessons, gathered under one name.

* :mod:`unet_course.diagram`        the U-Net diagram of the paper's Figure 1, traced from a live
                                    model: :class:`FeatureMap`, :func:`unet_feature_maps`,
                                    :func:`draw_unet`;
* :mod:`unet_course.plots`          results: :func:`error_overlay`, :func:`plot_history`,
                                    :func:`label_colors`; :func:`book_style`, legible text at
                                    the book's column width;
* :mod:`unet_course.viz.display`    :class:`Table` (results as HTML tables, aligned text in a
                                    console), :func:`show_source` (highlighted code);
* :mod:`unet_course.viz.legibility` the size of figure text as the book shows it, and the
                                    recorder that ``make notebooks`` switches on;
* :mod:`unet_course.visdom_logger`  live curves during training: :class:`VisdomLogger`
                                    (a :func:`unet_course.train.fit` callback, not a figure; it
                                    is re-exported here because lessons import it from here).
"""

from __future__ import annotations

from .diagram import FeatureMap, draw_unet, unet_feature_maps
from .display import Table, show_source
from .plots import (
    BOOK_FONT_SIZES,
    book_style,
    error_overlay,
    label_colors,
    matched_label_images,
    plot_history,
)
from .visdom_logger import VisdomLogger

__all__ = [
    "BOOK_FONT_SIZES",
    "FeatureMap",
    "Table",
    "VisdomLogger",
    "book_style",
    "draw_unet",
    "error_overlay",
    "label_colors",
    "matched_label_images",
    "plot_history",
    "show_source",
    "unet_feature_maps",
]

"""Tracebacks that fit a page: the notebook's frames kept, the library's folded (lessons 01-08).

An error raised inside PyTorch prints a traceback that runs through a dozen frames of
``torch/nn/modules/...`` with the absolute paths of the machine that ran it, and ends in a
message wider than the book's column. What a reader needs is what the course teaches in lesson
07: the frames that point into *their* code, and the message. :func:`format_short_traceback`
keeps exactly that; :func:`short_tracebacks` makes IPython use it for every error of a session.
"""

from __future__ import annotations

import os
import textwrap
import traceback
from types import TracebackType

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _library_name(filename: str) -> str | None:
    """The top-level package a frame belongs to, or None for the user's own code.

    Frames of ``unet_course`` count as the user's code (the course's code is what the lessons
    read), everything under ``site-packages``/``dist-packages`` or the standard library is a
    library frame, named by its top-level package so that the folded line says where it went.
    """
    path = os.path.abspath(filename)
    if path.startswith(_PACKAGE_ROOT + os.sep):
        return None
    for marker in ("site-packages", "dist-packages"):
        if marker in path.split(os.sep):
            rest = path.split(marker + os.sep, 1)[1]
            return rest.split(os.sep, 1)[0].removesuffix(".py")
    if path.startswith(os.path.dirname(os.__file__)):
        return "python"
    return None


def _where(filename: str, lineno: int | None, cell_names: dict[str, str]) -> str:
    """``Cell In[5], line 3`` for a notebook cell, ``unet_course/model.py, line 40`` for ours."""
    if filename in cell_names:
        return f"Cell {cell_names[filename]}, line {lineno}"
    path = os.path.abspath(filename)
    if path.startswith(_PACKAGE_ROOT + os.sep):
        path = os.path.relpath(path, os.path.dirname(_PACKAGE_ROOT))
    else:
        path = os.path.basename(path)  # never print the machine's directories
    return f"{path}, line {lineno}"


def _clip(line: str, width: int) -> str:
    """``line`` cut to ``width`` characters, the cut marked with `` ...``."""
    return line if len(line) <= width else line[: width - 4] + " ..."


def format_short_traceback(
    error: BaseException,
    tb: TracebackType | None = None,
    width: int = 88,
    cell_names: dict[str, str] | None = None,
) -> list[str]:
    """The lines of a short traceback of ``error``, each at most ``width`` characters.

    Kept: every frame in the user's code (notebook cells, ``unet_course``), with its source
    line. Folded: each run of consecutive library frames becomes one line, ``... 3 frames
    inside torch``. Last: ``ExceptionType: message``, wrapped at ``width``.

    ``cell_names`` maps a cell's code file name to its label (``In[5]``); IPython knows it.
    """
    if width < 40:
        raise ValueError(f"width must be at least 40 characters, got {width}")
    cell_names = cell_names or {}
    lines = ["Traceback (library frames folded):"]
    folded: list[str] = []

    def flush() -> None:
        if folded:
            names = ", ".join(dict.fromkeys(folded))
            lines.append(f"  ... {len(folded)} frame{'s' * (len(folded) > 1)} inside {names}")
            folded.clear()

    frames = traceback.extract_tb(tb if tb is not None else error.__traceback__)
    first_cell = next((i for i, f in enumerate(frames) if f.filename in cell_names), 0)
    for frame in frames[first_cell:]:  # IPython's own frames above the cell say nothing
        library = None if frame.filename in cell_names else _library_name(frame.filename)
        if library is not None:
            folded.append(library)
            continue
        flush()
        lines.append(_clip("  " + _where(frame.filename, frame.lineno, cell_names), width))
        if frame.line:
            lines.append(_clip("    " + frame.line.strip(), width))
    flush()
    message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    for paragraph in message.splitlines() or [message]:
        # long words (a path, a shape list) are broken too: nothing may run past the column
        lines += textwrap.wrap(paragraph, width, subsequent_indent="  ") or [""]
    return lines


def short_tracebacks(on: bool = True, width: int = 88) -> None:
    """Make the running IPython show every error as :func:`format_short_traceback` does.

    ``short_tracebacks(False)`` brings back IPython's full tracebacks. Outside IPython (a plain
    script) this does nothing; Python's own tracebacks are unchanged.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # IPython is not a dependency of the package
        return
    shell = get_ipython()
    if shell is None:
        return
    if not on:
        shell.set_custom_exc((), None)
        return

    def show(shell, etype, value, tb, tb_offset=None):
        names = {
            name: label
            for name in getattr(shell.compile, "_filename_map", {})
            for label in [shell.compile.format_code_name(name)[1]]
        }
        stb = format_short_traceback(value, tb, width=width, cell_names=names)
        shell._showtraceback(etype, value, stb)  # sends an "error" output, as IPython's own
        return stb

    shell.set_custom_exc((Exception,), show)

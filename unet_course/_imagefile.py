"""Opening one image file (or one page of a stack) with Pillow: the step every reader shares.

:func:`unet_course.imageio.read_image` and :func:`unet_course.maskio.read_mask` both start
here, so a missing file, a folder, a corrupt file or a page out of range gives the same message
whichever reader meets it. Pillow is imported on first use (it comes with matplotlib).
"""

from __future__ import annotations

import os
from pathlib import Path

from .validation import is_int

#: Pillow's modes for 16-bit gray (``"I;16B"`` is big-endian, e.g. some TIFFs)
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")

# what Pillow raises for a file it cannot identify or decode
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError)


def check_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path, checked to name an existing file (not a folder)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder, not an image file: pass one file (for a folder of images and "
            "masks use unet_course.folders.ImageFolderDataset)"
        )
    if not path.exists():
        raise FileNotFoundError(f"no image at {path}: the file does not exist")
    return path


def count_pages(path: str | os.PathLike) -> int:
    """How many pages (images) the file holds: 1 for PNG or JPEG, n for an n-page TIFF stack."""
    from PIL import Image, UnidentifiedImageError

    path = check_file(path)
    try:
        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1))
    except (UnidentifiedImageError, *_DECODE_ERRORS) as exc:
        raise ValueError(f"cannot read {path} as an image ({exc})") from exc


def _seek(im, path: Path, page: int | None) -> None:
    """Move ``im`` to ``page``; with ``page=None`` refuse a stack (one image was expected)."""
    frames = int(getattr(im, "n_frames", 1))
    if page is None:
        if frames > 1:
            raise ValueError(
                f"{path} holds {frames} pages (a stack), but one image was expected: pass "
                f"page=0 .. {frames - 1} to read one of them, or split the stack into files"
            )
        return
    if not is_int(page):
        raise TypeError(f"page must be an int, got {type(page).__name__}")
    if not 0 <= page < frames:
        raise ValueError(f"{path} has {frames} page(s), so page must be in "
                         f"0 .. {frames - 1}, got {page}")
    im.seek(page)


def open_image(path: Path, page: int | None):
    """Open ``path`` with Pillow, go to ``page`` and decode it.

    Returns the loaded image (the caller closes it) and the decoder's raw modes, e.g.
    ``'RGB;16B'``: they tell a file's true bit depth where Pillow's mode does not (a 16-bit RGB
    PNG has mode "RGB"), and Pillow forgets them once the image is loaded.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
    except (UnidentifiedImageError, *_DECODE_ERRORS) as exc:
        raise ValueError(f"cannot read {path} as an image ({exc})") from exc
    try:
        _seek(im, path, page)
        raw_modes = _raw_modes(im)
        # decoding happens here: a truncated or corrupt file fails now, inside the try
        im.load()
    except (ValueError, TypeError):
        im.close()
        raise
    except (OSError, SyntaxError, EOFError) as exc:
        im.close()
        raise ValueError(f"cannot read {path} as an image ({exc})") from exc
    return im, raw_modes


def _raw_modes(im) -> str:
    """The decoder's raw modes (e.g. ``'RGB;16B'``), which tell the file's true bit depth."""
    return " ".join(str(tile[3]) for tile in (getattr(im, "tile", None) or ()))


def bits_per_sample(im) -> int | None:
    """A TIFF's BitsPerSample tag (e.g. 16), or None for other formats."""
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return None
    bits = tags.get(258)  # TIFF BitsPerSample
    if isinstance(bits, (tuple, list)):
        bits = bits[0] if bits else None
    return int(bits) if bits is not None else None

"""Reading images and label masks from disk, and writing probability maps: one reader for all.

Every path that takes a file from the user (the CLI's ``predict``, the folder dataset, the
ISBI slices) is meant to go through :func:`read_image` and :func:`read_mask`, so that an image
means the same numbers wherever it is read.

Images come back as float32 (C, H, W) in [0, 1] (DESIGN.md), each at its *true* range:

* 1-bit: 0 and 1; 8-bit (gray, RGB, palette): value / 255;
* 16-bit gray PNG or TIFF: value / 65535 (never squeezed through 8 bits: converting a 16-bit
  image to Pillow's mode ``"L"`` clips every value above 255 to white);
* 32-bit float TIFF (and 32-bit integer TIFF): kept as they are if every value lies in
  [0, 1]; otherwise min-max normalised, ``(x - min) / (max - min)``, because a float image
  carries no "full scale" to divide by (a constant image then becomes zeros). Non-finite values
  are refused.

A 12-bit camera image stored in 16 bits therefore reads with a maximum near 4095 / 65535:
that is its true range; :func:`normalize_intensity` is the step that evens out such
differences between scanners and bit depths, and :func:`prepare_image` applies the one a
checkpoint was trained with (its name is stored in the checkpoint), so that training, the
held-out scores and ``predict`` feed a net the same numbers.

Masks come back as their raw integer label values (:func:`read_mask`), and
:func:`mask_from_labels` turns them into the course's targets: an int64 class mask (H, W) and,
for instance labels, int32 instance ids (H, W). Those live in :mod:`unet_course.maskio` and are
importable from here too; :func:`count_pages` tells how many pages a TIFF stack holds.

Pillow quirks this module works around or documents (observed with Pillow 13):

* a 16-bit gray PNG opens in mode ``"I;16"``, as does a uint16 TIFF (``"I;16B"`` if
  big-endian); older Pillow versions open 16-bit PNGs as ``"I"`` (32-bit int), which is
  handled too;
* Pillow has no 16-bit colour modes: a 16-bit-per-channel RGB(A) PNG or TIFF opens as 8-bit
  ``"RGB"``/``"RGBA"`` keeping only the high byte of each value. Images read that way keep
  their range with 8-bit precision; masks read that way would lose ids, so
  :func:`read_mask` refuses them;
* a 16-bit gray-plus-alpha PNG opens as 8-bit ``"RGBA"`` with three equal channels (read
  back here as one gray channel, 8-bit precision);
* the decoder's raw mode (``'RGB;16B'``), the only trace of the file's true depth in those
  cases, is gone once the image is loaded, so it is read before loading;
* a float image cannot be saved as PNG (Pillow has no float PNG), hence the 16-bit PNG
  encoding of :func:`write_probability`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._imagefile import SIXTEEN_BIT, bits_per_sample, check_file, count_pages, open_image
from .maskio import MAX_CLASSES, guess_mask_kind, mask_from_labels, read_mask
from .validation import is_int

__all__ = [
    "MAX_CLASSES",
    "NORMALIZATIONS",
    "bit_depth",
    "count_pages",
    "guess_mask_kind",
    "mask_from_labels",
    "normalize_intensity",
    "prepare_image",
    "read_image",
    "read_mask",
    "write_probability",
]

_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, what Pillow's convert("L") uses

#: the modes of :func:`normalize_intensity`; a checkpoint stores one (see :func:`prepare_image`)
NORMALIZATIONS = ("minmax", "zscore", "none", "channel_minmax")


# ----------------------------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------------------------


def _float_to_unit(array: np.ndarray, path: Path) -> np.ndarray:
    """The rule for images without a full scale (float, 32-bit int): keep [0, 1], else min-max."""
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(
            f"{path} has {bad} non-finite pixel value(s) (NaN or infinity); replace them "
            "(e.g. with numpy.nan_to_num) and save the image again"
        )
    lo, hi = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if lo >= 0.0 and hi <= 1.0:
        return array
    if hi == lo:
        return np.zeros_like(array)
    return (array - lo) / (hi - lo)


def _pixels(im, path: Path, raw_modes: str) -> np.ndarray:
    """The decoded image as float64 (H, W) or (H, W, 3) in [0, 1], following the module's rules."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=np.float64)
    if mode in ("L", "LA", "La"):
        gray = np.asarray(im.convert("LA") if mode == "La" else im)
        return (gray if gray.ndim == 2 else gray[..., 0]).astype(np.float64) / 255.0
    if mode in SIXTEEN_BIT:
        return np.asarray(im).astype(np.float64) / 65535.0
    if mode == "I":
        array = np.asarray(im)
        # a 16-bit PNG opens as "I" in older Pillow; a TIFF says its bit depth in a tag
        sixteen = im.format == "PNG" or bits_per_sample(im) == 16
        if sixteen and array.size and array.min() >= 0 and array.max() <= 65535:
            return array.astype(np.float64) / 65535.0
        return _float_to_unit(array, path)
    if mode == "F" or mode.startswith("I;"):  # float, or signed / odd integer layouts
        return _float_to_unit(np.asarray(im), path)
    if mode in ("P", "PA"):
        # a palette maps indices to colours; a palette of grays is a gray image
        rgb = np.asarray(im.convert("RGBA"))[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return rgb[..., 0].astype(np.float64) / 255.0
        return rgb.astype(np.float64) / 255.0
    if mode in ("RGB", "RGBA", "RGBX"):
        rgb = np.asarray(im)[..., :3]  # alpha is dropped
        if raw_modes.startswith("LA"):  # a 16-bit gray + alpha PNG that Pillow made RGBA
            rgb = rgb[..., 0]
        return rgb.astype(np.float64) / 255.0
    try:  # CMYK (some JPEGs), YCbCr, LAB, HSV, premultiplied RGBa: Pillow knows the way to RGB
        rgb = np.asarray(im.convert("RGB"))
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot read {path} as an image (unsupported mode {mode!r}: {exc})"
                         ) from exc
    return rgb.astype(np.float64) / 255.0


def _decode(path: Path, page: int | None) -> np.ndarray:
    """One page of ``path`` as float64 (C, H, W) in [0, 1], C = 1 or 3."""
    im, raw_modes = open_image(path, page)
    try:
        array = _pixels(im, path, raw_modes)
    finally:
        im.close()
    return array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)


def _all_pages(path: Path) -> np.ndarray:
    """Every page of a stack as one channel each, (pages, H, W); a single page as it is."""
    pages = count_pages(path)
    if pages == 1:
        return _decode(path, None)
    stack = []
    for k in range(pages):
        array = _decode(path, k)
        if array.shape[0] != 1:
            raise ValueError(f"page {k} of {path} is in colour; a stack read with page='all' "
                             "must hold one gray page per channel (one per modality)")
        if stack and array.shape != stack[0].shape:
            raise ValueError(f"page {k} of {path} is {array.shape[2]}x{array.shape[1]} pixels "
                             f"but page 0 is {stack[0].shape[2]}x{stack[0].shape[1]}: the pages "
                             "of a stack of modalities must have one size")
        stack.append(array)
    return np.concatenate(stack)


def read_image(
    path: str | os.PathLike, channels: int | None = None, *, page: int | str | None = None
) -> np.ndarray:
    """Read one image file as float32 (C, H, W) in [0, 1], at the true range of its bit depth.

    PNG, TIFF, JPEG and whatever else Pillow opens. The value rules (see the module
    docstring): 1-bit -> {0, 1}; 8-bit -> /255; 16-bit gray -> /65535; float or 32-bit integer
    -> kept if in [0, 1], otherwise min-max normalised per image (per page for a stack).
    Alpha channels are dropped; palette images become gray if their palette is gray, RGB
    otherwise. An EXIF orientation tag is ignored (pixels as stored), so an image and its mask
    stay aligned.

    Args:
        path: the image file.
        channels: None keeps the file's channels (1 for gray, 3 for colour, the number of
            pages with ``page="all"``); 1 converts colour to gray with the luma weights
            0.299 R + 0.587 G + 0.114 B (in float, so nothing is rounded or clipped); 3 repeats
            a gray image into three channels. Any other count C (2, 4, ...), and any count
            with ``page="all"``, converts nothing: the file must hold exactly C channels.
        page: for a multi-page TIFF (a stack), the page to read; None requires a single page;
            ``"all"`` reads every page as one channel, page k = channel k (a stack of
            modalities: every page gray and of one size).

    Returns:
        float32 (C, H, W) with values in [0, 1].

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``path`` is a folder, the file is not a readable image, it holds several
            pages and ``page`` is None, it has NaN or infinite pixels, or it does not hold the
            ``channels`` asked for (the message says how many it holds).
    """
    if channels is not None and (not is_int(channels) or channels < 1):
        raise ValueError(f"channels must be None (keep the file's) or a number of channels "
                         f"(1 converts colour to gray, 3 gray to RGB), got {channels!r}")
    path = check_file(path)
    array = _all_pages(path) if page == "all" else _decode(path, page)
    held, convert = array.shape[0], page != "all"
    if convert and channels == 1 and held == 3:
        array = np.tensordot(_LUMA, array, axes=1)[None]
    elif convert and channels == 3 and held == 1:
        array = np.repeat(array, 3, axis=0)
    elif channels is not None and channels != held:
        raise ValueError(
            f"{path} holds {held} channel(s) but channels={channels} were asked for (a net "
            f"with {channels} input channels): give a TIFF of {channels} gray pages, one per "
            "modality, read with page='all', or one file per modality")
    # luma weights sum to 1, but rounding may step a hair outside [0, 1]
    return np.ascontiguousarray(np.clip(array, 0.0, 1.0), dtype=np.float32)


def normalize_intensity(image: np.ndarray, mode: str = "minmax") -> np.ndarray:
    """Per-image intensity normalisation: float32 of the input's shape.

    Why: the same tissue imaged on two scanners, or saved at 8 and at 16 bits (a 12-bit camera
    fills only 1/16 of the 16-bit range), gives images whose gray levels differ by a scale and
    an offset. A net trained on one kind then sees the other as out of distribution.
    Normalising every image on its own removes the scale and offset before the net sees them.

    Modes (statistics over the whole image, all channels together so that colours keep their
    balance, except in ``"channel_minmax"``):

    * ``"minmax"``: ``(x - min) / (max - min)``, in [0, 1] (the course's convention); a
      constant image becomes zeros, not NaN;
    * ``"zscore"``: ``(x - mean) / std``, mean 0 and standard deviation 1, *not* in [0, 1];
      one hot pixel moves it less than it moves minmax (nnU-Net uses it for microscopy and
      MRI); a constant image becomes zeros;
    * ``"none"``: the image unchanged (as float32);
    * ``"channel_minmax"``: ``"minmax"`` for each channel of a (C, H, W) image on its own, for
      channels that are different *modalities* (their own units and ranges, where one
      channel's maximum says nothing about another's); an (H, W) image as ``"minmax"``.

    Args:
        image: array of any shape, typically (H, W) or (C, H, W); finite values.
        mode: ``"minmax"``, ``"zscore"``, ``"none"`` or ``"channel_minmax"``.
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"mode must be 'minmax', 'zscore', 'none' or 'channel_minmax', got "
                         f"{mode!r}")
    if hasattr(image, "detach"):  # a torch tensor
        image = image.detach().cpu().numpy()
    array = np.asarray(image, dtype=np.float64)
    if mode == "none":
        return array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError("image has NaN or infinite values; normalisation needs finite values")
    if array.size == 0:
        return array.astype(np.float32)
    if mode == "channel_minmax" and array.ndim == 3:
        return np.stack([normalize_intensity(channel, "minmax") for channel in array])
    if mode in ("minmax", "channel_minmax"):
        lo, hi = array.min(), array.max()
        out = np.zeros_like(array) if hi == lo else (array - lo) / (hi - lo)
    else:
        std = array.std()
        out = np.zeros_like(array) if std == 0 else (array - array.mean()) / std
    return out.astype(np.float32)


def prepare_image(image: np.ndarray, mode: str | None) -> np.ndarray:
    """The image as a net trained with normalisation ``mode`` saw its training images.

    The one step between :func:`read_image` and the net, for every path: ``train`` applies it
    to the images it trains on, its held-out report to the images it scores, ``predict`` to
    the image it segments; ``mode`` is what the checkpoint stores (``train --data folder``:
    ``"minmax"``; synthetic-em and isbi2012: ``"none"``, the reader's values).

    Args:
        image: float array (H, W) or (C, H, W) as :func:`read_image` returns it, finite.
        mode: one of :data:`NORMALIZATIONS` (see :func:`normalize_intensity`), or None for a
            checkpoint that does not say (written before the name was stored): the reader's
            values, unchanged.

    Returns:
        float32 array of ``image``'s shape.
    """
    if mode is not None and mode not in NORMALIZATIONS:
        raise ValueError(f"the checkpoint asks for the intensity normalisation {mode!r}, which "
                         "this version of unet_course does not know (it knows "
                         f"{', '.join(NORMALIZATIONS)}); update unet_course or train again")
    return normalize_intensity(image, "none" if mode is None else mode)


def bit_depth(path: str | os.PathLike) -> int:
    """Bits per value of an image file as :func:`read_image` decodes it: 1, 8, 16 or 32.

    32 stands for float and 32-bit integer images. A 16-bit colour image counts as 16 though
    Pillow keeps 8 bits of it (see the module docstring).
    """
    path = check_file(path)
    im, raw_modes = open_image(path, None)
    try:
        mode = im.mode
        if mode == "1":
            return 1
        if mode in SIXTEEN_BIT or ";16" in raw_modes:
            return 16
        if mode == "I":  # a 16-bit PNG in older Pillow, else a 32-bit integer image
            return 16 if im.format == "PNG" or bits_per_sample(im) == 16 else 32
        return 32 if mode == "F" or mode.startswith("I;") else 8
    finally:
        im.close()


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------


def _probability_maps(prob: np.ndarray) -> np.ndarray:
    """``prob`` checked: a float array (H, W) or (C, H, W), finite, in [0, 1]."""
    if hasattr(prob, "detach"):
        prob = prob.detach().cpu().numpy()
    array = np.asarray(prob)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (2, 3):
        raise ValueError(f"prob must be one map (H, W) or one per class (C, H, W), got shape "
                         f"{array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"prob must be a float array of probabilities, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ValueError("prob has NaN or infinite values")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(
            f"prob must lie in [0, 1], got values in [{array.min():.4g}, {array.max():.4g}]; "
            "apply a softmax (or sigmoid) to the net's logits first"
        )
    return array


def write_probability(path: str | os.PathLike, prob: np.ndarray) -> Path:
    """Write a probability map (H, W), or one map per class (C, H, W), so it reads back exactly.

    ``.png``: one map only, a 16-bit gray PNG holding ``round(p * 65535)`` (error <= 0.5 / 65535;
    viewers show it as a gray image and :func:`read_image` reads it back as p). ``.tif`` /
    ``.tiff``: float32 p itself (exact); (C, H, W) maps become a C-page TIFF stack, page k the
    probability of class k (read page k back with ``read_image(path, page=k)``). A PNG cannot
    hold floats, nor several pages, and 8 bits would round away the probabilities near the
    threshold.

    Args:
        path: the file to write; its folder must exist.
        prob: float (H, W) or (C, H, W), finite, in [0, 1]; a (1, H, W) array is taken as
            (H, W).

    Returns:
        The path written.
    """
    from PIL import Image

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; pass a file name ending in .png, .tif or .tiff")
    suffix = path.suffix.lower()
    if suffix not in (".png", ".tif", ".tiff"):
        raise ValueError(
            f"cannot write a probability map to {path}: the extension must be .png (16-bit) or "
            f".tif / .tiff (float32), got {path.suffix or 'none'!r}"
        )
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: the folder {path.parent} does not exist")
    array = _probability_maps(prob)
    if suffix == ".png" and array.ndim == 3:
        raise ValueError(f"a PNG holds one map (H, W), but prob holds {array.shape[0]} (shape "
                         f"{array.shape}); write them to a .tif, one float32 page per class")
    if suffix == ".png":
        Image.fromarray(np.round(array * 65535.0).astype(np.uint16)).save(path)
    elif array.ndim == 2:
        Image.fromarray(array.astype(np.float32)).save(path)
    else:
        pages = [Image.fromarray(np.ascontiguousarray(m, dtype=np.float32)) for m in array]
        pages[0].save(path, save_all=True, append_images=pages[1:])
    return path

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
differences between scanners and bit depths.

Masks come back as their raw integer label values (:func:`read_mask`), and
:func:`mask_from_labels` turns them into the course's targets: an int64 class mask (H, W) and,
for instance labels, int32 instance ids (H, W).

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

__all__ = [
    "MAX_CLASSES",
    "guess_mask_kind",
    "mask_from_labels",
    "normalize_intensity",
    "read_image",
    "read_mask",
    "write_probability",
]

#: the most classes a ``"classes"`` mask may have (indices 0 .. MAX_CLASSES - 1)
MAX_CLASSES = 32

_KINDS = ("auto", "binary", "classes", "instances")
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, what Pillow's convert("L") uses
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


# ----------------------------------------------------------------------------------------------
# opening a file
# ----------------------------------------------------------------------------------------------


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder, not an image file: pass one file (for a folder of images and "
            "masks use unet_course.folders.ImageFolderDataset)"
        )
    if not path.exists():
        raise FileNotFoundError(f"no image at {path}: the file does not exist")
    return path


def _open(path: Path, page: int | None):
    """Open ``path`` with Pillow and decode it.

    Returns the loaded image (the caller closes it) and the decoder's raw modes, e.g.
    ``'RGB;16B'``: they tell a file's true bit depth where Pillow's mode does not (a 16-bit RGB
    PNG has mode "RGB"), and Pillow forgets them once the image is loaded.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read {path} as an image ({exc})") from exc
    try:
        frames = int(getattr(im, "n_frames", 1))
        if page is None and frames > 1:
            raise ValueError(
                f"{path} holds {frames} pages (a stack), but one image was expected: pass "
                f"page=0 .. {frames - 1} to read one of them, or split the stack into files"
            )
        if page is not None:
            if isinstance(page, bool) or not isinstance(page, (int, np.integer)):
                raise TypeError(f"page must be an int, got {type(page).__name__}")
            if not 0 <= page < frames:
                raise ValueError(f"{path} has {frames} page(s), so page must be in "
                                 f"0 .. {frames - 1}, got {page}")
            im.seek(page)
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


def _bits_per_sample(im) -> int | None:
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return None
    bits = tags.get(258)  # TIFF BitsPerSample
    if isinstance(bits, (tuple, list)):
        bits = bits[0] if bits else None
    return int(bits) if bits is not None else None


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
    if mode in _SIXTEEN_BIT:
        return np.asarray(im).astype(np.float64) / 65535.0
    if mode == "I":
        array = np.asarray(im)
        # a 16-bit PNG opens as "I" in older Pillow; a TIFF says its bit depth in a tag
        sixteen = im.format == "PNG" or _bits_per_sample(im) == 16
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


def read_image(
    path: str | os.PathLike, channels: int | None = None, *, page: int | None = None
) -> np.ndarray:
    """Read one image file as float32 (C, H, W) in [0, 1], at the true range of its bit depth.

    PNG, TIFF (one page), JPEG and whatever else Pillow opens. The value rules (see the module
    docstring): 1-bit -> {0, 1}; 8-bit -> /255; 16-bit gray -> /65535; float or 32-bit integer
    -> kept if in [0, 1], otherwise min-max normalised per image. Alpha channels are dropped;
    palette images become gray if their palette is gray, RGB otherwise. An EXIF orientation
    tag is ignored (pixels as stored), so an image and its mask stay aligned.

    Args:
        path: the image file.
        channels: None keeps the file's channels (1 for gray, 3 for colour); 1 converts colour
            to gray with the luma weights 0.299 R + 0.587 G + 0.114 B (in float, so nothing
            is rounded or clipped); 3 repeats a gray image into three channels.
        page: for a multi-page TIFF (a stack), the page to read; None requires a single page.

    Returns:
        float32 (C, H, W) with values in [0, 1], C = 1 or 3.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``path`` is a folder, the file is not a readable image, it holds several
            pages and ``page`` is None, or it has NaN or infinite pixels.
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None (keep the file's), 1 (gray) or 3 (RGB), "
                         f"got {channels!r}")
    path = _check_file(path)
    im, raw_modes = _open(path, page)
    try:
        array = _pixels(im, path, raw_modes)
    finally:
        im.close()
    if array.ndim == 2:
        array = array[None]
    else:
        array = np.moveaxis(array, -1, 0)
    if channels == 1 and array.shape[0] == 3:
        array = np.tensordot(_LUMA, array, axes=1)[None]
    elif channels == 3 and array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    # luma weights sum to 1, but rounding may step a hair outside [0, 1]
    return np.ascontiguousarray(np.clip(array, 0.0, 1.0), dtype=np.float32)


def normalize_intensity(image: np.ndarray, mode: str = "minmax") -> np.ndarray:
    """Per-image intensity normalisation: float32 of the input's shape.

    Why: the same tissue imaged on two scanners, or saved at 8 and at 16 bits (a 12-bit camera
    fills only 1/16 of the 16-bit range), gives images whose gray levels differ by a scale and
    an offset. A net trained on one kind then sees the other as out of distribution.
    Normalising every image on its own removes the scale and offset before the net sees them.

    Modes (statistics over the whole image, all channels together, so colours keep their
    balance):

    * ``"minmax"``: ``(x - min) / (max - min)``, in [0, 1] (the course's convention); a
      constant image becomes zeros, not NaN;
    * ``"zscore"``: ``(x - mean) / std``, mean 0 and standard deviation 1, *not* in [0, 1];
      one hot pixel moves it less than it moves minmax (nnU-Net uses it for microscopy and
      MRI); a constant image becomes zeros;
    * ``"none"``: the image unchanged (as float32).

    Args:
        image: array of any shape, typically (H, W) or (C, H, W); finite values.
        mode: ``"minmax"``, ``"zscore"`` or ``"none"``.
    """
    if mode not in ("minmax", "zscore", "none"):
        raise ValueError(f"mode must be 'minmax', 'zscore' or 'none', got {mode!r}")
    if hasattr(image, "detach"):  # a torch tensor
        image = image.detach().cpu().numpy()
    array = np.asarray(image, dtype=np.float64)
    if mode == "none":
        return array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError("image has NaN or infinite values; normalisation needs finite values")
    if array.size == 0:
        return array.astype(np.float32)
    if mode == "minmax":
        lo, hi = array.min(), array.max()
        out = np.zeros_like(array) if hi == lo else (array - lo) / (hi - lo)
    else:
        std = array.std()
        out = np.zeros_like(array) if std == 0 else (array - array.mean()) / std
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# masks
# ----------------------------------------------------------------------------------------------


def read_mask(path: str | os.PathLike, *, page: int | None = None) -> np.ndarray:
    """Read a label image as its raw integer values: (H, W), no rescaling.

    The dtype tells the file's depth, which :func:`mask_from_labels` uses: uint8 for 1-bit
    (0/1), 8-bit gray and palette images (the palette *indices*, as in Pascal VOC style
    masks), uint16 for 16-bit, int32 for 32-bit integer TIFFs, int64 for float TIFFs whose
    values are all whole numbers >= 0 (instance labels saved as float). An RGB(A) mask is
    accepted if its three colour channels are equal (a gray mask saved as colour).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a folder, not an image, colour-coded (channels differ), 16-bit colour
            (Pillow would drop the low byte of every id), or float with non-whole values.
    """
    path = _check_file(path)
    im, raw_modes = _open(path, page)
    try:
        mode = im.mode
        if im.format == "JPEG":
            raise ValueError(
                f"{path} is a JPEG: its lossy compression changes label values near every edge, "
                "so it cannot hold a mask. Save masks as PNG or TIFF"
            )
        if mode in ("RGB", "RGBA", "RGBX", "LA", "PA") and ";16" in raw_modes:
            raise ValueError(
                f"{path} is a 16-bit colour (or gray + alpha) image: Pillow reads it with 8 bits "
                "per channel and would lose label ids. Save the mask as a single-channel 16-bit "
                "PNG or TIFF"
            )
        if mode in _SIXTEEN_BIT:
            return np.asarray(im).astype(np.uint16)  # native byte order (I;16B is big-endian)
        if mode == "1":
            return np.asarray(im).astype(np.uint8)
        if mode in ("L", "P"):
            return np.asarray(im).copy()
        if mode in ("LA", "PA"):
            return np.asarray(im)[..., 0].copy()
        if mode == "I" or mode.startswith("I;"):
            raw = np.asarray(im).astype(np.int32)
            if im.format == "PNG" and raw.size and raw.min() >= 0 and raw.max() <= 65535:
                return raw.astype(np.uint16)  # older Pillow opens 16-bit PNGs as "I"
            return raw
        if mode == "F":
            raw = np.asarray(im).astype(np.float64)
            if not (np.all(np.isfinite(raw)) and np.all(raw == np.round(raw)) and
                    (raw.size == 0 or raw.min() >= 0)):
                raise ValueError(
                    f"{path} is a float image whose values are not all whole numbers >= 0, so it "
                    "is not a label mask; masks hold class indices or instance ids"
                )
            return raw.astype(np.int64)
        if mode in ("RGB", "RGBA", "RGBX"):
            rgb = np.asarray(im)[..., :3]
            if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0],
                                                                            rgb[..., 2]):
                return rgb[..., 0].copy()
            raise ValueError(
                f"{path} is a colour mask (its R, G and B channels differ): colour-coded labels "
                "are not supported. Save one channel of class indices (0, 1, 2, ...) or "
                "instance ids (16-bit PNG or TIFF), 0 = background"
            )
        raise ValueError(f"{path} has image mode {mode!r}, which is not a label mask; save the "
                         "mask as an 8- or 16-bit single-channel PNG or TIFF")
    finally:
        im.close()


def _as_raw_labels(raw: object) -> np.ndarray:
    if hasattr(raw, "detach"):
        raw = raw.detach().cpu().numpy()
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise ValueError(f"a mask must be one image (H, W), got shape {raw.shape}")
    if raw.dtype != bool and not np.issubdtype(raw.dtype, np.integer):
        raise TypeError(
            f"mask labels must be an integer (or boolean) array, got dtype {raw.dtype}; read "
            "files with read_mask, which returns the raw integer values"
        )
    if raw.dtype != bool and raw.size and raw.min() < 0:
        raise ValueError(f"mask labels must be >= 0, got min {raw.min()}")
    return raw


def _is_binary(values: np.ndarray) -> bool:
    vals = set(values.tolist())
    return vals <= {0, 1} or vals <= {0, 255} or vals <= {0, 65535}


def _kind_of(values: np.ndarray, itemsize: int) -> str:
    """The ``"auto"`` rule on the distinct label values and the bytes per label of the file."""
    if _is_binary(values):
        return "binary"
    if itemsize >= 2:
        return "instances"
    top = int(values.max())
    if top < MAX_CLASSES:
        return "classes"
    if len(values) > MAX_CLASSES:
        return "instances"
    shown = ", ".join(str(v) for v in values[:8].tolist()) + (", ..." if len(values) > 8 else "")
    raise ValueError(
        f"cannot tell what kind of 8-bit mask this is: its values ({shown}) are neither "
        f"binary (0/1 or 0/255), nor class indices 0..{MAX_CLASSES - 1}, nor more than "
        f"{MAX_CLASSES} instance ids. Pass kind='binary', 'classes' or 'instances' "
        "(map the values to class indices 0, 1, 2, ... first for 'classes')"
    )


def guess_mask_kind(raw: np.ndarray | list[np.ndarray] | tuple[np.ndarray, ...]) -> str:
    """What ``mask_from_labels(raw, kind="auto")`` takes ``raw`` to be.

    The rule, on the distinct values and the integer width of the labels (for a list of masks:
    the union of their values and the widest dtype, so a whole data set gets one kind):

    1. values within {0, 1}, {0, 255} or {0, 65535} (or a bool array): ``"binary"``;
    2. otherwise, labels wider than 8 bits (uint16, int32, int64: what 16-bit files read as):
       ``"instances"``;
    3. otherwise (8-bit), largest value < MAX_CLASSES (32): ``"classes"``;
    4. otherwise, more than 32 distinct values: ``"instances"``;
    5. otherwise (8-bit, few values but some >= 32, e.g. {0, 128, 255}): ambiguous, ValueError.

    So an 8-bit file with ids 0..5 counts as six classes, and an int64 array made in NumPy as
    instances: pass ``kind=`` when that is not what you mean.
    """
    arrays = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    if not arrays:
        raise ValueError("no masks given")
    checked = [_as_raw_labels(a) for a in arrays]
    values = np.unique(np.concatenate([np.unique(a).astype(np.int64) for a in checked]))
    if values.size == 0:
        return "binary"
    itemsize = max(1 if a.dtype == bool else a.dtype.itemsize for a in checked)
    return _kind_of(values, itemsize)


def _relabel(ids: np.ndarray) -> np.ndarray:
    """Ids -> 1..k in increasing order, 0 stays 0; int32. np.unique: ids may be huge."""
    values, inverse = np.unique(ids, return_inverse=True)
    rank = np.arange(len(values), dtype=np.int32) + (0 if values[0] == 0 else 1)
    return rank[inverse.reshape(ids.shape)]


def mask_from_labels(raw: np.ndarray, kind: str = "auto"):
    """Turn raw label values (from :func:`read_mask`) into the course's training targets.

    Kinds:

    * ``"binary"``: values {0, 255}, {0, 1} (or {0, 65535}); mask = 1 where the label is
      non-zero (cell), 0 elsewhere. No instances.
    * ``"classes"``: class indices 0 .. K-1 with K <= MAX_CLASSES (32); mask = the indices.
      No instances.
    * ``"instances"``: one id per object, 0 = background (16-bit files, or many ids); mask =
      1 on the objects *except* where two different objects touch: those border pixels become
      background (:func:`unet_course.weights.separated_mask`), so the binary target still
      separates touching cells; instances = the ids relabelled 1..k in increasing order.
    * ``"auto"``: decided by :func:`guess_mask_kind` (dtype and distinct values).

    Args:
        raw: integer or bool (H, W), values >= 0.
        kind: ``"auto"``, ``"binary"``, ``"classes"`` or ``"instances"``.

    Returns:
        ``(mask, instances, kind)``: mask int64 (H, W); instances int32 (H, W) for
        ``"instances"``, else None; kind the kind used (never ``"auto"``).
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, _KINDS))}, got {kind!r}")
    raw = _as_raw_labels(raw)
    if kind == "auto":
        kind = guess_mask_kind(raw)
    values = np.unique(raw).astype(np.int64) if raw.size else np.zeros(0, np.int64)
    if kind == "binary":
        if values.size and not _is_binary(values):
            raise ValueError(
                f"a binary mask holds 0 and 1, or 0 and 255, but this one has the values "
                f"{values[:8].tolist()}{' ...' if len(values) > 8 else ''}; pass "
                "kind='classes' or kind='instances' if that is what it holds"
            )
        return (raw > 0).astype(np.int64), None, kind
    if kind == "classes":
        if values.size and values.max() >= MAX_CLASSES:
            raise ValueError(
                f"class masks hold indices 0..{MAX_CLASSES - 1}, but this one has the value "
                f"{values.max()}; map the labels to 0, 1, 2, ... (0 = background), or pass "
                "kind='binary' or kind='instances' if that is what it holds"
            )
        return raw.astype(np.int64), None, kind
    # instances
    if raw.size == 0:
        return np.zeros(raw.shape, np.int64), np.zeros(raw.shape, np.int32), kind
    ids = raw.astype(np.int64)
    instances = _relabel(ids)
    if instances.max() <= 1:
        # a single object cannot touch another one (and separated_mask would take a single id
        # spread over several regions for a mistaken binary mask and warn)
        mask = (instances > 0).astype(np.int64)
    else:
        from .weights import separated_mask

        mask = separated_mask(instances)
    return mask, instances, kind


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------


def write_probability(path: str | os.PathLike, prob: np.ndarray) -> Path:
    """Write a probability map (H, W) in [0, 1] so that it reads back (almost) exactly.

    ``.png``: a 16-bit gray PNG holding ``round(p * 65535)`` (error <= 0.5 / 65535; viewers show
    it as a gray image and :func:`read_image` reads it back as p). ``.tif`` / ``.tiff``: a
    float32 TIFF holding p itself (exact). A PNG cannot hold floats, and 8 bits would round
    away the probabilities near the threshold.

    Args:
        path: the file to write; its folder must exist.
        prob: float (H, W), finite, in [0, 1]; a (1, H, W) array is taken as (H, W).

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
    if hasattr(prob, "detach"):
        prob = prob.detach().cpu().numpy()
    array = np.asarray(prob)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"prob must be one map (H, W), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"prob must be a float array of probabilities, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ValueError("prob has NaN or infinite values")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(
            f"prob must lie in [0, 1], got values in [{array.min():.4g}, {array.max():.4g}]; "
            "apply a softmax (or sigmoid) to the net's logits first"
        )
    if suffix == ".png":
        Image.fromarray(np.round(array * 65535.0).astype(np.uint16)).save(path)
    else:
        Image.fromarray(array.astype(np.float32)).save(path)
    return path

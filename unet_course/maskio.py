"""Reading label masks from disk and turning them into training targets.

:func:`read_mask` returns a file's raw integer label values (no rescaling: an id is an id);
:func:`guess_mask_kind` tells from those values what the mask holds (binary, class indices or
instance ids); :func:`mask_from_labels` turns them into the course's targets: an int64 class
mask (H, W) and, for instance labels, int32 instance ids (H, W). Every name here is also
importable from :mod:`unet_course.imageio`, the module that reads the images.

Pillow has no 16-bit colour modes: a 16-bit-per-channel RGB(A) file opens as 8-bit ``"RGB"``
keeping only the high byte of each value, which would merge label ids, so :func:`read_mask`
refuses such files (the decoder's raw mode, e.g. ``'RGB;16B'``, tells them apart).
"""

from __future__ import annotations

import os

import numpy as np

from ._imagefile import SIXTEEN_BIT, check_file, open_image
from .postprocess import relabel_sequential
from .validation import label_image
from .weights import separated_mask

__all__ = ["MAX_CLASSES", "guess_mask_kind", "mask_from_labels", "read_mask"]

#: the most classes a ``"classes"`` mask may have (indices 0 .. MAX_CLASSES - 1)
MAX_CLASSES = 32

_KINDS = ("auto", "binary", "classes", "instances")
_COLOUR = ("RGB", "RGBA", "RGBX")


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
    path = check_file(path)
    im, raw_modes = open_image(path, page)
    try:
        _refuse_lossy(im, path, raw_modes)
        return _raw_labels(im, path)
    finally:
        im.close()


def _refuse_lossy(im, path, raw_modes: str) -> None:
    """Refuse the files whose label values did not survive: JPEG, and 16-bit colour."""
    if im.format == "JPEG":
        raise ValueError(
            f"{path} is a JPEG: its lossy compression changes label values near every edge, "
            "so it cannot hold a mask. Save masks as PNG or TIFF"
        )
    if im.mode in (*_COLOUR, "LA", "PA") and ";16" in raw_modes:
        raise ValueError(
            f"{path} is a 16-bit colour (or gray + alpha) image: Pillow reads it with 8 bits "
            "per channel and would lose label ids. Save the mask as a single-channel 16-bit "
            "PNG or TIFF"
        )


def _raw_labels(im, path) -> np.ndarray:
    """The loaded label image's values, with a dtype as wide as the file's samples."""
    mode = im.mode
    if mode in SIXTEEN_BIT:
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
    if mode in _COLOUR:
        rgb = np.asarray(im)[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return rgb[..., 0].copy()
        raise ValueError(
            f"{path} is a colour mask (its R, G and B channels differ): colour-coded labels "
            "are not supported. Save one channel of class indices (0, 1, 2, ...) or "
            "instance ids (16-bit PNG or TIFF), 0 = background"
        )
    raise ValueError(f"{path} has image mode {mode!r}, which is not a label mask; save the "
                     "mask as an 8- or 16-bit single-channel PNG or TIFF")


def _as_raw_labels(raw: object) -> np.ndarray:
    raw = label_image(raw, "mask", "read files with read_mask, which returns the raw integer "
                      "values")
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
    # binary is offered only where it would work: 0 and one other value (mask_from_labels)
    binary = (f"--mask-kind binary if {values[1]} marks the objects, "
              if len(values) == 2 and values[0] == 0 else "")
    raise ValueError(
        f"cannot tell what kind of 8-bit mask this is: its values ({shown}) are neither "
        f"binary (0/1 or 0/255), nor class indices 0..{MAX_CLASSES - 1}, nor more than "
        f"{MAX_CLASSES} instance ids; say which with {binary}--mask-kind instances if each "
        "value is one object, or map the values to 0, 1, 2, ... and use --mask-kind classes "
        "(from Python: kind= of mask_from_labels, mask_kind= of ImageFolderDataset)"
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


def mask_from_labels(raw: np.ndarray, kind: str = "auto"):
    """Turn raw label values (from :func:`read_mask`) into the course's training targets.

    Kinds:

    * ``"binary"``: values {0, 255}, {0, 1} (or {0, 65535}), or, asked for by name, 0 and any
      one other value (e.g. 0/128); mask = 1 where the label is non-zero (cell), 0 elsewhere.
      No instances.
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
        # asked for by name, any single non-zero value is the foreground (0/128 masks exist);
        # two or more would merge classes or objects without a word
        if np.count_nonzero(values) > 1:
            raise ValueError(
                f"a binary mask holds 0 and one other value (0/1, 0/255, 0/128 ...), but this "
                f"one has the values {values[:8].tolist()}{' ...' if len(values) > 8 else ''}; "
                "use --mask-kind classes or --mask-kind instances if that is what it holds "
                "(from Python: kind= or mask_kind=)"
            )
        return (raw > 0).astype(np.int64), None, kind
    if kind == "classes":
        if values.size and values.max() >= MAX_CLASSES:
            raise ValueError(
                f"class masks hold indices 0..{MAX_CLASSES - 1}, but this one has the value "
                f"{values.max()}; map the labels to 0, 1, 2, ... (0 = background), or use "
                "--mask-kind binary or --mask-kind instances if that is what it holds (from "
                "Python: kind= or mask_kind=)"
            )
        return raw.astype(np.int64), None, kind
    return _instance_targets(raw) + (kind,)


def _instance_targets(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Instance ids -> (mask int64 with touching borders as background, ids 1..k int32)."""
    if raw.size == 0:
        return np.zeros(raw.shape, np.int64), np.zeros(raw.shape, np.int32)
    instances = relabel_sequential(raw.astype(np.int64))
    if instances.max() <= 1:
        # a single object cannot touch another one (and separated_mask would take a single id
        # spread over several regions for a mistaken binary mask and warn)
        return (instances > 0).astype(np.int64), instances
    return separated_mask(instances), instances

"""Your own data: a folder of images and a folder of masks, paired by file name.

``ImageFolderDataset("images/", "masks/")`` behaves like :class:`unet_course.data.ISBI2012`: a
sequence of ``(image, mask)`` pairs with ``.images`` and ``.masks``, ready for
:class:`unet_course.data.TileDataset`. Every file is read with :mod:`unet_course.imageio`, so
16-bit and float images keep their true range and masks may be binary, class indices or
instance ids. (Also importable as :mod:`unet_course.folders`.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..imageio import (
    guess_mask_kind,
    mask_from_labels,
    normalize_intensity,
    read_image,
    read_mask,
)
from .pairs import ImageMaskPairs

__all__ = ["IMAGE_SUFFIXES", "MASK_SUFFIXES", "MASK_TAGS", "ImageFolderDataset", "write_cell_folder"]

#: file extensions taken as images (case does not matter)
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
#: mask extensions: lossless formats only (JPEG would smear the label values)
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")
#: what may follow the image's stem in its mask's name: ``a.png`` -> ``a.png``, ``a_mask.png``...
MASK_TAGS = ("", "_mask", "_label", "_labels")


def _natural_key(name: str) -> list:
    """Sort ``img2`` before ``img10``: digit runs compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r"(\d+)", name) if part]


def _check_folder(folder: str | os.PathLike, what: str) -> Path:
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise FileNotFoundError(f"the {what} folder {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"the {what} folder {folder} is a file, not a folder")
    return folder


def _files(folder: Path) -> list[Path]:
    # hidden files include macOS's "._a.png" resource forks, which are not images
    return [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]


class ImageFolderDataset(ImageMaskPairs):
    """Images and their masks from two folders, paired by file stem.

    The image ``images_dir/a.png`` (any of :data:`IMAGE_SUFFIXES`) pairs with the mask in
    ``masks_dir`` named ``a`` plus one of :data:`MASK_TAGS` (``""``, ``"_mask"``, ``"_label"``,
    ``"_labels"``) plus one of :data:`MASK_SUFFIXES`: ``a.png``, ``a.tif``, ``a_mask.png``...
    ``masks_dir`` may be ``images_dir`` itself; then masks need a tag (``a_mask.png``) and
    files with a tag are not taken as images. Files in ``masks_dir`` without an image are
    ignored. Images may differ in size; each mask must have its image's size.

    Everything is read once, in ``__init__``. Item ``i`` is ``(self.images[i], self.masks[i])``.

    Args:
        images_dir, masks_dir: the two folders.
        channels: 1 (gray; colour converted with luma weights), 3 (RGB; gray repeated) or None
            (the files' own, which must then agree).
        mask_kind: ``"auto"``, ``"binary"``, ``"classes"`` or ``"instances"`` (see
            :func:`unet_course.imageio.mask_from_labels`). ``"auto"`` decides *once for the
            whole folder* from the union of all masks' values (so no two masks of one data set
            are read differently) by :func:`unet_course.imageio.guess_mask_kind`.
        normalize: per-image intensity normalisation after reading, ``"minmax"`` (default),
            ``"zscore"`` or ``"none"`` (see :func:`unet_course.imageio.normalize_intensity`).

    Attributes:
        images: list of float32 arrays; (H, W) when ``channels == 1``, like the (n, H, W) stack
            of ISBI2012, and (C, H, W) otherwise (TileDataset takes both).
        masks: list of int64 (H, W): 0 = background, 1 = cell (or class indices).
        instances: list of int32 (H, W) instance ids when the masks are instance labels, else
            None.
        num_classes: 2 for binary and instance masks; 1 + the largest index for class masks
            (at least 2).
        kind: the mask kind used.
        label_values: the distinct raw label values of all masks, sorted (int64), so a caller
            can say what ``"auto"`` decided from, e.g. 16-bit values 0..2 read as instance ids.
        names: the image file names (relative to ``images_dir``), in natural order.
        mask_paths: the mask file of each image.
    """

    def __init__(
        self,
        images_dir: str | os.PathLike,
        masks_dir: str | os.PathLike,
        channels: int | None = 1,
        mask_kind: str = "auto",
        normalize: str = "minmax",
    ):
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
        if mask_kind not in ("auto", "binary", "classes", "instances"):
            raise ValueError(f"mask_kind must be 'auto', 'binary', 'classes' or 'instances', "
                             f"got {mask_kind!r}")
        if normalize not in ("minmax", "zscore", "none"):
            raise ValueError(f"normalize must be 'minmax', 'zscore' or 'none', got {normalize!r}")
        self.images_dir = _check_folder(images_dir, "images")
        self.masks_dir = _check_folder(masks_dir, "masks")
        self.channels = channels
        image_paths, mask_paths = self._pair()
        self.names = [p.name for p in image_paths]
        self.mask_paths = mask_paths

        self.images = []
        raws = []
        for image_path, mask_path in zip(image_paths, mask_paths):
            image = normalize_intensity(read_image(image_path, channels), normalize)
            raw = read_mask(mask_path)
            if raw.shape != image.shape[1:]:
                raise ValueError(
                    f"the mask {mask_path} is {raw.shape[1]}x{raw.shape[0]} pixels but its image "
                    f"{image_path} is {image.shape[2]}x{image.shape[1]}: a mask must have its "
                    "image's size"
                )
            if channels is None and self.images and image.shape[0] != self.images[0].shape[0]:
                raise ValueError(
                    f"{image_path} has {image.shape[0]} channel(s) but {image_paths[0]} has "
                    f"{self.images[0].shape[0]}; pass channels=1 or channels=3"
                )
            self.images.append(image)
            raws.append(raw)
        if channels == 1:
            self.images = [im[0] for im in self.images]

        kind = guess_mask_kind(raws) if mask_kind == "auto" else mask_kind
        self.label_values = np.unique(np.concatenate(
            [np.unique(r).astype(np.int64) for r in raws])) if raws else np.zeros(0, np.int64)
        self.masks, instances = [], []
        for raw, mask_path in zip(raws, mask_paths):
            try:
                mask, ids, _ = mask_from_labels(raw, kind)
            except ValueError as exc:
                raise ValueError(f"{mask_path}: {exc}") from exc
            self.masks.append(mask)
            instances.append(ids)
        self.kind = kind
        self.instances = instances if kind == "instances" else None
        if kind == "classes":
            top = max(int(m.max()) for m in self.masks if m.size) if self.masks else 0
            self.num_classes = max(2, top + 1)
        else:
            self.num_classes = 2

    def _pair(self) -> tuple[list[Path], list[Path]]:
        same = self.images_dir.resolve() == self.masks_dir.resolve()
        tags = tuple(t for t in MASK_TAGS if t) if same else MASK_TAGS
        mask_files = {(p.stem, p.suffix.lower()): p for p in _files(self.masks_dir)}

        def tagged(stem: str) -> bool:
            return any(stem.endswith(t) for t in MASK_TAGS if t)

        image_paths = sorted(
            (p for p in _files(self.images_dir)
             if p.suffix.lower() in IMAGE_SUFFIXES and not (same and tagged(p.stem))),
            key=lambda p: _natural_key(p.name),
        )
        if not image_paths:
            raise ValueError(
                f"no images in {self.images_dir}: expected files ending in "
                f"{', '.join(IMAGE_SUFFIXES)}"
            )
        masks, missing = [], []
        for image_path in image_paths:
            stem = image_path.stem
            found = [mask_files[(stem + t, s)] for t in tags for s in MASK_SUFFIXES
                     if (stem + t, s) in mask_files]
            if len(found) > 1:
                raise ValueError(
                    f"the image {image_path} has {len(found)} possible masks "
                    f"({', '.join(p.name for p in found)}) in {self.masks_dir}; keep one"
                )
            if not found:
                lossy = [mask_files[(stem + t, s)] for t in tags for s in (".jpg", ".jpeg")
                         if (stem + t, s) in mask_files]
                if lossy:
                    raise ValueError(
                        f"the mask {lossy[0]} of {image_path} is a JPEG: lossy compression "
                        "changes label values near every edge. Save masks as PNG or TIFF"
                    )
                missing.append(image_path)
            masks.extend(found)
        if missing:
            shown = ", ".join(p.name for p in missing[:3]) + (" ..." if len(missing) > 3 else "")
            raise FileNotFoundError(
                f"{len(missing)} of {len(image_paths)} images in {self.images_dir} have no mask: "
                f"{shown}. {self._naming_advice(same, missing[0].stem)}"
            )
        return image_paths, masks

    def _naming_advice(self, same: bool, example: str) -> str:
        """How to name the masks so that they pair: in one shared folder only a tag tells them
        from the images, so the untagged name (the image's own) must not be suggested there."""
        if same:
            return (f"Masks in the images' folder need a tag after the image's name, e.g. "
                    f"{self.masks_dir / (example + '_mask.png')} (or {example}_label.png, "
                    f"{example}_labels.tif), or go in a folder of their own given as --masks")
        return (f"Put each mask in {self.masks_dir} under its image's name, e.g. "
                f"{self.masks_dir / (example + '.png')} (or {example}.tif, {example}_mask.png)")

    def __repr__(self) -> str:
        return (f"ImageFolderDataset({str(self.images_dir)!r}, {len(self)} images, "
                f"kind={self.kind!r}, num_classes={self.num_classes})")


def write_cell_folder(folder: str | os.PathLike, n: int = 8, size: int = 128,
                      seed: int = 1) -> Path:
    """Write ``n`` synthetic ``touching_cells`` images as a folder that this module reads.

    ``folder/images/cells_K.png``: 16-bit gray (the [0, 1] image times 40000, so the full
    16-bit range is not used, as with many cameras); ``folder/masks/cells_K.png``: 16-bit
    instance ids, 0 = background. Returns ``folder``. Lesson 09 and its tests use it to stand in
    for a microscope's export.
    """
    import numpy as np
    from PIL import Image

    from .synthetic import touching_cells

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    images, _, instances = touching_cells(n, size=size, seed=seed)
    for k in range(n):
        Image.fromarray((images[k] * 40000).astype(np.uint16)).save(folder / "images" / f"cells_{k}.png")
        Image.fromarray(instances[k].astype(np.uint16)).save(folder / "masks" / f"cells_{k}.png")
    return folder

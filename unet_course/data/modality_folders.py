"""Your own multi-modal data: one folder of images per modality, and one folder of masks.

The layout :class:`ModalityFolderDataset` reads (``python -m unet_course train --data
modalities --images images --masks masks``)::

    images/
        flair/   case1.png  case2.png ...
        t1/      case1.png  case2.png ...
        t2/      case1.png  case2.png ...
    masks/       case1.png  case2.png ...

Every modality folder holds the same image names (a name is the file's stem, so ``case1.png``
in one folder and ``case1.tif`` in another are the same image); image ``case1`` of the data
set is the stack of ``images/<modality>/case1.*`` over the modalities in *sorted* order of
their folder names (Python's string order: ``flair``, ``t1``, ``t2`` above), so channel k is
always the k-th name, whatever order the file system lists them in. The names are kept in
``data.modalities``, and ``train`` stores them in the checkpoint, so that ``predict`` stacks a
new image's files in the same order. Masks pair with the names as in
:class:`~unet_course.data.folders.ImageFolderDataset`.

:func:`read_modality_files` is the other end: the input of a multi-channel net from the files
a user gives ``predict`` (one stack of pages, or one file per modality).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..imageio import count_pages, normalize_intensity, read_image
from .folders import IMAGE_SUFFIXES, ImageFolderDataset, _check_folder, _files, _natural_key
from .pairs import ImageMaskPairs

__all__ = ["ModalityFolderDataset", "modality_names", "read_modality_files",
           "write_modality_folders"]


def modality_names(images_dir: str | os.PathLike) -> tuple[str, ...]:
    """The modality folders of ``images_dir``, sorted: the channel order of its images."""
    root = _check_folder(images_dir, "images")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p.name for p in _files(root) if p.suffix.lower() in IMAGE_SUFFIXES]
    if loose or not names:
        found = f"it holds images ({', '.join(sorted(loose)[:3])})" if loose else "it is empty"
        raise ValueError(f"{root} should hold one folder per modality ({root / 't1'}, "
                         f"{root / 't2'}, ...), each with the same image names, but {found}; "
                         "a single folder of images is read by --data folder")
    return tuple(names)


def _images_by_stem(folder: Path) -> dict[str, Path]:
    """The images of ``folder`` by file stem; two files of one stem are refused."""
    by_stem: dict[str, Path] = {}
    for path in _files(folder):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in by_stem:
            raise ValueError(f"{folder} holds two files for the image {path.stem!r} "
                             f"({by_stem[path.stem].name} and {path.name}); keep one")
        by_stem[path.stem] = path
    return by_stem


def _check_same_names(root: Path, files: dict[str, dict[str, Path]]) -> None:
    """FileNotFoundError naming what each modality folder lacks, unless all hold the same."""
    every = set().union(*(set(f) for f in files.values()))
    gaps = []
    for modality, by_stem in files.items():
        lacking = sorted(every - set(by_stem), key=_natural_key)
        if lacking:
            shown = ", ".join(lacking[:3]) + (f" and {len(lacking) - 3} more"
                                              if len(lacking) > 3 else "")
            gaps.append(f"{root / modality} lacks {shown}")
    if gaps:
        raise FileNotFoundError(f"every modality folder must hold the same image names, but "
                                f"{'; '.join(gaps)}: add those files or remove the images "
                                "that lack a modality")


class ModalityFolderDataset(ImageMaskPairs):
    """Multi-channel images stacked from one folder per modality, with masks of the same names.

    Args:
        images_dir: a folder holding one folder per modality (see the module docstring).
        masks_dir: the masks, named after the images (``case1.png``, ``case1_mask.png``...).
        mask_kind: as for :class:`~unet_course.data.folders.ImageFolderDataset`.
        normalize: ``"channel_minmax"`` (default: each modality of each image min-max scaled
            on its own, since modalities have their own units), or any mode of
            :func:`~unet_course.imageio.normalize_intensity`.

    Every modality image is read as one gray channel (colour converted with the luma weights)
    and must have its mask's size.

    Attributes:
        images: list of float32 (C, H, W), channel k = ``modalities[k]``.
        modalities: the modality folder names, sorted.
        masks, instances, num_classes, kind, label_values, names, mask_paths: as for
            :class:`~unet_course.data.folders.ImageFolderDataset` (``names`` are the files of
            the first modality).
    """

    def __init__(self, images_dir: str | os.PathLike, masks_dir: str | os.PathLike,
                 mask_kind: str = "auto", normalize: str = "channel_minmax"):
        root = _check_folder(images_dir, "images")
        self.modalities = modality_names(root)
        files = {m: _images_by_stem(root / m) for m in self.modalities}
        _check_same_names(root, files)
        normalize_intensity(np.zeros((1, 1)), normalize)  # an unknown mode fails before reading
        # the first modality's folder pairs the names with their masks, as a folder of one
        first = ImageFolderDataset(root / self.modalities[0], masks_dir, channels=1,
                                   mask_kind=mask_kind, normalize="none")
        self.images = []
        for name, image in zip(first.names, first.images):
            channels = [image]
            for modality in self.modalities[1:]:
                path = files[modality][Path(name).stem]
                other = read_image(path, channels=1)[0]
                if other.shape != image.shape:
                    raise ValueError(
                        f"{path} is {other.shape[1]}x{other.shape[0]} pixels but "
                        f"{root / self.modalities[0] / name} is {image.shape[1]}x"
                        f"{image.shape[0]}: the modalities of one image must be registered, "
                        "pixel for pixel, at one size")
                channels.append(other)
            self.images.append(normalize_intensity(np.stack(channels), normalize))
        for key in ("masks", "instances", "num_classes", "kind", "label_values", "names",
                    "mask_paths"):
            setattr(self, key, getattr(first, key))

    def __repr__(self) -> str:
        return (f"ModalityFolderDataset({len(self)} images, modalities "
                f"{', '.join(self.modalities)}, kind={self.kind!r})")


def _folder_clash(paths: Sequence[Path], modalities: Sequence[str]) -> str | None:
    """A message if a file sits in a folder named after another modality than its place."""
    for k, path in enumerate(paths):
        folder = path.resolve().parent.name
        if folder in modalities and folder != modalities[k]:
            order = ", ".join(modalities)
            return (f"{path} lies in a folder named {folder!r} but is given as channel {k}, "
                    f"which the net reads as {modalities[k]!r}: give one file per modality "
                    f"in the order {order}")
    return None


def read_modality_files(paths: Sequence[str | os.PathLike], channels: int,
                        modalities: Sequence[str] | None = None) -> np.ndarray:
    """The input (channels, H, W) float32 of a net with ``channels`` input channels.

    * One file holding several pages (a TIFF stack): page k is channel k; it must hold exactly
      ``channels`` gray pages.
    * One single image: its own channels must be ``channels``, except for a net of 1 or 3
      channels that stores no ``modalities``, which gets what
      :func:`~unet_course.imageio.read_image` makes of any image (colour to gray, gray
      repeated to RGB), as ``predict`` always did.
    * Several files: one per channel, in order (the order of ``modalities`` when the
      checkpoint stores them), each read as one gray channel, all of one size. A file that
      lies in a folder named after a modality must be given in that modality's place.

    Raises ValueError, in one line, when the files do not make exactly ``channels`` channels.
    """
    paths = [Path(p) for p in paths]
    names = f" ({', '.join(modalities)})" if modalities else ""
    if len(paths) == 1:
        path = paths[0]
        if count_pages(path) > 1:
            return read_image(path, channels, page="all")
        convert = modalities is None and channels in (1, 3)
        image = read_image(path, channels if convert else None)
        if image.shape[0] != channels:
            raise ValueError(f"{path} holds {image.shape[0]} channel(s) but the net has "
                             f"{channels} input channels{names}: give a TIFF of {channels} "
                             "gray pages, or one file per channel")
        return image
    if len(paths) != channels:
        raise ValueError(f"{len(paths)} image files given but the net has {channels} input "
                         f"channel(s){names}: give one file per channel, in that order, or one "
                         f"TIFF of {channels} pages")
    clash = _folder_clash(paths, modalities) if modalities else None
    if clash:
        raise ValueError(clash)
    stack = [read_image(p, channels=1)[0] for p in paths]
    for path, image in zip(paths[1:], stack[1:]):
        if image.shape != stack[0].shape:
            raise ValueError(f"{path} is {image.shape[1]}x{image.shape[0]} pixels but "
                             f"{paths[0]} is {stack[0].shape[1]}x{stack[0].shape[0]}: the "
                             "files of one image must have one size")
    return np.stack(stack)


def write_modality_folders(folder: str | os.PathLike, n: int = 6, size: int = 96,
                           seed: int = 0) -> Path:
    """Write ``n`` scenes of :func:`~unet_course.data.multimodal.multimodal_cells` as folders.

    ``folder/images/<modality>/scene_K.png`` (8-bit gray, one folder per channel of
    :data:`~unet_course.data.multimodal.MODALITIES`) and ``folder/masks/scene_K.png`` (0/255).
    Returns ``folder``.
    """
    from PIL import Image

    from .multimodal import MODALITIES, multimodal_cells

    folder = Path(folder)
    images, masks = multimodal_cells(n, size=size, seed=seed)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for c, modality in enumerate(MODALITIES):
        (folder / "images" / modality).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            pixels = np.round(images[k, c] * 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / "images" / modality / f"scene_{k}.png")
    for k in range(n):
        Image.fromarray((masks[k] * 255).astype(np.uint8)).save(folder / "masks" / f"scene_{k}.png")
    return folder

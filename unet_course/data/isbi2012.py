"""The ISBI 2012 EM segmentation challenge's 30 training slices, read from disk or downloaded.

Every file is read with :func:`unet_course.imageio.read_image`, the reader the CLI and the
folder data set use too, so a slice means the same numbers wherever it comes from.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._manifests import ISBI2012_BASE_URL, ISBI2012_FILES, ISBI2012_MANIFEST_CSV
from ..imageio import count_pages, read_image
from .download import ManifestEntry, data_dir, download_files, file_matches, read_manifest
from .pairs import ImageMaskPairs

__all__ = ["ISBI2012"]

#: one slice: a file and, inside a multi-page TIFF, the page (None for a one-image file)
Slice = tuple[Path, int | None]


class ISBI2012(ImageMaskPairs):
    """The 30 training slices of the ISBI 2012 EM segmentation challenge, with their labels.

    ``ISBI2012(root)`` reads, from the folder ``root``, either the official stacks
    ``train-volume.tif`` and ``train-labels.tif`` (30-page TIFFs), or per-slice PNGs
    ``image/N.png`` and ``label/N.png`` (N = 0..29). With ``download=True`` missing PNGs are
    fetched from a pinned public mirror (the zhixuhao/unet repository on GitHub, one fixed
    commit) and verified against the sha256 manifest shipped in the package. ``root=None``
    means ``data_dir() / "isbi2012"`` (``$UNET_COURSE_DATA`` or ``~/.cache/unet_course``).

    Item ``i`` is ``(image, mask)``: image float32 (512, 512) in [0, 1] (an 8-bit value v
    reads as v / 255), mask int64 (512, 512) with 1 = cell (a label above half its full scale:
    255 in the 8-bit files) and 0 = membrane (label 0). ``.images`` and ``.masks`` hold the
    whole stacks (30, 512, 512). Every slice and label must have the same size; a file of
    another size raises ``ValueError`` naming it.

    PNGs found on disk are checked against the manifest (``verify=False`` skips that, e.g. for
    your own conversion of the TIFFs). ``base_url`` and ``manifest`` (CSV text, a CSV path or a
    list of :class:`ManifestEntry`) exist so tests can serve their own files.
    """

    TIFFS = ("train-volume.tif", "train-labels.tif")
    #: the pinned mirror's folder URL and the shipped manifest (CSV text)
    URL = ISBI2012_BASE_URL
    MANIFEST = ISBI2012_MANIFEST_CSV

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        download: bool = False,
        *,
        base_url: str = ISBI2012_BASE_URL,
        manifest: str | os.PathLike | Sequence[ManifestEntry] | None = None,
        verify: bool = True,
        timeout: float = 30.0,
    ):
        self.root = Path(root).expanduser() if root is not None else data_dir() / "isbi2012"
        if manifest is None:
            entries = [ManifestEntry(*row) for row in ISBI2012_FILES]
        elif isinstance(manifest, (str, os.PathLike)):
            entries = read_manifest(manifest)
        else:
            entries = list(manifest)
        volume, labels = (self.root / name for name in self.TIFFS)
        if volume.is_file() and labels.is_file():
            self.source = "tif"
            image_slices, label_slices = _pages(volume), _pages(labels)
        else:
            self.source = "png"
            if download:
                download_files(entries, base_url, self.root, timeout)
            elif verify:
                self._check_present(entries, base_url)
            image_slices, label_slices = _png_slices(self.root, entries)
        self.images, self.masks = _read_slices(image_slices, label_slices, self.root)

    def _check_present(self, entries: Sequence[ManifestEntry], base_url: str) -> None:
        missing = [e for e in entries if not (self.root / e.path).is_file()]
        if missing:
            names = ", ".join(e.path for e in missing[:4]) + (" ..." if len(missing) > 4 else "")
            raise FileNotFoundError(
                f"ISBI 2012 data not found in {self.root}: {len(missing)} of {len(entries)} files "
                f"are missing ({names}). Either pass download=True to fetch them from "
                f"{base_url}, or place them by hand: the official train-volume.tif and "
                f"train-labels.tif in {self.root}, or the PNGs image/N.png and label/N.png "
                f"(N = 0..29) from {base_url} under {self.root}."
            )
        for e in entries:
            path = self.root / e.path
            if not file_matches(path, e):
                raise ValueError(
                    f"{path} does not match the manifest (expected {e.size} bytes, sha256 "
                    f"{e.sha256}); delete it and pass download=True, replace it with the file "
                    f"from {base_url.rstrip('/')}/{e.path}, or pass verify=False to use it as is."
                )

    def __repr__(self) -> str:
        # the home directory as "~": a stored notebook output must not show a machine's paths
        root, home = Path(self.root), Path.home()
        shown = "~/" + root.relative_to(home).as_posix() if root.is_relative_to(home) else root
        return f"ISBI2012(root={str(shown)!r}, {len(self)} slices from {self.source})"


def _pages(path: Path) -> list[Slice]:
    """Every page of a TIFF stack, in order."""
    return [(path, k) for k in range(count_pages(path))]


def _png_slices(root: Path, entries: Sequence[ManifestEntry]) -> tuple[list[Slice], list[Slice]]:
    """The manifest's ``image/N.png`` and ``label/N.png`` files under ``root``, sorted by N."""

    def key(path: str) -> tuple[int, str]:
        stem = Path(path).stem
        return (int(stem), stem) if stem.isdigit() else (-1, stem)

    images = sorted((e.path for e in entries if e.path.startswith("image/")), key=key)
    labels = sorted((e.path for e in entries if e.path.startswith("label/")), key=key)
    if [Path(p).name for p in images] != [Path(p).name for p in labels]:
        raise ValueError("the manifest must list image/N.png and label/N.png for the same N")
    return [(root / p, None) for p in images], [(root / p, None) for p in labels]


def _read_slices(
    images: list[Slice], labels: list[Slice], root: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Read the slices and their labels: float32 (n, H, W) in [0, 1] and int64 (n, H, W) 0/1.

    A label pixel is a cell (1) where it is above half its file's full scale (> 127 of 255).
    """
    if len(images) != len(labels) or not images:
        raise ValueError(
            f"{len(images)} image slices and {len(labels)} label slices in {root}: expected "
            "one label per slice, and at least one slice"
        )
    slices = images + labels
    arrays = [read_image(path, channels=1, page=page)[0] for path, page in slices]
    # the size most slices share is the expected one, so the message names the odd file out
    expected = Counter(a.shape for a in arrays).most_common(1)[0][0]
    for (path, page), array in zip(slices, arrays):
        if array.shape != expected:
            where = str(path) if page is None else f"page {page} of {path}"
            raise ValueError(
                f"{where} has shape {array.shape} (H, W), but the other ISBI 2012 slices and "
                f"labels in {root} have shape {expected}: every slice and its label must have "
                "the same size; replace or crop that file"
            )
    n = len(images)
    return np.stack(arrays[:n]), (np.stack(arrays[n:]) > 0.5).astype(np.int64)

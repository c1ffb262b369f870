"""The course's data sets: synthetic EM slices, touching cells, ISBI 2012, and a tile sampler.

Every lesson must run offline, in CI and in Colab, so the default data are *generated*:

* :func:`synthetic_em` imitates the ISBI 2012 serial-section EM slices (cells separated by
  dark membranes, plus dark organelles that are not membranes);
* :func:`touching_cells` imitates light-microscopy cells that touch each other, the case the
  paper's weight map was designed for;
* :class:`ISBI2012` reads (or, on request, downloads) the real challenge data;
* :class:`TileDataset` draws the random training tiles a valid-padding U-Net needs.

Conventions (see DESIGN.md): images are float32 in [0, 1]; masks are int64 class indices with
1 = cell and 0 = membrane / background; instance labels are int32 with 0 = background and
1..k one id per cell. The same ``seed`` always gives the same arrays, and image ``i`` of a call
does not depend on ``n`` (``synthetic_em(5)[0][:2]`` equals ``synthetic_em(2)[0]``).
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from ._manifests import ISBI2012_BASE_URL, ISBI2012_MANIFEST_CSV
from .augment import bicubic_upsample
from .tiling import mirror_indices

__all__ = [
    "ISBI2012",
    "DownloadError",
    "ManifestEntry",
    "TileDataset",
    "data_dir",
    "download_files",
    "read_manifest",
    "synthetic_em",
    "touching_cells",
]


# ----------------------------------------------------------------------------------------------
# small helpers shared by the generators
# ----------------------------------------------------------------------------------------------


def _check_n_size(n: object, size: object, smallest: int) -> tuple[int, int]:
    for name, value in (("n", n), ("size", size)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0 (the number of images), got {n}")
    if size < smallest:
        raise ValueError(f"size must be >= {smallest} pixels so that several cells fit, got {size}")
    return int(n), int(size)


def _image_rngs(seed: int, n: int) -> list[np.random.Generator]:
    """One independent generator per image, so image i does not depend on n."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(n)]


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field (size, size) with unit standard deviation that varies over about
    ``size / cells`` pixels: a (cells + 1)^2 grid of N(0, 1) values, bicubically interpolated.

    Two small matrix products: far cheaper than a wide Gaussian filter of white noise.
    """
    field = bicubic_upsample(rng.standard_normal((cells + 1, cells + 1)), (size, size))
    return (field - field.mean()) / (field.std() + 1e-8)


def _spread_points(
    rng: np.random.Generator, extent: float, radii: np.ndarray, spacing: float, tries: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Dart throwing: points in [-pad, extent + pad)^2 kept only if far enough from the others.

    Point i wants a distance of at least ``spacing * (r_i + r_j)`` to every kept point j; it
    gets ``tries`` candidate positions (tested at once) and is dropped if none fits.
    Returns the kept points (k, 2) as (row, col) and their radii (k,).
    """
    pad = float(radii.max())
    pts = np.empty((len(radii), 2))
    kept_r = np.empty(len(radii))
    k = 0
    for r in radii:
        cand = rng.uniform(-pad, extent + pad, size=(tries, 2))
        d = np.hypot(cand[:, None, 0] - pts[None, :k, 0], cand[:, None, 1] - pts[None, :k, 1])
        ok = np.all(d >= spacing * (kept_r[None, :k] + r), axis=1)
        if ok.any():
            pts[k], kept_r[k] = cand[np.argmax(ok)], r
            k += 1
    return pts[:k], kept_r[:k]


def _consecutive(labels: np.ndarray) -> np.ndarray:
    """Relabel the ids present in ``labels`` to 1..k in increasing order; 0 stays 0; int32."""
    present = np.bincount(labels.ravel()) > 0
    present[0] = False
    lut = np.cumsum(present).astype(np.int32)
    lut[~present] = 0
    return lut[labels]


def _stack(items: list[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int):
    n = len(items)
    images = np.empty((n, size, size), np.float32)
    masks = np.empty((n, size, size), np.int64)
    instances = np.empty((n, size, size), np.int32)
    for i, (img, msk, ins) in enumerate(items):
        images[i], masks[i], instances[i] = img, msk, ins
    return images, masks, instances


# ----------------------------------------------------------------------------------------------
# synthetic EM
# ----------------------------------------------------------------------------------------------


def _em_tessellation(rng: np.random.Generator, size: int) -> np.ndarray:
    """Cell ids (size, size): a Voronoi tessellation of spread seeds, warped so edges bend."""
    # cell radii from a log-normal: a few big cells among many small ones, like neurites
    n_try = int(size * size / 900)
    radii = np.exp(rng.normal(np.log(17.0), 0.35, size=n_try))
    pts, _ = _spread_points(rng, size, np.sort(radii)[::-1], spacing=0.95)
    pad = int(np.ceil(radii.max())) + 8
    full = size + 2 * pad
    seeds = np.zeros((full, full), np.int32)
    rc = np.clip(np.round(pts).astype(int) + pad, 0, full - 1)
    seeds[rc[:, 0], rc[:, 1]] = np.arange(1, len(rc) + 1)
    # nearest seed for every pixel = a Voronoi tessellation, in one distance transform
    _, (ir, ic) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    voronoi = seeds[ir, ic]
    # a smooth random warp bends the straight Voronoi edges into membrane-like curves
    amp = 5.0
    dy = amp * _smooth_field(rng, size, max(2, size // 48))
    dx = amp * _smooth_field(rng, size, max(2, size // 48))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    coords = np.stack([yy + pad + dy, xx + pad + dx])
    return ndi.map_coordinates(voronoi, coords, order=0, mode="nearest")


def _draw_ellipses(
    rng: np.random.Generator,
    canvas: np.ndarray,
    allowed: np.ndarray,
    count: int,
    r_range: tuple[float, float],
    value: tuple[float, float],
    ring: float | None = None,
) -> np.ndarray:
    """Paint up to ``count`` random ellipses whose centre lies where ``allowed`` is True.

    ``ring`` (a value) makes the ellipse a dark rim with a lighter core, like a mitochondrion.
    Returns the boolean footprint of everything drawn.
    """
    size = canvas.shape[0]
    drawn = np.zeros(canvas.shape, bool)
    where = np.flatnonzero(allowed)
    if len(where) == 0 or count == 0:
        return drawn
    for flat in rng.choice(where, size=min(count, len(where)), replace=False):
        cy, cx = divmod(int(flat), size)
        a = rng.uniform(*r_range)
        b = a * rng.uniform(0.5, 1.0)
        t = rng.uniform(0, np.pi)
        R = int(np.ceil(a)) + 2
        y0, y1, x0, x1 = max(cy - R, 0), min(cy + R + 1, size), max(cx - R, 0), min(cx + R + 1, size)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        u = (yy - cy) * np.cos(t) + (xx - cx) * np.sin(t)
        v = -(yy - cy) * np.sin(t) + (xx - cx) * np.cos(t)
        rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        inside = (rho <= 1.0) & allowed[y0:y1, x0:x1]
        shade = rng.uniform(*value)
        patch = canvas[y0:y1, x0:x1]
        if ring is None:
            patch[inside] = shade
        else:
            patch[inside] = np.where(rho[inside] > 0.7, shade, ring)
        drawn[y0:y1, x0:x1] |= inside
    return drawn


def _synthetic_em_one(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    cells = _em_tessellation(rng, size)
    # membranes: a band around every edge between two cells, of smoothly varying thickness
    edge = np.zeros((size, size), bool)
    edge[:-1] |= cells[:-1] != cells[1:]
    edge[:, :-1] |= cells[:, :-1] != cells[:, 1:]
    dist = ndi.distance_transform_edt(~edge)
    half_width = 2.2 + 1.0 * _smooth_field(rng, size, max(2, size // 64))
    membrane = dist < np.clip(half_width, 1.2, 4.5)
    instances = _consecutive(np.where(membrane, 0, cells))

    # cell interiors: one gray level per cell plus fine texture
    n_cells = int(instances.max())
    cell_gray = rng.uniform(0.55, 0.85, size=n_cells + 1)
    dark_cells = rng.random(n_cells + 1) < 0.08  # a few darker cells (glia-like)
    cell_gray[dark_cells] = rng.uniform(0.4, 0.5, size=int(dark_cells.sum()))
    img = cell_gray[instances].astype(np.float32)
    grain = ndi.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), 1.5)
    img += 0.25 * grain
    # membranes: dark, not uniformly so
    mem_gray = 0.2 + 0.05 * _smooth_field(rng, size, max(2, size // 32))
    img = np.where(membrane, mem_gray, img).astype(np.float32)

    # organelles: dark round blobs and ringed mitochondria inside cells, never on a membrane,
    # as dark as membranes: a global threshold cannot tell them apart, their shape can
    interior = dist > 9.0
    scale = (size / 512) ** 2
    _draw_ellipses(rng, img, interior, int(130 * scale), (2.5, 5.5), (0.12, 0.28))
    _draw_ellipses(rng, img, interior & (dist > 14), int(30 * scale), (7.0, 12.0), (0.15, 0.25),
                   ring=0.38)
    # vesicles: small light-gray dots that add texture inside cells
    _draw_ellipses(rng, img, interior, int(120 * scale), (1.2, 2.2), (0.45, 0.55))

    # the microscope: blur, uneven illumination, noise
    img = ndi.gaussian_filter(img, 1.0)
    light = 1.0 + 0.22 * _smooth_field(rng, size, 2)
    img = img * light + 0.05 * rng.standard_normal((size, size)).astype(np.float32)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    return {"image": img, "mask": (instances > 0).astype(np.int64), "instances": instances}


def synthetic_em(n: int, size: int = 512, seed: int = 0):
    """``n`` synthetic serial-section EM slices that behave like the ISBI 2012 training data.

    Each image is a tessellation of cells separated by dark membranes of varying thickness
    (about 20 % of the pixels), with textured interiors, small dark organelles that are *not*
    membranes, blur, uneven illumination and noise: a global threshold fails on it, a small
    U-Net learns it quickly.

    Returns ``(images, masks, instances)``:

    * ``images``    float32 (n, size, size) in [0, 1];
    * ``masks``     int64 (n, size, size): 1 = cell interior, 0 = membrane;
    * ``instances`` int32 (n, size, size): 0 = membrane, 1..k one id per cell.

    The same ``seed`` gives bit-identical arrays; image i does not depend on ``n``.
    """
    n, size = _check_n_size(n, size, 64)
    items = [_synthetic_em_one(rng, size) for rng in _image_rngs(seed, n)]
    parts = [(d["image"], d["mask"], d["instances"]) for d in items]
    return _stack(parts, size)


# ----------------------------------------------------------------------------------------------
# touching cells
# ----------------------------------------------------------------------------------------------


def _touching_cells_one(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    # cell radii in pixels do not scale with the image: a bigger image holds more cells
    n_try = int(size * size / 700)
    radii = rng.uniform(9.0, 17.0, size=n_try)
    # spacing < 1: neighbouring discs overlap, so many cells touch along a shared edge
    pts, radii = _spread_points(rng, size, radii, spacing=0.82, tries=12)
    # keep about half the cells, chosen in clumps so there is background between clusters
    clump = _smooth_field(rng, size + 64, max(2, size // 80))
    rc = np.clip(np.round(pts).astype(int) + 32, 0, size + 63)
    keep = clump[rc[:, 0], rc[:, 1]] > -0.2
    pts, radii = pts[keep], radii[keep]

    best = np.full((size, size), np.inf)  # relative distance rho / r(theta) of the owner
    owner = np.zeros((size, size), np.int32)
    for i, ((cy, cx), r) in enumerate(zip(pts, radii), start=1):
        R = int(np.ceil(1.35 * r)) + 1
        y0, y1 = max(int(cy) - R, 0), min(int(cy) + R + 1, size)
        x0, x1 = max(int(cx) - R, 0), min(int(cx) + R + 1, size)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dy, dx = yy - cy, xx - cx
        theta = np.arctan2(dy, dx)
        # an irregular outline: a few low angular harmonics on top of an ellipse
        k = rng.uniform(0.0, 0.12, size=2)
        ph = rng.uniform(0, 2 * np.pi, size=2)
        outline = r * (1 + k[0] * np.cos(2 * theta + ph[0]) + k[1] * np.cos(3 * theta + ph[1]))
        rel = np.hypot(dy, dx) / outline
        win = (rel <= 1.0) & (rel < best[y0:y1, x0:x1])
        best[y0:y1, x0:x1][win] = rel[win]
        owner[y0:y1, x0:x1][win] = i
    # drop slivers: a cell cut down to a few pixels by its neighbours or the image edge
    counts = np.bincount(owner.ravel())
    owner[counts[owner] < 40] = 0
    instances = _consecutive(owner)

    # light microscopy look: bright cells, brightest in the middle, on a dark background
    n_cells = int(instances.max())
    gray = rng.uniform(0.55, 0.9, size=n_cells + 1)
    rel = np.where(instances > 0, best, 1.0)
    img = np.where(instances > 0, gray[instances] * (1.0 - 0.45 * rel**2), 0.12).astype(np.float32)
    img += 0.04 * ndi.gaussian_filter(rng.standard_normal((size, size)), 2.0).astype(np.float32)
    img = ndi.gaussian_filter(img, 1.2)
    light = 1.0 + 0.1 * _smooth_field(rng, size, 2)
    img = img * light + 0.03 * rng.standard_normal((size, size)).astype(np.float32)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    return {"image": img, "mask": (instances > 0).astype(np.int64), "instances": instances}


def touching_cells(n: int, size: int = 256, seed: int = 0):
    """``n`` light-microscopy-like images of cells that touch each other.

    Cells are bright blobs with irregular outlines, brightest in the middle, on a dark
    background; many share an edge with a neighbour, so the binary mask merges them and only
    the instance labels tell them apart (the weight-map lesson's problem). Cell radii are
    9-17 px whatever ``size`` is, so a bigger image holds more cells.

    Returns ``(images, masks, instances)``:

    * ``images``    float32 (n, size, size) in [0, 1];
    * ``masks``     int64 (n, size, size): 1 = cell, 0 = background (``instances > 0``);
    * ``instances`` int32 (n, size, size): 0 = background, 1..k one id per cell.

    The same ``seed`` gives bit-identical arrays; image i does not depend on ``n``.
    """
    n, size = _check_n_size(n, size, 48)
    items = [_touching_cells_one(rng, size) for rng in _image_rngs(seed, n)]
    parts = [(d["image"], d["mask"], d["instances"]) for d in items]
    return _stack(parts, size)


# ----------------------------------------------------------------------------------------------
# downloads: manifest, cache directory, verified atomic fetch
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a data set: its path relative to the data set's folder, size, sha256."""

    path: str
    size: int
    sha256: str


def read_manifest(source: str | os.PathLike) -> list[ManifestEntry]:
    """Parse a manifest: CSV text with the header ``path,size,sha256``, or a path to such a file."""
    text = source
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source):
        text = Path(source).read_text()
    rows = list(csv.DictReader(io.StringIO(str(text))))
    if not rows or set(rows[0]) != {"path", "size", "sha256"}:
        raise ValueError("a manifest is CSV with the header 'path,size,sha256' and one row per file")
    return [ManifestEntry(r["path"], int(r["size"]), r["sha256"].lower()) for r in rows]


def data_dir() -> Path:
    """Where downloaded data go: ``$UNET_COURSE_DATA``, else ``~/.cache/unet_course``."""
    env = os.environ.get("UNET_COURSE_DATA", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "unet_course"


class DownloadError(OSError):
    """A file could not be downloaded or did not match its manifest entry.

    The message names the file, the URL and how to place the file by hand.
    """


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _matches(path: Path, entry: ManifestEntry) -> bool:
    return path.is_file() and path.stat().st_size == entry.size and _sha256(path) == entry.sha256


def _by_hand(entry: ManifestEntry, url: str, dest: Path) -> str:
    return (
        f"To place it by hand, download {url} on a machine with internet access and save it as "
        f"{dest} (it must be {entry.size} bytes with sha256 {entry.sha256})."
    )


def _fetch_one(entry: ManifestEntry, base_url: str, root: Path, timeout: float) -> Path:
    url = base_url.rstrip("/") + "/" + entry.path
    dest = root / entry.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    # a temporary name in the same folder: the final rename is atomic, so a file at `dest`
    # is always complete and verified, whatever happens during the transfer
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h, n = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                h.update(chunk)
                n += len(chunk)
        if n != entry.size:
            raise DownloadError(
                f"{entry.path}: got {n} bytes from {url}, expected {entry.size} (the transfer was "
                f"cut short or the file changed). {_by_hand(entry, url, dest)}"
            )
        if h.hexdigest() != entry.sha256:
            raise DownloadError(
                f"{entry.path}: the file from {url} has sha256 {h.hexdigest()}, expected "
                f"{entry.sha256} (corrupted or a different version). {_by_hand(entry, url, dest)}"
            )
        os.replace(tmp, dest)
        return dest
    except DownloadError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
            exc.close()  # an HTTPError holds the open response: release its socket now
        elif isinstance(exc, urllib.error.URLError):
            reason = f"{type(exc).__name__}: {exc.reason}"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        raise DownloadError(
            f"{entry.path}: could not download {url} ({reason}). "
            f"{_by_hand(entry, url, dest)}"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)


def download_files(
    manifest: Sequence[ManifestEntry], base_url: str, root: str | os.PathLike, timeout: float = 30.0
) -> list[Path]:
    """Make ``root`` hold every file of ``manifest``, verified; fetch only what is missing or wrong.

    Each file is fetched from ``base_url + path`` into a temporary name, checked against its
    size and sha256, then renamed into place: a failed or partial transfer never leaves a file
    that looks complete. Raises :class:`DownloadError` naming the file, the URL and how to
    place the file by hand. Returns the paths of all files.
    """
    root = Path(root)
    paths = []
    for entry in manifest:
        dest = root / entry.path
        if not _matches(dest, entry):
            _fetch_one(entry, base_url, root, timeout)
        paths.append(dest)
    return paths


# ----------------------------------------------------------------------------------------------
# ISBI 2012
# ----------------------------------------------------------------------------------------------


def _read_gray(path: Path) -> np.ndarray:
    from PIL import Image  # Pillow comes with matplotlib

    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def _read_stack(path: Path) -> np.ndarray:
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        return np.stack([np.asarray(page.convert("L")) for page in ImageSequence.Iterator(im)])


class ISBI2012(Sequence):
    """The 30 training slices of the ISBI 2012 EM segmentation challenge, with their labels.

    ``ISBI2012(root)`` reads, from the folder ``root``, either the official stacks
    ``train-volume.tif`` and ``train-labels.tif`` (30-page TIFFs), or per-slice PNGs
    ``image/N.png`` and ``label/N.png`` (N = 0..29). With ``download=True`` missing PNGs are
    fetched from a pinned public mirror (the zhixuhao/unet repository on GitHub, one fixed
    commit) and verified against the sha256 manifest shipped in the package. ``root=None``
    means ``data_dir() / "isbi2012"`` (``$UNET_COURSE_DATA`` or ``~/.cache/unet_course``).

    Item ``i`` is ``(image, mask)``: image float32 (512, 512) in [0, 1], mask int64 (512, 512)
    with 1 = cell (label 255) and 0 = membrane (label 0). ``.images`` and ``.masks`` hold the
    whole stacks (30, 512, 512).

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
            manifest = ISBI2012_MANIFEST_CSV
        entries = (read_manifest(manifest) if isinstance(manifest, (str, os.PathLike))
                   else list(manifest))
        volume, labels = (self.root / name for name in self.TIFFS)
        if volume.is_file() and labels.is_file():
            self.source = "tif"
            images, masks = _read_stack(volume), _read_stack(labels)
        else:
            self.source = "png"
            if download:
                download_files(entries, base_url, self.root, timeout)
            elif verify:
                self._check_present(entries, base_url)
            images, masks = self._read_pngs(entries)
        if images.shape != masks.shape or images.ndim != 3:
            raise ValueError(
                f"images {images.shape} and labels {masks.shape} in {self.root} do not match: "
                "expected two stacks of the same number of equally sized slices"
            )
        self.images = (images.astype(np.float32) / 255.0).astype(np.float32)
        self.masks = (masks > 127).astype(np.int64)

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
            if not _matches(path, e):
                raise ValueError(
                    f"{path} does not match the manifest (expected {e.size} bytes, sha256 "
                    f"{e.sha256}); delete it and pass download=True, replace it with the file "
                    f"from {base_url.rstrip('/')}/{e.path}, or pass verify=False to use it as is."
                )

    def _read_pngs(self, entries: Sequence[ManifestEntry]) -> tuple[np.ndarray, np.ndarray]:
        def key(path: str) -> tuple[int, str]:
            stem = Path(path).stem
            return (int(stem), stem) if stem.isdigit() else (-1, stem)

        images = sorted((e.path for e in entries if e.path.startswith("image/")), key=key)
        labels = sorted((e.path for e in entries if e.path.startswith("label/")), key=key)
        if [Path(p).name for p in images] != [Path(p).name for p in labels]:
            raise ValueError("the manifest must list image/N.png and label/N.png for the same N")
        def read(paths: list[str]) -> np.ndarray:
            return np.stack([_read_gray(self.root / p) for p in paths])

        return read(images), read(labels)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.images[i], self.masks[i]

    def __repr__(self) -> str:
        return f"ISBI2012(root={str(self.root)!r}, {len(self)} slices from {self.source})"


# ----------------------------------------------------------------------------------------------
# tile sampling for a valid-padding U-Net
# ----------------------------------------------------------------------------------------------


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    p = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(p) != 2 or any(not isinstance(x, (int, np.integer)) or x < 1 for x in p):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {v!r}")
    return int(p[0]), int(p[1])


class TileDataset(torch.utils.data.Dataset):
    """Random training tiles for a valid-padding U-Net (the paper's Section 3).

    Each item draws an image at random and an *output* tile of ``output_size`` inside it; the
    *input* tile is the output tile grown by the net's margin ``(input_size - output_size) / 2``
    on every side, mirrored where it crosses the image border (as in the overlap-tile
    strategy). The input tile, its mask and weight map are augmented together, then the mask
    and weight map are centre-cropped to the output size, so target pixel (y, x) is the label
    of the pixel the net's output (y, x) sees at the centre of its receptive field.

    Arguments: ``images`` (n, H, W) / (n, C, H, W) or a list of (H, W) / (C, H, W) arrays,
    ``masks`` matching (H, W) class indices, ``input_size`` and ``output_size`` (ints or pairs;
    ``output_size = model.output_size(input_size)``), ``weight_maps`` optional (H, W) float
    arrays, ``augment`` an ``aug(image, *labels, rng=rng)`` callable (see
    :mod:`unet_course.augment`), ``length`` the number of tiles per epoch. With an int ``seed``
    item i of epoch e is reproducible (:meth:`set_epoch` moves to new tiles); ``seed=None``
    draws fresh tiles every time.

    Returns ``(image, mask)`` or ``(image, mask, weight)``: float32 (C, in_h, in_w), int64
    (out_h, out_w), float32 (out_h, out_w) tensors.
    """

    def __init__(
        self,
        images,
        masks,
        input_size: int | Sequence[int],
        output_size: int | Sequence[int],
        weight_maps=None,
        augment: Callable | None = None,
        length: int = 1000,
        seed: int | None = 0,
    ):
        self.input_size = _pair(input_size, "input_size")
        self.output_size = _pair(output_size, "output_size")
        diff = [i - o for i, o in zip(self.input_size, self.output_size)]
        if any(d < 0 or d % 2 for d in diff):
            raise ValueError(
                f"input_size {self.input_size} must exceed output_size {self.output_size} by an "
                "even margin on each axis; use output_size = model.output_size(input_size)"
            )
        self.margin = (diff[0] // 2, diff[1] // 2)
        self.images = [np.asarray(im, dtype=np.float32) for im in images]
        self.masks = [np.asarray(m) for m in masks]
        self.weight_maps = None if weight_maps is None else [np.asarray(w, np.float32)
                                                             for w in weight_maps]
        if not self.images or len(self.images) != len(self.masks) or (
            self.weight_maps is not None and len(self.weight_maps) != len(self.images)
        ):
            raise ValueError("give at least one image, and exactly one mask (and weight map) per image")
        for k, (im, m) in enumerate(zip(self.images, self.masks)):
            if im.ndim not in (2, 3) or m.shape != im.shape[-2:] or (
                self.weight_maps is not None and self.weight_maps[k].shape != m.shape
            ):
                raise ValueError(
                    f"image {k} has shape {im.shape}, its mask {m.shape}: images are (H, W) or "
                    "(C, H, W) and masks and weight maps (H, W) of the same H, W"
                )
        if not isinstance(length, (int, np.integer)) or length < 1:
            raise ValueError(f"length (tiles per epoch) must be a positive int, got {length!r}")
        self.augment, self.length, self.seed, self.epoch = augment, int(length), seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Draw a different (still reproducible) set of tiles: call once per epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int):
        if not 0 <= index < self.length:
            raise IndexError(f"tile index {index} out of range for {self.length} tiles")
        rng = self._rng(index)
        k = int(rng.integers(len(self.images)))
        image = self.images[k]
        H, W = image.shape[-2:]
        (ih, iw), (oh, ow), (my, mx) = self.input_size, self.output_size, self.margin
        # the output tile lies inside the image where it fits, else it is centred on the image
        oy = int(rng.integers(0, H - oh + 1)) if H >= oh else (H - oh) // 2
        ox = int(rng.integers(0, W - ow + 1)) if W >= ow else (W - ow) // 2
        rows = mirror_indices(np.arange(oy - my, oy - my + ih), H)[:, None]
        cols = mirror_indices(np.arange(ox - mx, ox - mx + iw), W)[None, :]
        tile = image[..., rows, cols]
        targets = [self.masks[k][rows, cols]]
        if self.weight_maps is not None:
            targets.append(self.weight_maps[k][rows, cols])
        if self.augment is not None:
            out = self.augment(tile, *targets, rng=rng)
            tile, targets = out[0], list(out[1:])
        crop = (slice(my, my + oh), slice(mx, mx + ow))
        image_t = torch.from_numpy(np.ascontiguousarray(tile, dtype=np.float32))
        if image_t.ndim == 2:
            image_t = image_t[None]
        result = [image_t, torch.from_numpy(np.ascontiguousarray(targets[0][crop], dtype=np.int64))]
        if self.weight_maps is not None:
            result.append(torch.from_numpy(np.ascontiguousarray(targets[1][crop], dtype=np.float32)))
        return tuple(result)

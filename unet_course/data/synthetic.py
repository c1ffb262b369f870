"""Synthetic images for offline lessons: EM slices and touching cells, with their labels.

Every lesson must run offline, in CI and in Colab, so the default data are *generated*:

* :func:`synthetic_em` imitates the ISBI 2012 serial-section EM slices (cells separated by
  dark membranes, plus dark organelles that are not membranes);
* :func:`touching_cells` imitates light-microscopy cells that touch each other, the case the
  paper's weight map was designed for.

Both return ``(images, masks, instances)``: images float32 (n, size, size) in [0, 1]; masks
int64 with 1 = cell and 0 = membrane / background; instance labels int32 with 0 = background
and 1..k one id per cell. The same ``seed`` always gives the same arrays, and image ``i`` of a
call does not depend on ``n`` (``synthetic_em(5)[0][:2]`` equals ``synthetic_em(2)[0]``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from ..augment import bicubic_upsample
from ..postprocess import relabel_sequential
from ..validation import positive_int

__all__ = ["synthetic_em", "touching_cells"]

#: what drawing one image returns: the image, its mask and its instance ids, each (size, size)
Drawn = dict[str, np.ndarray]


# ----------------------------------------------------------------------------------------------
# small helpers shared by the generators
# ----------------------------------------------------------------------------------------------


def _generate(
    draw_one: Callable[[np.random.Generator, int], Drawn], n: object, size: object, seed: object,
    smallest: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The generators' shared frame: check the arguments, draw image i with its own random
    generator, and stack the images (float32), masks (int64) and instances (int32)."""
    n = positive_int(n, "n (the number of images)", minimum=0)
    size = positive_int(size, "size")
    if size < smallest:
        raise ValueError(f"size must be >= {smallest} pixels so that several cells fit, got {size}")
    images = np.empty((n, size, size), np.float32)
    masks = np.empty((n, size, size), np.int64)
    instances = np.empty((n, size, size), np.int32)
    for i, rng in enumerate(_image_rngs(seed, n)):
        drawn = draw_one(rng, size)
        images[i], masks[i], instances[i] = drawn["image"], drawn["mask"], drawn["instances"]
    return images, masks, instances


def _image_rngs(seed: object, n: int) -> list[np.random.Generator]:
    """One independent generator per image, so image i does not depend on n."""
    seed = positive_int(seed, "seed", minimum=0)
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


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


def _microscope(
    rng: np.random.Generator, img: np.ndarray, instances: np.ndarray, blur: float, uneven: float,
    noise: float,
) -> Drawn:
    """What the microscope adds to a clean image, and the drawn image's labels.

    A Gaussian blur of ``blur`` pixels, illumination that varies smoothly by about ``uneven``
    (relative) over the field, Gaussian noise of std ``noise``; the result is clipped to [0, 1].
    Returns the image (float32), the mask ``instances > 0`` (int64) and the instances.
    """
    size = img.shape[0]
    img = ndi.gaussian_filter(img, blur)
    light = 1.0 + uneven * _smooth_field(rng, size, 2)
    img = img * light + noise * rng.standard_normal((size, size)).astype(np.float32)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    return {"image": img, "mask": (instances > 0).astype(np.int64), "instances": instances}



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


def _synthetic_em_one(rng: np.random.Generator, size: int) -> Drawn:
    cells = _em_tessellation(rng, size)
    # membranes: a band around every edge between two cells, of smoothly varying thickness
    edge = np.zeros((size, size), bool)
    edge[:-1] |= cells[:-1] != cells[1:]
    edge[:, :-1] |= cells[:, :-1] != cells[:, 1:]
    dist = ndi.distance_transform_edt(~edge)
    half_width = 2.2 + 1.0 * _smooth_field(rng, size, max(2, size // 64))
    membrane = dist < np.clip(half_width, 1.2, 4.5)
    instances = relabel_sequential(np.where(membrane, 0, cells))

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

    return _microscope(rng, img, instances, blur=1.0, uneven=0.22, noise=0.05)


def synthetic_em(
    n: int, size: int = 512, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    return _generate(_synthetic_em_one, n, size, seed, smallest=64)


# ----------------------------------------------------------------------------------------------
# touching cells
# ----------------------------------------------------------------------------------------------


def _touching_cells_one(rng: np.random.Generator, size: int) -> Drawn:
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
    instances = relabel_sequential(owner)

    # light microscopy look: bright cells, brightest in the middle, on a dark background
    n_cells = int(instances.max())
    gray = rng.uniform(0.55, 0.9, size=n_cells + 1)
    rel = np.where(instances > 0, best, 1.0)
    img = np.where(instances > 0, gray[instances] * (1.0 - 0.45 * rel**2), 0.12).astype(np.float32)
    img += 0.04 * ndi.gaussian_filter(rng.standard_normal((size, size)), 2.0).astype(np.float32)
    return _microscope(rng, img, instances, blur=1.2, uneven=0.1, noise=0.03)


def touching_cells(
    n: int, size: int = 256, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    return _generate(_touching_cells_one, n, size, seed, smallest=48)

"""Prediction on whole images of any size: logits tile by tile, and the probability of "cell".

* :func:`predict_tiled`          the logits (num_classes, H, W) of one image, computed with the
                                 overlap-tile strategy of :mod:`unet_course.tiling`;
* :func:`predict_probabilities`  the probability map (H, W) of class 1 ("cell") in [0, 1];
* :func:`predict_class_probabilities`  the probabilities (num_classes, H, W) of every class.

Both check the image before any work and say what would fix it: a missing channel axis, a
batch, channels-last, integer values, NaN or infinity.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .mirror import mirror_indices
from .tiling import DEFAULT_MEMORY_BUDGET, TileGrid, tile_grid, unet_geometry
from .validation import kept_mode

__all__ = ["predict_class_probabilities", "predict_probabilities", "predict_tiled"]

# Above this many pixels predict_tiled shows a progress bar (progress=None): 2048 x 2048.
_PROGRESS_PIXELS = 2**22


# ---------------------------------------------------------------------------- the image
def _to_tensor(image: object) -> torch.Tensor:
    """A float NumPy array or tensor as a tensor sharing its memory where it can."""
    if isinstance(image, np.ndarray):
        floating, cast = image.dtype.kind == "f", "image.astype(np.float32) / 255"
    elif isinstance(image, torch.Tensor):
        floating, cast = image.is_floating_point(), "image.float() / 255"
    else:
        raise TypeError(
            f"image must be a NumPy array or a torch tensor of shape (C, H, W), got {type(image).__name__}"
        )
    if not floating:
        raise TypeError(f"image has dtype {image.dtype}; predict_tiled expects floating point "
                        f"values (in [0, 1] for this course), e.g. {cast}")
    if isinstance(image, torch.Tensor):
        return image.detach()
    arr = np.ascontiguousarray(image)
    if not arr.flags.writeable:  # torch warns about read-only memory; copy instead
        arr = arr.copy()
    return torch.from_numpy(arr)


def _check_layout(shape: tuple[int, ...], channels: int) -> None:
    """ValueError unless ``shape`` is (C, H, W) with C = ``channels``, saying what it looks like."""
    c = channels
    other_ranks = {
        2: f"image has shape {shape}, (H, W) without a channel axis; predict_tiled expects "
           f"(C, H, W) with C = {c} for this net: add the axis with image[None] (NumPy) or "
           "image.unsqueeze(0) (torch)",
        4: f"image has shape {shape}, a batch; predict_tiled takes one image (C, H, W): call it "
           "once per image, e.g. predict_tiled(model, images[i])",
    }
    if len(shape) != 3:
        raise ValueError(other_ranks.get(
            len(shape), f"image must have shape (C, H, W) with C = {c}, got shape {shape}"))
    if shape[0] != c:
        hint = ""
        if shape[2] == c:
            hint = ("; it looks channels-last (H, W, C): use image.transpose(2, 0, 1) (NumPy) or "
                    "image.permute(2, 0, 1) (torch)")
        raise ValueError(f"this net expects {c} input channel(s), but the image of shape {shape} "
                         f"has {shape[0]} on its first axis (C, H, W){hint}")
    if shape[1] < 1 or shape[2] < 1:
        raise ValueError(f"image is empty: shape {shape}")


def _as_image(model: nn.Module, image: object, dtype: torch.dtype) -> torch.Tensor:
    """Validate ``image`` and return it as a (C, H, W) tensor of ``dtype`` on its own device."""
    x = _to_tensor(image)
    _check_layout(tuple(x.shape), int(model.in_channels))
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        raise ValueError(
            f"image contains {int((~finite).sum())} non-finite value(s) (NaN or +-inf) of "
            f"{x.numel()}; the net would spread them over every tile that sees them: replace "
            "them first, e.g. np.nan_to_num(image) or torch.nan_to_num(image)"
        )
    return x.to(dtype)


# ---------------------------------------------------------------------------- the tiles
def _extract(x: torch.Tensor, origin: tuple[int, int], size: tuple[int, int],
             cache: dict[tuple[int, int, int], torch.Tensor | slice]) -> torch.Tensor:
    """The (C, h, w) input tile at image coordinates ``origin``, mirrored where it leaves the image."""
    parts: list[torch.Tensor | slice] = []
    for axis, (o, n) in enumerate(zip(origin, size)):
        length = x.shape[1 + axis]
        key = (axis, o, n)
        if key not in cache:
            if 0 <= o and o + n <= length:
                cache[key] = slice(o, o + n)  # inside the image: a plain view
            else:
                cache[key] = torch.from_numpy(mirror_indices(np.arange(o, o + n), length)).to(x.device)
        parts.append(cache[key])
    rows, cols = parts
    t = x[:, rows] if isinstance(rows, slice) else x.index_select(1, rows)
    return t[:, :, cols] if isinstance(cols, slice) else t.index_select(2, cols)


def _run_tiles(model: nn.Module, x: torch.Tensor, grid: TileGrid, device: torch.device,
               progress: bool) -> torch.Tensor:
    """Logits (num_classes, H, W) on ``x``'s device; one batch of tiles at a time on ``device``."""
    out: torch.Tensor | None = None
    cache: dict[tuple[int, int, int], torch.Tensor | slice] = {}
    with torch.no_grad(), tqdm(total=len(grid), desc="predict_tiled", unit="tile",
                               disable=not progress, leave=False, file=sys.stderr) as bar:
        for b in range(0, len(grid), grid.batch_size):
            batch = grid.tiles[b : b + grid.batch_size]
            inputs = torch.stack([_extract(x, t.origin, grid.input_size, cache) for t in batch])
            y = model(inputs.to(device))
            if out is None:
                out = torch.empty((y.shape[1], *grid.image_size), dtype=y.dtype, device=x.device)
            for t, yt in zip(batch, y):
                out[:, t.out[0], t.out[1]] = yt[:, t.keep[0], t.keep[1]].to(x.device)
            bar.update(len(batch))
    assert out is not None  # a grid has at least one tile
    return out


def predict_tiled(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    tile_size: int | tuple[int, int] | None = None,
    batch_size: int = 4,
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    halo: int | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Logits of a whole image of any size, predicted tile by tile (the overlap-tile strategy).

    The result equals one forward pass of ``model`` over the image extrapolated by
    :func:`~unet_course.mirror.mirror_pad` (reflect) by the net's context on each side,
    cropped back to the image (to float rounding, about 1e-6 in float32). Memory is bounded:
    only one batch of tiles is on the model's device at a time; the image and the logits stay
    where the image is.

    Args:
        model: a :class:`unet_course.UNet`, valid (the paper) or same padding. It is run in
            eval mode under ``torch.no_grad()``; its previous mode is restored afterwards.
        image: (C_in, H, W) float NumPy array or tensor, any H and W, C_in =
            ``model.in_channels``. Values are cast to the model's dtype.
        tile_size: edge of the input tile fed to the net (an int or (h, w)), a valid input
            size (e.g. 572 for the paper's net) whose activations fit ``memory_budget``;
            ``None`` picks the shape that feeds the fewest pixels within ``memory_budget``.
            See :func:`~unet_course.tiling.tile_grid`.
        batch_size: the most tiles per forward pass (capped by the memory budget).
        memory_budget: bytes of activations one forward pass may use (default 4 GiB).
        halo: same-padded nets only: context around each kept tile centre (default
            6 * 2**depth, exact); 0 gives naive non-overlapping tiles.
        progress: show a tqdm bar on stderr; ``None`` shows one for images of 2048 x 2048
            pixels or more that need more than one batch.

    Returns:
        Logits, a float tensor (num_classes, H, W) of the model's dtype, on the image's
        device (CPU for a NumPy array).

    Raises:
        TypeError: the image is not a float array or tensor, or the model lacks the size
            arithmetic of a UNet.
        ValueError: the image has no channel axis, a batch axis, the wrong number of
            channels, non-finite values; or the tile size does not fit the net (the message
            names the nearest sizes that do) or the memory budget (it names one that does).
    """
    unet_geometry(model, "predict_tiled")
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    x = _as_image(model, image, dtype)
    H, W = x.shape[-2:]
    grid = tile_grid(model, (H, W), tile_size, batch_size=batch_size,
                     memory_budget=memory_budget, halo=halo, dtype=dtype)
    if progress is None:
        progress = H * W >= _PROGRESS_PIXELS and len(grid) > grid.batch_size
    with kept_mode(model, train=False):  # restored module by module, also after an error
        return _run_tiles(model, x, grid, device, bool(progress))


def predict_probabilities(model: nn.Module, image: object, tile_size: int | None = None, *,
                          symmetries: bool = False) -> np.ndarray:
    """Probability of "cell" (class 1) for every pixel of one image (H, W) or (C, H, W).

    The whole image is predicted with the overlap-tile strategy (:func:`predict_tiled`), so
    any size works and the result has the image's size. For a net with two or more output
    maps it is the pixel-wise soft-max's class-1 map (the paper); a net with a single output
    map is read as one logit per pixel (as ``BCEWithLogitsLoss`` trains it) and its sigmoid is
    returned. The image is converted to float32 as it is: scale 8-bit values to [0, 1] first.

    With ``symmetries=True`` the image is also predicted turned by 90, 180 and 270 degrees and
    mirrored (the 8 symmetries of the square grid), each map is turned back, and the 8
    probability maps are averaged: test-time augmentation, 8 times the work. The paper
    averaged rotated versions of the input for its ISBI 2012 entry.

    Returns:
        float32 NumPy array (H, W) with values in [0, 1].
    """
    def probability(logits: torch.Tensor) -> torch.Tensor:
        if logits.shape[0] == 1:
            return torch.sigmoid(logits[:1])
        return torch.softmax(logits, dim=0)[1:2]

    return _averaged(model, image, tile_size, symmetries, probability)[0].cpu().numpy()


def predict_class_probabilities(model: nn.Module, image: object, tile_size: int | None = None,
                                *, symmetries: bool = False) -> np.ndarray:
    """Probability of every class for every pixel of one image (H, W) or (C, H, W).

    The pixel-wise soft-max over the net's output maps, predicted like
    :func:`predict_probabilities` (whose map is row 1 of this one, to float rounding; the same
    ``symmetries`` option). Its argmax over axis 0 is the most probable class of each pixel.

    Returns:
        float32 NumPy array (num_classes, H, W) with values in [0, 1] that sum to 1 over axis 0
        (to float rounding); NaN where the net gives NaN.
    """
    def probabilities(logits: torch.Tensor) -> torch.Tensor:
        if logits.shape[0] < 2:
            raise ValueError(f"the net has {logits.shape[0]} output map; class probabilities "
                             "need a soft-max over 2 or more maps (use predict_probabilities "
                             "for one logit)")
        return torch.softmax(logits, dim=0)

    return _averaged(model, image, tile_size, symmetries, probabilities).cpu().numpy()


def _averaged(model: nn.Module, image: object, tile_size: int | None, symmetries: bool,
              maps) -> torch.Tensor:
    """``maps(logits)`` (K, H, W) of ``image``; with ``symmetries``, the mean over the 8
    symmetries of the square, each prediction turned back to the image's orientation."""
    image = torch.as_tensor(np.asarray(image, dtype=np.float32))
    if not symmetries:
        return maps(_logits(model, image, tile_size))
    total = None
    for mirror in (False, True):
        for turns in range(4):
            x = image.flip(-1) if mirror else image
            y = maps(_logits(model, torch.rot90(x, turns, dims=(-2, -1)), tile_size))
            y = torch.rot90(y, -turns, dims=(-2, -1))  # undo in the opposite order
            y = y.flip(-1) if mirror else y
            total = y if total is None else total + y
    return total / 8


def _logits(model: nn.Module, image: object, tile_size: int | None) -> torch.Tensor:
    """float32 logits (num_classes, H, W) of an image (H, W) or (C, H, W), as a CPU tensor."""
    image = torch.as_tensor(np.asarray(image, dtype=np.float32))
    if image.dim() == 2:
        image = image[None]
    return predict_tiled(model, image, tile_size=tile_size).float()

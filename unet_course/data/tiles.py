"""Random training tiles for a valid-padding U-Net: the paper's overlap-tile sampling."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..mirror import mirror_indices
from ..validation import int_pair, positive_int

__all__ = ["TileDataset"]


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
        self.input_size = int_pair(input_size, "input_size")
        self.output_size = int_pair(output_size, "output_size")
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
        _check_arrays(self.images, self.masks, self.weight_maps)
        self.length = positive_int(length, "length (tiles per epoch)")
        # checked here, not at the first item: np.random.default_rng refuses a negative seed
        self.seed = None if seed is None else positive_int(seed, "seed", minimum=0)
        self.augment, self.epoch = augment, 0

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


def _check_arrays(images: list, masks: list, weight_maps: list | None) -> None:
    """One mask (and weight map) per image, each (H, W) of its image's H, W."""
    if not images or len(images) != len(masks) or (
        weight_maps is not None and len(weight_maps) != len(images)
    ):
        raise ValueError("give at least one image, and exactly one mask (and weight map) per image")
    for k, (im, m) in enumerate(zip(images, masks)):
        if im.ndim not in (2, 3) or m.shape != im.shape[-2:] or (
            weight_maps is not None and weight_maps[k].shape != m.shape
        ):
            raise ValueError(
                f"image {k} has shape {im.shape}, its mask {m.shape}: images are (H, W) or "
                "(C, H, W) and masks and weight maps (H, W) of the same H, W"
            )

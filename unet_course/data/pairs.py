"""The shape every data set of images with masks shares: a sequence of ``(image, mask)`` pairs."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ImageMaskPairs"]


class ImageMaskPairs(Sequence):
    """A read-only sequence of ``(image, mask)`` pairs, kept as two sequences of equal length.

    Subclasses fill ``self.images`` and ``self.masks`` (arrays or lists of arrays, one entry per
    image); item ``i`` is ``(self.images[i], self.masks[i])`` and a slice gives a list of pairs.
    :class:`~unet_course.data.ISBI2012` and :class:`~unet_course.data.ImageFolderDataset` are
    both such sequences, so either can be handed to :class:`~unet_course.data.TileDataset` as
    ``TileDataset(ds.images, ds.masks, ...)``.
    """

    images: Sequence
    masks: Sequence

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.images[i], self.masks[i]

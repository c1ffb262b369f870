"""Your own data: a folder of images and a folder of masks, paired by file name.

The code lives in :mod:`unet_course.data.folders`; this module keeps the import path
``from unet_course.folders import ImageFolderDataset`` working.
"""

from .data.folders import (
    IMAGE_SUFFIXES,
    MASK_SUFFIXES,
    MASK_TAGS,
    ImageFolderDataset,
    write_cell_folder,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "MASK_SUFFIXES",
    "MASK_TAGS",
    "ImageFolderDataset",
    "write_cell_folder",
]

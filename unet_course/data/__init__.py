"""The course's data sets, one module per job.

* :mod:`~unet_course.data.synthetic`: :func:`synthetic_em` (EM slices like ISBI 2012) and
  :func:`touching_cells` (light-microscopy cells that touch), generated offline;
* :mod:`~unet_course.data.toy`: :func:`toy_blobs`, a tiny imbalanced task for lesson 08;
* :mod:`~unet_course.data.multimodal`: :func:`multimodal_cells`, three modalities that each
  show part of the target (lesson 14);
* :mod:`~unet_course.data.download`: manifests, the cache folder (:func:`data_dir`) and
  verified, atomic downloads (:func:`download_files`);
* :mod:`~unet_course.data.isbi2012`: :class:`ISBI2012`, the real challenge data;
* :mod:`~unet_course.data.folders`: :class:`ImageFolderDataset`, your own images and masks;
* :mod:`~unet_course.data.modality_folders`: :class:`ModalityFolderDataset`, your own
  multi-modal images, one folder per modality, and :func:`read_modality_files`;
* :mod:`~unet_course.data.tiles`: :class:`TileDataset`, the random training tiles a
  valid-padding U-Net needs.

Conventions (see DESIGN.md): images are float32 in [0, 1]; masks are int64 class indices with
1 = cell and 0 = membrane / background; instance labels are int32 with 0 = background and
1..k one id per cell. Every file is read with :mod:`unet_course.imageio`.
"""

from .download import DownloadError, ManifestEntry, data_dir, download_files, read_manifest
from .folders import ImageFolderDataset, write_cell_folder
from .isbi2012 import ISBI2012
from .modality_folders import ModalityFolderDataset, read_modality_files, write_modality_folders
from .multimodal import multimodal_cells
from .pairs import ImageMaskPairs
from .synthetic import synthetic_em, touching_cells
from .tiles import TileDataset
from .toy import toy_blobs

__all__ = [
    "ISBI2012",
    "DownloadError",
    "ImageFolderDataset",
    "ImageMaskPairs",
    "ManifestEntry",
    "ModalityFolderDataset",
    "TileDataset",
    "data_dir",
    "download_files",
    "multimodal_cells",
    "read_manifest",
    "read_modality_files",
    "synthetic_em",
    "toy_blobs",
    "touching_cells",
    "write_cell_folder",
    "write_modality_folders",
]

"""Data augmentation as in the U-Net paper: elastic deformation, shift, rotation, flips, gray.

* :mod:`.elastic`        the paper's elastic deformation in NumPy, in its three documented
                         steps: random 3 x 3 grid -> dense field (bicubic) -> warp;
* :mod:`.elastic_torch`  the same deformation for a batch of tensors, same kernel and mirroring;
* :mod:`.transforms`     composable augmentations with one calling convention,
                         ``aug(image, *labels, rng=rng)``, chained by :class:`Compose`.

Everything is importable from ``unet_course.augment``, where the lessons import it from.
"""

from ..mirror import mirror_indices  # one mirroring rule for tiles, training tiles and warps
from .elastic import (
    bicubic_upsample,
    cubic_upsampling_matrix,
    dense_field,
    elastic_deform,
    keys_kernel,
    random_grid,
    warp,
)
from .elastic_torch import dense_field_torch, elastic_deform_torch, mirror_indices_torch
from .transforms import (
    Compose,
    ElasticDeform,
    GrayValue,
    ModalityDropout,
    RandomFlip,
    RandomRotation,
    RandomShift,
)

__all__ = [
    "Compose",
    "ElasticDeform",
    "GrayValue",
    "ModalityDropout",
    "RandomFlip",
    "RandomRotation",
    "RandomShift",
    "bicubic_upsample",
    "cubic_upsampling_matrix",
    "dense_field",
    "dense_field_torch",
    "elastic_deform",
    "elastic_deform_torch",
    "keys_kernel",
    "mirror_indices",
    "mirror_indices_torch",
    "random_grid",
    "warp",
]

"""unet_course: the small, faithful, tested package behind the U-Net course.

Every lesson imports what it needs from here; nothing is pasted twice.
"""

from .augment import elastic_deform, elastic_deform_torch
from .checkpoint import CheckpointError
from .data import ISBI2012, ImageFolderDataset, TileDataset, synthetic_em, touching_cells
from .debug import check_unet, trace_shapes
from .geometry import UNetGeometry
from .losses import soft_dice_loss, weighted_cross_entropy
from .metrics import dice, iou, pixel_error, rand_error
from .model import DoubleConv, Down, UNet, UNetConfig, Up, center_crop, he_init_
from .predict import predict_probabilities, predict_tiled
from .settings import by_profile, device, profile, seed_everything
from .tiling import mirror_pad, tile_grid
from .train import evaluate, fit, load_checkpoint, load_model, save_checkpoint
from .viz import draw_unet
from .weights import class_balance_weights, separated_mask, separation_border, unet_weight_map

__all__ = [
    "DoubleConv",
    "Down",
    "Up",
    "UNet",
    "UNetConfig",
    "UNetGeometry",
    "center_crop",
    "he_init_",
    "profile",
    "by_profile",
    "device",
    "seed_everything",
    "draw_unet",
    "pixel_error",
    "rand_error",
    "iou",
    "dice",
    "trace_shapes",
    "check_unet",
    "class_balance_weights",
    "separation_border",
    "separated_mask",
    "unet_weight_map",
    "weighted_cross_entropy",
    "soft_dice_loss",
    "fit",
    "evaluate",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "CheckpointError",
    "elastic_deform",
    "elastic_deform_torch",
    "synthetic_em",
    "touching_cells",
    "ISBI2012",
    "ImageFolderDataset",
    "TileDataset",
    "mirror_pad",
    "tile_grid",
    "predict_tiled",
    "predict_probabilities",
]
__version__ = "0.1.0"

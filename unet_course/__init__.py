"""unet_course: the small, faithful, tested package behind the U-Net course.

Every lesson imports what it needs from here; nothing is pasted twice.
"""

from .augment import elastic_deform, elastic_deform_torch
from .data import ISBI2012, TileDataset, synthetic_em, touching_cells
from .debug import check_unet, trace_shapes
from .losses import soft_dice_loss, weighted_cross_entropy
from .metrics import dice, iou, pixel_error, rand_error
from .model import DoubleConv, Down, UNet, Up, center_crop, he_init_
from .settings import by_profile, device, profile, seed_everything
from .tiling import mirror_pad, predict_tiled, tile_grid
from .train import evaluate, fit, load_checkpoint, load_model, save_checkpoint
from .viz import draw_unet
from .weights import class_balance_weights, separated_mask, separation_border, unet_weight_map

__all__ = [
    "DoubleConv",
    "Down",
    "Up",
    "UNet",
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
    "elastic_deform",
    "elastic_deform_torch",
    "synthetic_em",
    "touching_cells",
    "ISBI2012",
    "TileDataset",
    "mirror_pad",
    "tile_grid",
    "predict_tiled",
]
__version__ = "0.1.0"

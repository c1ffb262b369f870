"""unet_course: the small, faithful, tested package behind the U-Net course.

Every lesson imports what it needs from here; nothing is pasted twice.
"""

from .debug import check_unet, trace_shapes
from .metrics import dice, iou, pixel_error, rand_error
from .model import DoubleConv, Down, UNet, Up, center_crop, he_init_
from .settings import by_profile, device, profile, seed_everything
from .viz import draw_unet

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
]
__version__ = "0.1.0"

"""unet_course: the small, faithful, tested package behind the U-Net course.

Every lesson imports what it needs from here; nothing is pasted twice.
"""

from .model import DoubleConv, Down, UNet, Up, center_crop, he_init_
from .settings import by_profile, device, profile, seed_everything

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
]
__version__ = "0.1.0"

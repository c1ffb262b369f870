"""Tools for finding what is wrong with a U-Net and the loop around it (lessons 07 and 08).

* :func:`trace_shapes` (in :mod:`.shape_trace`) runs one forward pass with hooks on every
  module and returns a table of each module's input and output shapes and channel counts, in
  call order. When the forward pass fails, the table stops at the module that failed and
  names it.
* :func:`check_unet` (in :mod:`.unet_checks`) checks the properties a correct U-Net must have
  (it builds, it has the paper's parameter count, it returns a tensor of the right shape for
  several valid input sizes, the gradient reaches its first layer) and reports which ones
  fail, without saying why.
* Small helpers for the lesson's pitfalls (in :mod:`.pitfalls`): :func:`suggest_nn_name` for
  misspelled layer names, :func:`check_mask` for masks that are not class indices,
  :func:`saved_activation_bytes` for the memory autograd keeps, :class:`AugmentationDraws` and
  :func:`reseed_worker` for DataLoader workers that replay one random state; and :func:`toy_blobs`, a tiny
  imbalanced segmentation task (a data set, so it lives in :mod:`unet_course.data.toy`).
* :class:`TrainingMonitor` (in :mod:`.monitor`) records the loss and the gradient norm of
  every step and finds the first NaN; :func:`sgd_lr_sweep` shows a learning rate diverging.
* :func:`short_tracebacks` (in :mod:`.tracebacks`) makes a notebook show each error as the
  frames in the reader's code, the library's frames folded to one line, and the message
  wrapped to the page: how every expected error of the course is printed.
"""

from ..data.toy import toy_blobs
from .monitor import TrainingMonitor, gradient_norm, sgd_lr_sweep
from .pitfalls import (
    AugmentationDraws,
    check_mask,
    reseed_worker,
    saved_activation_bytes,
    suggest_nn_name,
)
from .shape_trace import ShapeTrace, TraceRow, trace_shapes
from .tracebacks import format_short_traceback, short_tracebacks
from .unet_checks import PAPER_PARAMETERS, Check, UNetReport, check_unet

__all__ = [
    "AugmentationDraws",
    "PAPER_PARAMETERS",
    "Check",
    "ShapeTrace",
    "TraceRow",
    "TrainingMonitor",
    "UNetReport",
    "check_mask",
    "check_unet",
    "format_short_traceback",
    "gradient_norm",
    "reseed_worker",
    "saved_activation_bytes",
    "sgd_lr_sweep",
    "short_tracebacks",
    "suggest_nn_name",
    "toy_blobs",
    "trace_shapes",
]

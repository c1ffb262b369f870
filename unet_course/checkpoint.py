"""Checkpoints: one file that rebuilds the network and resumes its training exactly.

A checkpoint is a dictionary saved with ``torch.save`` that holds only tensors and plain Python
values, so that :func:`load_checkpoint` reads it with ``weights_only=True`` (no code from the
file is run). Its keys:

* ``format``: ``"unet_course.checkpoint/1"``;
* ``config``, ``model_class``: the keyword arguments and class name that rebuild the network;
* ``state_dict``: the weights; ``optimizer``: the optimiser's state (or None) and
  ``optimizer_class`` its class name;
* ``step``: the optimisation steps done; ``history``: :meth:`History.state` (or None);
* ``rng``: the random number generators' states (see :func:`_rng_state`), ``extra``: anything else;
  ``extra["normalize"]``, written by :func:`unet_course.train.fit`, names the intensity
  normalisation of the training images (see :func:`stored_normalization`);
  ``extra["modalities"]``, written for a model with a ``modalities`` attribute, names its
  input channels in order (see :func:`stored_modalities`).

Every way a file can be wrong (missing, truncated, a plain ``state_dict``, a whole pickled
model, keys missing, weights that do not fit their config) raises :class:`CheckpointError`
naming the file and saying what to do.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ._checkpoint_kinds import not_a_torch_file, unreadable
from .model import UNet

if TYPE_CHECKING:
    from .train import History

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "load_checkpoint", "load_model",
           "load_weights", "save_checkpoint", "stored_modalities", "stored_normalization"]

CHECKPOINT_FORMAT = "unet_course.checkpoint/1"

#: Keys that every checkpoint written by :func:`save_checkpoint` has.
REQUIRED_KEYS = ("format", "config", "model_class", "state_dict", "optimizer", "step",
                 "history", "rng", "extra")


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted or not one of ours."""


# --------------------------------------------------------------------------- RNG states
def _rng_state(dataset: Any = None) -> dict[str, Any]:
    """The state of every random number generator that training draws from.

    torch's global generator (dropout, weight init), Python's and NumPy's global generators
    (used by user augmentations), CUDA's generators when CUDA is available, and
    ``dataset.rng`` when a dataset keeps its own ``np.random.Generator`` there.
    :class:`~unet_course.data.TileDataset` keeps none: its item i of epoch e comes from a
    generator seeded with (seed, e, i), and :func:`fit` tells it the epoch again on resume.
    """
    name, key, pos, has_gauss, gauss = np.random.get_state()
    # Arrays are not allowed in a weights_only checkpoint: NumPy's key travels as a tensor.
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (name, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    rng = getattr(dataset, "rng", None)
    if isinstance(rng, np.random.Generator):
        state["dataset"] = rng.bit_generator.state
    return state


def _set_rng_state(state: dict[str, Any], dataset: Any = None) -> None:
    """Restore what :func:`_rng_state` saved; warn when the dataset's own generator cannot be."""
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    name, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    rng = getattr(dataset, "rng", None)
    if isinstance(rng, np.random.Generator):
        if "dataset" in state:
            rng.bit_generator.state = state["dataset"]
        else:
            warnings.warn(f"the checkpoint holds no state for {type(dataset).__name__}.rng (it was "
                          "saved with another dataset), so the resumed run draws other random "
                          "numbers than an uninterrupted one would", RuntimeWarning, stacklevel=3)


def _as_tuple(x):
    """Lists back to tuples, as ``random.setstate`` needs (a checkpoint may store lists)."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


# --------------------------------------------------------------------------- writing
#: A writer keeps its temporary file growing, and even 200 MB take seconds to write: one
#: unmodified for this long (seconds) was left by a writer that died.
_STALE_AFTER_S = 600
#: The PID in a temporary file's name is looked up on this machine only, while a folder shared
#: over the network may hold another machine's live writer under the same number: so a file of
#: a PID that does not run here is removed only once it has not changed for this long.
_DEAD_WRITER_GRACE_S = 60


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine; True wherever that cannot be told."""
    if os.name == "nt":  # there os.kill(pid, 0) would terminate the process, not look it up
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # another user's process (EPERM), or no such number
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files of earlier saves of ``path`` that their writer left behind.

    A writer killed by SIGKILL (or a power cut) never runs the clean-up of
    :func:`_write_atomically`, so its ``.NAME.PID.XXXXXXXX.tmp`` (``.NAME.XXXXXXXX.tmp``
    before the PID was recorded) stays, as large as the checkpoint. Only files of that
    pattern for this name are touched, and only when not modified for ``_STALE_AFTER_S``, or
    for ``_DEAD_WRITER_GRACE_S`` when their PID runs no process.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)\.)?[0-9a-f]{{8}}\.tmp")
    now = time.time()
    with os.scandir(path.parent) as entries:
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if not match or not entry.is_file(follow_symlinks=False):
                continue
            try:
                idle = now - entry.stat(follow_symlinks=False).st_mtime
                pid = match.group(1)
                if idle > _STALE_AFTER_S or (
                        pid and idle > _DEAD_WRITER_GRACE_S and not _alive(int(pid))):
                    os.unlink(entry.path)
            except OSError:  # removed meanwhile by another save, or not ours to remove
                continue


def _write_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through a temporary file in the same folder, then rename it over ``path``.

    A crash while writing leaves the previous file intact and no temporary file behind; a kill
    that runs no clean-up leaves one, which the next save of the same name removes (see
    :func:`_remove_stale_temporaries`; it runs first, freeing the space before writing). The
    temporary file is named after the writing process (``.NAME.PID.XXXXXXXX.tmp``) and created
    with mode 0666, which the process umask reduces as for any new file
    (``tempfile.mkstemp`` would give 0600, and the checkpoint would keep it).
    """
    _remove_stale_temporaries(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:  # another writer picked the same name: draw again
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, step: int = 0, *,
                    history: History | None = None, rng_state: dict | None = None,
                    **extra: Any) -> Path:
    """Write model weights + constructor config (+ optimizer, step, RNG state) atomically.

    The file is written to a temporary name in the same folder and renamed over ``path``, so a
    crash while writing never damages the previous checkpoint; it gets the usual permissions
    of a new file (0666 less the umask). Only tensors and plain Python values are stored, so
    :func:`load_checkpoint` can read it with ``weights_only=True``. ``extra`` keyword values
    (plain Python values or tensors) are stored under ``"extra"``; so are the names of a model's
    input channels, ``model.modalities``, where it has them (a multi-modal net, see
    :func:`stored_modalities`), so that every checkpoint of a run says its channel order.
    """
    path = Path(path)
    modalities = getattr(model, "modalities", None)
    if modalities is not None and "modalities" not in extra:
        extra = {**extra, "modalities": [str(name) for name in modalities]}
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": dict(getattr(model, "config", {})),
        "model_class": type(model).__name__,
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "optimizer_class": type(optimizer).__name__ if optimizer is not None else None,
        "step": int(step),
        "history": history.state() if history is not None else None,
        "rng": rng_state,
        "extra": extra,
    }
    _write_atomically(path, lambda f: torch.save(payload, f))
    return path


# --------------------------------------------------------------------------- reading
def load_checkpoint(path: str | os.PathLike,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (with ``weights_only=True``).

    Returns the stored dictionary: ``config``, ``model_class``, ``state_dict``, ``optimizer``,
    ``step``, ``history``, ``rng``, ``extra``. A missing, truncated or foreign file, or one
    with keys missing, raises :class:`CheckpointError` saying which file and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train one with "
                              "fit(..., checkpoint_dir=...) or `python -m unet_course train --out DIR`")
    problem = not_a_torch_file(path)  # a raw pickle, an empty file: torch would say corrupted
    if problem:
        raise CheckpointError(problem)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or foreign files
        raise CheckpointError(unreadable(path, exc)) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a unet_course checkpoint (expected format "
                              f"{CHECKPOINT_FORMAT!r}); it may be a plain state_dict: load it with "
                              "model.load_state_dict(torch.load(path, weights_only=True))")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the keys {', '.join(missing)}; it was "
                              "damaged or edited after save_checkpoint wrote it: use another one")
    if not isinstance(payload["state_dict"], Mapping) or not isinstance(payload["config"], Mapping):
        raise CheckpointError(f"checkpoint {path} has a state_dict or config that is not a "
                              "dictionary; use another checkpoint")
    return payload


def stored_normalization(ckpt: Mapping[str, Any]) -> str | None:
    """The intensity normalisation a checkpoint's network was trained with, or None.

    ``ckpt`` is what :func:`load_checkpoint` returns; the name (``"minmax"``, ``"zscore"`` or
    ``"none"``, see :func:`unet_course.imageio.prepare_image`) is ``ckpt["extra"]["normalize"]``.
    None: the checkpoint does not say (written before the entry existed, or by ``fit`` without
    ``normalize``), so the images' values as :func:`~unet_course.imageio.read_image` gives them
    are all there is to go by.
    """
    extra = ckpt.get("extra")
    return extra.get("normalize") if isinstance(extra, Mapping) else None


def stored_modalities(ckpt: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The names of a checkpoint's input channels, in order, or None where it does not say.

    ``ckpt`` is what :func:`load_checkpoint` returns. A net trained on per-modality folders
    (``train --data modalities``) stores its modalities' folder names, sorted: channel k of
    its input is ``names[k]``. ``predict`` reads them to stack a new image's files in that
    order and to refuse files of a modality in the wrong place.
    """
    extra = ckpt.get("extra")
    names = extra.get("modalities") if isinstance(extra, Mapping) else None
    return None if names is None else tuple(str(name) for name in names)


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                 source: str) -> nn.Module:
    """``model.load_state_dict(state_dict)``, with a :class:`CheckpointError` when they do not fit.

    PyTorch's RuntimeError lists every missing, unexpected and mis-sized tensor; the error
    keeps that list (first lines) and says where the weights came from (``source``).
    """
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        shown = " ".join(line.strip() for line in lines[:4]) + (" ..." if len(lines) > 4 else "")
        raise CheckpointError(f"the weights in {source} do not fit this {type(model).__name__}: "
                              f"it was saved from a network of another shape ({shown}); build "
                              "the network with the checkpoint's config (see load_model)") from exc
    return model


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network stored in a checkpoint, in eval mode.

    A :class:`UNet`, any class of :data:`unet_course.variants.VARIANTS` (the successors and
    nnU-Net's planned net) or a :class:`~unet_course.fusion.LateFusionUNet`, rebuilt from the
    stored ``config``; a stored channel order becomes ``model.modalities``.
    """
    from .fusion import LateFusionUNet  # both build on model; import them only when needed
    from .variants import VARIANTS

    ckpt = load_checkpoint(path, map_location)
    classes = {"UNet": UNet, "LateFusionUNet": LateFusionUNet, **VARIANTS}
    name = ckpt["model_class"]
    if name not in classes:
        raise CheckpointError(f"{path} holds a {name}, which is not one of the course's networks "
                              f"({', '.join(classes)}): build that class yourself and load "
                              "ckpt['state_dict'] into it")
    try:
        model = classes[name](**ckpt["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"the config stored in {path} does not build a {name} ({exc}); the "
                              "checkpoint is damaged or from another version: "
                              f"{ckpt['config']}") from exc
    load_weights(model, ckpt["state_dict"], f"{path} (config {ckpt['config']})")
    modalities = stored_modalities(ckpt)
    if modalities is not None:
        model.modalities = modalities
    return model.eval()

"""Training and evaluation with the paper's choices, and checkpoints that resume exactly.

The paper trains with stochastic gradient descent, "a high momentum (0.99) such that a large
number of the previously seen training samples determine the update in the current
optimization step", one large tile per batch, and the energy

    E = sum_x w(x) log p_l(x)(x)

over the pixel-wise soft-max p of the last feature map (see :mod:`unet_course.losses`).
:func:`fit` does exactly that by default; Adam, automatic mixed precision and channels-last
memory layout are options for people who want a modern recipe on a GPU.

A training set is any ``torch.utils.data.Dataset`` whose items are ``(image, target)`` or
``(image, target, weight_map)``: image (C, h, w) float, target (h', w') int64 class indices,
weight_map (h', w') float, where (h', w') is the net's output size for (h, w).
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .losses import weighted_cross_entropy
from .metrics import dice, iou, pixel_error, rand_error
from .model import UNet
from .tiling import predict_tiled

__all__ = ["History", "fit", "evaluate", "predict_probabilities", "save_checkpoint",
           "load_checkpoint", "load_model", "CheckpointError"]

CHECKPOINT_FORMAT = "unet_course.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted or not one of ours."""


@dataclass
class History:
    """What :func:`fit` measured: the loss at every step and the validation metrics."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)  # each with a "step" key

    def state(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "loss": list(self.loss), "val": [dict(v) for v in self.val]}


# --------------------------------------------------------------------------- checkpoints
def _rng_state(generator: torch.Generator | None, dataset: Any) -> dict[str, Any]:
    name, key, pos, has_gauss, gauss = np.random.get_state()
    # Arrays are not allowed in a weights_only checkpoint: NumPy's key travels as a tensor.
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (name, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["sampler"] = generator.get_state()
    rng = getattr(dataset, "rng", None)
    if isinstance(rng, np.random.Generator):
        state["dataset"] = rng.bit_generator.state
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator | None, dataset: Any) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    name, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "sampler" in state:
        generator.set_state(state["sampler"])
    rng = getattr(dataset, "rng", None)
    if isinstance(rng, np.random.Generator) and "dataset" in state:
        rng.bit_generator.state = state["dataset"]


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    step: int = 0, *, history: History | None = None, rng_state: dict | None = None,
                    **extra: Any) -> Path:
    """Write model weights + constructor config (+ optimizer, step, RNG state) atomically.

    The file is written to a temporary name in the same folder and renamed over ``path``, so a
    crash while writing never damages the previous checkpoint. Only tensors and plain Python
    values are stored, so :func:`load_checkpoint` can read it with ``weights_only=True``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": dict(getattr(model, "config", {})),
        "model_class": type(model).__name__,
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": int(step),
        "history": history.state() if history is not None else None,
        "rng": rng_state,
        "extra": extra,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (with ``weights_only=True``).

    Returns the stored dictionary: ``config``, ``state_dict``, ``optimizer``, ``step``,
    ``history``, ``rng``, ``extra``. A missing, truncated or foreign file raises
    :class:`CheckpointError` saying which file and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train one with fit(..., checkpoint_dir=...) "
                              "or `python -m unet_course train --out DIR`")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for damaged zip files
        raise CheckpointError(f"checkpoint {path} is truncated or corrupted ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'no details'}); use an earlier "
                              "checkpoint or train again") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a unet_course checkpoint (expected format "
                              f"{CHECKPOINT_FORMAT!r}); it may be a plain state_dict: load it with "
                              "model.load_state_dict(torch.load(path, weights_only=True))")
    return payload


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> UNet:
    """Rebuild the :class:`UNet` stored in a checkpoint, in eval mode."""
    ckpt = load_checkpoint(path, map_location)
    if ckpt["model_class"] != "UNet":
        raise CheckpointError(f"{path} holds a {ckpt['model_class']}, not a UNet: build that class "
                              "yourself and load ckpt['state_dict'] into it")
    model = UNet(**ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


# --------------------------------------------------------------------------- training
def _make_optimizer(name: str, params, lr: float | None, momentum: float, weight_decay: float):
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01 if lr is None else lr, momentum=momentum,
                               weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3 if lr is None else lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' (the paper: momentum 0.99) or 'adam', got {name!r}")


def _unpack(item: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise TypeError("a training item must be (image, target) or (image, target, weight_map), "
                        f"got {type(item).__name__}")
    image, target = torch.as_tensor(item[0]), torch.as_tensor(item[1])
    weight = torch.as_tensor(item[2]) if len(item) == 3 and item[2] is not None else None
    if image.dim() != 3:
        raise ValueError(f"a training image must be (C, H, W), got shape {tuple(image.shape)}")
    return image.float(), target.long(), None if weight is None else weight.float()


def _batch(items: list[tuple], device: torch.device, channels_last: bool):
    images = torch.stack([i[0] for i in items]).to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.stack([i[1] for i in items]).to(device)
    weights = None
    if items[0][2] is not None:
        weights = torch.stack([i[2] for i in items]).to(device)
    return images, targets, weights


def fit(
    model: nn.Module,
    train_data: torch.utils.data.Dataset,
    val_data: tuple[Sequence[Any], Sequence[Any]] | None = None,
    *,
    steps: int = 1000,
    optimizer: str = "sgd",
    lr: float | None = None,
    momentum: float = 0.99,
    weight_decay: float = 0.0,
    batch_size: int = 1,
    warmup: int = 0,
    grad_clip: float | None = None,
    lr_schedule: str = "constant",
    time_budget: float | None = None,
    device: str | torch.device | None = None,
    amp: bool = False,
    channels_last: bool = False,
    seed: int = 0,
    log_every: int = 10,
    val_every: int | None = None,
    callbacks: Iterable[Callable[[dict[str, Any]], None]] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: str | os.PathLike | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` on random items of ``train_data`` for ``steps`` optimisation steps.

    Paper defaults: SGD with momentum 0.99, batch 1 (one large tile), the weighted pixel-wise
    soft-max cross-entropy when items carry a weight map (plain cross-entropy otherwise).
    ``lr`` defaults to 0.01 for SGD and 1e-3 for Adam (``optimizer="adam"``).

    Items are drawn without replacement: each epoch walks a fresh permutation of
    ``train_data`` (seeded by ``seed`` and the epoch), and a dataset with ``set_epoch`` (such as
    :class:`~unet_course.data.TileDataset`) is told the epoch, so it draws new tiles. A
    ``TileDataset`` of ``length=steps`` is therefore seen exactly once, every tile fresh.

    Stability options (none is in the paper; see lesson 06 for what each one buys):
    ``warmup`` ramps the learning rate linearly from 0 over that many steps; ``grad_clip``
    rescales the gradient to at most that L2 norm; ``lr_schedule="poly"`` decays the rate as
    ``(1 - progress) ** 0.9`` (nnU-Net's schedule), where progress is the larger of the
    fraction of ``steps`` and of ``time_budget`` used. ``time_budget`` (seconds) stops training
    after that much wall-clock time, with the checkpoint written as at a normal end.

    Every ``log_every`` steps each callback receives ``{"step", "loss", "lr"}`` (the loss
    averaged since the last call); every ``val_every`` steps :func:`evaluate` runs on
    ``val_data = (images, masks)`` and the callbacks receive ``{"step", "val": metrics}``.
    With ``checkpoint_dir`` the state is saved to ``last.pt`` every ``checkpoint_every``
    steps and at the end; ``resume=path`` continues such a run exactly where it stopped
    (bit-identical on the CPU, RNG states included).

    ``amp`` (CUDA only) runs the forward pass in float16 with a gradient scaler;
    ``channels_last`` stores images in NHWC layout, which is faster for convolutions on
    recent GPUs. A non-finite loss stops training with a ``FloatingPointError`` naming the
    step. Returns the :class:`History`.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (the paper uses 1), got {batch_size}")
    if len(train_data) == 0:
        raise ValueError("train_data is empty")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a number of steps >= 0, got {warmup!r}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be a positive gradient norm or None, got {grad_clip!r}")
    if lr_schedule not in ("constant", "poly"):
        raise ValueError(f"lr_schedule must be 'constant' or 'poly', got {lr_schedule!r}")
    if time_budget is not None and not time_budget > 0:
        raise ValueError(f"time_budget must be a positive number of seconds, got {time_budget!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if amp and device.type != "cuda":
        raise ValueError("amp=True needs a CUDA device; on the CPU train in float32")
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = _make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    generator = torch.Generator().manual_seed(seed)
    history, start = History(), 0
    torch.manual_seed(seed)

    if resume is not None:
        ckpt = load_checkpoint(resume, map_location=device)
        model.load_state_dict(ckpt["state_dict"])
        if ckpt["optimizer"] is not None:
            opt.load_state_dict(ckpt["optimizer"])
        start = ckpt["step"]
        if start >= steps:
            raise ValueError(f"{resume} is already at step {start}; to train on, ask for more "
                             f"than {start} steps (got steps={steps})")
        if ckpt["history"] is not None:
            history = History(**ckpt["history"])
        if ckpt["rng"] is not None:
            _set_rng_state(ckpt["rng"], generator, train_data)
    callbacks = list(callbacks)
    ckpt_path = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None

    def checkpoint(step: int) -> None:
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, model, opt, step, history=history,
                            rng_state=_rng_state(generator, train_data))

    model.train()
    running, count = 0.0, 0
    sampler = _EpochSampler(train_data, seed)
    base_lr = [g["lr"] for g in opt.param_groups]
    started = time.perf_counter()
    done = start
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="training", unit="step",
               disable=not progress, file=sys.stdout, dynamic_ncols=True)
    try:
        for step in bar:
            elapsed = time.perf_counter() - started
            if time_budget is not None and elapsed >= time_budget:
                break
            progress_done = step / steps if time_budget is None else max(step / steps, elapsed / time_budget)
            factor = _lr_factor(step, warmup, lr_schedule, progress_done)
            for group, lr0 in zip(opt.param_groups, base_lr):
                group["lr"] = lr0 * factor
            idx = sampler.indices(step * batch_size, batch_size)
            images, targets, weights = _batch([_unpack(train_data[i]) for i in idx], device, channels_last)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                logits = model(images)
            logits = logits.float()
            if weights is not None:
                loss = weighted_cross_entropy(logits, targets, weights)
            else:
                loss = F.cross_entropy(logits, targets)
            if not torch.isfinite(loss):
                err = FloatingPointError(
                    f"the loss became {loss.item()} at step {step + 1}. Likely causes: a learning rate "
                    f"too high for momentum {momentum} (try lr / 10), inputs not scaled to [0, 1], "
                    "NaN or inf in an image or weight map, or float16 overflow with amp=True")
                err.step, err.history = step + 1, history  # what was learnt before, for plots
                raise err
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(opt)
            scaler.update()

            value = loss.item()
            history.steps.append(step + 1)
            history.loss.append(value)
            running, count = running + value, count + 1
            done = step + 1
            if done % log_every == 0 or done == steps:
                event = {"step": done, "loss": running / count, "lr": opt.param_groups[0]["lr"]}
                bar.set_postfix(loss=f"{event['loss']:.4f}")
                for cb in callbacks:
                    cb(event)
                running, count = 0.0, 0
            if val_data is not None and val_every and (done % val_every == 0 or done == steps):
                metrics = evaluate(model, *val_data)
                history.val.append({"step": done, **metrics})
                model.train()
                for cb in callbacks:
                    cb({"step": done, "val": metrics})
            if checkpoint_every and done % checkpoint_every == 0 and done != steps:
                checkpoint(done)
    except KeyboardInterrupt:
        bar.close()
        checkpoint(done)  # Ctrl-C keeps what was learnt; the caller says where
        raise
    bar.close()
    for group, lr0 in zip(opt.param_groups, base_lr):
        group["lr"] = lr0  # a resumed run applies its own schedule from the base rate
    checkpoint(done)
    model.eval()
    return history


def _lr_factor(step: int, warmup: int, schedule: str, progress: float) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based)."""
    factor = 1.0
    if warmup and step < warmup:
        factor = (step + 1) / warmup
    if schedule == "poly":
        factor *= max(0.0, 1.0 - progress) ** 0.9
    return factor


class _EpochSampler:
    """Indices without replacement: epoch e is a permutation seeded by (seed, e).

    The k-th item ever drawn depends only on k, so a resumed run draws the same items.
    """

    def __init__(self, dataset: Any, seed: int):
        self.dataset, self.seed, self.n = dataset, seed, len(dataset)
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> list[int]:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g).tolist()
            set_epoch = getattr(self.dataset, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)
        return self._perm

    def indices(self, first: int, count: int) -> list[int]:
        return [self._permutation(k // self.n)[k % self.n] for k in range(first, first + count)]


# --------------------------------------------------------------------------- evaluation
def predict_probabilities(model: nn.Module, image, tile_size: int | None = None) -> np.ndarray:
    """Probability of "cell" (class 1) for every pixel of one image (H, W) or (C, H, W).

    The whole image is predicted with the overlap-tile strategy (:func:`predict_tiled`), so
    any size works and the result has the image's size. Returns float32 (H, W) in [0, 1].
    """
    image = torch.as_tensor(np.asarray(image, dtype=np.float32))
    if image.dim() == 2:
        image = image[None]
    logits = predict_tiled(model, image, tile_size=tile_size)
    return torch.softmax(logits.float(), dim=0)[1].cpu().numpy()


def evaluate(model: nn.Module, images: Sequence[Any], masks: Sequence[Any],
             tile_size: int | None = None) -> dict[str, float]:
    """Mean ``pixel_error``, ``rand_error``, ``iou`` and ``dice`` over whole images.

    ``images``: a sequence of (H, W) or (C, H, W) images; ``masks``: matching (H, W) label maps
    (1 = cell). Each image is predicted whole with :func:`predict_tiled`; the Rand error
    sweeps thresholds of the probability map (see :func:`unet_course.metrics.rand_error`).
    """
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    if len(images) == 0:
        raise ValueError("nothing to evaluate: images is empty")
    scores: dict[str, list[float]] = {"pixel_error": [], "rand_error": [], "iou": [], "dice": []}
    for image, mask in zip(images, masks):
        prob = predict_probabilities(model, image, tile_size)
        mask = np.asarray(mask)
        scores["pixel_error"].append(pixel_error(prob, mask))
        scores["rand_error"].append(rand_error(prob, mask))
        scores["iou"].append(iou(prob, mask))
        scores["dice"].append(dice(prob, mask))
    return {k: float(np.mean(v)) for k, v in scores.items()}

"""Training and evaluation with the paper's choices, and checkpoints that resume exactly.

The paper trains with stochastic gradient descent, "a high momentum (0.99) such that a large
number of the previously seen training samples determine the update in the current
optimization step", one large tile per batch, and the energy printed as

    E = sum_x w(x) log p_l(x)(x)

over the pixel-wise soft-max p of the last feature map. As printed, E is a log-likelihood
(at most 0) to be maximised; the loss that :func:`fit` minimises is its negative, the weighted
cross-entropy of :mod:`unet_course.losses` (the minus sign is missing in the paper).
:func:`fit` does exactly that by default; Adam, automatic mixed precision and channels-last
memory layout are options for people who want a modern recipe on a GPU.

A training set is any ``torch.utils.data.Dataset`` whose items are ``(image, target)`` or
``(image, target, weight_map)``: image (C, h, w) float, target (h', w') int64 class indices,
weight_map (h', w') float, where (h', w') is the net's output size for (h, w).

:func:`fit` is a short sequence of named steps: check the arguments (in
:mod:`unet_course.fit_checks`), build the optimiser (:func:`_setup`), load a checkpoint
(:func:`_resume`), then in :func:`_loop`, for each step, set the learning rate
(:func:`_set_learning_rate`), train on one batch (:func:`_train_step`), log (:func:`_record`),
validate (:func:`_validate`) and save (:func:`_checkpoint`). The sampler, batches, optimisers
and schedule are in :mod:`unet_course.steps`, checkpoints in :mod:`unet_course.checkpoint`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .checkpoint import (  # checkpoints moved there; still importable from here
    CHECKPOINT_FORMAT,  # noqa: F401
    CheckpointError,
    _rng_state,
    _set_rng_state,
    load_checkpoint,
    load_model,
    load_weights,
    save_checkpoint,
    stored_normalization,
)
from .fit_checks import check_fit_arguments
from .imageio import NORMALIZATIONS
from .metrics import dice, iou, pixel_error, rand_error
from .predict import predict_probabilities  # its home is predict; importable here as before
from .steps import EpochSampler, batch_loss, make_optimizer, stack_batch, unpack_item
from .steps import lr_factor as _lr_factor  # the old private name, kept for callers
from .validation import kept_mode

__all__ = ["History", "fit", "evaluate", "predict_probabilities", "save_checkpoint",
           "load_checkpoint", "load_model", "CheckpointError"]

@dataclass
class History:
    """What :func:`fit` measured: the loss at every step and the validation metrics."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)  # each with a "step" key

    def state(self) -> dict[str, Any]:
        """Plain lists and dicts, as a checkpoint stores them (``History(**state)`` rebuilds it)."""
        return {"steps": list(self.steps), "loss": list(self.loss),
                "val": [dict(v) for v in self.val]}


# --------------------------------------------------------------------------- training
def fit(
    model: nn.Module,
    train_data: torch.utils.data.Dataset,
    val_data: tuple[Sequence[Any], Sequence[Any]] | None = None,
    *,
    steps: int = 1000,
    optimizer: str = "sgd",
    lr: float | None = None,
    momentum: float = 0.99,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    loss: str = "ce",
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
    normalize: str | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` on random items of ``train_data`` for ``steps`` optimisation steps.

    Paper defaults: SGD with momentum 0.99, batch 1, the weighted cross-entropy when items
    carry a weight map (plain otherwise). ``lr``: 0.01 for SGD, 1e-3 for ``"adam"``. nnU-Net
    (:class:`unet_course.plan.TrainerPlan`) adds ``nesterov=True`` and ``loss="dice_ce"``; a
    deeply supervised net is trained on all its heads (``batch_loss``).

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
    steps, at the end and on Ctrl-C; ``resume=path`` continues such a run exactly where it
    stopped (bit-identical on the CPU, RNG states and the learning-rate schedule included).
    Every argument is checked first (:mod:`unet_course.fit_checks`); one that would do
    nothing (``val_every`` without ``val_data``) is an error, not a silent no-op. ``normalize``
    names the images' normalisation (:func:`~unet_course.imageio.prepare_image`) in checkpoints.

    ``amp`` (CUDA only): float16 forward pass with a gradient scaler; ``channels_last``: NHWC
    images, faster on recent GPUs. A non-finite loss raises ``FloatingPointError`` naming the
    step. Returns the :class:`History`.
    """
    check_fit_arguments(model, train_data, val_data, steps=steps, optimizer=optimizer, lr=lr,
                         momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                         loss=loss, batch_size=batch_size, warmup=warmup, grad_clip=grad_clip,
                         lr_schedule=lr_schedule, time_budget=time_budget, seed=seed,
                         log_every=log_every, val_every=val_every, callbacks=callbacks,
                         checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every)
    run = _setup(model, train_data, steps, device=device, amp=amp, channels_last=channels_last,
                 optimizer=optimizer, lr=lr, momentum=momentum, nesterov=nesterov,
                 weight_decay=weight_decay, loss=loss, batch_size=batch_size,
                 grad_clip=grad_clip, checkpoint_dir=checkpoint_dir, normalize=normalize)
    torch.manual_seed(seed)
    if resume is not None:
        _resume(run, resume)
    return _loop(run, EpochSampler(train_data, seed), val_data, list(callbacks), progress,
                 warmup=warmup, lr_schedule=lr_schedule, time_budget=time_budget,
                 log_every=log_every, val_every=val_every, checkpoint_every=checkpoint_every)


@dataclass
class _Run:
    """What the steps of one :func:`fit` call share: the net, its optimiser, what was measured."""

    model: nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    data: Any
    steps: int
    batch_size: int
    amp: bool
    channels_last: bool
    grad_clip: float | None
    momentum: float
    loss: str
    ckpt_path: Path | None
    normalize: str | None = None  # stored in each checkpoint for predict (see prepare_image)
    history: History = field(default_factory=History)
    start: int = 0  # the step a resumed run starts from
    base_lr: list[float] = field(default_factory=list)  # each group's rate before the schedule
    running: float = 0.0  # loss summed since the last log event ...
    count: int = 0  # ... over this many steps


def _setup(model: nn.Module, data: Any, steps: int, *, device, amp: bool, channels_last: bool,
           optimizer: str, lr: float | None, momentum: float, nesterov: bool,
           weight_decay: float, loss: str, batch_size: int, grad_clip: float | None,
           checkpoint_dir, normalize: str | None) -> _Run:
    """Move the model to ``device`` (default: where its parameters are) and build the optimiser."""
    if normalize is not None and normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be None or one of {', '.join(NORMALIZATIONS)} (the "
                         f"normalisation the images went through), got {normalize!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if amp and device.type != "cuda":
        raise ValueError("amp=True needs a CUDA device; on the CPU train in float32")
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay, nesterov)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    ckpt_path = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
    return _Run(model, opt, scaler, device, data, steps, batch_size, amp, channels_last,
                grad_clip, momentum, loss, ckpt_path, normalize)


def _resume(run: _Run, path: str | os.PathLike) -> None:
    """Load weights, optimiser state, step, history and RNG states from the checkpoint ``path``."""
    ckpt = load_checkpoint(path, map_location=run.device)
    start = ckpt["step"]
    if start >= run.steps:
        raise ValueError(f"{path} is already at step {start}; to train on, ask for more "
                         f"than {start} steps (got steps={run.steps})")
    load_weights(run.model, ckpt["state_dict"], f"the checkpoint {path}")
    if ckpt["optimizer"] is not None:
        saved, wanted = ckpt.get("optimizer_class"), type(run.opt).__name__
        if saved is not None and saved != wanted:
            raise CheckpointError(f"{path} was trained with {saved}, not {wanted}: resume it with "
                                  f"the same optimizer (optimizer={saved.lower()!r})")
        try:
            run.opt.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"the optimizer state in {path} does not fit this model's "
                                  f"parameters ({exc}); train again or load only the "
                                  "weights") from exc
    saved = stored_normalization(ckpt)
    if None not in (saved, run.normalize) and saved != run.normalize:
        raise CheckpointError(f"{path} was trained on images normalised with {saved!r}, not "
                              f"{run.normalize!r}: resume it with normalize={saved!r}")
    run.normalize = saved if run.normalize is None else run.normalize  # kept for predict
    run.start = start
    if ckpt["history"] is not None:
        run.history = History(**ckpt["history"])
    if ckpt["rng"] is not None:
        _set_rng_state(ckpt["rng"], run.data)


def _loop(run: _Run, sampler: EpochSampler, val_data, callbacks: list, progress: bool, *,
          warmup: int, lr_schedule: str, time_budget: float | None, log_every: int,
          val_every: int | None, checkpoint_every: int | None) -> History:
    """Train from step ``run.start`` to ``run.steps`` or until ``time_budget`` (s) is used.

    The checkpoint is saved every ``checkpoint_every`` steps, at the end and on Ctrl-C (which
    is then raised again). Returns the history; the model is left in eval mode.
    """
    run.base_lr = [g["lr"] for g in run.opt.param_groups]  # after a resume: the saved rates
    run.model.train()
    started = time.perf_counter()
    done = run.start
    bar = tqdm(range(run.start, run.steps), initial=run.start, total=run.steps, desc="training",
               unit="step", disable=not progress, file=sys.stdout, dynamic_ncols=True)
    try:
        for step in bar:
            elapsed = time.perf_counter() - started
            if time_budget is not None and elapsed >= time_budget:
                break
            _set_learning_rate(run, step, warmup, lr_schedule, elapsed, time_budget)
            value = _train_step(run, step, sampler.indices(step * run.batch_size, run.batch_size))
            done = step + 1
            _record(run, done, value, log_every, bar, callbacks)
            if val_every and (done % val_every == 0 or done == run.steps):
                _validate(run, done, val_data, callbacks)
            if checkpoint_every and done % checkpoint_every == 0 and done != run.steps:
                _checkpoint(run, done)
    except KeyboardInterrupt:
        bar.close()
        _checkpoint(run, done)  # Ctrl-C keeps what was learnt; the caller says where
        raise
    bar.close()
    for group, lr0 in zip(run.opt.param_groups, run.base_lr):
        group["lr"] = lr0  # the optimiser is left at its base rate, as it came in
    _checkpoint(run, done)
    run.model.eval()
    return run.history


def _set_learning_rate(run: _Run, step: int, warmup: int, schedule: str, elapsed: float,
                       time_budget: float | None) -> None:
    """Each group's rate for ``step`` (0-based): its base rate times :func:`_lr_factor`."""
    progress = step / run.steps
    if time_budget is not None:
        progress = max(progress, elapsed / time_budget)
    factor = _lr_factor(step, warmup, schedule, progress)
    for group, lr0 in zip(run.opt.param_groups, run.base_lr):
        group["lr"] = lr0 * factor


def _train_step(run: _Run, step: int, indices: list[int]) -> float:
    """One optimisation step on the items ``indices``; returns the loss (a Python float).

    The loss is :func:`~unet_course.steps.batch_loss`: the paper's weighted cross-entropy when
    the items carry weight maps (``loss="ce"``). A non-finite loss raises
    ``FloatingPointError`` with ``.step`` and ``.history`` attached.
    """
    items = [unpack_item(run.data[i]) for i in indices]
    images, targets, weights = stack_batch(items, run.device, run.channels_last)
    with torch.autocast(run.device.type, dtype=torch.float16, enabled=run.amp):
        loss = batch_loss(run.model, images, targets, weights, run.loss)
    if not torch.isfinite(loss):
        err = FloatingPointError(
            f"the loss became {loss.item()} at step {step + 1}. Likely causes: a learning rate "
            f"too high for momentum {run.momentum} (try lr / 10), inputs not scaled to [0, 1], "
            "NaN or inf in an image or weight map, or float16 overflow with amp=True")
        err.step, err.history = step + 1, run.history  # what was learnt before, for plots
        raise err
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.grad_clip is not None:
        run.scaler.unscale_(run.opt)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.grad_clip)
    run.scaler.step(run.opt)
    run.scaler.update()
    return loss.item()


def _record(run: _Run, done: int, loss: float, log_every: int, bar, callbacks: list) -> None:
    """Add the step's loss to the history; every ``log_every`` steps send the mean to callbacks."""
    run.history.steps.append(done)
    run.history.loss.append(loss)
    run.running, run.count = run.running + loss, run.count + 1
    if done % log_every == 0 or done == run.steps:
        lr = run.opt.param_groups[0]["lr"]
        event = {"step": done, "loss": run.running / run.count, "lr": lr}
        bar.set_postfix(loss=f"{event['loss']:.4f}")
        for cb in callbacks:
            cb(event)
        run.running, run.count = 0.0, 0


def _validate(run: _Run, done: int, val_data, callbacks: list) -> None:
    """:func:`evaluate` on ``val_data``; the model goes back to its training modes after."""
    with kept_mode(run.model):
        metrics = evaluate(run.model, *val_data)
    run.history.val.append({"step": done, **metrics})
    for cb in callbacks:
        cb({"step": done, "val": metrics})


def _checkpoint(run: _Run, done: int) -> None:
    """Save ``run`` to ``last.pt`` (with a checkpoint_dir), the optimiser at its base rate.

    The schedule sets each step's rate from the base rate, so a checkpoint written mid-run
    (every ``checkpoint_every`` steps, or on Ctrl-C) stores the base rate: a resumed run
    scaled the scheduled rate a second time otherwise.
    """
    if run.ckpt_path is None:
        return
    scheduled = [g["lr"] for g in run.opt.param_groups]
    for group, lr0 in zip(run.opt.param_groups, run.base_lr):
        group["lr"] = lr0
    try:
        # normalize=None is left out: an absent entry is what "not known" looks like
        extra = {} if run.normalize is None else {"normalize": run.normalize}
        save_checkpoint(run.ckpt_path, run.model, run.opt, done, history=run.history,
                        rng_state=_rng_state(run.data), **extra)
    finally:
        for group, lr in zip(run.opt.param_groups, scheduled):
            group["lr"] = lr


# --------------------------------------------------------------------------- evaluation
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

"""What the command line says when something goes wrong, and the checks that decide it.

* :func:`exit_status` maps an exception to one line on stderr and an exit status: 2 for a
  problem the user can fix, 130 for Ctrl-C, 1 with the traceback for a bug in the package;
* :func:`checkpoint_problems` reports what a foreign or damaged checkpoint raises (KeyError,
  a RuntimeError of ``load_state_dict``) as one ``ValueError`` naming the file;
* :func:`check_resume` refuses ``--resume`` from a run of another network or optimiser;
* :func:`check_finite` refuses a network whose weights hold NaN or inf.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["DEVICE_HELP", "DIVERGED", "check_finite", "check_resume", "checkpoint_problems",
           "device_option", "exit_status", "one_line", "out_of_memory"]

DIVERGED = "its weights are far too large (training diverged); train again with a smaller --lr"
DEVICE_HELP = ("cpu, cuda, cuda:N or mps (default: $UNET_COURSE_DEVICE if set, else cuda if "
               "present, else cpu)")


def device_option(name: str | None):
    """The torch.device of ``--device``, else of ``UNET_COURSE_DEVICE``, else the best present."""
    from .settings import device

    return device(name, option="--device")


@contextmanager
def checkpoint_problems(path: Path | str, option: str) -> Iterator[None]:
    """Turn what a foreign or damaged checkpoint raises inside the block into one ValueError.

    ``load_checkpoint`` checks the file's format, but a file of the right format can still lack
    an entry (KeyError), hold weights of other shapes than its config (RuntimeError from
    ``load_state_dict``) or an unusual structure (IndexError, AttributeError). Those come from
    the user's file, not from a bug, so they are reported as such, naming ``option`` and the file.
    """
    try:
        yield
    except (KeyError, IndexError, AttributeError, RuntimeError) as exc:
        if out_of_memory(exc):
            raise
        if isinstance(exc, KeyError):
            detail = f"it has no {exc.args[0]!r} entry"
        elif isinstance(exc, RuntimeError) and "state_dict" in str(exc):
            detail = f"its weights do not fit the network it describes ({one_line(exc, 200)})"
        else:
            detail = f"{type(exc).__name__}: {one_line(exc, 200)}"
        raise ValueError(f"{option} {path} is not a unet_course checkpoint this run can use: "
                         f"{detail}; train again or choose another checkpoint") from exc


def check_resume(path: Path, preset, in_channels: int, num_classes: int,
                 lr: float | None = None) -> None:
    """Refuse ``--resume`` from a checkpoint of another network or optimiser, before training.

    ``lr`` is the ``--lr`` given, if any: resuming loads the optimiser's state, whose saved base
    rate would replace it without a word, so a different one is refused too. Without ``--lr``
    the saved rate is what continuing the run means, and nothing is compared.
    """
    import math

    from .train import load_checkpoint

    model = preset.model(in_channels, num_classes)
    with checkpoint_problems(path, "--resume from"):
        ckpt = load_checkpoint(path)
        missing = [k for k in ("config", "state_dict", "optimizer", "step", "history", "rng")
                   if k not in ckpt]  # every entry fit reads when it resumes
        if missing:
            raise KeyError(missing[0])
        saved = ckpt["config"]
        changed = [f"{k}={saved.get(k)!r} there but {v!r} now" for k, v in model.config.items()
                   if saved.get(k) != v]
        group = ckpt["optimizer"]["param_groups"][0] if ckpt["optimizer"] else {}
        kind = "adam" if "betas" in group else "sgd" if "momentum" in group else preset.optimizer
        if kind != preset.optimizer:
            changed.append(f"optimizer={kind!r} there but {preset.optimizer!r} now")
        if lr is not None and "lr" in group and not math.isclose(group["lr"], lr, rel_tol=1e-6):
            changed.append(f"lr={float(group['lr']):g} there but {lr:g} now")
        if not changed:
            model.load_state_dict(ckpt["state_dict"])  # its weights must fit its own config
    if changed:
        raise ValueError(f"--resume: {path} was trained with another setup ({'; '.join(changed)}); "
                         "repeat that run's --preset, --depth, --base-channels, --dropout, "
                         "--optimizer and --lr (and data), or train into a new --out")


def check_finite(model, what: str) -> None:
    """Refuse a network whose weights hold NaN or inf: every prediction of it would be NaN."""
    import torch

    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise FloatingPointError(f"{what} holds NaN or inf in {len(bad)} weight tensor(s) (first: "
                                 f"{bad[0]}): training diverged; train again with a smaller --lr "
                                 "(a tenth of it)")


# Exceptions that mean "your input or your machine", not "our code": ValueError and TypeError
# are how every module of the package refuses an argument (CheckpointError is a ValueError),
# OSError a file, FloatingPointError a diverged training, MemoryError a too large size.
_USER_ERRORS = (ValueError, TypeError, OSError, FloatingPointError, MemoryError)
# train runs out either while training (tiles, batch and net decide) or, after "trained N
# steps" with the checkpoint saved, while scoring the held-out images, which --tile does not
# bound: the metrics of one whole image are held at once.
_MEMORY_HINTS = {"train": "while training, lower --tile, --batch-size, --base-channels or "
                          "--depth; after 'trained N steps' (the checkpoint is saved) the "
                          "held-out scoring ran out: score those images with predict, or "
                          "train with --val-fraction 0",
                 "predict": "use a smaller --tile-size, or --device cpu",
                 "draw": "use a smaller --size", "download": "free some memory"}


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """The message of ``exc`` on one line (torch's run over several), cut to ``limit`` chars."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def out_of_memory(exc: BaseException) -> bool:
    """True for ``MemoryError`` and for torch's out-of-memory errors (RuntimeErrors).

    torch reports a failed CPU allocation as a plain RuntimeError ("DefaultCPUAllocator: can't
    allocate memory", or "not enough memory" in older releases), CUDA as ``OutOfMemoryError``
    and MPS with "out of memory" in the message.
    """
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(sys.modules.get("torch"), "OutOfMemoryError", None)  # CUDA and recent torch
    if oom is not None and isinstance(exc, oom):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or ("CPUAllocator" in text and "memory" in text))


def exit_status(exc: BaseException, args: argparse.Namespace) -> int:
    """Report ``exc`` on stderr and return the exit status.

    2 and one line for a problem the user can fix; 130 for Ctrl-C; for anything else, 1 with
    the traceback and a request to report the bug. A bug keeps its traceback because a one-line
    message would hide where it happened, which is what a report needs.
    """
    if isinstance(exc, KeyboardInterrupt):
        where = f"; the checkpoint is in {args.out}" if args.command == "train" else ""
        print(f"stopped{where}", file=sys.stderr)
        return 130
    if out_of_memory(exc):
        print(f"error: out of memory ({one_line(exc, 160)}); {_MEMORY_HINTS[args.command]}",
              file=sys.stderr)
        return 2
    if isinstance(exc, _USER_ERRORS):
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    traceback.print_exception(exc)
    # no URL here: the repository's address lives in _config.yml only (tests/test_project.py)
    print(f"error: the {type(exc).__name__} above is a bug in unet_course, not a problem with "
          "your input; please report it, with the command you ran and this traceback, in the "
          "Issues of the course's repository", file=sys.stderr)
    return 1

"""``python -m unet_course train``: the options, the data, the run and its held-out report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._cli_errors import DEVICE_HELP, DIVERGED, check_finite, check_resume, device_option
from .validation import finite_number, positive_int, probability

__all__ = ["add_parser"]


# --------------------------------------------------------------------------- train: data and options
# How each data set's images are normalised after reading (imageio.prepare_image), for training,
# the held-out report and, stored in the checkpoint, predict: synthetic and ISBI images already
# span [0, 1] at the reader's range; a user's folder is min-max normalised image by image, since
# its bit depth and scanner vary (a 12-bit camera fills 1/16 of a 16-bit file); per-modality
# folders are min-max normalised channel by channel, since every modality has its own units.
_NORMALIZE = {"synthetic-em": "none", "isbi2012": "none", "folder": "minmax",
              "modalities": "channel_minmax"}


def _load_data(args: argparse.Namespace):
    """(images, masks, instances or None) of the chosen data set."""
    return _read_data(args)[:3]


def _read_data(args: argparse.Namespace):
    """(images, masks, instances or None, modality names or None) of the chosen data set."""
    if args.data == "synthetic-em":
        from .data import synthetic_em

        count = positive_int(_int_option(args.images if args.images is not None else "10", "--images"),
                             "--images (the number of synthetic images)")
        size = args.size if args.size is not None else 256  # None: --size not given
        images, masks, instances = synthetic_em(count, size=size, seed=args.seed)
        return list(images), list(masks), list(instances), None
    if args.data == "isbi2012":
        from .data import ISBI2012

        data = ISBI2012(args.root, download=args.download)
        return list(data.images), list(data.masks), None, None
    from .data.modality_folders import ModalityFolderDataset
    from .folders import ImageFolderDataset

    if args.images is None or args.masks is None:
        raise ValueError(f"--data {args.data} needs --images DIR and --masks DIR" + (
            " (the same folder is fine when masks are named NAME_mask.png)"
            if args.data == "folder" else " (DIR of images: one folder per modality)"))
    # the reader's values: _train normalises them (_NORMALIZE) as the checkpoint tells predict to
    reader = ImageFolderDataset if args.data == "folder" else ModalityFolderDataset
    data = reader(args.images, args.masks, mask_kind=args.mask_kind or "auto", normalize="none")
    modalities = getattr(data, "modalities", None)
    if modalities is not None:
        print(f"modalities, channel 0 first (sorted folder names): {', '.join(modalities)}")
    print(_mask_line(data, auto=args.mask_kind in (None, "auto")))
    return list(data.images), list(data.masks), data.instances, modalities


def _check_resume_modalities(resume: Path, modalities: tuple[str, ...] | None) -> None:
    """Refuse to continue a run on images whose channels are other modalities (or in another
    order): the net would read channel k as the modality it learnt there."""
    from .checkpoint import load_checkpoint, stored_modalities

    stored = stored_modalities(load_checkpoint(resume))
    if stored != modalities:
        def said(names):
            return ", ".join(names) if names else "none named"
        raise ValueError(f"--resume: {resume} was trained on the modalities {said(stored)}, but "
                         f"this --data gives {said(modalities)}; train into a new --out, or "
                         "give the run's own images")


def _mask_line(data, auto: bool) -> str:
    """What the masks were read as, in one line: the kind decides the classes the network learns,
    and "auto" can guess wrong (16-bit files holding 0/1/2 read as instance ids)."""
    from .maskio import MAX_CLASSES

    values = data.label_values
    top = int(values.max()) if values.size else 0
    if data.kind == "binary":
        return f"masks: binary, 0 = background, non-zero = object ({data.num_classes} classes)"
    if data.kind == "classes":
        return f"masks: class indices 0..{data.num_classes - 1} ({data.num_classes} classes)"
    count = sum(int(ids.max()) for ids in data.instances if ids.size)
    line = (f"masks: instance ids, {count} objects in {len(data.instances)} masks, learnt as "
            f"objects on background with touching borders cut ({data.num_classes} classes)")
    if auto and top < MAX_CLASSES:
        line += f"; their values are 0..{top}: if those are classes, use --mask-kind classes"
    return line


# Which --data each data option belongs to: given with another --data it would be ignored.
# (--data modalities, per-modality folders, takes the options of --data folder.)
_DATA_OPTIONS = {"root": ("isbi2012",), "download": ("isbi2012",), "size": ("synthetic-em",),
                 "images": ("synthetic-em", "folder"), "masks": ("folder",),
                 "mask_kind": ("folder",)}


def _check_data_options(args: argparse.Namespace) -> None:
    """Refuse a data option that the chosen --data does not read, rather than ignore it."""
    data = "folder" if args.data == "modalities" else args.data
    for name, owners in _DATA_OPTIONS.items():
        value = getattr(args, name)
        if value is not None and value is not False and data not in owners:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} belongs to --data {' or '.join(owners)}, not to --data "
                             f"{args.data}, which would ignore it; drop {flag} or use --data "
                             f"{owners[-1]}")


def _checkpoint_to_resume(out: Path, resume: bool, overwrite: bool) -> Path | None:
    """OUT/last.pt when --resume continues it, else None; a run never replaces one unasked."""
    last = out / "last.pt"
    if resume and overwrite:
        raise ValueError(f"--resume continues {last} and --overwrite replaces it: give only one")
    if resume:
        if not last.is_file():
            raise ValueError(f"--resume: there is no checkpoint {last} to continue; drop --resume "
                             "to start a new run there, or give the --out of the run to continue")
        return last
    if last.exists() and not overwrite:
        raise ValueError(f"--out {out} already holds the checkpoint {last}, which this run would "
                         "replace; add --resume to continue it, --overwrite to replace it, or "
                         "choose another --out")
    return None


def _int_option(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number here, got {value!r}") from None


def _held_out(n: int, fraction: float) -> int:
    """How many of n images --val-fraction holds out: at least 1 unless the fraction is 0."""
    return 0 if fraction == 0 else max(1, round(n * fraction))


def _split(n: int, fraction: float) -> int:
    """How many of n images to hold out (the last ones); a ValueError if none is left to train on."""
    fraction = probability(fraction, "--val-fraction", below_one=True)
    held = _held_out(n, fraction)
    if n - held < 1:
        need = next(m for m in range(1, 10**6) if m - _held_out(m, fraction) >= 1)
        raise ValueError(
            f"--val-fraction {fraction:g} holds {held} of the {n} image(s) out for validation, "
            f"which leaves none to train on; give at least {need} images (synthetic-em: "
            f"--images {need}), or --val-fraction 0 to train on all of them without held-out scores")
    return held


# What the options mean, for the messages of the checks below.
_INT_OPTIONS = {"steps": 1, "checkpoint_every": 1, "depth": 1, "base_channels": 1, "tile": 1,
                "batch_size": 1, "seed": 0}
_POSITIVE_OPTIONS = {"lr": "--lr (the learning rate)", "time_budget": "--time-budget (minutes)"}


def _check_train_options(args: argparse.Namespace) -> None:
    """Refuse out-of-range numbers before any data is made, read or trained on."""
    for name, minimum in _INT_OPTIONS.items():
        if getattr(args, name) is not None:
            positive_int(getattr(args, name), "--" + name.replace("_", "-"), minimum)
    for name, shown in _POSITIVE_OPTIONS.items():
        if getattr(args, name) is not None:
            finite_number(getattr(args, name), shown, 0.0, strict=True)
    probability(args.val_fraction, "--val-fraction", below_one=True)
    if args.dropout is not None:
        probability(args.dropout, "--dropout", below_one=True)


def _check_writable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    probe = out / ".write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"cannot write checkpoints to {out} ({exc.strerror}); choose another --out") from exc


# --------------------------------------------------------------------------- train
def _report(model, images, masks, num_classes: int) -> None:
    """Held-out metrics of the U-Net and, on the same images, of the Otsu baseline.

    ``images`` went through :func:`~unet_course.imageio.prepare_image` with the checkpoint's
    normalisation, as training images did and as ``predict`` does: the scores are predict's.
    """
    import numpy as np

    from .baseline import threshold_segmentation
    from .metrics import pixel_error, rand_error
    from .train import evaluate

    if num_classes > 2:
        from .predict import predict_tiled

        wrong = []
        for im, m in zip(images, masks):  # one image's logits at a time: memory for one only
            x = predict_tiled(model, _chw(im))
            if not bool(x.isfinite().all()):  # NaN would argmax to class 0
                raise FloatingPointError("the trained network gives NaN on held-out images: "
                                         + DIVERGED)
            wrong.append(float(np.mean(x.argmax(0).numpy() != m)))
            del x
        print(f"held out ({len(images)} images): pixel_error {np.mean(wrong):.4f}")
        return
    metrics = evaluate(model, images, masks)
    print(f"held out ({len(images)} images): " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    gray = [im if im.ndim == 2 else im.mean(0) for im in map(np.asarray, images)]
    otsu = [threshold_segmentation(g) for g in gray]
    pe = np.mean([pixel_error(o, m) for o, m in zip(otsu, masks)])
    re = np.mean([rand_error(o, m) for o, m in zip(otsu, masks)])
    print(f"baseline (Otsu): pixel_error {pe:.4f}, rand_error {re:.4f}")


def _chw(image):
    import torch

    t = torch.as_tensor(image, dtype=torch.float32)
    return t[None] if t.dim() == 2 else t


def _train(args: argparse.Namespace) -> None:
    import numpy as np

    from .imageio import prepare_image
    from .memory import check_training_memory, training_tile
    from .presets import get_preset, train

    _check_train_options(args)
    _check_data_options(args)
    out = Path(args.out)
    resume = _checkpoint_to_resume(out, args.resume, args.overwrite)
    _check_writable(out)
    dev = device_option(args.device)
    overrides = {k: v for k, v in (("depth", args.depth), ("base_channels", args.base_channels),
                                   ("dropout", args.dropout), ("tile", args.tile),
                                   ("optimizer", args.optimizer), ("lr", args.lr),
                                   ("batch_size", args.batch_size)) if v is not None}
    preset = get_preset(args.preset or ("paper" if dev.type == "cuda" else "cpu"), **overrides)
    training_tile(preset.depth, preset.padding, preset.tile)  # before any data is read
    steps = args.steps or (10**9 if args.time_budget else 1000)
    images, masks, instances, modalities = _read_data(args)
    normalize = _NORMALIZE[args.data]  # one rule: training, _report and predict (the checkpoint)
    images = [prepare_image(im, normalize) for im in images]
    held = _split(len(images), args.val_fraction)
    n = len(images) - held
    num_classes = max(2, 1 + max(int(m.max()) for m in masks))
    # before anything is allocated: a net too large for the memory would be killed silently
    channels = 1 if np.ndim(images[0]) == 2 else len(images[0])
    check_training_memory(preset, channels, num_classes, dev)
    if resume is not None:
        check_resume(resume, preset, channels, num_classes, lr=args.lr)
        _check_resume_modalities(resume, modalities)
    budget = f", stops after {args.time_budget:g} min" if args.time_budget else ""
    print(f"preset {preset.name} on {dev}: training on {n} {args.data} images, {held} held out "
          f"(--val-fraction {args.val_fraction:g}){budget}")
    import signal

    # Ctrl-C ends training cleanly: fit saves the checkpoint, then we report where it is.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    model, history = train(preset, images[:n], masks[:n], None if instances is None else instances[:n],
                           steps=steps, seed=args.seed, num_classes=num_classes, device=dev,
                           time_budget=None if args.time_budget is None else args.time_budget * 60,
                           checkpoint_dir=out, checkpoint_every=args.checkpoint_every, resume=resume,
                           normalize=normalize, modalities=modalities)
    done = history.steps[-1] if history.steps else 0
    print(f"trained {done} steps")
    check_finite(model, f"the network after {done} steps (saved in {out / 'last.pt'})")
    if held:
        _report(model, images[n:], masks[n:], num_classes)
    print(f"checkpoint: {out / 'last.pt'}")



def _add_data_options(train: argparse.ArgumentParser) -> None:
    train.add_argument("--data", choices=["synthetic-em", "isbi2012", "folder", "modalities"],
                       default="synthetic-em",
                       help="synthetic EM slices made from --seed (default), ISBI 2012 from --root, "
                            "your own images and masks (--images DIR --masks DIR), or your own "
                            "multi-modal images: --images DIR with one folder per modality "
                            "(DIR/t1/a.png, DIR/t2/a.png...; same names in each, stacked in "
                            "sorted folder order), --masks DIR (a.png)")
    train.add_argument("--root", default=None,
                       help="isbi2012 only: folder with train-volume.tif/train-labels.tif or "
                            "image/N.png, label/N.png (default $UNET_COURSE_DATA/isbi2012)")
    train.add_argument("--download", action="store_true",
                       help="isbi2012 only: fetch missing PNGs from the pinned mirror (sha256-checked)")
    train.add_argument("--images", default=None,
                       help="synthetic-em: number of images (default 10); folder: the images' "
                            "folder; modalities: the folder of modality folders")
    train.add_argument("--masks", default=None,
                       help="folder and modalities: the masks' folder (0/255, 0/1, class "
                            "indices or 16-bit instance ids; same file names as the images)")
    train.add_argument("--size", type=int, default=None,
                       help="synthetic-em only: image edge (default 256)")
    train.add_argument("--mask-kind", choices=["auto", "binary", "classes", "instances"],
                       default=None, help="folder, modalities: what the masks hold (default auto: "
                       "decided from their values and bit depth, and printed)")
    train.add_argument("--val-fraction", type=float, default=0.2,
                       help="share of the images held out for the final scores (default 0.2; 0 = none)")
    train.add_argument("--seed", type=int, default=0,
                       help="seed of data, weights and tiles: the same seed, the same run (default 0)")


def add_parser(sub) -> None:
    train = sub.add_parser(
        "train", help="train a U-Net with a named recipe (--preset) and save checkpoints",
        description="Train a U-Net with a preset: 'paper' (valid convolutions, 572 tiles, the "
                    "weight map, elastic deformation, SGD momentum 0.99, batch 1) or 'cpu' "
                    "(same padding, instance norm, Adam; the default without a GPU). The last "
                    "--val-fraction of the images is held out and scored at the end, beside "
                    "the Otsu baseline on the same images.")
    _add_data_options(train)
    train.add_argument("--preset", choices=["paper", "cpu"], default=None,
                       help="training recipe (default: paper on a CUDA device, cpu otherwise)")
    train.add_argument("--device", default=None, help=DEVICE_HELP)
    train.add_argument("--steps", type=int, default=None,
                       help="optimisation steps (default 1000, or unlimited with --time-budget)")
    train.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                       help="stop after this many minutes of training; the checkpoint is saved "
                            "and the held-out metrics printed as after --steps")
    train.add_argument("--out", required=True, help="folder for the checkpoint last.pt")
    train.add_argument("--resume", action="store_true",
                       help="continue from OUT/last.pt; a --preset, --depth, --base-channels, "
                            "--dropout, --optimizer or --lr other than its own is refused, "
                            "--tile and --batch-size apply to the steps still to run")
    train.add_argument("--overwrite", action="store_true",
                       help="replace an OUT/last.pt of an earlier run (refused without it)")
    train.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints (default 100)")
    train.add_argument("--depth", type=int, default=None, help="U-Net depth (preset: 4)")
    train.add_argument("--base-channels", type=int, default=None,
                       help="top-level channels (preset: 64 paper, 16 cpu)")
    train.add_argument("--dropout", type=float, default=None, help="dropout at the bottom (preset)")
    train.add_argument("--tile", type=int, default=None,
                       help="input tile edge, rounded up to a valid size (preset: 572 paper, 256 cpu)")
    train.add_argument("--batch-size", type=int, default=None, help="tiles per step (preset: 1)")
    train.add_argument("--optimizer", choices=["sgd", "adam"], default=None,
                       help="sgd with momentum 0.99 (paper) or adam (cpu)")
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate (preset: 0.001 paper, 0.002 cpu)")
    train.set_defaults(func=_train)

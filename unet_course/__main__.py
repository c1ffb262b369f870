"""Command line: ``python -m unet_course {draw,train,predict,download} --help``.

Problems a user can fix (a bad path or option, an image that cannot be read, a checkpoint that
does not fit, a device this machine lacks, a training that diverged, too little memory) are
printed as one line on stderr with exit status 2, never as a traceback. Ctrl-C stops with
status 130. Any other exception is a bug in the package: its traceback is printed, then a line
asking to report it, with exit status 1 (see :mod:`unet_course._cli_errors`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._cli_errors import check_finite, check_resume, checkpoint_problems, exit_status
from .validation import finite_number, positive_int, probability


# --------------------------------------------------------------------------- draw
def _draw(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    from .model import UNet
    from .viz import draw_unet

    out = Path(args.out)
    if not out.parent.is_dir():
        raise ValueError(f"cannot write {out}: the folder {out.parent} does not exist")
    model = UNet(depth=args.depth, base_channels=args.base_channels, padding=args.padding,
                 up_mode=args.up_mode)
    fig = draw_unet(model, args.size)
    fig.savefig(out, dpi=args.dpi, bbox_inches="tight")
    print(f"wrote {out}")


# --------------------------------------------------------------------------- train: data and options
def _load_data(args: argparse.Namespace):
    """(images, masks, instances or None) of the chosen data set."""
    if args.data == "synthetic-em":
        from .data import synthetic_em

        count = positive_int(_int_option(args.images if args.images is not None else "10", "--images"),
                             "--images (the number of synthetic images)")
        images, masks, instances = synthetic_em(count, size=args.size, seed=args.seed)
        return list(images), list(masks), list(instances)
    if args.data == "isbi2012":
        from .data import ISBI2012

        data = ISBI2012(args.root, download=args.download)
        return list(data.images), list(data.masks), None
    from .folders import ImageFolderDataset

    if args.images is None or args.masks is None:
        raise ValueError("--data folder needs --images DIR and --masks DIR (the same folder is "
                         "fine when masks are named NAME_mask.png)")
    data = ImageFolderDataset(args.images, args.masks)
    return list(data.images), list(data.masks), data.instances


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


def _device(name: str | None):
    """The torch.device of ``--device``, else of ``UNET_COURSE_DEVICE``, else the best present."""
    from .settings import device

    return device(name, option="--device")


# --------------------------------------------------------------------------- train
_DIVERGED = "its weights are far too large (training diverged); train again with a smaller --lr"


def _report(model, images, masks, num_classes: int) -> None:
    """Held-out metrics of the U-Net and, on the same images, of the Otsu baseline."""
    import numpy as np

    from .baseline import threshold_segmentation
    from .metrics import pixel_error, rand_error
    from .train import evaluate

    if num_classes > 2:
        from .predict import predict_tiled

        logits = [predict_tiled(model, _chw(im)) for im in images]
        if not all(bool(x.isfinite().all()) for x in logits):  # NaN would argmax to class 0
            raise FloatingPointError(f"the trained network gives NaN on held-out images: {_DIVERGED}")
        wrong = [float(np.mean(x.argmax(0).numpy() != m)) for x, m in zip(logits, masks)]
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

    from .presets import get_preset, train

    _check_train_options(args)
    out = Path(args.out)
    _check_writable(out)
    dev = _device(args.device)
    overrides = {k: v for k, v in (("depth", args.depth), ("base_channels", args.base_channels),
                                   ("dropout", args.dropout), ("tile", args.tile),
                                   ("optimizer", args.optimizer), ("lr", args.lr),
                                   ("batch_size", args.batch_size)) if v is not None}
    preset = get_preset(args.preset or ("paper" if dev.type == "cuda" else "cpu"), **overrides)
    steps = args.steps or (10**9 if args.time_budget else 1000)
    images, masks, instances = _load_data(args)
    held = _split(len(images), args.val_fraction)
    n = len(images) - held
    num_classes = max(2, 1 + max(int(m.max()) for m in masks))
    resume = out / "last.pt" if args.resume else None
    if resume is not None:
        check_resume(resume, preset, 1 if np.ndim(images[0]) == 2 else len(images[0]), num_classes)
    budget = f", stops after {args.time_budget:g} min" if args.time_budget else ""
    print(f"preset {preset.name} on {dev}: training on {n} {args.data} images, {held} held out "
          f"(--val-fraction {args.val_fraction:g}){budget}")
    import signal

    # Ctrl-C ends training cleanly: fit saves the checkpoint, then we report where it is.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    model, history = train(preset, images[:n], masks[:n], None if instances is None else instances[:n],
                           steps=steps, seed=args.seed, num_classes=num_classes, device=dev,
                           time_budget=None if args.time_budget is None else args.time_budget * 60,
                           checkpoint_dir=out, checkpoint_every=args.checkpoint_every, resume=resume)
    done = history.steps[-1] if history.steps else 0
    print(f"trained {done} steps")
    check_finite(model, f"the network after {done} steps (saved in {out / 'last.pt'})")
    if held:
        _report(model, images[n:], masks[n:], num_classes)
    print(f"checkpoint: {out / 'last.pt'}")


# --------------------------------------------------------------------------- predict, download
def _predict(args: argparse.Namespace) -> None:
    import numpy as np
    from PIL import Image

    from .imageio import read_image, write_probability
    from .train import load_model, predict_probabilities

    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name such as {out / 'mask.png'}")
    if not out.parent.is_dir():
        raise ValueError(f"cannot write {out}: the folder {out.parent} does not exist")
    threshold = probability(args.threshold, "--threshold")
    if args.tile_size is not None:
        positive_int(args.tile_size, "--tile-size")
    dev = _device(args.device)
    with checkpoint_problems(args.checkpoint, "--checkpoint"):
        model = load_model(args.checkpoint)
    if model.num_classes < 2:
        raise ValueError(f"--checkpoint {args.checkpoint} holds a network with num_classes="
                         f"{model.num_classes}; predict writes the probability of class 1 (cell), "
                         "which needs a network of 2 or more classes, as `train` makes")
    check_finite(model, f"--checkpoint {args.checkpoint}")
    image = read_image(args.image, channels=model.in_channels)
    prob = predict_probabilities(model.to(dev), image, tile_size=args.tile_size)
    if not np.isfinite(prob).all():  # NaN > threshold is False: it would pass for membrane
        raise FloatingPointError(f"--checkpoint {args.checkpoint} gives NaN for "
                                 f"{np.count_nonzero(~np.isfinite(prob))} pixel(s): {_DIVERGED}")
    if args.probabilities:
        write_probability(out, prob)
        print(f"wrote {out} ({prob.shape[1]}x{prob.shape[0]} probabilities of cell, "
              f"mean {prob.mean():.3f})")
        return
    # Like the ISBI labels: 255 = cell, 0 = membrane.
    Image.fromarray(np.where(prob > threshold, 255, 0).astype(np.uint8)).save(out)
    print(f"wrote {out} ({prob.shape[1]}x{prob.shape[0]}, {100 * np.mean(prob > threshold):.1f}% cell)")


def _download(args: argparse.Namespace) -> None:
    from .data import ISBI2012

    data = ISBI2012(args.root, download=True)
    print(f"{data}: every file present and verified")


def _plan(args: argparse.Namespace) -> None:
    from .plan import plan_2d

    print(plan_2d(args.shape, args.spacing, n_cases=args.cases, num_classes=args.classes,
                  gpu_memory_gb=args.gpu_memory).summary())


# --------------------------------------------------------------------------- the parser
_DEVICE_HELP = ("cpu, cuda, cuda:N or mps (default: $UNET_COURSE_DEVICE if set, else cuda if "
                "present, else cpu)")


def _add_draw(sub) -> None:
    draw = sub.add_parser("draw", help="draw the U of a configuration, like the paper's Figure 1",
                          description="Draw the U from the shapes traced through a real forward pass.")
    draw.add_argument("--size", type=int, default=572, help="input tile edge in pixels (default 572)")
    draw.add_argument("--depth", type=int, default=4, help="number of poolings (default 4)")
    draw.add_argument("--base-channels", type=int, default=64, help="channels at the top level (default 64)")
    draw.add_argument("--padding", choices=["valid", "same"], default="valid",
                      help="valid (the paper) or same (default valid)")
    draw.add_argument("--up-mode", choices=["transpose", "bilinear"], default="transpose",
                      help="2x2 up-convolution (the paper) or bilinear upsampling (default transpose)")
    draw.add_argument("--dpi", type=int, default=110, help="resolution of the image (default 110)")
    draw.add_argument("--out", default="unet.png", help="image file to write (default unet.png)")
    draw.set_defaults(func=_draw)


def _add_train_data(train: argparse.ArgumentParser) -> None:
    train.add_argument("--data", choices=["synthetic-em", "isbi2012", "folder"], default="synthetic-em",
                       help="synthetic EM slices made from --seed (default), ISBI 2012 from --root, "
                            "or your own images and masks (--images DIR --masks DIR)")
    train.add_argument("--root", default=None,
                       help="isbi2012 only: folder with train-volume.tif/train-labels.tif or "
                            "image/N.png, label/N.png (default $UNET_COURSE_DATA/isbi2012)")
    train.add_argument("--download", action="store_true",
                       help="isbi2012 only: fetch missing PNGs from the pinned mirror (sha256-checked)")
    train.add_argument("--images", default=None,
                       help="synthetic-em: number of images (default 10); folder: the images' folder")
    train.add_argument("--masks", default=None,
                       help="folder only: the masks' folder (0/255, 0/1, class indices or "
                            "16-bit instance ids; same file names as the images)")
    train.add_argument("--size", type=int, default=256, help="synthetic-em only: image edge (default 256)")
    train.add_argument("--val-fraction", type=float, default=0.2,
                       help="share of the images held out for the final scores (default 0.2; 0 = none)")
    train.add_argument("--seed", type=int, default=0,
                       help="seed of data, weights and tiles: the same seed, the same run (default 0)")


def _add_train(sub) -> None:
    train = sub.add_parser(
        "train", help="train a U-Net with a named recipe (--preset) and save checkpoints",
        description="Train a U-Net with a preset: 'paper' (valid convolutions, 572 tiles, the "
                    "weight map, elastic deformation, SGD momentum 0.99, batch 1) or 'cpu' "
                    "(same padding, batch norm, Adam; the default without a GPU). The last "
                    "--val-fraction of the images is held out and scored at the end, beside "
                    "the Otsu baseline on the same images.")
    _add_train_data(train)
    train.add_argument("--preset", choices=["paper", "cpu"], default=None,
                       help="training recipe (default: paper on a CUDA device, cpu otherwise)")
    train.add_argument("--device", default=None, help=_DEVICE_HELP)
    train.add_argument("--steps", type=int, default=None,
                       help="optimisation steps (default 1000, or unlimited with --time-budget)")
    train.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                       help="stop after this many minutes of training; the checkpoint is saved "
                            "and the held-out metrics printed as after --steps")
    train.add_argument("--out", required=True, help="folder for the checkpoint last.pt")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
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


def _add_predict(sub) -> None:
    predict = sub.add_parser(
        "predict", help="segment an image of any size with a trained checkpoint",
        description="Predict a whole image with the overlap-tile strategy and write the mask "
                    "as a PNG (255 = cell, 0 = membrane).")
    predict.add_argument("image", help="input image (PNG, TIFF, JPEG, ...; converted to gray for 1 channel)")
    predict.add_argument("--checkpoint", required=True, help="checkpoint file, e.g. DIR/last.pt")
    predict.add_argument("--out", required=True, help="mask PNG to write")
    predict.add_argument("--device", default=None, help=_DEVICE_HELP)
    predict.add_argument("--tile-size", type=int, default=None,
                         help="input tile edge (a valid size); default: chosen from a memory budget")
    predict.add_argument("--threshold", type=float, default=0.5, help="probability of cell above which a pixel is cell")
    predict.add_argument("--probabilities", action="store_true",
                         help="write the probability of cell instead of a mask: a 16-bit PNG "
                              "(0..65535) for .png, a float32 TIFF for .tif")
    predict.set_defaults(func=_predict)


def _add_download(sub) -> None:
    download = sub.add_parser(
        "download", help="fetch and verify a data set (isbi2012)",
        description="Download the ISBI 2012 training slices and labels (60 PNGs) from the pinned "
                    "mirror into $UNET_COURSE_DATA/isbi2012, checking each file's sha256; files "
                    "already there and verified are kept.")
    download.add_argument("dataset", choices=["isbi2012"], help="the data set")
    download.add_argument("--root", default=None, help="folder to use instead of the default")
    download.set_defaults(func=_download)


def _add_plan(sub) -> None:
    plan = sub.add_parser("plan", help="nnU-Net's 2-D configuration for images of a median shape",
                          description="Apply nnU-Net's planning rules (lesson 11) and print the "
                                      "patch size, poolings, kernels, widths and batch size.")
    plan.add_argument("--shape", type=float, nargs=2, required=True, metavar=("H", "W"),
                      help="median image shape in pixels")
    plan.add_argument("--spacing", type=float, nargs=2, default=(1.0, 1.0), metavar=("DY", "DX"),
                      help="pixel spacing along y and x, any unit (default 1 1)")
    plan.add_argument("--cases", type=int, default=None,
                      help="images in the data set: caps a batch at 5%% of their pixels")
    plan.add_argument("--classes", type=int, default=2, help="classes, background included")
    plan.add_argument("--gpu-memory", type=float, default=8.0, help="GB (default 8, nnU-Net's)")
    plan.set_defaults(func=_plan)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m unet_course",
                                     description="The U-Net course's command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_draw, _add_train, _add_predict, _add_download, _add_plan):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (Exception, KeyboardInterrupt) as exc:
        return exit_status(exc, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

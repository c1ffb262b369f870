"""Command line: ``python -m unet_course {draw,train,predict} --help``.

Errors a user can fix (a bad path, an image that cannot be read, an invalid size) are printed
as one line on stderr with exit status 2, not as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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


def _load_data(args: argparse.Namespace):
    """(images, masks, instances or None) of the chosen data set."""
    if args.data == "synthetic-em":
        from .data import synthetic_em

        count = _int_option(args.images if args.images is not None else "10", "--images")
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


def _split(n: int, fraction: float) -> int:
    """How many of n images to hold out (the last ones): at least 1 unless fraction is 0."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"--val-fraction must lie in [0, 1), got {fraction}")
    held = 0 if fraction == 0 else max(1, round(n * fraction))
    if n - held < 1:
        raise ValueError(f"{n} image(s) with --val-fraction {fraction} leave none to train on; "
                         "give more images or --val-fraction 0")
    return held


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


def _report(model, images, masks, num_classes: int) -> None:
    """Held-out metrics of the U-Net and, on the same images, of the Otsu baseline."""
    import numpy as np

    from .baseline import threshold_segmentation
    from .metrics import pixel_error, rand_error
    from .train import evaluate

    if num_classes > 2:
        from .tiling import predict_tiled

        wrong = [float(np.mean(predict_tiled(model, _chw(im)).argmax(0).numpy() != m))
                 for im, m in zip(images, masks)]
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
    from .presets import default_preset, get_preset, train

    out = Path(args.out)
    _check_writable(out)
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be a positive number of steps, got {args.steps}")
    if args.time_budget is not None and not args.time_budget > 0:
        raise ValueError(f"--time-budget must be a positive number of minutes, got {args.time_budget}")
    overrides = {k: v for k, v in (("depth", args.depth), ("base_channels", args.base_channels),
                                   ("dropout", args.dropout), ("tile", args.tile),
                                   ("optimizer", args.optimizer), ("lr", args.lr),
                                   ("batch_size", args.batch_size)) if v is not None}
    preset = get_preset(args.preset or default_preset(), **overrides)
    steps = args.steps or (10**9 if args.time_budget else 1000)
    images, masks, instances = _load_data(args)
    held = _split(len(images), args.val_fraction)
    n = len(images) - held
    num_classes = max(2, 1 + max(int(m.max()) for m in masks))
    budget = f", stops after {args.time_budget:g} min" if args.time_budget else ""
    print(f"preset {preset.name}: training on {n} {args.data} images, {held} held out "
          f"(--val-fraction {args.val_fraction:g}){budget}")
    import signal

    # Ctrl-C ends training cleanly: fit saves the checkpoint, then we report where it is.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    model, history = train(preset, images[:n], masks[:n], None if instances is None else instances[:n],
                           steps=steps, seed=args.seed, num_classes=num_classes,
                           time_budget=None if args.time_budget is None else args.time_budget * 60,
                           checkpoint_dir=out, checkpoint_every=args.checkpoint_every,
                           resume=out / "last.pt" if args.resume else None)
    print(f"trained {history.steps[-1] if history.steps else 0} steps")
    if held:
        _report(model, images[n:], masks[n:], num_classes)
    print(f"checkpoint: {out / 'last.pt'}")


def _predict(args: argparse.Namespace) -> None:
    import math

    import numpy as np
    from PIL import Image

    from .imageio import read_image, write_probability
    from .train import load_model, predict_probabilities

    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name such as {out / 'mask.png'}")
    if not out.parent.is_dir():
        raise ValueError(f"cannot write {out}: the folder {out.parent} does not exist")
    if math.isnan(args.threshold) or not 0.0 <= args.threshold <= 1.0:
        raise ValueError(f"--threshold must be a probability in [0, 1], got {args.threshold}")
    model = load_model(args.checkpoint)
    image = read_image(args.image, channels=model.in_channels)
    prob = predict_probabilities(model, image, tile_size=args.tile_size)
    if args.probabilities:
        write_probability(out, prob)
        print(f"wrote {out} ({prob.shape[1]}x{prob.shape[0]} probabilities of cell, "
              f"mean {prob.mean():.3f})")
        return
    # Like the ISBI labels: 255 = cell, 0 = membrane.
    Image.fromarray(np.where(prob > args.threshold, 255, 0).astype(np.uint8)).save(out)
    print(f"wrote {out} ({prob.shape[1]}x{prob.shape[0]}, {100 * np.mean(prob > args.threshold):.1f}% cell)")


def _download(args: argparse.Namespace) -> None:
    from .data import ISBI2012

    data = ISBI2012(args.root, download=True)
    print(f"{data}: every file present and verified")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m unet_course",
                                     description="The U-Net course's command line.")
    sub = parser.add_subparsers(dest="command", required=True)

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

    train = sub.add_parser(
        "train", help="train a U-Net with a named recipe (--preset) and save checkpoints",
        description="Train a U-Net with a preset: 'paper' (valid convolutions, 572 tiles, the "
                    "weight map, elastic deformation, SGD momentum 0.99, batch 1) or 'cpu' "
                    "(same padding, batch norm, Adam; the default without a GPU). The last "
                    "--val-fraction of the images is held out and scored at the end, beside "
                    "the Otsu baseline on the same images.")
    train.add_argument("--data", choices=["synthetic-em", "isbi2012", "folder"], default="synthetic-em",
                       help="synthetic EM slices made from --seed (default), ISBI 2012 from --root, "
                            "or your own images and masks (--images DIR --masks DIR)")
    train.add_argument("--preset", choices=["paper", "cpu"], default=None,
                       help="training recipe (default: cpu without CUDA, paper with CUDA)")
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
    train.add_argument("--steps", type=int, default=None,
                       help="optimisation steps (default 1000, or unlimited with --time-budget)")
    train.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                       help="stop after this many minutes of training; the checkpoint is saved "
                            "and the held-out metrics printed as after --steps")
    train.add_argument("--val-fraction", type=float, default=0.2,
                       help="share of the images held out for the final scores (default 0.2; 0 = none)")
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
    train.add_argument("--seed", type=int, default=0,
                       help="seed of data, weights and tiles: the same seed, the same run (default 0)")
    train.set_defaults(func=_train)

    predict = sub.add_parser(
        "predict", help="segment an image of any size with a trained checkpoint",
        description="Predict a whole image with the overlap-tile strategy and write the mask "
                    "as a PNG (255 = cell, 0 = membrane).")
    predict.add_argument("image", help="input image (PNG, TIFF, JPEG, ...; converted to gray for 1 channel)")
    predict.add_argument("--checkpoint", required=True, help="checkpoint file, e.g. DIR/last.pt")
    predict.add_argument("--out", required=True, help="mask PNG to write")
    predict.add_argument("--tile-size", type=int, default=None,
                         help="input tile edge (a valid size); default: chosen from a memory budget")
    predict.add_argument("--threshold", type=float, default=0.5, help="probability of cell above which a pixel is cell")
    predict.add_argument("--probabilities", action="store_true",
                         help="write the probability of cell instead of a mask: a 16-bit PNG "
                              "(0..65535) for .png, a float32 TIFF for .tif")
    predict.set_defaults(func=_predict)
    download = sub.add_parser(
        "download", help="fetch and verify a data set (isbi2012)",
        description="Download the ISBI 2012 training slices and labels (60 PNGs) from the pinned "
                    "mirror into $UNET_COURSE_DATA/isbi2012, checking each file's sha256; files "
                    "already there and verified are kept.")
    download.add_argument("dataset", choices=["isbi2012"], help="the data set")
    download.add_argument("--root", default=None, help="folder to use instead of the default")
    download.set_defaults(func=_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, TypeError, OSError, FloatingPointError) as exc:  # CheckpointError too
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = f"; the checkpoint is in {args.out}" if args.command == "train" else ""
        print(f"stopped{where}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
    """(images, masks, instances or None) of the chosen data set, as arrays."""
    from .data import ISBI2012, synthetic_em

    if args.data == "synthetic-em":
        images, masks, instances = synthetic_em(args.images, size=args.size, seed=args.seed)
        return images, masks, instances
    data = ISBI2012(args.root, download=args.download)
    return data.images, data.masks, None


def _train(args: argparse.Namespace) -> None:
    from scipy import ndimage as ndi

    from .augment import ElasticDeform
    from .data import TileDataset
    from .model import UNet
    from .train import evaluate, fit
    from .weights import unet_weight_map

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if args.steps < 1:
        raise ValueError(f"--steps must be a positive number of steps, got {args.steps}")
    images, masks, instances = _load_data(args)
    if instances is None:  # ISBI 2012 has no instance ids: the cells are the components of mask 1
        instances = [ndi.label(m)[0] for m in masks]
    held_out = max(1, len(images) // 5)
    train_images, train_masks = images[:-held_out], masks[:-held_out]
    model = UNet(depth=args.depth, base_channels=args.base_channels, dropout=args.dropout)
    tile = model.valid_input_size(args.tile)
    weights = [unet_weight_map(i) for i in instances[:-held_out]]
    dataset = TileDataset(train_images, train_masks, tile, model.output_size(tile),
                          weight_maps=weights, augment=ElasticDeform(), length=args.steps,
                          seed=args.seed)
    print(f"training on {len(train_images)} {args.data} images ({tile}x{tile} tiles -> "
          f"{model.output_size(tile)}x{model.output_size(tile)}), {held_out} held out")
    fit(model, dataset, steps=args.steps, optimizer=args.optimizer, lr=args.lr, seed=args.seed,
        checkpoint_dir=out, checkpoint_every=args.checkpoint_every,
        resume=out / "last.pt" if args.resume else None)
    metrics = evaluate(model, images[-held_out:], masks[-held_out:])
    print("held out: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    print(f"checkpoint: {out / 'last.pt'}")


def _read_image(path: Path, channels: int):
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"no image at {path}")
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            array = np.asarray(im)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read {path} as an image ({exc})") from exc
    scale = 255.0 if array.dtype == np.uint8 else float(np.iinfo(array.dtype).max)
    array = array.astype(np.float32) / scale
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _predict(args: argparse.Namespace) -> None:
    import numpy as np
    from PIL import Image

    from .train import load_model, predict_probabilities

    out = Path(args.out)
    if not out.parent.is_dir():
        raise ValueError(f"cannot write {out}: the folder {out.parent} does not exist")
    model = load_model(args.checkpoint)
    image = _read_image(Path(args.image), model.in_channels)
    prob = predict_probabilities(model, image, tile_size=args.tile_size)
    # Like the ISBI labels: 255 = cell, 0 = membrane.
    Image.fromarray(np.where(prob > args.threshold, 255, 0).astype(np.uint8)).save(out)
    print(f"wrote {out} ({prob.shape[1]}x{prob.shape[0]}, {100 * np.mean(prob > args.threshold):.1f}% cell)")


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
        "train", help="train a U-Net with the paper's recipe and save checkpoints",
        description="Train a U-Net: weighted cross-entropy with the paper's weight map, elastic "
                    "deformation, SGD with momentum 0.99 and batch 1 (or Adam). One fifth of the "
                    "images is held out and evaluated at the end.")
    train.add_argument("--data", choices=["synthetic-em", "isbi2012"], default="synthetic-em",
                       help="synthetic EM slices made from --seed (default), or ISBI 2012 from --root")
    train.add_argument("--root", default=None,
                       help="isbi2012 only: folder with train-volume.tif/train-labels.tif or "
                            "image/N.png, label/N.png (default $UNET_COURSE_DATA/isbi2012)")
    train.add_argument("--download", action="store_true",
                       help="isbi2012 only: fetch missing PNGs from the pinned mirror (sha256-checked)")
    train.add_argument("--images", type=int, default=10, help="synthetic-em only: number of images (default 10)")
    train.add_argument("--size", type=int, default=256, help="synthetic-em only: image edge (default 256)")
    train.add_argument("--steps", type=int, required=True, help="optimisation steps (one tile each)")
    train.add_argument("--out", required=True, help="folder for the checkpoint last.pt")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints (default 100)")
    train.add_argument("--depth", type=int, default=4, help="U-Net depth (default 4, the paper)")
    train.add_argument("--base-channels", type=int, default=64, help="top-level channels (default 64, the paper)")
    train.add_argument("--dropout", type=float, default=0.5, help="dropout at the bottom (default 0.5)")
    train.add_argument("--tile", type=int, default=572,
                       help="input tile edge; rounded up to a valid size (default 572, the paper)")
    train.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                       help="sgd with momentum 0.99 (the paper, default) or adam")
    train.add_argument("--lr", type=float, default=None, help="learning rate (default 0.01 sgd, 0.001 adam)")
    train.add_argument("--seed", type=int, default=0, help="seed of data, tiles and weights (default 0)")
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
    predict.set_defaults(func=_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, TypeError, OSError) as exc:  # CheckpointError and DownloadError included
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

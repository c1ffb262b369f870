"""``python -m unet_course predict``: segment one image of any size with a checkpoint.

The image is read with :func:`~unet_course.imageio.read_image` and normalised as the network's
training images were (:func:`~unet_course.imageio.prepare_image`, with the name the checkpoint
stores). What is written depends on the network:

* two classes: a mask, 255 = cell and 0 = membrane (probability of cell above --threshold), or
  with --probabilities the probability of cell (16-bit PNG or float32 TIFF);
* more classes: each pixel's most probable class (0 .. C-1; 8-bit, 16-bit above 256 classes),
  or with --probabilities every class's probability (float32 TIFF, page k = class k).

With --symmetries the probabilities are the mean over the 8 symmetries of the square (each
prediction turned back), the test-time augmentation of the paper's ISBI 2012 entry.

A network of several input channels (modalities) takes one TIFF stack, page k = channel k, or
one file per channel, in the order the checkpoint stores (``train --data modalities``: the
sorted modality folder names); a count that does not match the network is a one-line error
(:func:`~unet_course.data.modality_folders.read_modality_files`).

An --out that would destroy a file the run reads (the image, the checkpoint) or write through
a symbolic link is refused; an ordinary existing file is replaced, as a re-run expects.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ._cli_errors import DEVICE_HELP, DIVERGED, check_finite, checkpoint_problems, device_option
from .validation import positive_int, probability

__all__ = ["add_parser"]

_THRESHOLD = 0.5  # the default of --threshold, for two-class networks
_LOSSLESS = (".png", ".tif", ".tiff")  # formats that keep class indices (and 16 bits) exactly


def _check_out(out: Path, image: Path, checkpoint: Path) -> None:
    """Refuse an --out that is a folder, a symbolic link, the input image or the checkpoint."""
    if out.is_symlink():  # a write would follow the link and replace the file it points to
        raise ValueError(f"--out {out} is a symbolic link (to {os.readlink(out)}); predict does "
                         "not write through links: give the name of a plain or new file")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name such as {out / 'mask.png'}")
    if not out.parent.is_dir():
        raise ValueError(f"cannot write {out}: the folder {out.parent} does not exist")
    for what, path in (("the input image", image), ("the checkpoint", checkpoint)):
        # samefile also sees a hard link, or a path that reaches the file through a link
        if out.exists() and path.exists() and os.path.samefile(out, path):
            raise ValueError(f"--out {out} is {what} {path}; writing there would destroy it: "
                             "choose another --out")


def _check_classes(args: argparse.Namespace, classes: int, out: Path) -> None:
    """Refuse what a network of ``classes`` output maps cannot give, before predicting."""
    ckpt = f"--checkpoint {args.checkpoint}"
    if classes < 2:
        raise ValueError(f"{ckpt} holds a network with num_classes={classes}; predict writes "
                         "class probabilities, which need a network of 2 or more classes, as "
                         "`train` makes")
    if classes == 2:
        return
    if args.threshold is not None:
        raise ValueError(f"--threshold applies to two-class networks, but {ckpt} has {classes} "
                         "classes: predict writes each pixel's most probable class; leave "
                         "--threshold out")
    if args.probabilities and out.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"--probabilities of a {classes}-class network are {classes} maps, "
                         f"which a {out.suffix or 'file without extension'} cannot hold: give "
                         "--out a .tif name (float32, one page per class)")
    if not args.probabilities and out.suffix.lower() not in _LOSSLESS:
        raise ValueError(f"a map of {classes} class indices needs a lossless format: give --out "
                         f"a .png or .tif name, not {out.suffix or 'one without extension'}")


def _note_unknown_normalization(checkpoint: Path, image_path: Path) -> None:
    """For a checkpoint that predates its normalisation entry: a note if the image is not 8-bit.

    Such a net gets the reader's values, right for the 8-bit images of the course's data sets
    but not for a deeper image if the net was trained on min-max normalised folder images.
    """
    from .imageio import bit_depth, count_pages

    if count_pages(image_path) > 1:  # a stack of modalities: nets that read them record it
        return
    bits = bit_depth(image_path)
    if bits > 8:
        print(f"note: {checkpoint} does not record how its training images were normalised "
              f"(an older checkpoint), so the {bits}-bit {image_path} is used as read_image "
              "reads it (a 12-bit image stays below 1/16); if the net was trained with `train "
              "--data folder` (min-max per image), train it again to record that",
              file=sys.stderr)


def _write(out: Path, probs, threshold: float, probabilities: bool) -> str:
    """Write the result for probabilities (C, H, W); return what was written, for the user."""
    import numpy as np
    from PIL import Image

    from .imageio import write_probability

    classes, height, width = probs.shape
    if classes == 2:
        cell = probs[1]
        if probabilities:
            write_probability(out, cell)
            return f"{width}x{height} probabilities of cell, mean {cell.mean():.3f}"
        # Like the ISBI labels: 255 = cell, 0 = membrane.
        Image.fromarray(np.where(cell > threshold, 255, 0).astype(np.uint8)).save(out)
        return f"{width}x{height}, {100 * np.mean(cell > threshold):.1f}% cell"
    if probabilities:
        write_probability(out, probs)
        means = probs.reshape(classes, -1).mean(1)
        return (f"{classes} pages of {width}x{height} float32, page k = probability of class k; "
                f"mean {_per_class(means, '{:.3f}')}")
    labels = probs.argmax(0)
    dtype = np.uint8 if classes <= 256 else np.uint16
    Image.fromarray(labels.astype(dtype)).save(out)
    shares = np.bincount(labels.ravel(), minlength=classes) / labels.size
    return (f"{width}x{height} class indices 0..{classes - 1}, {8 * dtype().itemsize}-bit; "
            f"{_per_class(100 * shares, '{:.1f}%')}")


def _per_class(values, fmt: str, shown: int = 10) -> str:
    """``class 0 v0, class 1 v1, ...`` for the first ``shown`` classes."""
    parts = [f"class {k} {fmt.format(v)}" for k, v in enumerate(values[:shown])]
    return ", ".join(parts) + (f", ... ({len(values) - shown} more)" if len(values) > shown else "")


def _channel_line(paths: list[Path], modalities, channels: int) -> str | None:
    """Which file (or page) feeds which input channel, for a net of named or several channels."""
    from .imageio import count_pages

    names = list(modalities) if modalities else [str(k) for k in range(channels)]
    if len(paths) > 1:
        return "channels: " + ", ".join(f"{n} <- {p.name}" for n, p in zip(names, paths))
    if count_pages(paths[0]) > 1:
        return f"channels: {', '.join(names)} <- pages 0..{channels - 1} of {paths[0].name}"
    if modalities:
        return f"channels: {', '.join(names)} <- the {channels} channel(s) of {paths[0].name}"
    return None


def _predict(args: argparse.Namespace) -> None:
    import numpy as np

    from .checkpoint import load_checkpoint, stored_normalization
    from .data.modality_folders import read_modality_files
    from .imageio import prepare_image
    from .predict import predict_class_probabilities
    from .train import load_model

    out, paths = Path(args.out), [Path(p) for p in args.image]
    for path in paths:
        _check_out(out, path, Path(args.checkpoint))
    threshold = _THRESHOLD if args.threshold is None else probability(args.threshold, "--threshold")
    if args.tile_size is not None:
        positive_int(args.tile_size, "--tile-size")
    dev = device_option(args.device)
    with checkpoint_problems(args.checkpoint, "--checkpoint"):
        model = load_model(args.checkpoint)
        normalize = stored_normalization(load_checkpoint(args.checkpoint))
    _check_classes(args, model.num_classes, out)
    check_finite(model, f"--checkpoint {args.checkpoint}")
    modalities = getattr(model, "modalities", None)
    image = read_modality_files(paths, model.in_channels, modalities)
    line = _channel_line(paths, modalities, model.in_channels)
    if line:
        print(line)
    if normalize is None:
        for path in paths:
            _note_unknown_normalization(Path(args.checkpoint), path)
    image = prepare_image(image, normalize)
    probs = predict_class_probabilities(model.to(dev), image, tile_size=args.tile_size,
                                        symmetries=args.symmetries)
    bad = ~np.isfinite(probs).all(0)
    if bad.any():  # NaN > threshold is False, and argmax picks it: it would pass for a class
        raise FloatingPointError(f"--checkpoint {args.checkpoint} gives NaN for "
                                 f"{np.count_nonzero(bad)} pixel(s): {DIVERGED}")
    print(f"wrote {out} ({_write(out, probs, threshold, args.probabilities)})")


def add_parser(sub) -> None:
    predict = sub.add_parser(
        "predict", help="segment an image of any size with a trained checkpoint",
        description="Predict a whole image with the overlap-tile strategy, normalised as the "
                    "checkpoint's training images were, and write the mask as a PNG (255 = "
                    "cell, 0 = membrane; for a network of more classes, each pixel's class "
                    "index 0..C-1).")
    predict.add_argument("image", nargs="+",
                         help="input image (PNG, TIFF, JPEG, ...; converted to gray for 1 "
                              "channel); for a net of several channels (modalities) one TIFF "
                              "of one page per channel, or one file per channel in the "
                              "checkpoint's order (train --data modalities: sorted folder "
                              "names)")
    predict.add_argument("--checkpoint", required=True, help="checkpoint file, e.g. DIR/last.pt")
    predict.add_argument("--out", required=True,
                         help="mask file to write (.png; not the image, the checkpoint or a link)")
    predict.add_argument("--device", default=None, help=DEVICE_HELP)
    predict.add_argument("--tile-size", type=int, default=None,
                         help="input tile edge (a valid size); default: chosen from a memory "
                              "budget")
    predict.add_argument("--threshold", type=float, default=None,
                         help="probability of cell above which a pixel is cell (default 0.5; "
                              "two-class networks only)")
    predict.add_argument("--probabilities", action="store_true",
                         help="write probabilities instead of a mask: of cell as a 16-bit PNG "
                              "(0..65535) for .png or a float32 TIFF for .tif; of every class, "
                              "one TIFF page each, for a network of more than two classes")
    predict.add_argument("--symmetries", action="store_true",
                         help="average the predictions of the image turned by 0, 90, 180 and "
                              "270 degrees, each also mirrored (8 times the work; test-time "
                              "augmentation)")
    predict.set_defaults(func=_predict)

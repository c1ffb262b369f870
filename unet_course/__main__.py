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

from . import _cli_predict, _cli_train
from ._cli_errors import exit_status


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


# --------------------------------------------------------------------------- download, plan
def _download(args: argparse.Namespace) -> None:
    from .data import ISBI2012

    data = ISBI2012(args.root, download=True)
    print(f"{data}: every file present and verified")


def _plan(args: argparse.Namespace) -> None:
    from .plan import plan_2d

    print(plan_2d(args.shape, args.spacing, n_cases=args.cases, num_classes=args.classes,
                  gpu_memory_gb=args.gpu_memory).summary())


# --------------------------------------------------------------------------- the parser
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
    for add in (_add_draw, _cli_train.add_parser, _cli_predict.add_parser, _add_download,
                _add_plan):
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

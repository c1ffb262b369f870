"""One training step of the course's U-Net successors against their peers, on the CPU, in one run.

A step is: forward, pixel-wise cross-entropy, backward, SGD update (momentum 0.99, batch 1), on
one fixed random tile of ``--size`` x ``--size`` pixels, one input channel, two classes. Models
(``unet_course.variants``, all at their defaults: depth 4, batch norm, same padding):

* ``AttentionUNet`` (base 64) against MONAI ``AttentionUnet(spatial_dims=2, channels=(64, 128,
  256, 512, 1024), strides=(2, 2, 2, 2))``. Same widths and the same additive gate (inner width
  half the skip's). MONAI differs in its sampling and decoder: it downsamples with a stride-2
  first convolution in each encoder block instead of 2x2 max pooling, upsamples with a 3x3
  transposed convolution instead of nearest x2 + 3x3 convolution, and merges each level with
  one 3x3 convolution (instance norm, PReLU) instead of a double convolution, hence ~3 M fewer
  parameters and less work at the fine levels.
* ``NestedUNet`` (UNet++, base 32: widths 32 ... 512) against segmentation-models-pytorch
  ``UnetPlusPlus("resnet34", encoder_depth=4, encoder_weights=None, decoder_channels=(256, 128,
  64, 32))``: smp's default encoder, four downsamplings like the course's depth 4, and the
  course's decoder widths from coarse to fine. The encoders differ in kind: smp's is a ResNet-34
  (7x7 stride-2 stem, max pool, residual stages of 64 ... 256 channels, no weights loaded), so
  it has about 2.6 times the parameters but computes nothing at full resolution except its last
  decoder block and head, while the course's encoder is double convolutions + max pooling and
  its top row of nodes X[0, j] all run at full resolution.
* ``ReferenceUNet``, ``R2UNet``, ``R2AttUNet`` (t = 2): no peer in either library, so their
  ratios are against the course's ``ReferenceUNet`` (the plain U-Net they are built on).

Ratios are course / comparison: a time ratio above 1 means the course's model is slower.
Runs alternate between the models (round-robin) so that drift of the machine hits all of them
alike; the table shows the median of ``--repeats`` steps after one warm-up step each. A peer
that cannot be imported or built is reported on stderr and left out; the rest still run.

Run: ``make bench`` or ``.venv/bin/python benchmarks/variants.py [--size 128] [--repeats 5]``.
The default size is chosen to keep the run near a minute on 2 otherwise idle cores; the time
grows with the pixel count, so ``--size 256`` takes about four times as long. Other work on the
same cores slows two-thread steps badly and makes the ratios noisy: read them from a quiet
machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from model_speed import make_step  # the same step as the plain U-Net's benchmark

from unet_course.geometry import UNetGeometry
from unet_course.variants import AttentionUNet, NestedUNet, R2AttUNet, R2UNet, ReferenceUNet

REFERENCE = "course ReferenceUNet"
MONAI_ATT = "MONAI AttentionUnet"
SMP_NESTED = "smp UnetPlusPlus (resnet34)"


def monai_attention_unet() -> torch.nn.Module:
    from monai.networks.nets import AttentionUnet

    return AttentionUnet(spatial_dims=2, in_channels=1, out_channels=2,
                         channels=(64, 128, 256, 512, 1024), strides=(2, 2, 2, 2))


def smp_unet_plus_plus() -> torch.nn.Module:
    import segmentation_models_pytorch as smp

    return smp.UnetPlusPlus("resnet34", encoder_depth=4, encoder_weights=None, in_channels=1,
                            classes=2, decoder_channels=(256, 128, 64, 32))


def build_models() -> tuple[dict[str, torch.nn.Module], dict[str, str]]:
    """The models in table order, and for each course model the row it is compared with."""
    models: dict[str, torch.nn.Module] = {
        REFERENCE: ReferenceUNet(1, 2),
        "course AttentionUNet": AttentionUNet(1, 2),
    }
    peers = {"course AttentionUNet": MONAI_ATT, "course NestedUNet": SMP_NESTED,
             "course R2UNet": REFERENCE, "course R2AttUNet": REFERENCE}
    for name, build, package in ((MONAI_ATT, monai_attention_unet, "monai"),
                                 (SMP_NESTED, smp_unet_plus_plus, "segmentation-models-pytorch")):
        if name == SMP_NESTED:
            models["course NestedUNet"] = NestedUNet(1, 2)
        try:
            models[name] = build()
        except ImportError as error:
            print(f"{name}: cannot import {package} ({error}); install it (make bench does) to "
                  "get this row. Skipped.", file=sys.stderr)
        except Exception as error:  # an API change in the peer: say so, keep the other rows
            print(f"{name}: building it failed ({type(error).__name__}: {error}). Skipped.",
                  file=sys.stderr)
    models["course R2UNet"] = R2UNet(1, 2)
    models["course R2AttUNet"] = R2AttUNet(1, 2)
    return models, peers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128,
                        help="input edge, a multiple of 16 (default 128)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per model (default 5)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    try:  # a clear error for an invalid size, before any work
        UNetGeometry(4, "same").check(args.size)  # depth 4, as every model here
    except ValueError as error:
        parser.error(f"--size {args.size}: {error}")

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    models, peers = build_models()
    steps, params = {}, {}
    for name, model in models.items():
        steps[name], _ = make_step(model, args.size, generator)  # same padding: out = in
        steps[name]()  # warm-up: allocator, kernels, lazy initialisation
        params[name] = sum(p.numel() for p in model.parameters())

    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, step in steps.items():  # round-robin
            times[name].append(step())
    median = {name: statistics.median(t) for name, t in times.items()}

    print(f"\nOne SGD step (batch 1, {args.size}² input, 1 channel, 2 classes), CPU, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"median of {args.repeats}\n")
    print("| model | parameters | step (s) | compared with | parameter ratio | time ratio |")
    print("|---|---|---|---|---|---|")
    for name in models:
        peer = peers.get(name)
        if peer is None:
            against = "-"
            ratios = "- | -"
        elif peer not in models:
            against = f"{peer} (not available)"
            ratios = "- | -"
        else:
            against = peer
            ratios = f"{params[name] / params[peer]:.2f} | {median[name] / median[peer]:.2f}"
        print(f"| {name} | {params[name] / 1e6:.2f} M | {median[name]:.3f} | {against} "
              f"| {ratios} |")
    print("\nRatios are course / compared model: a time ratio above 1 means the course's model "
          f"is slower. Whole run: {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()

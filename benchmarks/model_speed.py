"""One training step of unet_course.UNet against its peers, on the CPU, in one run.

A step is: forward, pixel-wise cross-entropy, backward, SGD update (momentum 0.99, batch 1),
as in the paper. Models, all with one input channel and two classes:

* ``UNet valid``     unet_course.UNet(), the paper's net: 572 x 572 in, 388 x 388 out;
* ``UNet same``      unet_course.UNet(padding="same") on the peers' input (576 x 576);
* ``MONAI BasicUNet`` at the paper's widths (64 ... 1024), as shipped (instance norm, LeakyReLU),
  and with ``norm=None, act="relu"`` (the paper's layer types);
* ``smp Unet``       segmentation-models-pytorch, ResNet-34 encoder, no pretrained weights.

The peers need an edge divisible by 16 (32 for smp), the paper's net an edge of 188 + 16k, so the
peers get the nearest such edge above the paper's (576 for 572). Runs alternate between the
models (round-robin) so that drift of the machine hits all of them alike; the table shows the
median of ``--repeats`` steps after one warm-up step each.

Run: ``make bench`` or ``.venv/bin/python benchmarks/model_speed.py [--size 572] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import unet_course as uc


def build_models(size: int):
    import segmentation_models_pytorch as smp
    from monai.networks.nets import BasicUNet

    peer_size = -(-size // 32) * 32
    widths = (64, 128, 256, 512, 1024, 64)
    return peer_size, {
        "UNet valid (paper)": (uc.UNet(), size),
        "UNet same": (uc.UNet(padding="same"), peer_size),
        "MONAI BasicUNet (as shipped)": (BasicUNet(spatial_dims=2, in_channels=1, out_channels=2,
                                                   features=widths), peer_size),
        "MONAI BasicUNet (norm=None, ReLU)": (BasicUNet(spatial_dims=2, in_channels=1, out_channels=2,
                                                        features=widths, norm=None, act="relu"), peer_size),
        "smp Unet (resnet34)": (smp.Unet("resnet34", encoder_weights=None, in_channels=1, classes=2),
                                peer_size),
    }


def make_step(model: torch.nn.Module, size: int, generator: torch.Generator):
    """A closure that performs one SGD training step on a fixed random tile."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.99)
    x = torch.rand(1, 1, size, size, generator=generator)
    with torch.no_grad():
        out_size = model(x).shape[-1]
    target = torch.randint(0, 2, (1, out_size, out_size), generator=generator)

    def step() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step, out_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=572, help="input edge of the paper's net (default 572)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per model (default 5)")
    args = parser.parse_args()
    uc.UNet().output_size(args.size)  # a clear error for an invalid size, before any work

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    peer_size, models = build_models(args.size)
    steps, info = {}, {}
    for name, (model, size) in models.items():
        step, out_size = make_step(model, size, generator)
        step()  # warm-up: allocator, kernels, lazy initialisation
        steps[name] = step
        info[name] = (size, out_size, sum(p.numel() for p in model.parameters()))

    times = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, step in steps.items():  # round-robin
            times[name].append(step())

    ref = statistics.median(times["UNet valid (paper)"])
    same = statistics.median(times["UNet same"])  # the like-for-like comparison: same input tensor
    print(f"\nOne SGD step (batch 1), CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"median of {args.repeats}\n")
    print("| model | input | output | parameters | step (s) | time ratio UNet valid / this "
          "| time ratio UNet same / this |")
    print("|---|---|---|---|---|---|---|")
    for name in models:
        size, out_size, params = info[name]
        median = statistics.median(times[name])
        print(f"| {name} | {size}² | {out_size}² | {params / 1e6:.2f} M | {median:.2f} "
              f"| {ref / median:.2f} | {same / median:.2f} |")
    print("\nTarget: time(UNet) / time(BasicUNet) <= 1.0; a ratio below 1 means UNet is faster.")


if __name__ == "__main__":
    main()

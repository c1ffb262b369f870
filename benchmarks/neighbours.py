"""U-Net and its five neighbours at an equal wall-clock budget on ISBI 2012 (lesson 12's recipe).

Lesson 12 trains the six nets for an equal number of steps, so that anyone can rerun it and get
the same numbers back. A reader who has a fixed amount of time cares about something else: what
each net reaches in that time, when a cheap net gets more steps than an expensive one. Here each
net trains for the same ``--budget`` minutes by lesson 12's recipe otherwise (the course's
same-padded U-Net of the ``cpu`` preset and FCN-8s, SegNet, LinkNet, FPN, PSPNet from
``unet_course.neighbours`` at one width, ``--tile`` crops of slices 0-23, batch ``--batch``, Adam
at ``--lr``, the tiles drawn from the seed), and is scored like lesson 12: pixel and Rand error
on the centre 256 x 256 of slices 24-29, each predicted whole, mirror-extrapolated at the border.

The budget covers the whole loop (drawing tiles, forward, backward, update); training stops at
the first step that would start after it is spent. The step count therefore depends on the
machine and on whatever else it runs: read the table from a quiet machine, and compare nets
within one run only.

Run: ``.venv/bin/python benchmarks/neighbours.py [--budget 2] [--seeds 0,1,2] [--threads 2]``
(about 6 x budget x seeds minutes, plus scoring). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from unet_course.data import ISBI2012, TileDataset
from unet_course.experiments.neighbours import LESSON12, NETS, build_net, isbi_split
from unet_course.memory import count_macs
from unet_course.settings import seed_everything
from unet_course.steps import batch_loss
from unet_course.train import evaluate


def train_for(name: str, images, masks, budget_s: float, seed: int, tile: int, batch_size: int,
              lr: float, base: int) -> tuple[torch.nn.Module, int]:
    """Train ``name`` until ``budget_s`` seconds are spent; (model in eval mode, steps)."""
    seed_everything(seed)
    model = build_net(name, base)
    if model.valid_input_size(tile) != tile:
        raise SystemExit(f"{name} cannot take {tile}-pixel tiles; use a multiple of 32")
    data = TileDataset(images, masks, tile, tile, length=10**8, seed=seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    steps, start = 0, time.perf_counter()
    for x, y in torch.utils.data.DataLoader(data, batch_size=batch_size):
        if time.perf_counter() - start >= budget_s:
            break
        optimiser.zero_grad()
        batch_loss(model, x, y, None).backward()
        optimiser.step()
        steps += 1
    return model.eval(), steps


def spread(values: list[float], fmt: str) -> str:
    mean = fmt.format(statistics.mean(values))
    return mean if len(values) == 1 else f"{mean} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    isbi = ISBI2012()
    train_images, train_masks, test_images, test_masks = isbi_split(isbi.images, isbi.masks)
    rows = []
    for name in NETS:
        results = []
        for seed in seeds:
            model, steps = train_for(name, train_images, train_masks, args.budget * 60, seed,
                                     args.tile, args.batch, args.lr, args.base)
            scores = evaluate(model, test_images, test_masks)
            results.append((steps, scores["pixel_error"], scores["rand_error"]))
            print(f"{name} seed {seed}: {steps} steps, pixel error {scores['pixel_error']:.4f}, "
                  f"Rand error {scores['rand_error']:.4f}", flush=True)
        steps, pixel, rand = (list(column) for column in zip(*results))
        params = sum(p.numel() for p in model.parameters())
        macs = sum(count_macs(model, args.tile).values()) / 1e6
        ms = [1e3 * args.budget * 60 / s for s in steps]
        rows.append((name, f"{params:,}", f"{macs:.0f}", spread(steps, "{:.0f}"),
                     spread(ms, "{:.0f}"), spread(pixel, "{:.4f}"), spread(rand, "{:.4f}")))
    all_cell = float(1 - np.mean(test_masks))
    print(f"\nISBI 2012, {args.budget:g} min of training per net and seed (seeds {args.seeds}), "
          f"{args.tile}-px tiles, batch {args.batch}, Adam lr {args.lr:g}, base width {args.base}, "
          f"{args.threads} torch thread(s); mean (min-max) over seeds. All cell: pixel error "
          f"{all_cell:.4f}.\n")
    header = ["net", "parameters", f"MMACs per {args.tile}-px tile", "steps", "ms per step",
              "pixel error", "Rand error"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def parse_args() -> argparse.Namespace:
    quick = LESSON12["quick"]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=float, default=2.0, help="minutes of training per net (2)")
    p.add_argument("--seeds", default="0", help="seeds of weights and tiles, e.g. 0,1,2 (0)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    p.add_argument("--tile", type=int, default=128, help="training tile edge, multiple of 32 (128)")
    p.add_argument("--batch", type=int, default=quick["batch_size"], help="tiles per step")
    p.add_argument("--lr", type=float, default=quick["lr"], help="Adam's learning rate")
    p.add_argument("--base", type=int, default=quick["base_channels"], help="top width")
    return p.parse_args()


if __name__ == "__main__":
    main()

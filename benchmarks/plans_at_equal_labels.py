"""Lesson 11's comparison again, at an equal budget of *labelled* pixels instead of input pixels.

Lesson 11 trains nnU-Net's planned recipe and the paper's on the same number of input pixels.
The planned net is same-padded and labels its whole patch; the paper's valid net labels only the
36 x 36 centre of each 124 x 124 tile, so at equal input pixels the planned recipe learns from
about 12 times as many labelled pixels. Here the paper's recipe gets as many labelled pixels as
the planned one (12 times the steps), at several seeds, on the lesson's two data sets:

    .venv/bin/python benchmarks/plans_at_equal_labels.py [--seeds 0,1,2] [--threads 1]

It takes minutes (the paper recipe's steps are many and small), too long for the lesson.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from unet_course.data import ISBI2012, data_dir
from unet_course.experiments import (
    Split,
    all_cell_scores,
    anisotropic_split,
    cpu_plan,
    planned_steps,
    train_planned,
)
from unet_course.experiments.training import LESSON06, train_and_score
from unet_course.presets import get_preset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isbi2012"


def datasets() -> dict:
    """Lesson 11's two data sets: {name: (split, plan, input pixels of the lesson's budget)}."""
    root = data_dir() / "isbi2012"
    isbi = ISBI2012(root if root.exists() else SHARED)
    images = np.stack(isbi.images).astype(np.float32)
    masks = np.stack(isbi.masks).astype(np.int64)
    isbi_split = Split(images[:4], masks[:4], None, images[-2:], masks[-2:])
    aniso, spacing = anisotropic_split()
    return {"ISBI 2012": (isbi_split, cpu_plan(isbi_split, (4.0, 4.0))[1], 6e6),
            "anisotropic": (aniso, cpu_plan(aniso, spacing)[1], 4e6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (0,1,2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(args.threads)
    paper = get_preset("paper", **LESSON06["paper"]).model()
    tile = paper.valid_input_size(LESSON06["paper"]["tile"])
    labelled_per_step = paper.output_size(tile) ** 2
    print("| data | recipe | steps | labelled px (M) | pixel error | Rand error |")
    print("|---|---|---|---|---|---|")
    for name, (split, plan, pixels) in datasets().items():
        steps = planned_steps(plan, pixels)
        labelled = steps * plan.batch_size * int(np.prod(plan.patch_size))
        rows = {"planned": (steps, labelled, []), "paper, equal labelled px":
                (max(1, labelled // labelled_per_step), labelled, [])}
        for seed in seeds:
            rows["planned"][2].append(train_planned(plan, split, steps, seed).scores)
            started = time.perf_counter()
            run = train_and_score("paper", split, rows["paper, equal labelled px"][0], seed)
            rows["paper, equal labelled px"][2].append(run.scores or {
                "pixel_error": float("nan"), "rand_error": float("nan")})
            print(f"  {name} seed {seed}: paper {time.perf_counter() - started:.0f} s",
                  flush=True)
        for recipe, (n, px, scores) in rows.items():
            spread = {k: f"{min(s[k] for s in scores):.3f}-{max(s[k] for s in scores):.3f}"
                      for k in ("pixel_error", "rand_error")}
            print(f"| {name} | {recipe} | {n} | {px / 1e6:.1f} | {spread['pixel_error']} "
                  f"| {spread['rand_error']} |")
        cell = all_cell_scores(split.test_masks)
        print(f"| {name} | all cell | 0 | 0 | {cell['pixel_error']:.3f} "
              f"| {cell['rand_error']:.3f} |")
    print(f"\nseeds {args.seeds}, {args.threads} torch thread(s); min-max over the seeds")


if __name__ == "__main__":
    main()

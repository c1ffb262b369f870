"""Which change makes short CPU training reliable? The measurements behind the `cpu` preset.

Lesson 06's setting: 4 synthetic EM slices of 256 x 256 to train on, 2 held out, the small
lesson net (depth 3, 8 channels at the top), the paper's weight map and elastic deformation.
Each recipe trains at every seed and torch thread count given; a run "works" when its held-out
Rand error is below half of Otsu's and its pixel error below Otsu's (lesson 06's claim).
Printed: one markdown table, a row per recipe, with the number of runs that worked and the
range of held-out errors.

    .venv/bin/python benchmarks/recipe_ablation.py [--seeds 0,1,2] [--threads 1,2] [--only NAMES]

About 5 minutes on 2 cores with the defaults. Not a test.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from unet_course.experiments import em_split, otsu_scores, torch_threads, train_and_score

#: name -> (preset, steps, overrides on top of the preset's lesson-06 scale)
RECIPES = {
    "paper (valid, SGD 0.99, lr 0.002)": ("paper", 300, {}),
    "paper + warm-up 50 + clip 1": ("paper", 300, {"warmup": 50, "grad_clip": 1.0}),
    "paper + batch norm, lr 0.01": ("paper", 300, {"batch_norm": True, "lr": 0.01}),
    "paper + Adam 1e-3": ("paper", 300, {"optimizer": "adam", "lr": 0.001}),
    "paper + same padding + Adam 1e-3": ("paper", 300, {"optimizer": "adam", "lr": 0.001,
                                                        "padding": "same", "tile": 128}),
    "cpu, 300 steps, constant lr": ("cpu", 300, {"lr_schedule": "constant"}),
    "cpu (lesson 06: 500 steps, poly)": ("cpu", 500, {}),
}


def run(name: str, seeds, threads, split, otsu) -> dict:
    preset, steps, overrides = RECIPES[name]
    pixel, rand, worked, seconds = [], [], 0, []
    for n in threads:
        for seed in seeds:
            start = time.perf_counter()
            with torch_threads(n):
                result = train_and_score(preset, split, steps=steps, seed=seed, **overrides)
            seconds.append(time.perf_counter() - start)
            if result.trained:
                pixel.append(result.scores["pixel_error"])
                rand.append(result.scores["rand_error"])
                worked += result.scores["rand_error"] < otsu["rand_error"] / 2 and \
                    result.scores["pixel_error"] < otsu["pixel_error"]
    return {"name": name, "runs": len(seeds) * len(threads), "worked": worked,
            "pixel": pixel, "rand": rand, "seconds": float(np.median(seconds))}


def span(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}" if values else "all NaN"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    parser.add_argument("--threads", default="1,2", help="torch thread counts (default 1,2)")
    parser.add_argument("--only", default=None, help="comma-separated recipe name prefixes")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    names = [n for n in RECIPES if args.only is None
             or any(n.startswith(p.strip()) for p in args.only.split(","))]
    if not names:
        parser.error(f"--only matches no recipe; recipes: {', '.join(RECIPES)}")
    split = em_split(4, 2, size=256, seed=0)
    otsu = otsu_scores(split.test_images, split.test_masks)
    print(f"Lesson 06 setting; seeds {seeds}, threads {threads}; Otsu: pixel error "
          f"{otsu['pixel_error']:.3f}, Rand error {otsu['rand_error']:.3f}\n")
    print("| recipe | runs that work | held-out pixel error | held-out Rand error | s/run |")
    print("|---|---|---|---|---|")
    for name in names:
        r = run(name, seeds, threads, split, otsu)
        print(f"| {name} | {r['worked']}/{r['runs']} | {span(r['pixel'])} | {span(r['rand'])} "
              f"| {r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()

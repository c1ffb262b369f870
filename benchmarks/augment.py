"""The paper's elastic deformation of a 512 x 512 image plus its label, against its peers, in one run.

Contenders, each warping one float32 image and one int64 label with one random field:

* ``unet_course.elastic_deform``  3 x 3 grid, sigma 10 px, bicubic field, cubic image / nearest label;
* ``elasticdeform``               ``deform_random_grid([image, label], sigma=10, points=3, order=[3, 0])``,
                                  the same recipe in C (the target: ratio <= 1.0 against it);
* ``unet_course.elastic_deform_torch``  the batched PyTorch version (CPU; and CUDA when present);
* ``torchvision ElasticTransform`` ``transforms.v2.ElasticTransform(alpha=50, sigma=5)`` on an
                                  ``Image`` + ``Mask`` pair: a per-pixel random field smoothed by a
                                  Gaussian, bilinear image / nearest mask: a different recipe, timed
                                  for reference.

Runs alternate between the contenders (round-robin) so that drift of the machine hits all of
them alike; the table shows the median of ``--repeats`` runs after one warm-up run each, and
the ratio to elasticdeform's median.

Run: ``make bench`` or ``.venv/bin/python benchmarks/augment.py [--size 512] [--repeats 30]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from unet_course.augment import elastic_deform, elastic_deform_torch
from unet_course.data import synthetic_em


def contenders(image: np.ndarray, label: np.ndarray):
    import elasticdeform
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    t_img = torch.from_numpy(image)[None, None]
    t_lab = torch.from_numpy(label)[None]
    tv_img, tv_lab = tv_tensors.Image(torch.from_numpy(image)[None]), tv_tensors.Mask(t_lab[0])
    tv_elastic = v2.ElasticTransform(alpha=50.0, sigma=5.0)
    runs = {
        "unet_course.elastic_deform": lambda: elastic_deform(image, label, rng=rng),
        "elasticdeform (C)": lambda: elasticdeform.deform_random_grid(
            [image, label], sigma=10, points=3, order=[3, 0]),
        "unet_course.elastic_deform_torch (CPU)": lambda: elastic_deform_torch(
            t_img, t_lab, generator=gen),
        "torchvision ElasticTransform (CPU)": lambda: tv_elastic(tv_img, tv_lab),
    }
    if torch.cuda.is_available():
        c_img, c_lab = t_img.cuda(), t_lab.cuda()
        c_gen = torch.Generator(device="cuda").manual_seed(0)
        c_tv_img, c_tv_lab = tv_tensors.Image(c_img[0]), tv_tensors.Mask(c_lab[0])

        def sync(f):
            def run():
                out = f()
                torch.cuda.synchronize()
                return out
            return run

        runs["unet_course.elastic_deform_torch (CUDA)"] = sync(
            lambda: elastic_deform_torch(c_img, c_lab, generator=c_gen))
        runs["torchvision ElasticTransform (CUDA)"] = sync(lambda: tv_elastic(c_tv_img, c_tv_lab))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512, help="image edge in pixels (default 512)")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per contender (default 30)")
    args = parser.parse_args()

    images, masks, _ = synthetic_em(1, size=args.size, seed=0)
    image, label = images[0], masks[0]
    runs = contenders(image, label)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for f in runs.values():  # warm-up: imports, caches, CUDA context
        f()
    for _ in range(args.repeats):
        for name, f in runs.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)

    ref = statistics.median(times["elasticdeform (C)"])
    print(f"Elastic deformation of a {args.size} x {args.size} float32 image + int64 label, "
          f"median of {args.repeats} runs (torch threads: {torch.get_num_threads()})\n")
    print("| contender | median ms | ratio to elasticdeform |")
    print("|---|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med * 1e3:.1f} | {med / ref:.2f} |")
    ratio = statistics.median(times["unet_course.elastic_deform"]) / ref
    print(f"\nTarget: unet_course.elastic_deform <= 1.0x elasticdeform: "
          f"{'met' if ratio <= 1.0 else 'NOT met'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()

"""unet_weight_map against the plain way of computing it, in one run.

The plain way (the peer) computes one full-image Euclidean distance transform per cell, stacks
them and sorts: N transforms of H x W pixels. ``unet_weight_map`` computes each cell's distances
only in its bounding box grown by the cut-off distance D (22 px for w0 = 10, sigma = 5,
tol = 1e-3), beyond which the border term is below tol.

Images (512 x 512):

* ``grid of 144 cells``  a jittered 12 x 12 grid of seeds, each cell the pixels nearer to its
  seed than to any other and within about 22 px of it: 144 cells, most touching 3-6 neighbours;
* ``touching_cells``     ``unet_course.data.touching_cells(1, size=512)``, the lesson's data.

Both versions run in this process, alternating, so that load on the machine hits them alike.
The table shows the median wall time of ``--repeats`` calls (the peer: ``--ref-repeats``), the
CPU time of this process for the same calls (less sensitive to other processes on a shared
machine), the speed-up, and the largest difference between the two maps.

Run: ``make bench`` or ``.venv/bin/python benchmarks/weights.py [--repeats 9] [--ref-repeats 2]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
from scipy import ndimage as ndi

from unet_course.data import touching_cells
from unet_course.weights import border_cutoff, separation_border, unet_weight_map

W0, SIGMA, TOL = 10.0, 5.0, 1e-3


def grid_of_cells(size: int = 512, per_side: int = 12, radius: float = 22.0, seed: int = 0):
    """int32 (size, size) instance labels with per_side**2 touching cells."""
    rng = np.random.default_rng(seed)
    step = size / per_side
    centres = (np.arange(per_side) + 0.5) * step
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    pts = np.stack([cy.ravel(), cx.ravel()], 1) + rng.uniform(-0.2, 0.2, (per_side**2, 2)) * step
    seeds = np.zeros((size, size), np.int32)
    rc = np.clip(np.round(pts).astype(int), 0, size - 1)
    seeds[rc[:, 0], rc[:, 1]] = np.arange(1, per_side**2 + 1)
    dist, (ir, ic) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    labels = seeds[ir, ic]
    reach = rng.uniform(0.85, 1.15, per_side**2 + 1) * radius
    labels[dist > reach[labels]] = 0
    return labels


def reference_weight_map(labels: np.ndarray, w0=W0, sigma=SIGMA) -> np.ndarray:
    """The peer: one full-image distance transform per cell (no class weights, w_c = 1)."""
    cells = np.where(separation_border(labels), 0, labels)
    ids = np.unique(cells)
    ids = ids[ids > 0]
    dist = np.stack([ndi.distance_transform_edt(cells != i) for i in ids])
    dist.sort(axis=0)
    term = w0 * np.exp(-((dist[0] + dist[1]) ** 2) / (2 * sigma**2))
    return (1.0 + np.where(cells == 0, term, 0.0)).astype(np.float32)


def timed(fn, labels):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(labels)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="calls of unet_weight_map")
    parser.add_argument("--ref-repeats", type=int, default=2, help="calls of the peer")
    args = parser.parse_args()

    fast = lambda lab: unet_weight_map(lab, W0, SIGMA, class_weights=None, tol=TOL)
    bound = W0 * math.exp(-border_cutoff(W0, SIGMA, TOL) ** 2 / (2 * SIGMA**2))
    cases = {"grid of 144 cells": grid_of_cells(), "touching_cells": touching_cells(1, 512)[2][0]}

    rows = []
    for name, labels in cases.items():
        n_cells = len(np.unique(labels)) - 1
        fast(labels)  # warm-up
        f_wall, f_cpu, r_wall, r_cpu = [], [], [], []
        for i in range(max(args.repeats, args.ref_repeats)):
            if i < args.ref_repeats:
                ref, w, c = timed(reference_weight_map, labels)
                r_wall.append(w)
                r_cpu.append(c)
            if i < args.repeats:
                out, w, c = timed(fast, labels)
                f_wall.append(w)
                f_cpu.append(c)
        diff = float(np.abs(out - ref).max())
        fw, fc = statistics.median(f_wall), statistics.median(f_cpu)
        rw, rc = statistics.median(r_wall), statistics.median(r_cpu)
        rows.append((name, n_cells, fw, fc, rw, rc, diff))

    print(f"unet_weight_map, 512 x 512, w0 = {W0}, sigma = {SIGMA}, tol = {TOL} "
          f"(cut-off {border_cutoff(W0, SIGMA, TOL)} px, error bound {bound:.1e}); "
          f"median of {args.repeats} (peer: {args.ref_repeats}) calls\n")
    print("| image | cells | unet_weight_map wall ms | CPU ms | per-cell full-image EDTs wall ms "
          "| CPU ms | speed-up (wall) | speed-up (CPU) | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, fw, fc, rw, rc, diff in rows:
        print(f"| {name} | {n} | {fw * 1e3:.1f} | {fc * 1e3:.1f} | {rw * 1e3:.0f} | {rc * 1e3:.0f} "
              f"| {rw / fw:.0f}x | {rc / fc:.0f}x | {diff:.1e} |")
    n144 = rows[0]
    print(f"\ntargets (144 cells): < 50 ms -> {n144[2] * 1e3:.1f} ms wall, {n144[3] * 1e3:.1f} ms CPU; "
          f">= 20x -> {n144[4] / n144[2]:.0f}x wall; max abs diff {n144[6]:.1e} <= bound {bound:.1e}: "
          f"{n144[6] <= bound + 1e-5}")


if __name__ == "__main__":
    main()

"""Overlap-tile prediction against the whole-image forward pass and MONAI's sliding window.

For a 1024 x 1024 and a 2048 x 1536 image and one valid U-Net (the paper's depth and sizes):

* ``whole image``      one forward pass over the image mirrored by the 92-px margin, up to the
                       next valid size (188 + 16k), cropped back: the reference;
* ``predict_tiled``    at the default tile size (chosen from the 4 GiB memory budget), at a
                       tighter 512 MiB budget (which forces several tiles), and at the paper's
                       572 x 572 tile;
* the same-padded twin (same weights, ``padding="same"``) at an equal tile of 576 x 576
  (the nearest multiple of 16): ``predict_tiled`` (halo 96, exact) and MONAI's
  ``sliding_window_inference`` (overlap 0.25, constant blending), each compared with the twin's
  own whole-image pass.

Times are the best of ``--repeats`` runs, alternating between the methods (round-robin) so that
drift of a shared machine hits all of them alike; ratios are to the whole-image pass in the same
run, both for wall-clock time and for the process's CPU time. Then the peak memory of ``predict_tiled`` on CPU for growing images, each in a fresh
subprocess: the resident-set high-water mark (``VmHWM``, reset just before the call through
``/proc/self/clear_refs``; it sees every allocation, PyTorch's and oneDNN's included). The
working memory beyond the image and the logits stays within the budget however large the
image grows: with the default 4 GiB budget and with 512 MiB.

The net is the paper's architecture at a quarter of its width (``--base 16``: 16 ... 256
channels, 1.9 M parameters) so that the whole run takes a few minutes on 2 CPU cores; pass
``--base 64`` for the paper's 31 M-parameter net (about 16x the compute; the whole-image pass of
the 2048 x 1536 image then needs about 6 GB).

Run: ``make bench`` or ``.venv/bin/python benchmarks/tiling.py [--base 16] [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable

import torch

import unet_course as uc
from unet_course.tiling import DEFAULT_MEMORY_BUDGET, mirror_pad, predict_tiled, tile_grid

MiB = 2**20


def whole_image(model: torch.nn.Module, image: torch.Tensor, context: int) -> Callable[[], torch.Tensor]:
    """A closure: one pass over ``image`` (C, H, W) mirrored by ``context``, cropped to (H, W)."""
    C, H, W = image.shape
    q = 2**model.depth
    if model.padding == "valid":
        big = [model.valid_input_size(n + 2 * context) for n in (H, W)]
        offset = 0
    else:
        big = [-(-(n + 2 * context) // q) * q for n in (H, W)]
        offset = context
    padded = mirror_pad(image, (context, big[0] - H - context, context, big[1] - W - context))[None]

    def run() -> torch.Tensor:
        with torch.no_grad():
            return model(padded)[0, :, offset : offset + H, offset : offset + W]

    return run


def monai_window(model: torch.nn.Module, image: torch.Tensor, roi: int,
                 windows: list[int]) -> Callable[[], torch.Tensor]:
    """A closure running MONAI's sliding window; it appends the number of windows it used."""
    from monai.inferers import sliding_window_inference

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        windows[-1] += batch.shape[0]
        return model(batch)

    def run() -> torch.Tensor:
        windows.append(0)
        with torch.no_grad():
            return sliding_window_inference(image[None], roi_size=(roi, roi), sw_batch_size=4,
                                            predictor=predictor, overlap=0.25, mode="constant")[0]

    return run


def compare(H: int, W: int, base: int, repeats: int) -> list[dict]:
    uc.seed_everything(0)
    valid = uc.UNet(base_channels=base).eval()
    same = uc.UNet(base_channels=base, padding="same").eval()
    same.load_state_dict(valid.state_dict())  # the same weights: only the padding differs
    image = torch.rand(1, H, W, generator=torch.Generator().manual_seed(1))
    margin = (572 - valid.output_size(572)) // 2

    def tiled(model, **kw):
        return lambda: predict_tiled(model, image, progress=False, **kw)

    windows: list[int] = []
    methods = {
        "whole image (valid)": (whole_image(valid, image, margin), None),
        "predict_tiled, default tile": (tiled(valid), tile_grid(valid, (H, W))),
        "predict_tiled, 512 MiB budget": (tiled(valid, memory_budget=512 * MiB),
                                          tile_grid(valid, (H, W), memory_budget=512 * MiB)),
        "predict_tiled, 572 tile": (tiled(valid, tile_size=572), tile_grid(valid, (H, W), 572)),
        "whole image (same twin)": (whole_image(same, image, 96), None),
        "predict_tiled (same twin), 576 tile": (tiled(same, tile_size=576),
                                                tile_grid(same, (H, W), 576)),
        "whole image (same twin, no mirror)": (lambda: same(image[None])[0], None),
        "MONAI sliding window (same twin), 576, overlap 0.25": (monai_window(same, image, 576, windows), None),
    }
    with torch.no_grad():  # warm-up: let oneDNN build its kernels for these layer widths
        valid(torch.rand(1, 1, 236, 236))
        same(torch.rand(1, 1, 256, 256))
    times = {name: float("inf") for name in methods}
    cpu = {name: float("inf") for name in methods}
    outputs = {}
    for _ in range(repeats):
        for name, (run, _grid) in methods.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            with torch.no_grad():
                out = run()
            times[name] = min(times[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
            outputs[name] = out
    refs = {
        "whole image (valid)": "whole image (valid)",
        "predict_tiled, default tile": "whole image (valid)",
        "predict_tiled, 512 MiB budget": "whole image (valid)",
        "predict_tiled, 572 tile": "whole image (valid)",
        "whole image (same twin)": "whole image (same twin)",
        "predict_tiled (same twin), 576 tile": "whole image (same twin)",
        "whole image (same twin, no mirror)": "whole image (same twin, no mirror)",
        "MONAI sliding window (same twin), 576, overlap 0.25": "whole image (same twin, no mirror)",
    }
    rows = []
    for name, (_run, grid) in methods.items():
        diff = (outputs[name] - outputs[refs[name]]).abs().max().item()
        if grid is not None:
            tiles = f"{len(grid)} x {grid.input_size[0]}x{grid.input_size[1]}"
        elif name.startswith("MONAI"):
            tiles = f"{windows[-1]} x 576x576"
        else:
            tiles = "1 (whole)"
        rows.append(dict(image=f"{H}x{W}", method=name, tiles=tiles, seconds=times[name],
                         ratio=times[name] / times["whole image (valid)"],
                         cpu_ratio=cpu[name] / cpu["whole image (valid)"], reference=refs[name],
                         diff=diff, input_pixels=grid.input_pixels if grid is not None else None))
    return rows


# ------------------------------------------------------------------------------- memory
CHILD = r"""
import json, re, resource, sys
import torch
import unet_course as uc
from unet_course.tiling import predict_tiled, tile_grid


def status(field):  # kB -> bytes, from the kernel's accounting of this process
    return int(re.search(field + r":\s+(\d+)", open("/proc/self/status").read()).group(1)) * 1024


H, W, base, budget = (int(a) for a in sys.argv[1:5])
uc.seed_everything(0)
model = uc.UNet(base_channels=base).eval()
image = torch.rand(1, H, W)
with torch.no_grad():
    model(torch.rand(1, 1, 236, 236))  # warm-up, as in the timing runs
try:  # Linux: reset the high-water mark to the current RSS, so the peak is this call's
    open("/proc/self/clear_refs", "w").write("5")
    before = status("VmRSS")
    logits = predict_tiled(model, image, memory_budget=budget, progress=False)
    peak = status("VmHWM")
except OSError:  # elsewhere: the process's high-water mark (imports included)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    logits = predict_tiled(model, image, memory_budget=budget, progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
grid = tile_grid(model, (H, W), memory_budget=budget)
print(json.dumps(dict(before=before, peak=peak, tiles=len(grid),
                      tile=grid.input_size, estimate=grid.tile_memory * grid.batch_size,
                      image=image.numel() * 4, logits=logits.numel() * 4)))
"""


def memory(sizes: list[int], base: int, budget: int) -> list[dict]:
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(n), str(base), str(budget)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["size"] = n
        r["working"] = r["peak"] - r["before"] - r["logits"]
        rows.append(r)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=int, default=16, help="base channels (64 = the paper's net)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per method; the best counts")
    parser.add_argument("--images", nargs="*", default=["1024x1024", "2048x1536"],
                        help="HxW of the images to compare")
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[1024, 2048, 4096])
    parser.add_argument("--memory-budgets", type=int, nargs="*",
                        default=[DEFAULT_MEMORY_BUDGET, 512 * MiB], help="bytes")
    args = parser.parse_args()

    start = time.perf_counter()
    print(f"unet_course.UNet(base_channels={args.base}), valid padding, depth 4; CPU, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}; best of {args.repeats}\n")
    print("| image | method | tiles | time (s) | x whole (valid) | CPU time x whole | "
          "max abs diff | vs |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    results = []
    images = [tuple(int(n) for n in s.split("x")) for s in args.images]
    for H, W in images:
        rows = compare(H, W, args.base, args.repeats)
        results += rows
        for r in rows:
            print(f"| {r['image']} | {r['method']} | {r['tiles']} | {r['seconds']:.2f} | "
                  f"{r['ratio']:.2f} | {r['cpu_ratio']:.2f} | {r['diff']:.1e} | {r['reference']} |",
                  flush=True)

    print("\nInput pixels fed to the net, relative to the whole-image pass (the margin overhead):\n")
    print("| image | method | input pixels | x whole |")
    print("|---|---|---:|---:|")
    for H, W in images:
        net = uc.UNet(base_channels=1)  # arithmetic only
        whole = net.valid_input_size(H + 184) * net.valid_input_size(W + 184)
        for r in results:
            if r["image"] == f"{H}x{W}" and r["input_pixels"] and "same" not in r["method"]:
                print(f"| {H}x{W} | {r['method']} | {r['input_pixels']:,} | "
                      f"{r['input_pixels'] / whole:.2f} |")

    if args.memory_sizes and args.memory_budgets:
        print("\nPeak memory of predict_tiled on CPU (a fresh process per image):\n")
        print("| budget | image | tiles | peak RSS (MiB) | image (MiB) | logits (MiB) | "
              "working memory (MiB) | estimate for one batch (MiB) |")
        print("|---|---|---|---:|---:|---:|---:|---:|")
        for budget in args.memory_budgets:
            for r in memory(args.memory_sizes, args.base, budget):
                print(f"| {budget / MiB:.0f} MiB | {r['size']}x{r['size']} | {r['tiles']} x "
                      f"{r['tile'][0]}x{r['tile'][1]} | {r['peak'] / MiB:.0f} | "
                      f"{r['image'] / MiB:.0f} | {r['logits'] / MiB:.0f} | {r['working'] / MiB:.0f} | "
                      f"{r['estimate'] / MiB:.0f} |", flush=True)
        print("\nworking memory = peak RSS during the call - RSS before it - logits (the image "
              "was already resident)")
    print(f"\ntotal run time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

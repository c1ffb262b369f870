"""Equal wall-clock budget on ISBI 2012: the course's recipes against MONAI, smp and Otsu.

Each recipe trains for the same ``--budget`` minutes (8) on the first ``--train`` (24) ISBI 2012
training slices with ``--threads`` (2) torch threads, then predicts each held-out slice whole:

* ``cpu``    ``unet_course.presets.train("cpu", ...)``, the course's CPU recipe;
* ``paper``  ``train("paper", ...)`` at ``--paper-base`` 16 channels and ``--paper-tile`` 380
  (the paper's 64 and 572 are far too slow for minutes on a CPU; the table says what was used);
* ``monai``  MONAI ``BasicUNet(spatial_dims=2, in_channels=1, out_channels=2)`` (default features)
  and ``smp``: segmentation-models-pytorch ``Unet("resnet34", encoder_weights=None)``, both with
  Adam (lr 1e-3), cross-entropy, batches of 2 random 256 x 256 crops, flips, 90-degree turns;
* ``otsu``   ``unet_course.baseline.threshold_segmentation``, no training;
* ``allcell`` every pixel "cell": the error of saying nothing (Rand error near 1).

With ``--symmetries`` every trained net is also scored on the mean of its predictions over the
8 symmetries of the square (test-time augmentation, 8x the inference; the course's nets through
``predict_probabilities(..., symmetries=True)``, the peers' the same way here), in two more
columns. ``--seeds 0,1,2`` trains each recipe once per seed (``--peer-seeds 0``: the recipes other
than ``cpu`` and its ``cpu+...`` variants at those seeds only); the table gives min-max.
A course recipe may carry preset overrides after ``+`` signs, to measure a change before it
becomes a default: ``--only cpu,cpu+elastic=false,cpu+base_channels=32``.

Training ends at the first step that would start after the budget is spent (a step is never cut
short, as in the course's ``fit``). Pixel and Rand error are each taken at the threshold of
P(cell) (``--thresholds`` in [0.05, 0.95]) with the lowest mean over the held-out slices, per
recipe and metric, chosen on those slices (optimistic for all alike; shown). Otsu: its binary map.

Run (about 4 x budget + a few minutes): ``make bench`` or
``.venv/bin/python benchmarks/isbi_budget.py [--budget 8] [--only cpu,monai] [--seeds 0,1,2]
[--symmetries] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unet_course.baseline import threshold_segmentation
from unet_course.data import ISBI2012, data_dir
from unet_course.metrics import pixel_error, rand_error
from unet_course.presets import get_preset, train
from unet_course.train import predict_probabilities

RECIPES = ("cpu", "paper", "monai", "smp", "otsu", "allcell")
SHARED_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isbi2012"
CROP, BATCH = 256, 2


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_root() -> Path:
    root = data_dir() / "isbi2012"
    return root if root.exists() else SHARED_ROOT


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mean_step(stamps: list[tuple[float, int]], total: float, steps: int) -> float:
    """Seconds per step between the first and last (time, step) stamp; all steps if too few."""
    if len(stamps) >= 2 and stamps[-1][1] > stamps[0][1]:
        return (stamps[-1][0] - stamps[0][0]) / (stamps[-1][1] - stamps[0][1])
    return total / max(steps, 1)


# ------------------------------------------------------------------------------ the course
def parse_value(text: str):
    """``"32"`` -> 32, ``"0.5"`` -> 0.5, ``"false"`` -> False, ``"none"`` -> None, else the text."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def split_recipe(name: str) -> tuple[str, dict]:
    """``"cpu+elastic=false+lr=0.001"`` -> ("cpu", {"elastic": False, "lr": 0.001})."""
    base, *parts = name.split("+")
    overrides = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ValueError(f"recipe {name!r}: write overrides as +field=value, got {part!r}")
        overrides[key] = parse_value(value)
    if overrides and base not in ("cpu", "paper"):
        raise ValueError(f"recipe {name!r}: only the course's presets take +field=value")
    if overrides:
        get_preset(base, **overrides)  # an unknown field fails now, not after an hour
    return base, overrides


def run_course(name: str, images, masks, budget_s: float, seed: int, **overrides):
    """Train a course preset for ``budget_s`` seconds; (model, steps, s/step)."""
    stamps: list[tuple[float, int]] = []
    callback = lambda e: stamps.append((time.perf_counter(), e["step"])) if "loss" in e else None
    start = time.perf_counter()
    model, history = train(name, images, masks, steps=10**7, time_budget=budget_s, seed=seed,
                           progress=False, callbacks=[callback], **overrides)
    steps = len(history.steps)
    return model, steps, mean_step(stamps, time.perf_counter() - start, steps)


# ------------------------------------------------------------------------------ the peers
def peer_model(name: str) -> torch.nn.Module:
    try:
        if name == "monai":
            from monai.networks.nets import BasicUNet
            return BasicUNet(spatial_dims=2, in_channels=1, out_channels=2)
        import segmentation_models_pytorch as smp
        return smp.Unet("resnet34", encoder_weights=None, in_channels=1, classes=2)
    except ImportError as exc:
        raise SystemExit(f"{exc.name} is not installed: run `make bench` to install the peers "
                         "(MONAI, segmentation-models-pytorch)") from exc


def sample_batch(images: np.ndarray, masks: np.ndarray, rng: np.random.Generator):
    """BATCH random CROP x CROP crops, each rotated by k * 90 degrees and maybe mirrored."""
    xs, ys = [], []
    for _ in range(BATCH):
        k = rng.integers(len(images))
        y, x = (int(rng.integers(0, n - CROP + 1)) for n in images.shape[1:])
        im, m = images[k, y:y + CROP, x:x + CROP], masks[k, y:y + CROP, x:x + CROP]
        turns = int(rng.integers(4))
        im, m = np.rot90(im, turns), np.rot90(m, turns)
        if rng.random() < 0.5:  # with the 4 rotations: all 8 symmetries of the square
            im, m = im[:, ::-1], m[:, ::-1]
        xs.append(np.ascontiguousarray(im))
        ys.append(np.ascontiguousarray(m))
    return torch.from_numpy(np.stack(xs)[:, None]), torch.from_numpy(np.stack(ys))


def run_peer(name: str, images, masks, budget_s: float, seed: int):
    """Adam + cross-entropy on random crops until the budget is spent; (model, steps, s/step)."""
    torch.manual_seed(seed)
    model = peer_model(name)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    stamps, steps, start = [], 0, time.perf_counter()
    while time.perf_counter() - start < budget_s:
        x, y = sample_batch(images, masks, rng)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        if steps % 10 == 0:  # the course's log interval: warm-up excluded alike
            stamps.append((time.perf_counter(), steps))
    return model.eval(), steps, mean_step(stamps, time.perf_counter() - start, steps)


def over_symmetries(predict, image: np.ndarray) -> np.ndarray:
    """Mean of ``predict`` over the 8 symmetries of the square, each map turned back."""
    total = np.zeros(image.shape, np.float64)
    for mirror in (False, True):
        for turns in range(4):
            x = np.rot90(image[:, ::-1] if mirror else image, turns)
            y = np.rot90(predict(np.ascontiguousarray(x)), -turns)
            total += y[:, ::-1] if mirror else y
    return (total / 8).astype(np.float32)


@torch.no_grad()
def predict_peer(model: torch.nn.Module, image: np.ndarray, multiple: int = 32) -> np.ndarray:
    """P(cell) for a whole slice; edges mirrored up to a multiple of 32 (smp needs it)."""
    h, w = image.shape
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    if h % multiple or w % multiple:
        x = F.pad(x, (0, -w % multiple, 0, -h % multiple), mode="reflect")
    return torch.softmax(model.eval()(x), dim=1)[0, 1, :h, :w].numpy()


# ------------------------------------------------------------------------------ scoring
def score(preds: list[np.ndarray], masks: np.ndarray, thresholds: np.ndarray) -> dict:
    """Mean pixel and Rand error over slices, each at its best threshold of the sweep."""
    if not np.issubdtype(preds[0].dtype, np.floating):  # a label map: no threshold to choose
        return {"pixel_error": float(np.mean([pixel_error(p, m) for p, m in zip(preds, masks)])),
                "rand_error": float(np.mean([rand_error(p, m) for p, m in zip(preds, masks)])),
                "pixel_threshold": None, "rand_threshold": None}
    pe = np.mean([[pixel_error(p, m, t) for t in thresholds] for p, m in zip(preds, masks)], 0)
    re = np.mean([[rand_error(p, m, (t,)) for t in thresholds] for p, m in zip(preds, masks)], 0)
    i, j = int(np.argmin(pe)), int(np.argmin(re))
    return {"pixel_error": float(pe[i]), "rand_error": float(re[j]),
            "pixel_threshold": float(thresholds[i]), "rand_threshold": float(thresholds[j])}


def run_recipe(name: str, args, train_set, test_images, seed: int):
    """(row, predictions, predictions averaged over symmetries or None) of one recipe."""
    budget_s = args.budget * 60
    if name in ("otsu", "allcell"):
        label = {"otsu": "Otsu + opening (no training)", "allcell": "all cell (no training)"}
        preds = [threshold_segmentation(im) if name == "otsu" else np.ones(im.shape, np.uint8)
                 for im in test_images]
        return {"label": label[name], "params": 0, "steps": 0, "s_per_step": None}, preds, None
    if name in ("monai", "smp"):
        model, steps, sps = run_peer(name, *train_set, budget_s, seed)
        predict = lambda im: predict_peer(model, im)  # noqa: E731
        label = ("MONAI BasicUNet (default features 32-32-64-128-256-32)" if name == "monai"
                 else "smp Unet resnet34 (no pretrained weights)")
    else:
        base, overrides = split_recipe(name)
        extra = {} if base == "cpu" else {"base_channels": args.paper_base, "tile": args.paper_tile}
        model, steps, sps = run_course(base, *train_set, budget_s, seed, **{**extra, **overrides})
        predict = lambda im: predict_probabilities(model, im)  # noqa: E731
        cpu = get_preset("cpu", **overrides)  # the settings this run used
        label = (f"course `cpu` (base {cpu.base_channels}, tile {cpu.tile}, batch "
                 f"{cpu.batch_size}, {cpu.norm} norm)") if base == "cpu" else (
            f"course `paper` at base {args.paper_base} (paper: 64), tile "
            f"{model.valid_input_size(args.paper_tile)} (paper: 572)")
        if overrides:
            label += " with " + ", ".join(f"{k}={v}" for k, v in overrides.items())
    preds = [predict(im) for im in test_images]
    averaged = None
    if args.symmetries:
        if name not in ("monai", "smp"):  # the package's own option, tested against this one
            averaged = [predict_probabilities(model, im, symmetries=True) for im in test_images]
        else:
            averaged = [over_symmetries(predict, im) for im in test_images]
    params = sum(p.numel() for p in model.parameters())
    return {"label": label, "params": params, "steps": steps, "s_per_step": sps}, preds, averaged


# ------------------------------------------------------------------------------ output
def spread(runs: list[dict], key: str, fmt: str = "{:.4f}") -> str:
    """One run's value, or min-max over the runs (seeds)."""
    values = [r[key] for r in runs if r.get(key) is not None]
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return fmt.format(lo) if len(values) == 1 or fmt.format(lo) == fmt.format(hi) else (
        f"{fmt.format(lo)}-{fmt.format(hi)}")


def print_table(results: dict, args, n_test: int) -> None:
    seeds = ",".join(map(str, args.seeds))
    peers = "" if args.peer_seeds == args.seeds else (
        f" (other recipes: {','.join(map(str, args.peer_seeds))})")
    print(f"\nISBI 2012, {args.budget:g} min of training per recipe on slices 0-{args.train - 1}, "
          f"scored on {n_test} held-out slices, seed(s) {seeds} for `cpu`{peers}\n")
    sym = " pixel error, 8 symmetries | Rand error, 8 symmetries |" if args.symmetries else ""
    print(f"| recipe | params | steps | s/step | pixel error | Rand error |{sym}")
    print("|---|---|---|---|---|---|" + ("---|---|" if args.symmetries else ""))
    for runs in results.values():
        row = (f"| {runs[0]['label']} | {runs[0]['params'] / 1e6:.2f} M "
               f"| {spread(runs, 'steps', '{:d}')} | {spread(runs, 's_per_step', '{:.2f}')} "
               f"| {spread(runs, 'pixel_error')} | {spread(runs, 'rand_error')} |")
        if args.symmetries:
            row += f" {spread(runs, 'sym_pixel_error')} | {spread(runs, 'sym_rand_error')} |"
        print(row)
    print(f"\nBudget {args.budget:g} min per recipe and seed, {torch.get_num_threads()} torch "
          f"threads, CPU {cpu_model()}, torch {torch.__version__}. Several seeds: min-max.")
    print("Errors: mean over held-out slices at the threshold of P(cell) with the lowest mean "
          f"(of {args.thresholds} in [0.05, 0.95], chosen on the held-out slices per run; Otsu "
          "and all-cell: their binary output). s/step: mean after the first 10 steps (of all, "
          "below 20 steps). The paper's own 64 channels and 572 tiles are far too slow on a "
          "CPU: see the `paper` row for what was used.")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=float, default=8.0, help="minutes of training per recipe (8)")
    p.add_argument("--train", type=int, default=24, help="first N slices train (24)")
    p.add_argument("--test", type=int, default=None, help="held-out slices (default: the rest)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    p.add_argument("--seeds", default="0", help="seeds of weights and tiles, e.g. 0,1,2 (0)")
    p.add_argument("--peer-seeds", default=None,
                   help="seeds for the recipes other than `cpu` and `cpu+...` (default: --seeds)")
    p.add_argument("--symmetries", action="store_true",
                   help="also score each net averaged over the 8 symmetries of the square")
    p.add_argument("--paper-base", type=int, default=16, help="paper preset's base channels (16)")
    p.add_argument("--paper-tile", type=int, default=380, help="paper preset's input tile (380)")
    p.add_argument("--thresholds", type=int, default=19, help="thresholds swept (19)")
    p.add_argument("--only", default=",".join(RECIPES), help=f"subset of {','.join(RECIPES)}")
    p.add_argument("--root", type=Path, default=None,
                   help="ISBI 2012 folder (default: data_dir()/isbi2012, i.e. $UNET_COURSE_DATA or "
                        "~/.cache/unet_course, else ../shared/data/isbi2012 beside the repository)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = p.parse_args()
    args.only = [r.strip() for r in args.only.split(",") if r.strip()]
    try:
        args.seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        p.error(f"--seeds: a comma-separated list of integers, got {args.seeds!r}")
    try:
        args.peer_seeds = (args.seeds if args.peer_seeds is None else
                           [int(x) for x in args.peer_seeds.split(",") if x.strip()])
    except ValueError:
        p.error(f"--peer-seeds: a comma-separated list of integers, got {args.peer_seeds!r}")
    if not args.seeds or not args.peer_seeds:
        p.error("--seeds, --peer-seeds: give at least one seed")
    unknown = sorted(r for r in args.only if r.split("+")[0] not in RECIPES)
    for recipe in args.only:
        try:
            split_recipe(recipe)
        except (ValueError, TypeError) as exc:
            p.error(f"--only: {exc}")
    if unknown or not args.only:
        p.error(f"--only: unknown recipe(s) {', '.join(unknown) or '(none given)'}; "
                f"choose from {','.join(RECIPES)}")
    if args.budget <= 0 or args.threads < 1 or args.thresholds < 1:
        p.error("--budget, --threads and --thresholds must be positive")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    for name in ("monai", "smp"):  # fail before any training, not after the first recipe
        if name in args.only:
            peer_model(name)
    data = ISBI2012(args.root if args.root is not None else default_root())
    n = len(data.images)
    if not 1 <= args.train < n or (args.test is not None and args.test < 1):
        raise SystemExit(f"--train must be in 1..{n - 1} and --test >= 1 ({n} slices)")
    end = n if args.test is None else min(n, args.train + args.test)
    train_set = (data.images[:args.train], data.masks[:args.train])
    test_images, test_masks = data.images[args.train:end], data.masks[args.train:end]
    thresholds = np.round(np.linspace(0.05, 0.95, args.thresholds), 3)
    results: dict[str, list[dict]] = {}
    for name in args.only:
        seeds = args.seeds if name.split("+")[0] == "cpu" else args.peer_seeds
        for seed in seeds if name not in ("otsu", "allcell") else seeds[:1]:
            log(f"{name}, seed {seed}: "
                f"{'scoring' if name in ('otsu', 'allcell') else f'training {args.budget:g} min'}")
            row, preds, averaged = run_recipe(name, args, train_set, test_images, seed)
            run = {**row, "seed": seed, **score(preds, test_masks, thresholds)}
            if averaged is not None:
                run.update({f"sym_{k}": v for k, v in score(averaged, test_masks,
                                                             thresholds).items()})
            results.setdefault(name, []).append(run)
            log(f"{name}, seed {seed}: {row['steps']} steps, pixel {run['pixel_error']:.4f}, "
                f"Rand {run['rand_error']:.4f}")
    print_table(results, args, len(test_images))
    if args.json is not None:
        meta = {"budget_min": args.budget, "threads": torch.get_num_threads(), "cpu": cpu_model(),
                "torch": torch.__version__, "train_slices": args.train, "test_slices":
                len(test_images), "seeds": args.seeds, "peer_seeds": args.peer_seeds, "thresholds": thresholds.tolist()}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

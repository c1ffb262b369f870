"""The small training experiments that lessons show and tests rerun, one module per lesson.

A lesson states a claim about training; float rounding differs between processors and thread
counts, so one run proves little. Each experiment is one function of a seed: the lesson calls
it once and shows the result, and ``tests/test_training_claims.py`` and
``tests/test_lesson_claims.py`` call it at several seeds with torch at 1 and 2 threads and
assert the same claim every time.

* :mod:`.skips`       (lesson 02)  no skips, summed skips or the paper's concatenated ones;
* :mod:`.seams`       (lesson 03)  a trained zero-padded net, tile by tile: seams in the labels;
* :mod:`.deformation` (lesson 04)  what augmentation adds with two training images;
* :mod:`.separation`  (lesson 05)  the weight map that separates touching cells;
* :mod:`.training`    (lesson 06)  the presets against Otsu's threshold on held-out slices;
* :mod:`.imbalance`   (lesson 08)  a plain loss on an imbalanced toy task; overfitting one batch;
* :mod:`.successors`  (lesson 10)  U-Net and four successors trained by one recipe;
* :mod:`.planning`    (lesson 11)  nnU-Net's planned configuration against the paper's;
* :mod:`.looking`     (lesson 13)  what a region's answer depends on, by distance.

:func:`map_in_processes` runs independent runs on several cores, one torch thread each.

:func:`torch_threads` (in :mod:`unet_course.timing`) is importable from here as before.
"""

from ..timing import torch_threads
from ._pool import map_in_processes
from .deformation import (
    DeformationRun,
    TileScore,
    compare_deformation,
    lesson04_arms,
    tile_pixel_error,
    train_tile_net,
)
from .imbalance import (
    foreground_iou,
    overfit_batch,
    pixel_accuracy,
    predict_classes,
    train_tiny,
)
from .looking import LookResult, membrane_region, occlusion_by_distance, patch_distances
from .planning import (
    CPU_PLAN,
    PlannedRun,
    anisotropic_split,
    compare_plans,
    compare_plans_on,
    cpu_plan,
    planned_steps,
    train_planned,
)
from .seams import SeamRun, predict_averaged, seam_distance, tiled_seams
from .separation import (
    CellSplit,
    SeparationScore,
    compare_weightings,
    separated_cells,
    separation_weights,
    touching_split,
    train_separation_net,
)
from .skips import SKIP_MODES, SkipUNet, compare_skips
from .successors import (
    LESSON10,
    SUCCESSORS,
    PrunedScore,
    SuccessorRun,
    build_successor,
    compare_on_splits,
    compare_successors,
    lesson10_splits,
    train_pruned_unetpp,
    train_successor,
)
from .training import (
    LESSON06,
    RunResult,
    Split,
    all_cell_scores,
    em_split,
    otsu_scores,
    train_and_score,
)

__all__ = ["Split", "all_cell_scores", "em_split", "otsu_scores", "RunResult", "train_and_score",
           "LESSON06",
           "torch_threads",
           # lesson 02
           "SKIP_MODES", "SkipUNet", "compare_skips",
           # lesson 03
           "SeamRun", "predict_averaged", "seam_distance", "tiled_seams",
           # lesson 04
           "TileScore", "DeformationRun", "train_tile_net", "tile_pixel_error",
           "compare_deformation", "lesson04_arms",
           # lesson 05
           "CellSplit", "touching_split", "separation_weights", "train_separation_net",
           "separated_cells", "SeparationScore", "compare_weightings",
           # lesson 08
           "predict_classes", "pixel_accuracy", "foreground_iou", "train_tiny", "overfit_batch",
           # lesson 10
           "SUCCESSORS", "LESSON10", "build_successor", "train_successor", "SuccessorRun",
           "compare_successors", "compare_on_splits", "PrunedScore", "train_pruned_unetpp",
           "lesson10_splits",
           # lesson 11
           "CPU_PLAN", "PlannedRun", "anisotropic_split", "cpu_plan", "planned_steps", "train_planned",
           "compare_plans", "compare_plans_on", "map_in_processes",
           # lesson 13
           "LookResult", "membrane_region", "patch_distances", "occlusion_by_distance"]

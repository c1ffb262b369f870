"""Lesson 12's claims (U-Net among its neighbours), rerun at seeds 0-2 with 1 and 2 threads.

The lesson trains the course's U-Net and five neighbours by one recipe on ISBI 2012
(``LESSON12["quick"]``) and states what held at every seed and thread count. Here each of the
six (seed, threads) runs repeats the lesson's experiment and asserts the lesson's claims with
the lesson's margins. The three one-thread runs go to two worker processes, half of the nets
each (``map_in_processes`` gives every worker one torch thread); the two-thread runs run here,
one after the other. Each run prints the values it checks (``pytest -s`` shows them).
"""

from __future__ import annotations

import numpy as np
import pytest

from unet_course.experiments import map_in_processes, torch_threads
from unet_course.experiments.neighbours import LESSON12, NETS, isbi_split, neighbours_at_seed

SEEDS = (0, 1, 2)
HALVES = (["U-Net", "LinkNet", "FPN"], ["FCN-8s", "SegNet", "PSPNet"])  # about equal work
RECIPE = LESSON12["quick"]


@pytest.fixture(scope="module")
def all_cell() -> float:
    """Pixel error of answering "cell" everywhere on the held-out crops (the membrane share)."""
    from unet_course.data import ISBI2012

    try:
        isbi = ISBI2012()
    except (FileNotFoundError, ValueError) as err:
        pytest.skip(f"ISBI 2012 is not in the data folder (run `make data`): {err}")
    return float(1 - np.mean(isbi_split(isbi.images, isbi.masks)[3]))


@pytest.fixture(scope="module")
def one_thread(all_cell):
    tasks = [(seed, {**RECIPE, "names": half}) for seed in SEEDS for half in HALVES]
    runs: dict[int, dict] = {seed: {} for seed in SEEDS}
    for (seed, _), part in zip(tasks, map_in_processes(neighbours_at_seed, tasks, processes=2)):
        runs[seed].update(part)
    return runs


@pytest.fixture(scope="module")
def two_threads(all_cell):
    with torch_threads(2):
        return {seed: neighbours_at_seed((seed, RECIPE)) for seed in SEEDS}


@pytest.mark.parametrize("threads", (1, 2))
@pytest.mark.parametrize("seed", SEEDS)
def test_lesson12_u_net_has_the_lowest_held_out_pixel_error_of_the_six(seed, threads,
                                                                      all_cell, request):
    runs = request.getfixturevalue("one_thread" if threads == 1 else "two_threads")[seed]
    assert list(runs) == list(NETS) or set(runs) == set(NETS)
    errors = {name: runs[name].pixel_error for name in NETS}
    print(f"\n12 seed {seed} threads {threads}: held-out pixel error "
          + ", ".join(f"{n} {e:.4f}" for n, e in errors.items()) + f" (all cell {all_cell:.4f})")
    unet = errors.pop("U-Net")
    # the notebook's claims, with its margins (seen at seeds 0-2 with 1 and 2 threads: U-Net
    # below the next best by 0.006-0.029, below the best of the other four by 0.023-0.069)
    assert unet < min(errors.values())
    assert unet < min(errors[n] for n in ("FCN-8s", "SegNet", "LinkNet", "PSPNet")) - 0.015
    assert unet < 0.6 * all_cell

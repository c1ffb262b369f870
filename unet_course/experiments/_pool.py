"""Independent training runs on several cores: one process per core, one torch thread each.

A lesson's comparison is many small runs, each a function of its seed alone. At the lessons'
sizes a second torch thread speeds a run up by little (the work per operation is too small to
share), so two runs side by side in two processes finish in about half the time of the same
runs one after the other with two threads each. The workers are spawned, not forked: a fork
would copy a parent's torch thread pool in an undefined state.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import Any

from ..timing import torch_threads
from ..validation import positive_int

__all__ = ["map_in_processes"]


def _one_thread(fn: Callable, task: Any) -> Any:
    with torch_threads(1):
        return fn(task)


def map_in_processes(fn: Callable[[Any], Any], tasks: Sequence[Any],
                     processes: int = 2) -> list[Any]:
    """``[fn(task) for task in tasks]``, spread over ``processes`` worker processes.

    ``fn`` must be importable (a module-level function of the package) and its tasks and
    results picklable. Each call runs with one torch thread, so a result does not depend on
    how many processes ran: ``processes=1`` computes the same values here, in order.
    """
    run = partial(_one_thread, fn)
    if positive_int(processes, "processes") == 1 or len(tasks) < 2:
        return [run(task) for task in tasks]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(processes, len(tasks)), mp_context=context) as pool:
        return list(pool.map(run, tasks))

"""Measuring time on a shared CPU: the best of a few runs, with a fixed number of threads.

Lessons 03 and 05 compare the speed of two computations. On a laptop other work steals time
now and then, so a single run measures that as well; the fastest of a few runs is the one
least disturbed, and the fairest estimate of what the computation itself costs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import torch

from .validation import positive_int

__all__ = ["best_time", "torch_threads"]


def best_time(fn: Callable[[], object], repeat: int = 2, *, warmup: int = 0) -> float:
    """The fastest of ``repeat`` runs of ``fn()``, in seconds (wall clock, ``time.perf_counter``).

    ``warmup`` runs first, untimed: the first call of a network allocates memory and picks
    its convolution algorithms, which a timing should not include. What ``fn`` returns is
    dropped.

    >>> best_time(lambda: sum(range(1000)), repeat=3) > 0
    True
    """
    if not callable(fn):
        raise TypeError(f"best_time needs a function of no arguments, got {type(fn).__name__}")
    repeat = positive_int(repeat, "repeat")
    for _ in range(positive_int(warmup, "warmup", minimum=0)):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with torch limited to ``n`` CPU threads, then restore the previous count.

    Layers as small as the lessons' are often faster on one thread than split over two. The
    count also changes the order of float additions, so the tests of the lessons' claims run
    every experiment at 1 and at 2 threads.
    """
    n = positive_int(n, "n (the number of threads)")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)

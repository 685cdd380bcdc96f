"""Timing helpers shared by the bench scripts (run as ``python bench/<script>.py``, so this
module is importable as ``timing``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from tonno_engine.base.devices import synchronize


class Timed(NamedTuple):
    wall: float  # wall-clock seconds
    cpu: float  # process CPU seconds, all threads
    result: object


def timed(on, fn: Callable, /, *args, **kwargs) -> Timed:
    """Run ``fn(*args, **kwargs)`` with device ``on`` synchronised before and after; time it."""
    synchronize(on)
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    synchronize(on)
    return Timed(time.perf_counter() - wall, time.process_time() - cpu, result)


def alternating_pairs(first: Callable[[], Timed], second: Callable[[], Timed], repeats: int) -> list[tuple[Timed, Timed]]:
    """``repeats`` pairs ``(first(), second())`` run back to back, in alternating order.

    Back to back, so that a shared machine's slow spells hit both sides of a pair alike; in
    alternating order, since on a 2-core VM whichever runs second in a pair runs faster. Read the
    geometric mean of the pairs' ratios (the minimum of each side separately can pair one side's
    quiet second with the other's busy one).
    """
    pairs = []
    for r in range(repeats):
        if r % 2:
            b = second()
            pairs.append((first(), b))
        else:
            a = first()
            pairs.append((a, second()))
    return pairs


def tonno_command() -> list[str]:
    """How to start the ``tonno`` command in a child process: the installed ``tonno_cli``, else (a GPU
    machine running bench/gpu_all.sh with the repository on ``PYTHONPATH``) the ``cli`` folder itself."""
    import importlib.util
    import sys

    return [sys.executable, "-m", "tonno_cli" if importlib.util.find_spec("tonno_cli") else "cli"]


if __name__ == "__main__":  # a helper, not a benchmark: ``--help`` says so
    import argparse

    argparse.ArgumentParser(description=__doc__).parse_args()

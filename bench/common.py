"""What every benchmark shares: timing protocol and how a figure is printed.

Protocol: the candidate and its baseline run alternately in the same
process (so a machine busy with something else slows both alike), each
repetition after ``gc.collect()`` and untimed set-up, with the garbage
collector left on while timing (the cost of what a run allocates counts).
A figure is the median of the repetitions.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One measured figure, the goal it is held to, and whether it meets it."""

    name: str
    value: str
    goal: str
    passed: bool | None  # None: reported for information, no goal

    def __str__(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "info"}[self.passed]
        return f"{verdict:4}  {self.name}: {self.value}  (goal: {self.goal})"


def timed(run: Callable[[], object], setup: Callable[[], object] | None = None) -> float:
    """Seconds ``run`` takes, after ``setup`` and a full collection (neither timed)."""
    if setup is not None:
        setup()
    gc.collect()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def alternate(
    runs: dict[str, Callable[[], object]], setup: Callable[[], object] | None, repeats: int
) -> dict[str, float]:
    """Median seconds of each run, the runs taking turns ``repeats`` times."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(timed(run, setup))
    return {name: statistics.median(values) for name, values in times.items()}


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"

"""Pausing the cyclic garbage collector around work that allocates much and frees it all."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


def paused(function: Callable[..., _T]) -> Callable[..., _T]:
    """``function`` run with the cyclic garbage collector paused (then restored as it was).

    Parsing a policy, walking a model and resolving a policy allocate hundreds
    of thousands of objects that reference counting frees or that live on in
    the result, and make no cycles: every collection meanwhile only re-scans
    survivors. Parse time grew faster than the file (2.5x for twice the
    statements, bench/bench_parse.py), and collections were a tenth of
    ``apply`` on a 50,000-tensor model (bench/bench_resolve.py).
    """

    @functools.wraps(function)
    def run_paused(*args: Any, **kwargs: Any) -> _T:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return run_paused

"""Benchmark 1: apply against the loop a user writes instead, and linear growth.

A mixture-of-experts style model on the ``meta`` device (``moe.py``: 64
blocks × 256 experts × 3 ``Linear``, attention and norms: 49,733 parameter
tensors). For each policy in ``moe.POLICIES`` (the three classic recipes
and a 12-statement mix), ``policyfreeze.apply`` of the parsed policy and the
loop people write instead (one loop over ``named_parameters()`` setting each
``requires_grad``, every statement of the mix fused into it) take turns,
every flag reset to trainable before each run; both must leave the same
flags (``tests/test_reference_bench.py`` checks it on every parameter too).
Then ``policyfreeze.resolve`` of the mixed policy at 10k, 50k and 200k
tensors.

    python bench/bench_resolve.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import moe
from common import Figure, alternate, ms

import policyfreeze

REPEATS = 5
APPLY_GOAL = 1.0
SIZES = (10_000, 50_000, 200_000)
#: runs per size: a run at 10k takes ≈ 50 ms, so its median needs more of them to settle than one at 200k
LINEAR_REPEATS = {10_000: 15, 50_000: 7, 200_000: 3}
LINEAR_SLACK = 1.2


def flags(model) -> dict[str, bool]:
    return {name: p.requires_grad for name, p in model.named_parameters()}


def all_trainable(model) -> None:
    for p in model.parameters():
        p.requires_grad_(True)


def apply_figures(model) -> list[Figure]:
    figures = []
    tensors = sum(1 for _ in model.parameters())
    for name, (text, loop) in moe.POLICIES.items():
        policy = policyfreeze.parse(text, f"<{name}>")
        all_trainable(model)
        loop(model)
        expected = flags(model)
        all_trainable(model)
        policyfreeze.apply(model, policy)
        same = flags(model) == expected
        median = alternate(
            {
                "loop": lambda: loop(model),
                "apply": lambda: policyfreeze.apply(model, policy),
                "resolve": lambda: policyfreeze.resolve(model, policy),
            },
            setup=lambda: all_trainable(model),
            repeats=REPEATS,
        )
        ratio = median["apply"] / median["loop"]
        figures.append(
            Figure(
                f"[1] apply / fused hand loop, {name} ({len(policy.statements)} statements, {tensors:,} tensors)",
                f"{ratio:.2f}x (apply {ms(median['apply'])}, resolve {ms(median['resolve'])}, "
                f"loop {ms(median['loop'])}; same flags: {'yes' if same else 'NO'})",
                f"<= {APPLY_GOAL}x",
                same and ratio <= APPLY_GOAL,
            )
        )
    return figures


def linearity_figure(per_size: dict[int, tuple[int, float, float]]) -> Figure:
    """Time per tensor at 200k over time per tensor at 10k, for resolve and for its hand loop.

    CPython itself slows per object as a heap outgrows the caches (the hand
    loop does too), so linear means: resolve's growth no worse than the loop's.
    """
    (small_n, small_resolve, small_loop) = per_size[SIZES[0]]
    (large_n, large_resolve, large_loop) = per_size[SIZES[-1]]
    resolve_growth = (large_resolve / large_n) / (small_resolve / small_n)
    loop_growth = (large_loop / large_n) / (small_loop / small_n)
    shown = ", ".join(f"{n:,}: {ms(t)} ({t / n * 1e6:.1f} us/tensor)" for n, t, _ in per_size.values())
    return Figure(
        "[1] resolve grows linearly (mixed-12)",
        f"{shown}; per-tensor cost {small_n:,} -> {large_n:,}: resolve x{resolve_growth:.2f}, hand loop x{loop_growth:.2f}",
        f"resolve's growth <= {LINEAR_SLACK} x the loop's",
        resolve_growth <= LINEAR_SLACK * loop_growth,
    )


def mixed_times(model, size: int) -> tuple[int, float, float]:
    """Tensors, median resolve seconds and median hand-loop seconds of the mixed policy."""
    policy = policyfreeze.parse(moe.MIXED, "<mixed-12>")
    loop = moe.POLICIES["mixed-12"][1]
    median = alternate(
        {"resolve": lambda: policyfreeze.resolve(model, policy), "loop": lambda: loop(model)},
        setup=lambda: all_trainable(model),
        repeats=LINEAR_REPEATS[size],
    )
    return sum(1 for _ in model.parameters()), median["resolve"], median["loop"]


def main() -> list[Figure]:
    warnings.simplefilter("error", policyfreeze.PolicyWarning)  # every statement must select something
    figures: list[Figure] = []
    per_size = {}
    for size in SIZES:  # one model at a time: a full collection before each run scans every live one
        model = moe.build(size)
        if size == 50_000:
            figures += apply_figures(model)
        per_size[size] = mixed_times(model, size)
        del model
    figures.append(linearity_figure(per_size))
    return figures


if __name__ == "__main__":
    for figure in main():
        print(figure, flush=True)

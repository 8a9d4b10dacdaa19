"""Benchmark 5: a Freezer stage change against one full ``apply`` of the same stage.

The mixture-of-experts model of benchmark 1 (``moe.py``, 49,733 parameter
tensors on ``meta``) under a gradual-unfreezing schedule: the head first,
then one more block per epoch from the top, each at a smaller learning
rate. The candidate is ``Freezer.update`` crossing epoch 1 (its block
unfreezes 777 tensors into a new optimizer group); the baseline is what a
stage costs without incremental stages, ``policyfreeze.apply`` of the
policy at epoch 1 on the model at stage 0. They take turns, each after
untimed set-up (a fresh Freezer and optimizer at stage 0, or the model put
back at stage 0). Both must leave the same flags.

    python bench/bench_stages.py
"""

from __future__ import annotations

import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import moe
import torch
from common import Figure, ms, timed

import policyfreeze

REPEATS = 7
GOAL = 0.5
LAST_BLOCK = 63
POLICY = "freeze all\nunfreeze head, norm\n" + "".join(
    f"at epoch {epoch} {{ unfreeze blocks.{LAST_BLOCK + 1 - epoch} with lr_scale={0.5**epoch:g} }}\n"
    for epoch in range(1, 5)
)


def flags(model) -> dict[str, bool]:
    return {name: p.requires_grad for name, p in model.named_parameters()}


def main() -> list[Figure]:
    warnings.simplefilter("error", policyfreeze.PolicyWarning)
    model = moe.build()
    tensors = sum(1 for _ in model.parameters())
    policy = policyfreeze.parse(POLICY, "<gradual>")
    state: dict = {}

    def fresh_freezer() -> None:
        for p in model.parameters():
            p.requires_grad_(True)
        state["freezer"] = freezer = policyfreeze.Freezer(model, policy, lr=1e-3)
        state["optimizer"] = torch.optim.SGD(freezer.param_groups())

    def stage_zero() -> None:
        for p in model.parameters():
            p.requires_grad_(True)
        policyfreeze.apply(model, policy, epoch=0)

    def stage_change() -> None:
        state["change"] = state["freezer"].update(state["optimizer"], epoch=1)

    def full_apply() -> None:
        policyfreeze.apply(model, policy, epoch=1)

    full_apply()
    expected = flags(model)
    fresh_freezer()
    stage_change()
    same = flags(model) == expected and len(state["change"].added) == 3 * 256 + 9
    times: dict[str, list[float]] = {"stage": [], "apply": []}
    for _ in range(REPEATS):
        times["stage"].append(timed(stage_change, fresh_freezer))
        times["apply"].append(timed(full_apply, stage_zero))
    stage, apply = (statistics.median(times[name]) for name in ("stage", "apply"))
    ratio = stage / apply
    return [
        Figure(
            f"[5] Freezer stage change / full apply of the stage ({tensors:,} tensors, 777 unfrozen)",
            f"{ratio:.2f}x (update {ms(stage)}, apply {ms(apply)}; same flags: {'yes' if same else 'NO'})",
            f"<= {GOAL}x",
            same and ratio <= GOAL,
        )
    ]


if __name__ == "__main__":
    for figure in main():
        print(figure, flush=True)

"""Benchmark 4: what the freeze itself saves (gradients of frozen parameters are never computed).

torchvision resnet18 on CPU, a batch of 16 x 3 x 112 x 112, one AdamW
training step (forward, cross-entropy, backward, optimizer step):

(a) every parameter trains;
(b) every parameter is in the graph, only ``fc`` is in the optimizer
    ("just don't update them");
(c) ``policyfreeze.apply`` of ``policies/resnet18-linear-probe.freeze``
    (freeze all but ``fc``, BatchNorm pinned in eval mode), the optimizer
    built from the report's ``param_groups``;
(d) the forward pass alone under ``torch.no_grad()``: the floor;
(e) (c) done by hand: ``requires_grad = False`` everywhere but ``fc``, every
    BatchNorm put in eval mode, and an optimizer over ``fc`` (what the policy
    replaces);
(f) the forward pass alone with BatchNorm in eval mode, as (c) runs it: the
    floor of a pinned model.

They take turns in a rotating order, each timed as the median of its steps after warm-up, on
one thread (``torch.set_num_threads(1)``): on a shared machine, threads
spinning for a busy core make multi-threaded step times erratic.
Goals: (c)/(d) <= 1.05, (c)/(a) <= 0.3, and (c)'s optimizer state holds
only fc's elements.

    python bench/bench_savings.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).parent))

from common import Figure, ms

import policyfreeze

POLICY = Path(__file__).resolve().parent.parent / "policies" / "resnet18-linear-probe.freeze"
BATCH = (16, 3, 112, 112)
WARMUP, STEPS = 2, 15
LR = 1e-3


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).train()


def training_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, images, labels):
    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(images), labels).backward()
        optimizer.step()

    return step


def forward_only(net: torch.nn.Module, images):
    def step() -> None:
        with torch.no_grad():
            net(images)

    return step


def main() -> list[Figure]:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(BATCH, generator=generator)
    labels = torch.randint(0, 1000, (BATCH[0],), generator=generator)

    full = model()
    unused = model()
    frozen = model()
    floor = model()
    pinned_floor = model()
    by_hand = model()
    for p in by_hand.parameters():
        p.requires_grad = False
    for p in by_hand.fc.parameters():
        p.requires_grad = True
    for net in (by_hand, pinned_floor):
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
    report = policyfreeze.apply(frozen, POLICY)
    frozen_optimizer = torch.optim.AdamW(report.param_groups(lr=LR))
    steps = {
        "a": training_step(full, torch.optim.AdamW(full.parameters(), lr=LR), images, labels),
        "b": training_step(unused, torch.optim.AdamW(unused.fc.parameters(), lr=LR), images, labels),
        "c": training_step(frozen, frozen_optimizer, images, labels),
        "d": forward_only(floor, images),
        "e": training_step(by_hand, torch.optim.AdamW(by_hand.fc.parameters(), lr=LR), images, labels),
        "f": forward_only(pinned_floor, images),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for round_ in range(WARMUP + STEPS):
        # Each round starts one later, so no step always follows the same one (what the
        # previous step freed or left in the caches shifts the next by a few percent).
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            start = time.perf_counter()
            steps[name]()
            if round_ >= WARMUP:
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}

    fc = {id(p): p.numel() for p in frozen.fc.parameters()}
    state = frozen_optimizer.state
    state_params = {id(p) for p in state}
    state_elements = sum(t.numel() for s in state.values() for k, t in s.items() if k != "step")
    only_fc = state_params == set(fc) and state_elements == 2 * sum(fc.values())

    shown = ", ".join(f"({name}) {ms(seconds)}" for name, seconds in median.items())
    return [
        Figure(
            "[4] one step, resnet18 16x3x112x112 on CPU",
            shown,
            "(a) all train (b) fc in optimizer "
            "(c) policyfreeze linear probe (d) forward under no_grad (e) (c) by hand (f) (d) with BatchNorm in eval; "
            "1 thread",
            None,
        ),
        Figure(
            "[4] (c) policyfreeze / (d) forward only",
            f"{median['c'] / median['d']:.2f}x",
            "<= 1.05x",
            median["c"] / median["d"] <= 1.05,
        ),
        Figure(
            "[4] (c) policyfreeze / (a) all trainable",
            f"{median['c'] / median['a']:.3f}x",
            "<= 0.3x",
            median["c"] / median["a"] <= 0.3,
        ),
        Figure(
            "[4] (d) forward only / (a) all trainable",
            f"{median['d'] / median['a']:.2f}x",
            "for comparison: the floor of a model left in train mode",
            None,
        ),
        Figure(
            "[4] (c) policyfreeze / (f) forward only, BatchNorm in eval",
            f"{median['c'] / median['f']:.2f}x",
            "for comparison: the floor of a model run as (c) runs it",
            None,
        ),
        Figure(
            "[4] (c) policyfreeze / (e) the same freeze by hand",
            f"{median['c'] / median['e']:.2f}x",
            "for comparison: the policy costs nothing per step",
            None,
        ),
        Figure(
            "[4] (b) optimizer-only / (a) all trainable",
            f"{median['b'] / median['a']:.2f}x",
            "for comparison: frozen by leaving out of the optimizer",
            None,
        ),
        Figure(
            "[4] (c) optimizer state",
            f"{len(state_params)} tensors, {state_elements:,} elements "
            f"(fc: {len(fc)} tensors, 2 x {sum(fc.values()):,})",
            "only fc's elements",
            only_fc,
        ),
    ]


if __name__ == "__main__":
    for figure in main():
        print(figure, flush=True)

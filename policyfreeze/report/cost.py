"""What a policy saves in one training step: FLOPs and memory, with and without it.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` while the
model runs forward and backward on ``meta`` tensors substituted for its
parameters and buffers (``torch.func.functional_call``): shapes only, no
memory, no arithmetic, and the model itself is untouched. A frozen parameter
needs no weight gradient, and a frozen prefix of the network needs no
backward at all; that is where the saving comes from.

Memory counts what exists only for trainable parameters: their gradients
(one value per element) and AdamW's optimizer state (``exp_avg`` and
``exp_avg_sq``: two per element), in each parameter's dtype.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import PolicyUsageError

if TYPE_CHECKING:
    from ..engine.resolve import Plan

COST_VERSION = 1
ADAMW_STATES_PER_ELEMENT = 2


@dataclass(frozen=True)
class StepCost:
    """One training step's FLOPs (forward + backward) and the memory trainable parameters add."""

    flops: int
    gradient_bytes: int
    optimizer_bytes: int

    def to_dict(self) -> dict:
        return {"flops": self.flops, "gradient_bytes": self.gradient_bytes, "optimizer_bytes": self.optimizer_bytes}


@dataclass(frozen=True)
class CostReport:
    """A step's cost without the policy (the flags before it) and with it."""

    policy: str
    model: str
    input_shape: tuple[int, ...]
    without: StepCost
    with_policy: StepCost

    @property
    def flops_ratio(self) -> float:
        """The policy's step FLOPs as a share of the step without it (resnet18 linear probe: 0.34)."""
        return self.with_policy.flops / self.without.flops if self.without.flops else 1.0

    def to_dict(self) -> dict:
        return {
            "version": COST_VERSION,
            "policy": self.policy,
            "model": self.model,
            "input_shape": list(self.input_shape),
            "without": self.without.to_dict(),
            "with": self.with_policy.to_dict(),
            "flops_ratio": round(self.flops_ratio, 4),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def __str__(self) -> str:
        before, after = self.without, self.with_policy
        rows = [
            ["", "without", "with", "saving"],
            [
                "FLOPs (forward + backward)",
                _flops(before.flops),
                _flops(after.flops),
                _saving(before.flops, after.flops),
            ],
            [
                "parameter gradients",
                _bytes(before.gradient_bytes),
                _bytes(after.gradient_bytes),
                _saving(before.gradient_bytes, after.gradient_bytes),
            ],
            [
                "AdamW state (2 per element)",
                _bytes(before.optimizer_bytes),
                _bytes(after.optimizer_bytes),
                _saving(before.optimizer_bytes, after.optimizer_bytes),
            ],
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        table = [
            "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in rows
        ]
        shape = "×".join(str(size) for size in self.input_shape)
        return "\n".join(
            [f"{self.policy} on {self.model}: one training step at input {shape}", "", *table, ""]
            + [f"with the policy a step costs {self.flops_ratio:.2f} of the FLOPs without it"]
        )


def measure(plan: Plan, input_shape: tuple[int, ...]) -> CostReport:
    """The cost of one training step on ``input_shape`` before (the plan's starting flags) and after ``plan``."""
    live = plan.live_model()
    shape = _checked_shape(input_shape)
    root = live.root
    before = plan.before
    return CostReport(
        policy=plan.policy.source.name,
        model=plan.tree.modules[0].classes[0] if plan.tree.modules[0].classes else "Module",
        input_shape=shape,
        without=_step_cost(root, plan, before, shape),
        with_policy=_step_cost(root, plan, plan.requires_grad, shape),
    )


def parse_shape(text: str) -> tuple[int, ...]:
    """``"8,3,224,224"`` → ``(8, 3, 224, 224)``."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(size <= 0 for size in shape):
        raise PolicyUsageError(
            f"--input-shape {text!r}: expected positive sizes separated by commas, batch first (8,3,224,224)"
        )
    return shape


def _checked_shape(input_shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise PolicyUsageError(f"input_shape must be positive sizes, batch first (8, 3, 224, 224), not {input_shape!r}")
    return shape


def _step_cost(root: Any, plan: Plan, trainable: dict[str, bool], shape: tuple[int, ...]) -> StepCost:
    gradient_bytes = sum(p.numel * _itemsize(p.dtype) for p in plan.tree.params if trainable[p.name])
    return StepCost(
        flops=_step_flops(root, plan, trainable, shape),
        gradient_bytes=gradient_bytes,
        optimizer_bytes=ADAMW_STATES_PER_ELEMENT * gradient_bytes,
    )


def _step_flops(root: Any, plan: Plan, trainable: dict[str, bool], shape: tuple[int, ...]) -> int:
    import torch
    from torch.func import functional_call
    from torch.utils.flop_counter import FlopCounterMode

    stand_ins: dict[str, Any] = {}
    for info, tensor in zip(plan.tree.params, plan.live_model().tensors):
        stand_in = torch.empty_like(tensor, device="meta")
        stand_ins[info.name] = stand_in.requires_grad_(True) if trainable[info.name] else stand_in
    for name, buffer in root.named_buffers():
        stand_ins[name] = torch.empty_like(buffer, device="meta")
    floating = [t.dtype for t in plan.live_model().tensors if t.is_floating_point()]
    example = torch.empty(shape, device="meta", dtype=floating[0] if floating else torch.float32)
    try:
        with torch.enable_grad(), FlopCounterMode(display=False) as counter:
            loss = _loss(functional_call(root, stand_ins, (example,)))
            if loss is not None:
                loss.backward()
    except Exception as exc:  # the user's model code: any failure is a usage problem
        raise PolicyUsageError(
            f"running the model on a meta input of shape {tuple(shape)} failed: {type(exc).__name__}: {exc}",
            help="the input shape is what the model's forward takes, batch first (an image model: 8,3,224,224)",
        ) from exc
    return counter.get_total_flops()


def _loss(output: Any) -> Any:
    """A scalar that depends on every differentiable output (its backward is the step's backward)."""
    pending, parts = [output], []
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, (list, tuple)):
            pending.extend(value)
        elif getattr(value, "requires_grad", False) and value.is_floating_point():
            parts.append(value.sum())
    if not parts:
        return None
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def _itemsize(dtype: str) -> int:
    import torch

    return getattr(torch, dtype).itemsize


def _flops(count: int) -> str:
    for unit, size in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if count >= size:
            return f"{count / size:.2f} {unit}"
    return f"{count} FLOP"


def _bytes(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def _saving(before: int, after: int) -> str:
    return f"{(before - after) / before:.1%}" if before else "-"

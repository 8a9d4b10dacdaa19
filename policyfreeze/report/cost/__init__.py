"""What a policy costs in one training step: FLOPs and memory, without it and with it, per stage of a schedule.

Every figure is measured by running the model's step (``step.py``): FLOPs
by ``FlopCounterMode``, activations by the tensors autograd saves for the
backward, and the backward through frozen modules by forward hooks. Gradients
and optimizer state follow from the trainable parameters. Nothing is applied
to the model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import PolicyError, printable
from .inputs import InputSpec, check_accepted, coerce, parse_shape
from .step import ADAMW_STATES_PER_ELEMENT, CPU_LIMIT_BYTES, FrozenBackward, StepCost, StepRunner

if TYPE_CHECKING:
    from ...engine.resolve import Plan

__all__ = [
    "ADAMW_STATES_PER_ELEMENT",
    "COST_VERSION",
    "CPU_LIMIT_BYTES",
    "CostReport",
    "FrozenBackward",
    "InputSpec",
    "StageCost",
    "StepCost",
    "measure",
    "parse_shape",
]

#: 2: inputs, activations, weights, peak, the backward through frozen modules, stages, device
COST_VERSION = 2
WIDTH = 100
#: The frozen modules a text report lists, the costliest first (JSON lists every one).
FROZEN_SHOWN = 5


@dataclass(frozen=True)
class StageCost:
    """The step's cost in one stage of a scheduled policy."""

    unit: str
    at: int
    cost: StepCost

    @property
    def label(self) -> str:
        return f"{self.unit} {self.at}"

    def to_dict(self) -> dict:
        return {"unit": self.unit, "at": self.at, **self.cost.to_dict()}


@dataclass(frozen=True)
class CostReport:
    """A step's cost without the policy (the flags before it) and with it; each stage's for a schedule."""

    policy: str
    model: str
    inputs: tuple[InputSpec, ...]
    #: where the step ran: "meta", or "cpu" when the model's forward needs tensor values
    device: str
    without: StepCost
    with_policy: StepCost
    #: every stage of a scheduled policy (``every_stage=True``); empty otherwise
    stages: tuple[StageCost, ...] = ()
    #: why the step could not run on the meta device, when it ran on the CPU
    meta_error: str | None = None

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """The shape of the one input, None with several."""
        return self.inputs[0].shape if len(self.inputs) == 1 else None

    @property
    def flops_ratio(self) -> float:
        """The policy's step FLOPs as a share of the step without it (resnet18 linear probe: 0.34)."""
        return self.with_policy.flops / self.without.flops if self.without.flops else 1.0

    @property
    def peak_ratio(self) -> float:
        return self.with_policy.peak_bytes / self.without.peak_bytes if self.without.peak_bytes else 1.0

    def to_dict(self) -> dict:
        return {
            "version": COST_VERSION,
            "policy": self.policy,
            "model": self.model,
            "inputs": [spec.to_dict() for spec in self.inputs],
            "device": self.device,
            "meta_error": self.meta_error,
            "without": self.without.to_dict(),
            "with": self.with_policy.to_dict(),
            "stages": [stage.to_dict() for stage in self.stages],
            "flops_ratio": round(self.flops_ratio, 4),
            "peak_ratio": round(self.peak_ratio, 4),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def __str__(self) -> str:
        where = "the meta device" if self.device == "meta" else "the CPU"
        per_stage = " per stage" if self.stages else ""
        head = [
            _fit(f"{_middle(printable(self.policy), 60)} on {self.model}: one training step{per_stage}"),
            _fit(f"input {', '.join(map(str, self.inputs))}, run on {where}"),
            "",
        ]
        body = self._stage_lines() if self.stages else self._comparison_lines()
        return "\n".join(head + body)

    def _comparison_lines(self) -> list[str]:
        before, after = self.without, self.with_policy
        figures = [
            ("FLOPs (forward + backward)", before.flops, after.flops, _flops),
            ("  backward in frozen modules", before.frozen_backward_flops, after.frozen_backward_flops, _flops),
            ("activations saved for backward", before.activation_bytes, after.activation_bytes, _bytes),
            ("parameter gradients", before.gradient_bytes, after.gradient_bytes, _bytes),
            (
                f"AdamW state ({ADAMW_STATES_PER_ELEMENT} per element)",
                before.optimizer_bytes,
                after.optimizer_bytes,
                _bytes,
            ),
            ("weights and buffers", before.weight_bytes, after.weight_bytes, _bytes),
            ("peak (the four above at once)", before.peak_bytes, after.peak_bytes, _bytes),
        ]
        rows = [["", "without", "with", "saving"]]
        rows += [[label, show(old), show(new), _saving(old, new)] for label, old, new, show in figures]
        lines = _table(rows, right=(1, 2, 3))
        lines += [
            "",
            f"with the policy a step costs {self.flops_ratio:.2f} of the FLOPs "
            f"and {self.peak_ratio:.2f} of the peak memory without it",
        ]
        return lines + _frozen_lines("with the policy", after)

    def _stage_lines(self) -> list[str]:
        rows = [["stage", "FLOPs", "frozen backward", "activations", "gradients", "AdamW state", "peak"]]
        labelled = [("without", self.without)] + [(stage.label, stage.cost) for stage in self.stages]
        for label, cost in labelled:
            rows.append(
                [
                    label,
                    _flops(cost.flops),
                    _flops(cost.frozen_backward_flops),
                    _bytes(cost.activation_bytes),
                    _bytes(cost.gradient_bytes),
                    _bytes(cost.optimizer_bytes),
                    _bytes(cost.peak_bytes),
                ]
            )
        lines = _table(rows, right=(1, 2, 3, 4, 5, 6))
        lines += [
            "",
            f"the peak counts the weights and buffers too: {_bytes(self.without.weight_bytes)} in every stage",
        ]
        for label, cost in labelled:
            lines += _frozen_lines(label, cost)
        return lines


def measure(
    plan: Plan,
    input_shape: Sequence[int] | None = None,
    *,
    inputs: Sequence[InputSpec | str] | None = None,
    every_stage: bool = False,
) -> CostReport:
    """The cost of one training step before (the plan's starting flags) and after ``plan``.

    The input is ``input_shape`` (one floating-point tensor, batch first) or
    ``inputs`` (specs: ``"input_ids:int64[8,128]<50257"``). With
    ``every_stage``, a scheduled policy's every stage is costed too.
    """
    specs = coerce(input_shape, inputs)
    live = plan.live_model()
    floating = [t.dtype for t in live.tensors if t.is_floating_point()]
    default = str(floating[0]).removeprefix("torch.") if floating else "float32"
    specs = [spec.with_dtype(default) for spec in specs]
    hint = check_accepted(live.root, specs)
    stage_plans = _stage_plans(plan) if every_stage and plan.policy.unit else []
    states = [(plan.start_flags, plan.start_pins), (plan.param_flags, plan.module_pins)]
    states += [(stage.param_flags, stage.module_pins) for stage in stage_plans]
    runner = StepRunner(live, specs, hint=hint)
    without, with_policy, *staged = runner.costs(states)
    unit = plan.policy.unit or ""
    return CostReport(
        policy=plan.policy.source.name,
        model=plan.tree.modules[0].classes[0] if plan.tree.modules[0].classes else "Module",
        inputs=tuple(specs),
        device=runner.device,
        without=without,
        with_policy=with_policy,
        stages=tuple(StageCost(unit, stage.at, cost) for stage, cost in zip(stage_plans, staged)),
        meta_error=runner.meta_failure,
    )


def _stage_plans(plan: Plan) -> list[Plan]:
    """The plan at stage 0 and at each milestone, each resolved from the one before."""
    import dataclasses

    from ...engine.resolve import advance, evaluate

    current = plan if plan.at == 0 else dataclasses.replace(evaluate(plan.tree, plan.policy, 0), live=plan.live)
    stages = [current]
    for at in plan.policy.milestones:
        if at > 0:
            current = advance(current, at)
            if current.errors:
                raise PolicyError.collect(list(current.errors))
            stages.append(current)
    return stages


# Text -------------------------------------------------------------------------


def _frozen_lines(label: str, cost: StepCost) -> list[str]:
    """The frozen modules the backward runs through, the costliest first, each with why in one line."""
    if not cost.frozen_backward:
        return []
    share = cost.frozen_backward_flops / cost.flops if cost.flops else 0.0
    entries = sorted(cost.frozen_backward, key=lambda entry: -entry.flops)
    shown, rest = entries[:FROZEN_SHOWN], entries[FROZEN_SHOWN:]
    lines = [
        "",
        f"{label}, the backward runs through frozen modules: {_flops(cost.frozen_backward_flops)} ({share:.0%})",
    ]
    rows = [[_middle(entry.module or "(the model)", 40), _flops(entry.flops), entry.cause] for entry in shown]
    for entry, line in zip(shown, _table(rows, right=(1,))):
        lines.append(_fit("  " + line))
        if entry.help:
            lines.append(_fit(f"    help: {entry.help}"))
    if rest:
        lines.append(f"  … and {len(rest)} more: {_flops(sum(entry.flops for entry in rest))}")
    return lines


def _table(rows: list[list[str]], *, right: tuple[int, ...]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))
        ).rstrip()
        for row in rows
    ]


def _fit(line: str, width: int = WIDTH) -> str:
    return line if len(line) <= width else _middle(line, width)


def _middle(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters by an ellipsis in its middle."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: (keep + 1) // 2] + "…" + text[len(text) - keep // 2 :]


def _flops(count: int) -> str:
    for unit, size in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if count >= size:
            return f"{count / size:.2f} {unit}"
    return f"{count} FLOP"


def _bytes(count: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def _saving(before: int, after: int) -> str:
    return f"{(before - after) / before:.1%}" if before else "-"

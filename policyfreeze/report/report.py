"""The diff report: what a plan changes, for people (text) and machines (dict/JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .cost import CostReport, InputSpec, measure

if TYPE_CHECKING:
    from ..engine.resolve import Decision, Plan

REPORT_VERSION = 1


@dataclass(frozen=True)
class Change:
    """One parameter whose ``requires_grad`` the plan changes."""

    name: str
    shape: tuple[int, ...]
    numel: int
    before: bool
    after: bool
    decision: Decision | None


@dataclass(frozen=True)
class PinChange:
    """One module whose eval pin (``eval``/``train``) the plan adds or removes."""

    name: str
    before: bool
    after: bool
    decision: Decision | None


@dataclass(frozen=True)
class Counts:
    """Parameter element counts, torchinfo style (tied tensors counted once)."""

    total: int
    trainable: int

    @property
    def frozen(self) -> int:
        return self.total - self.trainable


class Report:
    """The result of ``apply`` (or a dry run of a plan): the diff and the summary."""

    def __init__(self, plan: Plan, *, applied: bool) -> None:
        self.plan = plan
        self.applied = applied

    @property
    def requires_grad(self) -> dict[str, bool]:
        return self.plan.requires_grad

    @property
    def decisions(self) -> dict[str, Decision | None]:
        return self.plan.decisions

    @property
    def changes(self) -> list[Change]:
        plan = self.plan
        return [
            Change(p.name, p.shape, p.numel, before, after, decision)
            for p, before, after, decision in zip(
                plan.tree.params, plan.start_flags, plan.param_flags, plan.decisions.values()
            )
            if before != after
        ]

    @property
    def pin_changes(self) -> list[PinChange]:
        """Modules whose eval pin the plan adds or removes, in ``named_modules()`` order."""
        plan = self.plan
        return [
            PinChange(m.name, before, after, decision)
            for m, before, after, decision in zip(
                plan.tree.modules, plan.start_pins, plan.module_pins, plan.pin_decisions.values()
            )
            if before != after
        ]

    def param_groups(self, *, lr: float | None = None, weight_decay: float | None = None) -> list[dict]:
        """The plan's optimizer parameter groups: ``torch.optim.AdamW(report.param_groups(lr=1e-3))``."""
        return self.plan.param_groups(lr=lr, weight_decay=weight_decay)

    def cost(
        self,
        input_shape: tuple[int, ...] | None = None,
        *,
        inputs: list[InputSpec | str] | tuple[InputSpec | str, ...] | None = None,
        every_stage: bool = False,
    ) -> CostReport:
        """FLOPs and memory of one training step, with and without the policy.

        The input is ``input_shape`` (one floating-point tensor, batch first)
        or ``inputs``, specs by position or keyword:
        ``["input_ids:int64[8,128]<50257", "attention_mask:int64[8,128]<2"]``.
        ``every_stage`` costs each stage of a scheduled policy too.
        """
        return measure(self.plan, input_shape, inputs=inputs, every_stage=every_stage)

    @property
    def untouched(self) -> list[str]:
        """Parameters no statement reached: they keep their state."""
        return [name for name, decision in self.plan.decisions.items() if decision is None]

    @property
    def before(self) -> Counts:
        params = self.plan.tree.params
        flags = self.plan.start_flags
        return Counts(sum(p.numel for p in params), sum(p.numel for p, flag in zip(params, flags) if flag))

    @property
    def after(self) -> Counts:
        params = self.plan.tree.params
        wanted = self.plan.requires_grad
        return Counts(sum(p.numel for p in params), sum(p.numel for p in params if wanted[p.name]))

    def to_dict(self) -> dict:
        plan = self.plan
        before, after = self.before, self.after
        return {
            "version": REPORT_VERSION,
            "policy": plan.policy.source.name,
            "model": model_class(plan),
            "stage": {"unit": plan.policy.unit, "at": plan.at} if plan.policy.unit else None,
            "applied": self.applied,
            "parameters": [
                {
                    "name": p.name,
                    "shape": list(p.shape),
                    "numel": p.numel,
                    "dtype": p.dtype,
                    "before": before,
                    "after": plan.requires_grad[p.name],
                    "decided_by": _decision_dict(plan.decisions[p.name]),
                }
                for p, before in zip(plan.tree.params, plan.start_flags)
            ],
            "pin_changes": [
                {
                    "module": pin.name,
                    "before": pin.before,
                    "after": pin.after,
                    "decided_by": _decision_dict(pin.decision),
                }
                for pin in self.pin_changes
            ],
            "summary": {
                "tensors": len(plan.tree.params),
                "changed": len(self.changes),
                "untouched": len(self.untouched),
                "total": after.total,
                "trainable": {"before": before.trainable, "after": after.trainable},
                "frozen": {"before": before.frozen, "after": after.frozen},
            },
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False, ensure_ascii=False)

    def __str__(self) -> str:
        return format_text(self)

    def __repr__(self) -> str:
        after = self.after
        return f"<Report {len(self.changes)} changed, {after.trainable:,} of {after.total:,} trainable>"


def model_class(plan: Plan) -> str:
    modules = plan.tree.modules
    return modules[0].classes[0] if modules and modules[0].classes else "Module"


def _decision_dict(decision: Decision | None) -> dict | None:
    if decision is None:
        return None
    return {
        "verb": decision.verb,
        "text": decision.text,
        "source": decision.source,
        "line": decision.line,
        "column": decision.column,
        "options": decision.options.model_dump(exclude_none=True) if decision.options else None,
    }


def _state(flag: bool) -> str:
    return "trainable" if flag else "frozen"


def _mode(pinned: bool) -> str:
    return "pinned eval" if pinned else "follows train()"


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape) if shape else "scalar"


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))
        ).rstrip()
        for row in rows
    ]


def format_text(report: Report) -> str:
    """The human diff: changed parameters, untouched count, and the summary table."""
    plan = report.plan
    verb = "applied to" if report.applied else "planned for"
    stage = f" at {plan.policy.unit} {plan.at}" if plan.policy.unit else ""
    lines = [f"{plan.policy.source.name}{stage} {verb} {model_class(plan)} ({len(plan.tree.params)} parameter tensors)"]
    changes = report.changes
    if changes:
        lines += ["", f"changed ({len(changes)}):"]
        rows = [["name", "shape", "numel", "before → after", "decided by"]]
        for change in changes:
            rows.append(
                [
                    change.name,
                    _shape(change.shape),
                    f"{change.numel:,}",
                    f"{_state(change.before)} → {_state(change.after)}",
                    str(change.decision) if change.decision else "-",
                ]
            )
        lines += ["  " + row for row in _table(rows, right={2})]
    else:
        lines += ["", "changed: nothing (every parameter is already as the policy wants)"]
    pin_changes = report.pin_changes
    if pin_changes:
        lines += ["", f"eval pins changed ({len(pin_changes)}):"]
        rows = [["module", "before → after", "decided by"]]
        for pin in pin_changes:
            rows.append(
                [
                    pin.name or "(root)",
                    f"{_mode(pin.before)} → {_mode(pin.after)}",
                    str(pin.decision) if pin.decision else "-",
                ]
            )
        lines += ["  " + row for row in _table(rows, right=set())]
    untouched = len(report.untouched)
    lines += ["", f"untouched: {untouched} parameter tensor{'s' if untouched != 1 else ''} (no statement reached them)"]

    before, after = report.before, report.after
    rows = [
        ["", "before", "after", "delta"],
        ["total params", f"{before.total:,}", f"{after.total:,}", ""],
        [
            "trainable",
            f"{before.trainable:,}",
            f"{after.trainable:,}",
            _delta(before.trainable, after.trainable, before.total),
        ],
        ["frozen", f"{before.frozen:,}", f"{after.frozen:,}", _delta(before.frozen, after.frozen, before.total)],
    ]
    lines += [""] + _table(rows, right={1, 2, 3})
    return "\n".join(lines)


def _delta(old: int, new: int, total: int) -> str:
    if old == new:
        return "0"
    share = f" ({(new - old) / total:+.1%})" if total else ""
    return f"{new - old:+,}{share}"

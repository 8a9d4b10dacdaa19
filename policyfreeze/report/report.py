"""The report of a plan: what trains, what is frozen, what changed — for people (text, table) and machines (JSON).

``format_text`` answers "what trains?" first, in a few rows (``sections``);
``format_table`` lists every changed tensor; ``Report.to_json`` every tensor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import printable
from . import present
from .cost import CostReport, InputSpec, measure
from .present import LINE_WIDTH, align, decided_by, decision_dict, delta, model_class, plural, shape, state
from .sections import Row, Section, sections

if TYPE_CHECKING:
    from ..engine.resolve import Decision, Plan

REPORT_VERSION = 1
#: the default text fits in this many lines (on any torchvision classifier, policies of up to 10 statements)
MAX_LINES = 40


@dataclass(frozen=True)
class Change:
    """One parameter tensor: its ``requires_grad`` before and after the plan, and what decided it."""

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
        return [c for c in self._tensors() if c.before != c.after]

    @property
    def kept(self) -> list[Change]:
        """Parameters a statement decided that keep their state (``fc`` under ``unfreeze fc``)."""
        return [c for c in self._tensors() if c.before == c.after and c.decision is not None]

    def _tensors(self) -> list[Change]:
        plan = self.plan
        return [
            Change(p.name, p.shape, p.numel, before, after, decision)
            for p, before, after, decision in zip(
                plan.tree.params, plan.start_flags, plan.param_flags, plan.decisions.values()
            )
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
                    "decided_by": decision_dict(plan.decisions[p.name]),
                }
                for p, before in zip(plan.tree.params, plan.start_flags)
            ],
            "pin_changes": [
                {
                    "module": pin.name,
                    "before": pin.before,
                    "after": pin.after,
                    "decided_by": decision_dict(pin.decision),
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

    def table(self) -> str:
        """Every changed or decided parameter tensor and every changed eval pin, one row each (``plan --format table``)."""
        return format_table(self)

    def _repr_html_(self) -> str:
        """The visual report in Jupyter: the report as the last line of a cell shows it."""
        from .html import render_html

        return render_html(self.plan, applied=self.applied, fragment=True)

    def __repr__(self) -> str:
        after = self.after
        return f"<Report {len(self.changes)} changed, {after.trainable:,} of {after.total:,} trainable>"


def format_text(report: Report, *, width: int = LINE_WIDTH, max_lines: int = MAX_LINES) -> str:
    """What trains (with its optimizer options), what is frozen, what is pinned, the schedule, the counts.

    Each row is a subtree (or a run of alike siblings) whose tensors share a
    state, a state before and a deciding statement; every tensor is in one
    row. Lines fit ``width``; a summary by class keeps the whole within
    ``max_lines`` (on a plan with very many keys each still takes one row).
    """
    plan = report.plan
    verb = "applied to" if report.applied else "planned for"
    name = printable(plan.policy.source.name)
    rest = (
        f"{present.stage_suffix(plan)} {verb} {model_class(plan)} ({plural(len(plan.tree.params), 'parameter tensor')})"
    )
    title = present.shorten_middle(name, max(20, width - len(rest))) + rest
    footer = _footer(report)
    schedule = _schedule(plan, width) if plan.policy.unit else []
    has_pins = any(plan.module_pins) or any(d >= 0 for d in plan.module_deciders)
    headings = 2 * (3 if has_pins else 2)
    budget = max_lines - 1 - headings - (1 + len(footer)) - (1 + len(schedule) if schedule else 0)
    lines = [title]
    for section in sections(plan, budget):
        lines += ["", _heading(section, report.after.total, sum(plan.module_pins))]
        lines += _section_rows(section, width)
    if schedule:
        lines += [""] + schedule
    lines += [""] + footer
    return "\n".join(lines)


def _heading(section: Section, total: int, pinned: int) -> str:
    if section.title == "eval pins":
        others = section.count - pinned
        more = f"; {plural(others, 'other module')} reached by eval/train statements" if others else ""
        return f"eval pins: {plural(pinned, 'module')} pinned in eval mode{more}"
    if not section.count:
        return f"{section.title}: nothing"
    count = plural(section.numel, "parameter")
    return f"{section.title}: {count} ({present.share(section.numel, total)}) in {plural(section.count, 'tensor')}"


def _section_rows(section: Section, width: int) -> list[str]:
    if not section.rows:
        return []
    pins = section.title == "eval pins"
    show_options = section.title == "trainable" and any(
        present.options_cell(row.decision) != "base group" for row in section.rows
    )
    cells = []
    for row in section.rows:
        if pins:
            cells.append([present.transition(present.pin_mode(row.before), present.pin_mode(row.after))])
            continue
        cell = [f"{row.numel:,}", present.transition(state(row.before), state(row.after))]
        if show_options:
            cell.append(present.options_cell(row.decision))
        cells.append(cell)
    rows = [[row.label, *cell, _statement(row, without_options=show_options)] for cell, row in zip(cells, section.rows)]
    fitted = present.fit_columns(
        rows, [0, len(rows[0]) - 1], width, indent=2, names=[row.names for row in section.rows], label_room=LABEL_ROOM
    )
    return align(fitted, right=set() if pins else {1}, indent="  ")


LABEL_ROOM = 50  # the widest label column


def _statement(row: Row, *, without_options: bool = False) -> str:
    """``line 13 unfreeze layer4 with lr_scale=0.385``; without the ``with …`` part when a column shows it."""
    decision = row.decision
    if without_options and decision is not None and decision.options is not None and " with " in decision.text:
        text = present.one_line(decision.text).rsplit(" with ", 1)[0]
        return f"line {decision.line} {text} with …"
    return present.statement_cell(decision)


def _footer(report: Report) -> list[str]:
    before, after = report.before, report.after
    rows = [
        ["", "before", "after", "delta"],
        ["total params", f"{before.total:,}", f"{after.total:,}", ""],
        [
            "trainable",
            f"{before.trainable:,}",
            f"{after.trainable:,}",
            delta(before.trainable, after.trainable, before.total),
        ],
        ["frozen", f"{before.frozen:,}", f"{after.frozen:,}", delta(before.frozen, after.frozen, before.total)],
    ]
    return align(rows, right={1, 2, 3})


def _schedule(plan: Plan, width: int) -> list[str]:
    from .timeline import current_point, stage_summary, timeline

    stages = timeline(plan)
    now = current_point(plan)
    unit = plan.policy.unit
    lines = [f"schedule: {plural(len(stages), 'stage')} by {unit} (this report: {unit} {plan.at})"]
    rows = []
    for stage in stages:
        mark = "▶" if stage.at == now else " "
        rows.append(
            [
                f"{mark} {unit} {stage.at}",
                f"{stage.trainable:,}",
                present.share(stage.trainable, stage.total),
                stage_summary(stage, first=stage is stages[0]),
            ]
        )
    return lines + align(present.fit_columns(rows, [3], width, indent=2), right={1, 2}, indent="  ")


def format_table(report: Report) -> str:
    """Every changed parameter and eval pin in a table, the decided but unchanged ones, the untouched count, the counts.

    Every parameter is in one section: changed, decided but unchanged, or untouched.
    """
    plan = report.plan
    verb = "applied to" if report.applied else "planned for"
    lines = [
        f"{printable(plan.policy.source.name)}{present.stage_suffix(plan)} {verb} {model_class(plan)} "
        f"({plural(len(plan.tree.params), 'parameter tensor')})"
    ]
    changes = report.changes
    if changes:
        lines += ["", f"changed ({len(changes)}):"]
        rows = [["name", "shape", "numel", "before → after", "decided by"]]
        for change in changes:
            rows.append(
                [
                    change.name,
                    shape(change.shape),
                    f"{change.numel:,}",
                    f"{state(change.before)} → {state(change.after)}",
                    decided_by(change.decision),
                ]
            )
        lines += align(rows, right={2}, indent="  ")
    else:
        lines += ["", "changed: nothing (every parameter is already as the policy wants)"]
    kept = report.kept
    if kept:
        lines += ["", f"decided, unchanged ({len(kept)}):"]
        rows = [["name", "shape", "numel", "state", "decided by"]]
        for change in kept:
            rows.append(
                [
                    change.name,
                    shape(change.shape),
                    f"{change.numel:,}",
                    state(change.after),
                    decided_by(change.decision),
                ]
            )
        lines += align(rows, right={2}, indent="  ")
    pin_changes = report.pin_changes
    if pin_changes:
        lines += ["", f"eval pins changed ({len(pin_changes)}):"]
        rows = [["module", "before → after", "decided by"]]
        for pin in pin_changes:
            rows.append(
                [
                    pin.name or "(root)",
                    f"{present.pin_mode(pin.before)} → {present.pin_mode(pin.after)}",
                    decided_by(pin.decision),
                ]
            )
        lines += align(rows, indent="  ")
    untouched = len(report.untouched)
    lines += ["", f"untouched: {plural(untouched, 'parameter tensor')} (no statement reached them)"]
    lines += [""] + _footer(report)
    return "\n".join(lines)

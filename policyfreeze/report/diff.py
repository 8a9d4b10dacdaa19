"""``diff``: what changes between two policies (or two revisions of one) on the same model.

A reviewer's view of a pull request that edits a policy: the parameters whose
``requires_grad`` differs, those whose optimizer options differ, the modules
whose eval pin differs, and the counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..engine.resolve import Decision, Plan
from .render import md_code, md_decision
from .report import Counts

DIFF_VERSION = 1
MAX_MARKDOWN_ROWS = 200


@dataclass(frozen=True)
class Difference:
    """One parameter (or module, for pins) whose final state differs between the two plans."""

    name: str
    numel: int
    old: object
    new: object
    old_decision: Decision | None
    new_decision: Decision | None


@dataclass(frozen=True)
class PlanDiff:
    """What differs between two plans for one model, in parameter (module) order."""

    old: Plan
    new: Plan
    requires_grad: tuple[Difference, ...]
    options: tuple[Difference, ...]
    pins: tuple[Difference, ...]

    @staticmethod
    def counts(plan: Plan) -> Counts:
        """Total and trainable parameter elements of one side."""
        params = plan.tree.params
        return Counts(sum(p.numel for p in params), sum(p.numel for p in params if plan.requires_grad[p.name]))


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    """The differences between two plans for the same model tree."""
    flags, options = [], []
    for param in old.tree.params:
        name = param.name
        before, after = old.decisions[name], new.decisions[name]
        if old.requires_grad[name] != new.requires_grad[name]:
            flags.append(Difference(name, param.numel, old.requires_grad[name], new.requires_grad[name], before, after))
        elif new.requires_grad[name] and _options(before) != _options(after):
            options.append(Difference(name, param.numel, _options(before), _options(after), before, after))
    pins = [
        Difference(
            m.name, 0, old.pinned[m.name], new.pinned[m.name], old.pin_decisions[m.name], new.pin_decisions[m.name]
        )
        for m in old.tree.modules
        if old.pinned[m.name] != new.pinned[m.name]
    ]
    return PlanDiff(old, new, tuple(flags), tuple(options), tuple(pins))


def _options(decision: Decision | None) -> str:
    # Only an unfreeze carries options; a parameter trainable as built has none.
    if decision is None or decision.verb != "unfreeze" or decision.options is None:
        return "base group"
    return str(decision.options)


def _flag(value: object) -> str:
    return "trainable" if value else "frozen"


def _pin(value: object) -> str:
    return "pinned eval" if value else "follows train()"


def _by(decision: Decision | None) -> str:
    return f"{decision.where()} {decision.text}" if decision else "(no statement)"


def _summary(diff: PlanDiff) -> tuple[str, str]:
    old, new = diff.counts(diff.old), diff.counts(diff.new)
    delta = new.trainable - old.trainable
    count = len(diff.requires_grad)
    head = (
        f"{count} parameter tensor{'s' if count != 1 else ''} change state" if count else "no parameter changes state"
    )
    totals = f"trainable parameters: {old.trainable:,} → {new.trainable:,} ({delta:+,}) of {new.total:,}"
    return head, totals


def format_text(diff: PlanDiff) -> str:
    head, totals = _summary(diff)
    lines = [f"{diff.old.policy.source.name} → {diff.new.policy.source.name}: {head}", totals]
    sections = (
        ("requires_grad", diff.requires_grad, _flag),
        ("optimizer options", diff.options, str),
        ("eval pins", diff.pins, _pin),
    )
    for title, changes, show in sections:
        if not changes:
            continue
        lines += ["", f"{title} ({len(changes)}):"]
        rows = [["name", "old → new", "numel", "old decided by", "new decided by"]]
        for c in changes:
            rows.append(
                [
                    c.name or "(root)",
                    f"{show(c.old)} → {show(c.new)}",
                    f"{c.numel:,}" if c.numel else "",
                    _by(c.old_decision),
                    _by(c.new_decision),
                ]
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = [cell.rjust(w) if i == 2 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
            lines.append(("  " + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def format_markdown(diff: PlanDiff) -> str:
    head, totals = _summary(diff)
    lines = [
        f"### policyfreeze diff: {md_code(diff.old.policy.source.name)} → {md_code(diff.new.policy.source.name)}",
        "",
        f"**{head}**; {totals}.",
    ]
    sections = (
        ("requires_grad", diff.requires_grad, _flag),
        ("Optimizer options", diff.options, str),
        ("Eval pins", diff.pins, _pin),
    )
    for title, changes, show in sections:
        if not changes:
            continue
        lines += ["", f"<details open><summary>{title} ({len(changes)})</summary>", ""]
        lines += ["| name | old → new | numel | old decided by | new decided by |", "|---|---|---:|---|---|"]
        for c in changes[:MAX_MARKDOWN_ROWS]:
            numel = f"{c.numel:,}" if c.numel else ""
            lines.append(
                f"| {md_code(c.name or '(root)')} | {show(c.old)} → {show(c.new)} | {numel} "
                f"| {md_decision(c.old_decision)} | {md_decision(c.new_decision)} |"
            )
        if len(changes) > MAX_MARKDOWN_ROWS:
            lines.append(f"| … and {len(changes) - MAX_MARKDOWN_ROWS} more | | | | |")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def to_json(diff: PlanDiff) -> str:
    old, new = diff.counts(diff.old), diff.counts(diff.new)

    def rows(changes: tuple[Difference, ...]) -> list[dict]:
        return [
            {
                "name": c.name,
                "numel": c.numel,
                "old": c.old,
                "new": c.new,
                "old_decided_by": _decision(c.old_decision),
                "new_decided_by": _decision(c.new_decision),
            }
            for c in changes
        ]

    document = {
        "version": DIFF_VERSION,
        "old": diff.old.policy.source.name,
        "new": diff.new.policy.source.name,
        "requires_grad": rows(diff.requires_grad),
        "options": rows(diff.options),
        "pins": rows(diff.pins),
        "summary": {
            "changed": len(diff.requires_grad),
            "total": new.total,
            "trainable": {"old": old.trainable, "new": new.trainable},
        },
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


def _decision(decision: Decision | None) -> dict | None:
    if decision is None:
        return None
    return {"text": decision.text, "source": decision.source, "line": decision.line, "column": decision.column}

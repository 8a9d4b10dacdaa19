"""``diff``: what changes between two policies (or two revisions of one) on the same model.

A reviewer's view of a pull request that edits a policy: the parameters whose
``requires_grad`` differs, those whose optimizer options differ, the modules
whose eval pin differs, and the counts — at every stage of a schedule. In
text, a subtree whose tensors differ alike (same states, same deciding
statements on both sides) is one row; JSON lists every tensor.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..engine.resolve import Decision, Plan, advance
from ..errors import PolicyError, PolicyUsageError, printable
from ..model.tree import ModelTree
from . import present
from .present import (
    LINE_WIDTH,
    align,
    decision_dict,
    fit_columns,
    md_code,
    md_decision,
    md_table,
    pin_mode,
    plural,
    state,
)
from .report import Counts
from .sections import Item, cover, summarise
from .timeline import stage_plans

DIFF_VERSION = 2


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

    @property
    def differs(self) -> bool:
        return bool(self.requires_grad or self.options or self.pins)

    @staticmethod
    def counts(plan: Plan) -> Counts:
        """Total and trainable parameter elements of one side."""
        params = plan.tree.params
        return Counts(sum(p.numel for p in params), sum(p.numel for p in params if plan.requires_grad[p.name]))


@dataclass(frozen=True)
class ScheduleDiff:
    """Two policies compared at every stage of either (or at the one stage asked for)."""

    old_name: str
    new_name: str
    unit: str | None  # epoch, step or phase when either policy is scheduled
    stages: tuple[tuple[int, PlanDiff], ...]

    @property
    def differs(self) -> bool:
        return any(d.differs for _, d in self.stages)

    @property
    def differ_at(self) -> list[int]:
        return [at for at, d in self.stages if d.differs]


def diff_plans(old: Plan, new: Plan) -> PlanDiff:
    """The differences between two plans for the same model tree."""
    flags, options = [], []
    for param in old.tree.params:
        name = param.name
        before, after = old.decisions[name], new.decisions[name]
        if old.requires_grad[name] != new.requires_grad[name]:
            flags.append(Difference(name, param.numel, old.requires_grad[name], new.requires_grad[name], before, after))
        elif new.requires_grad[name] and present.options_cell(before) != present.options_cell(after):
            options.append(
                Difference(name, param.numel, present.options_cell(before), present.options_cell(after), before, after)
            )
    pins = [
        Difference(
            m.name, 0, old.pinned[m.name], new.pinned[m.name], old.pin_decisions[m.name], new.pin_decisions[m.name]
        )
        for m in old.tree.modules
        if old.pinned[m.name] != new.pinned[m.name]
    ]
    return PlanDiff(old, new, tuple(flags), tuple(options), tuple(pins))


def diff_schedules(old: Plan, new: Plan, *, every_stage: bool = True) -> ScheduleDiff:
    """``old`` and ``new`` compared at 0 and every ``at`` N of either policy (each stage resolved from the one
    before); with ``every_stage=False``, at the plans' own stage only.

    Raises ``PolicyUsageError`` when the policies schedule by different units, and the
    first stage's errors when a later stage does not resolve.
    """

    units = {u for u in (old.policy.unit, new.policy.unit) if u}
    if len(units) > 1:
        raise PolicyUsageError(
            f"{old.policy.source.name} schedules by {old.policy.unit} and {new.policy.source.name} by "
            f"{new.policy.unit}: their stages do not line up",
            help="compare one point of each: resolve them separately (plan --epoch N / --step N)",
        )
    unit = units.pop() if units else None
    if not every_stage or unit is None:
        return ScheduleDiff(old.policy.source.name, new.policy.source.name, unit, ((old.at, diff_plans(old, new)),))
    points = sorted({0, *old.policy.milestones, *new.policy.milestones})
    sides = []
    for plan in (old, new):
        plans = {p.at: p for p in stage_plans(plan)}
        chain, out = plans[0], []
        for point in points:
            chain = plans.get(point) or advance(chain, point)
            if chain.errors:
                raise PolicyError.collect(list(chain.errors))
            out.append(chain)
        sides.append(out)
    stages = tuple((point, diff_plans(a, b)) for point, a, b in zip(points, *sides))
    return ScheduleDiff(old.policy.source.name, new.policy.source.name, unit, stages)


# --- text -----------------------------------------------------------------------------


def _summary(diff: PlanDiff) -> tuple[str, str]:
    old, new = diff.counts(diff.old), diff.counts(diff.new)
    delta = new.trainable - old.trainable
    count = len(diff.requires_grad)
    head = f"{plural(count, 'parameter tensor')} change state" if count else "no parameter changes state"
    if not count:  # say what does differ: "no parameter changes state" alone reads as "the same"
        if diff.options:
            head += f"; optimizer options differ for {plural(len(diff.options), 'tensor')}"
        if diff.pins:
            head += f"; eval pins differ for {plural(len(diff.pins), 'module')}"
    totals = f"trainable parameters: {old.trainable:,} → {new.trainable:,} ({delta:+,}) of {new.total:,}"
    return head, totals


def _by(decision: Decision | None) -> str:
    return present.statement_cell(decision) if decision else "(no statement)"


#: a subtree (or summary) row per group of alike differences, at most this many per group
MOST_ROWS_PER_KEY = 3


def _rows(diff: PlanDiff, kind: str) -> list[tuple[list[str], tuple[str, ...]]]:
    """([label, old → new, numel (not for pins), old decided by, new decided by], names) per subtree (or summary
    of subtrees: their names) that differs alike."""
    tree = diff.old.tree
    pins = kind == "pins"
    changes = {c.name: c for c in (diff.pins if pins else diff.requires_grad if kind == "flags" else diff.options)}
    own: list[tuple | None] = [None] * len(tree)
    for node in tree.module_nodes if pins else tree.param_nodes:
        name = tree.module_names[tree.ids[node]] if pins else tree.param_names[tree.ids[node]]
        c = changes.get(name)
        own[node] = ("same",) if c is None else ("differs", c.old, c.new, _key(c))
    groups: dict[tuple, list[Item]] = {}
    for item in cover(tree, own):
        if item.key[0] == "differs":
            groups.setdefault(item.key, []).append(item)
    show: Callable[[Any], str] = pin_mode if pins else state if kind == "flags" else str

    def members(items: list[Item]) -> list[str]:
        return list(dict.fromkeys(name for item in items for name in _members(tree, item, kind)))

    def size(items: list[Item]) -> int:
        return sum(changes[name].numel for name in members(items)) + len(items)

    rows = []
    for items in groups.values():
        change = changes[members(items)[0]]
        for label, names, held in summarise(tree, items, MOST_ROWS_PER_KEY, size):
            numel = sum(changes[name].numel for name in members(held))
            within = _common_parent(names)
            label += f" in {within}" if within else ""
            row = [label, f"{show(change.old)} → {show(change.new)}", *([] if pins else [f"{numel:,}"])]
            rows.append(([*row, _by(change.old_decision), _by(change.new_decision)], names))
    return rows


def _common_parent(names: tuple[str, ...]) -> str:
    """The deepest module holding every one of ``names`` (whole segments), ``""`` for the root or none.

    A summary row's ``5 × BatchNorm2d`` then says where they are (``in layer4``) even when
    its names do not fit: two such rows no longer read the same.
    """
    if not names:
        return ""
    parents = [name.split(".")[:-1] for name in names]
    common = parents[0]
    for parent in parents[1:]:
        common = common[
            : next((i for i, (a, b) in enumerate(zip(common, parent)) if a != b), min(len(common), len(parent)))
        ]
    return ".".join(common)


def _key(c: Difference) -> tuple:
    def at(d: Decision | None) -> tuple:
        return (d.line, d.column) if d else ()

    return at(c.old_decision), at(c.new_decision)


def _members(tree: ModelTree, item: Item, kind: str) -> list[str]:
    nodes = item.nodes if item.itself else [n for start in item.nodes for n in range(start, tree.ends[start])]
    if kind == "pins":
        return [tree.module_names[tree.ids[n]] for n in nodes if not tree.is_param[n]]
    return [tree.param_names[tree.ids[n]] for n in nodes if tree.is_param[n]]


def format_text(diff: ScheduleDiff | PlanDiff, *, width: int = LINE_WIDTH) -> str:
    """Per stage that differs: the summary and a row per subtree that differs alike."""
    if isinstance(diff, PlanDiff):
        diff = ScheduleDiff(diff.old.policy.source.name, diff.new.policy.source.name, None, ((diff.old.at, diff),))
    if len(diff.stages) == 1:
        at, only = diff.stages[0]
        head, totals = _summary(only)
        where = f" at {diff.unit} {at}" if diff.unit else ""
        return "\n".join(
            [f"{printable(diff.old_name)} → {printable(diff.new_name)}{where}: {head}", totals, *_body(only, width)]
        )
    unit = diff.unit
    differ = diff.differ_at
    same = [at for at, d in diff.stages if not d.differs]
    lines = [
        f"{printable(diff.old_name)} → {printable(diff.new_name)}: compared at {plural(len(diff.stages), 'stage')} by {unit}"
    ]
    lines.append(
        f"differ at {_points(unit, differ)}" + (f"; the same at {_points(unit, same)}" if same else "")
        if differ
        else f"the same at every stage ({_points(unit, same)})"
    )
    for at, stage in diff.stages:
        if not stage.differs:
            continue
        head, totals = _summary(stage)
        lines += ["", f"at {unit} {at}: {head}", totals, *_body(stage, width)]
    return "\n".join(lines)


def _points(unit: str | None, points: list[int]) -> str:
    return f"{unit}{'s' if len(points) != 1 else ''} {', '.join(map(str, points))}"


def _body(diff: PlanDiff, width: int) -> list[str]:
    lines: list[str] = []
    for title, kind, changes in (
        ("requires_grad", "flags", diff.requires_grad),
        ("optimizer options", "options", diff.options),
        ("eval pins", "pins", diff.pins),
    ):
        if not changes:
            continue
        pins = kind == "pins"
        lines += ["", f"{title} ({plural(len(changes), 'module' if pins else 'tensor')}):"]
        header = ["name", "old → new", *([] if pins else ["numel"]), "old decided by", "new decided by"]
        rows = _rows(diff, kind)
        cells = [header, *(row for row, _ in rows)]
        names = [(), *(listed for _, listed in rows)]
        statements = [len(header) - 2, len(header) - 1]
        # The statements give way before the names: cut names make distinct rows look the same.
        fitted = fit_columns(cells, [0, *statements], width, indent=2, names=names, first=statements)
        lines += align(fitted, right=set() if pins else {2}, indent="  ")
    return lines


# --- markdown -------------------------------------------------------------------------


def format_markdown(diff: ScheduleDiff | PlanDiff) -> str:
    """Per stage that differs: the summary and the differences in collapsed tables."""
    if isinstance(diff, PlanDiff):
        diff = ScheduleDiff(diff.old.policy.source.name, diff.new.policy.source.name, None, ((diff.old.at, diff),))
    lines = [f"### policyfreeze diff: {md_code(diff.old_name)} → {md_code(diff.new_name)}"]
    scheduled = len(diff.stages) > 1
    if scheduled:
        differ = diff.differ_at
        lines += ["", f"Differ at {_points(diff.unit, differ)}." if differ else "The same at every stage."]
    for at, stage in diff.stages:
        if scheduled and not stage.differs:
            continue
        head, totals = _summary(stage)
        where = f"At {diff.unit} {at}: " if scheduled or diff.unit else ""
        lines += ["", f"{where}**{head}**; {totals}."]
        sections: tuple[tuple[str, tuple[Difference, ...], Callable[[Any], str]], ...] = (
            ("requires_grad", stage.requires_grad, state),
            ("Optimizer options", stage.options, str),
            ("Eval pins", stage.pins, pin_mode),
        )
        for title, changes, show in sections:
            if not changes:
                continue
            lines += ["", f"<details open><summary>{title} ({len(changes)})</summary>", ""]
            lines += md_table(
                ["name", "old → new", "numel", "old decided by", "new decided by"],
                {2},
                [
                    [
                        md_code(c.name or "(root)"),
                        f"{show(c.old)} → {show(c.new)}",
                        f"{c.numel:,}" if c.numel else "",
                        md_decision(c.old_decision),
                        md_decision(c.new_decision),
                    ]
                    for c in changes
                ],
            )
            lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


# --- json -----------------------------------------------------------------------------


def to_json(diff: ScheduleDiff | PlanDiff) -> str:
    """Version 2: every stage compared, each with every tensor and module that differs."""
    if isinstance(diff, PlanDiff):
        diff = ScheduleDiff(diff.old.policy.source.name, diff.new.policy.source.name, None, ((diff.old.at, diff),))

    def rows(changes: tuple[Difference, ...]) -> list[dict]:
        return [
            {
                "name": c.name,
                "numel": c.numel,
                "old": c.old,
                "new": c.new,
                "old_decided_by": decision_dict(c.old_decision),
                "new_decided_by": decision_dict(c.new_decision),
            }
            for c in changes
        ]

    def stage(at: int, d: PlanDiff) -> dict:
        old, new = d.counts(d.old), d.counts(d.new)
        return {
            "at": at,
            "requires_grad": rows(d.requires_grad),
            "options": rows(d.options),
            "pins": rows(d.pins),
            "summary": {
                "changed": len(d.requires_grad),
                "total": new.total,
                "trainable": {"old": old.trainable, "new": new.trainable},
            },
        }

    document = {
        "version": DIFF_VERSION,
        "old": diff.old_name,
        "new": diff.new_name,
        "unit": diff.unit,
        "differ_at": diff.differ_at,
        "stages": [stage(at, d) for at, d in diff.stages],
    }
    return json.dumps(document, indent=2, ensure_ascii=False)

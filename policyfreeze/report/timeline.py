"""A scheduled policy's stages: what starts and stops training at each, with its options and share.

Stage 0 is the policy's base statements (and any ``at`` block at 0); each
later stage is an ``at`` N of the policy. Stages are resolved one from the
other (``advance``): each statement is selected once however many stages
there are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..engine.resolve import advance, evaluate
from .present import options_cell, plural
from .sections import cover, label_of

if TYPE_CHECKING:
    from ..engine.resolve import Plan
    from ..errors import PolicyError
    from ..model.tree import ModelTree


@dataclass(frozen=True)
class Part:
    """Parameters that start (or stop) training at a stage, with the options they train with."""

    labels: tuple[str, ...]  # the subtrees, as the report's rows name them
    options: str  # ``base group``, ``lr_scale=0.385``; empty for what stops
    tensors: int
    numel: int


@dataclass(frozen=True)
class Stage:
    """One stage of a schedule, compared with the stage before (stage 0: with the model as built)."""

    at: int
    plan: Plan
    starts: tuple[Part, ...]
    stops: tuple[Part, ...]
    regroups: tuple[Part, ...]  # trainable before and after, with other options now
    pinned: int  # modules pinned in eval mode at this stage
    unpinned: int  # modules whose pin this stage removes
    trainable: int  # elements trainable in this stage
    total: int
    errors: tuple[PolicyError, ...]

    @property
    def changes(self) -> bool:
        return bool(self.starts or self.stops or self.regroups or self.pinned or self.unpinned)


def stage_points(plan: Plan) -> tuple[int, ...]:
    """0 and every ``at`` N of the plan's policy, ascending."""
    return tuple(sorted({0, *plan.policy.milestones}))


def current_point(plan: Plan) -> int:
    """The stage in force at the plan's epoch/step/phase: the last ``at`` N at or before it."""
    return max(p for p in stage_points(plan) if p <= plan.at)


def stage_plans(plan: Plan) -> list[Plan]:
    """The plan of every stage, each resolved from the one before (the first from the model as built)."""
    points = stage_points(plan)
    if current_point(plan) == 0:
        plans = [plan]
    else:
        plans = [dataclasses.replace(evaluate(plan.tree, plan.policy, 0), live=plan.live)]
    for point in points[1:]:
        plans.append(advance(plans[-1], point))
    return plans


def timeline(plan: Plan) -> tuple[Stage, ...]:
    """Every stage of the plan's policy; one stage for a policy without a schedule."""
    stages = []
    previous = None
    for point, stage in zip(stage_points(plan), stage_plans(plan)):
        stages.append(
            Stage(
                at=point,
                plan=stage,
                starts=_parts(stage, _started(stage)),
                stops=_parts(stage, _stopped(stage)),
                regroups=_parts(stage, _regrouped(stage, previous)) if previous else (),
                pinned=sum(after and not before for before, after in zip(stage.start_pins, stage.module_pins)),
                unpinned=sum(before and not after for before, after in zip(stage.start_pins, stage.module_pins)),
                trainable=sum(p.numel for p, flag in zip(stage.tree.params, stage.param_flags) if flag),
                total=sum(p.numel for p in stage.tree.params),
                errors=stage.errors,
            )
        )
        previous = stage
    return tuple(stages)


def trains(plan: Plan) -> tuple[Part, ...]:
    """What trains in ``plan``, by optimizer options: the subtrees and their options."""
    return _parts(plan, [_options(plan, i) if flag else None for i, flag in enumerate(plan.param_flags)])


def _options(plan: Plan, param: int) -> str:
    decider = plan.param_deciders[param]
    return options_cell(plan.statement_decisions[decider] if decider >= 0 else None)


def _started(plan: Plan) -> list[str | None]:
    return [
        _options(plan, i) if after and not before else None
        for i, (before, after) in enumerate(zip(plan.start_flags, plan.param_flags))
    ]


def _stopped(plan: Plan) -> list[str | None]:
    return ["" if before and not after else None for before, after in zip(plan.start_flags, plan.param_flags)]


def _regrouped(plan: Plan, previous: Plan) -> list[str | None]:
    # Options change only where a statement the stage adds decides: only those are worked out.
    new = previous.statement_count
    out: list[str | None] = []
    for i, (before, after, decider) in enumerate(zip(plan.start_flags, plan.param_flags, plan.param_deciders)):
        options = _options(plan, i) if before and after and decider >= new else None
        out.append(options if options is not None and options != _options(previous, i) else None)
    return out


def _parts(plan: Plan, moved: list[str | None]) -> tuple[Part, ...]:
    """The parameters with an entry in ``moved`` (their options; None: not moved), as subtrees by options."""
    tree = plan.tree
    own: list[tuple | None] = [None] * len(tree)
    for node in tree.param_nodes:
        options = moved[tree.ids[node]]
        own[node] = ("same",) if options is None else ("moved", options)
    by_options: dict[str, list] = {}
    for item in cover(tree, own):
        if item.key[0] == "moved":
            by_options.setdefault(item.key[1], []).append(item)
    parts = []
    for options, items in by_options.items():
        ids = {tree.ids[n] for item in items for start_node in item.nodes for n in _param_nodes(tree, start_node)}
        parts.append(
            Part(
                tuple(label_of(tree, item, with_class=False) for item in items),
                options,
                len(ids),
                sum(tree.params[i].numel for i in ids),
            )
        )
    return tuple(parts)


def _param_nodes(tree: ModelTree, node: int) -> list[int]:
    return [n for n in range(node, tree.ends[node]) if tree.is_param[n]]


def stage_summary(stage: Stage, *, first: bool) -> str:
    """``trains fc``, ``+ layer4 (lr_scale=0.385); 5 modules leave eval``: what a stage changes."""
    parts = []
    if first:
        parts += [_part("trains", part) for part in trains(stage.plan)] or ["trains nothing"]
    else:
        parts += [_part("+", part) for part in stage.starts]
        parts += [f"− {', '.join(part.labels)}" for part in stage.stops]
        parts += [f"{', '.join(part.labels)} now {part.options}" for part in stage.regroups]
    if stage.pinned:
        parts.append(f"{plural(stage.pinned, 'module')} pinned eval")
    if stage.unpinned:
        parts.append(f"{plural(stage.unpinned, 'module')} leave eval")
    if stage.errors:
        parts.append("does not resolve: " + ", ".join(sorted({e.code or "error" for e in stage.errors})))
    return "; ".join(parts) or "no change"


def _part(prefix: str, part) -> str:
    options = "" if part.options == "base group" else f" ({part.options})"
    return f"{prefix} {', '.join(part.labels)}{options}"

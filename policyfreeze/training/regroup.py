"""The Freezer's optimizer bookkeeping: how each stage changes the parameter groups.

``transition`` works out, as data, what one milestone does to groups that
hold given parameters; ``regroup`` replays those changes on the recorded
layout; ``apply_to_optimizer`` carries them out on a torch optimizer,
all-or-nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine.groups import group_options, options_key
from ..engine.resolve import Plan
from ..errors import PolicyError, PolicyUsageError

Group = tuple[dict, list[str]]  # optimizer options, parameter names


@dataclass(frozen=True)
class GroupChange:
    """One milestone's effect on a set of optimizer groups (pure data)."""

    drop: frozenset[str]
    new_groups: tuple[Group, ...]
    added: tuple[str, ...]
    moved: tuple[str, ...]
    removed: tuple[str, ...]


def regroup(groups: list[Group], steps: list[GroupChange]) -> list[Group]:
    """``groups`` after ``steps``: dropped names leave (empty groups stay, so indices hold), new groups append."""
    for step in steps:
        groups = [(options, [n for n in names if n not in step.drop]) for options, names in groups]
        groups += [(options, list(names)) for options, names in step.new_groups]
    return [(options, list(names)) for options, names in groups]


def names_in(groups: list[Group]) -> set[str]:
    return {name for _, names in groups for name in names}


def held_by(optimizer: Any, plan: Plan) -> set[str]:
    """The model's parameters ``optimizer`` holds, by name (tensors of other models are left alone)."""
    names = {id(tensor): name for name, tensor in zip(plan.tree.param_names, plan.live_model().tensors)}
    return {names[id(t)] for group in optimizer.param_groups for t in group["params"] if id(t) in names}


def transition(held: set[str], previous: Plan, plan: Plan, lr: float | None, weight_decay: float | None) -> GroupChange:
    """How groups holding ``held`` change from ``previous`` to ``plan``."""
    added, moved, removed = [], [], []
    for name, trainable in plan.requires_grad.items():
        if not trainable:
            if name in held:
                removed.append(name)
        elif name not in held:
            added.append(name)
        elif options_key(previous.decisions[name]) != options_key(plan.decisions[name]):
            moved.append(name)
    new_groups: dict[tuple, Group] = {}
    joining = set(added) | set(moved)
    for name in plan.requires_grad:
        if name in joining:
            decision = plan.decisions[name]
            key = options_key(decision)
            if key not in new_groups:
                new_groups[key] = (group_options(key, decision, lr, weight_decay), [])
            new_groups[key][1].append(name)
    return GroupChange(
        frozenset(removed) | frozenset(moved), tuple(new_groups.values()), tuple(added), tuple(moved), tuple(removed)
    )


def apply_to_optimizer(optimizer: Any, plan: Plan, ops: list[GroupChange]):
    """Carry out ``ops`` on ``optimizer``; returns the function that undoes it. All-or-nothing.

    An optimizer built from named parameters (torch ≥ 2.6 keeps ``param_names``)
    stays named: new groups name their tensors too.
    """
    tensors = tensors_by_name(plan)
    before = [
        {key: list(group[key]) for key in ("params", "param_names") if key in group} for group in optimizer.param_groups
    ]
    named = any("param_names" in group for group in optimizer.param_groups)
    dropped_state: dict[Any, Any] = {}

    def undo() -> None:
        del optimizer.param_groups[len(before) :]
        for group, saved in zip(optimizer.param_groups, before):
            group.update(saved)
        optimizer.state.update(dropped_state)

    try:
        for op in ops:
            drop = {id(tensors[name]) for name in op.drop}
            forget = {id(tensors[name]) for name in op.removed}
            for group in optimizer.param_groups:
                keep = [id(tensor) not in drop for tensor in group["params"]]
                for tensor, kept in zip(group["params"], keep):
                    if not kept and id(tensor) in forget and tensor in optimizer.state:
                        dropped_state[tensor] = optimizer.state.pop(tensor)
                for key in ("params", "param_names"):
                    if key in group:
                        group[key] = [item for item, kept in zip(group[key], keep) if kept]
            for options, names in op.new_groups:
                params = [(name, tensors[name]) if named else tensors[name] for name in names]
                optimizer.add_param_group({"params": params, **options})
    except Exception as exc:
        undo()
        if isinstance(exc, PolicyError):
            raise
        raise PolicyUsageError(
            f"bringing the optimizer in line with the new stage failed and nothing was changed: {exc}",
            help="build the optimizer from freezer.param_groups()",
        ) from exc
    return undo


def tensors_by_name(plan: Plan) -> dict[str, Any]:
    return dict(zip(plan.tree.param_names, plan.live_model().tensors))

"""The Freezer's optimizer bookkeeping: how each stage changes the parameter groups.

``transition`` works out, as data, what one milestone does to groups that
hold given parameters; ``regroup`` replays those changes on the recorded
layout; ``apply_to_optimizer`` carries them out on a torch optimizer,
all-or-nothing. Parameters are ids of the plan's model tree (its
``param_names`` index): work per stage is a few passes over flat lists,
not dictionaries of names.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..engine.groups import OptionsKey, group_options, options_key
from ..engine.resolve import Plan
from ..errors import PolicyError, PolicyUsageError

Group = tuple[dict, list[int]]  # optimizer options, parameter ids
Undo = Callable[[], None]


@dataclass(frozen=True)
class GroupChange:
    """One milestone's effect on a set of optimizer groups (pure data; parameter ids in parameter order)."""

    drop: frozenset[int]
    new_groups: tuple[Group, ...]
    added: tuple[int, ...]
    moved: tuple[int, ...]
    removed: tuple[int, ...]


def regroup(groups: list[Group], steps: list[GroupChange]) -> list[Group]:
    """``groups`` after ``steps``: dropped ids leave (empty groups stay, so indices hold), new groups append."""
    for step in steps:
        if step.drop:
            groups = [(options, [i for i in ids if i not in step.drop]) for options, ids in groups]
        groups = groups + [(options, list(ids)) for options, ids in step.new_groups]
    return [(options, list(ids)) for options, ids in groups]


def ids_in(groups: list[Group]) -> set[int]:
    return {i for _, ids in groups for i in ids}


def held_by(optimizer: Any, index: dict[int, int]) -> set[int]:
    """The model's parameters ``optimizer`` holds, by parameter id (``index``: ``id(tensor)`` → parameter id;
    tensors of other models are left alone)."""
    return {index[key] for group in optimizer.param_groups for key in map(id, group["params"]) if key in index}


def transition(held: set[int], previous: Plan, plan: Plan, lr: float | None, weight_decay: float | None) -> GroupChange:
    """How groups holding ``held`` change from ``previous`` to ``plan``.

    Trainable parameters not held join, held ones frozen again leave, and
    held ones whose options changed move to a new group. Options can only
    change where the deciding statement did, so only those are compared.
    """
    flags, deciders, before = plan.param_flags, plan.param_deciders, previous.param_deciders
    keys = _keys(plan)
    old_keys = _keys(previous)
    added = [i for i in itertools.compress(range(len(flags)), flags) if i not in held]
    removed, moved = [], []
    for i in held:
        if not flags[i]:
            removed.append(i)
        elif before[i] != deciders[i] and old_keys[before[i]] != keys[deciders[i]]:
            moved.append(i)
    removed.sort()
    moved.sort()
    new_groups: dict[OptionsKey, Group] = {}
    for i in sorted(added + moved):
        decider = deciders[i]
        key = keys[decider]
        if key not in new_groups:
            decision = plan.statement_decisions[decider] if decider >= 0 else None
            new_groups[key] = (group_options(key, decision, lr, weight_decay), [])
        new_groups[key][1].append(i)
    return GroupChange(
        frozenset(removed) | frozenset(moved), tuple(new_groups.values()), tuple(added), tuple(moved), tuple(removed)
    )


def _keys(plan: Plan) -> dict[int, OptionsKey]:
    """Options key per statement number, -1 (no statement) included."""
    keys = {number: options_key(decision) for number, decision in enumerate(plan.statement_decisions)}
    keys[-1] = ()
    return keys


def apply_to_optimizer(optimizer: Any, tensors: list[Any], names: list[str], steps: list[GroupChange]) -> Undo:
    """Carry out ``steps`` on ``optimizer``; returns the function that undoes it. All-or-nothing.

    New groups are appended in order. An optimizer built from named
    parameters (torch ≥ 2.6 keeps ``param_names``) stays named: new groups
    name their tensors too.
    """
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
        for step in steps:
            if step.drop:
                drop = {id(tensors[i]) for i in step.drop}
                forget = {id(tensors[i]) for i in step.removed}
                for group in optimizer.param_groups:
                    keep = [id(tensor) not in drop for tensor in group["params"]]
                    if all(keep):
                        continue
                    for tensor, kept in zip(group["params"], keep):
                        if not kept and id(tensor) in forget and tensor in optimizer.state:
                            dropped_state[tensor] = optimizer.state.pop(tensor)
                    for key in ("params", "param_names"):
                        if key in group:
                            group[key] = [item for item, kept in zip(group[key], keep) if kept]
            for options, ids in step.new_groups:
                params = [(names[i], tensors[i]) if named else tensors[i] for i in ids]
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

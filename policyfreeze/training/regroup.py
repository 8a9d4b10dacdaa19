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
import math
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


class GroupOptions:
    """The optimizer options each trainable parameter gets, and the key that groups it.

    Layered, first set wins: the deciding statement's ``with`` options
    (``lr_scale`` times the base ``lr``), then ``param_options(name)`` (a
    framework's per-parameter defaults, such as the Hugging Face Trainer's
    ``weight_decay=0`` for biases and norms), then the base ``lr`` and
    ``weight_decay``. A key with no value is left out: the optimizer's own
    default applies.
    """

    KEYS = ("lr", "weight_decay")

    def __init__(
        self,
        names: list[str],
        lr: float | None,
        weight_decay: float | None,
        param_options: Callable[[str], dict] | None = None,
    ) -> None:
        self.names = names
        self.lr = lr
        self.weight_decay = weight_decay
        self.param_options = param_options
        self._base: dict[int, tuple] = {}

    def base(self, i: int) -> tuple:
        """``param_options`` of parameter ``i``, as sorted items (checked once)."""
        if self.param_options is None:
            return ()
        if i not in self._base:
            self._base[i] = _checked_options(self.names[i], self.param_options(self.names[i]))
        return self._base[i]

    def key(self, statement_key: OptionsKey, i: int) -> tuple:
        """What groups parameter ``i``: its statement's options and the per-parameter ones they leave."""
        base = self.base(i)
        return (statement_key, tuple(self._from_parameter((statement_key, base)).items()) if base else ())

    def options(self, key: tuple, decision: Any) -> dict[str, float]:
        """The group options of a parameter with ``key``: statement, then per-parameter, then base."""
        options = group_options(key[0], decision, self.lr, self.weight_decay)
        options.update(self._from_parameter(key))
        return options

    def chosen(self, key: tuple, decision: Any) -> dict[str, float]:
        """Only the options a statement or ``param_options`` set (not the base lr and weight decay)."""
        options = group_options(key[0], decision, self.lr, None)
        if not (key[0] and (key[0][0] is not None or key[0][1] is not None)):
            options.pop("lr", None)
        options.update(self._from_parameter(key))
        return options

    @staticmethod
    def _from_parameter(key: tuple) -> dict[str, float]:
        """The per-parameter options a statement does not override."""
        own_lr, lr_scale, own_weight_decay = key[0] or (None, None, None)
        return {
            name: value
            for name, value in key[1]
            if (name == "lr" and own_lr is None and lr_scale is None)
            or (name == "weight_decay" and own_weight_decay is None)
        }


def _checked_options(name: str, options: Any) -> tuple:
    if not isinstance(options, dict) or not set(options) <= set(GroupOptions.KEYS):
        raise PolicyUsageError(
            f"param_options({name!r}) returned {options!r}: a dict with the keys lr and/or weight_decay"
        )
    for key, value in options.items():
        valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not valid or value < 0 or (key == "lr" and value == 0):
            raise PolicyUsageError(f"param_options({name!r}) gives {key}={value!r}: not a {key}")
    return tuple(sorted(options.items()))


def transition(held: set[int], previous: Plan, plan: Plan, options: GroupOptions) -> GroupChange:
    """How groups holding ``held`` change from ``previous`` to ``plan``.

    Trainable parameters not held join, held ones frozen again leave, and
    held ones whose options changed move to a new group. Options can only
    change where the deciding statement did, so only those are compared.
    """
    flags, deciders, before = plan.param_flags, plan.param_deciders, previous.param_deciders
    keys = _Keys(plan)
    old_keys = _Keys(previous)
    added = [i for i in itertools.compress(range(len(flags)), flags) if i not in held]
    removed, moved = [], []
    for i in held:
        if not flags[i]:
            removed.append(i)
        elif before[i] != deciders[i] and old_keys[before[i]] != keys[deciders[i]]:
            moved.append(i)
    return _change(plan, options, keys, added, moved, removed)


def conform(optimizer: Any, index: dict[int, int], plan: Plan, options: GroupOptions) -> GroupChange:
    """How an optimizer built elsewhere comes in line with ``plan``: frozen parameters leave, missing trainable
    ones join, and held ones whose group has other options than a statement or ``param_options`` gives them
    (an ``lr``, a ``weight_decay``) move. The base lr and weight decay move nothing: the group's own stand."""
    flags, deciders = plan.param_flags, plan.param_deciders
    keys = _Keys(plan)
    held: set[int] = set()
    removed, moved = [], []
    for group in optimizer.param_groups:
        for tensor in group["params"]:
            i = index.get(id(tensor))
            if i is None:
                continue
            held.add(i)
            if not flags[i]:
                removed.append(i)
                continue
            decider = deciders[i]
            wanted = options.chosen(options.key(keys[decider], i), _decision(plan, decider))
            # A group's lr as a scheduler left it is not its base rate: initial_lr is.
            have = {"lr": group.get("initial_lr", group.get("lr")), "weight_decay": group.get("weight_decay")}
            if any(have[name] != value for name, value in wanted.items()):
                moved.append(i)
    added = [i for i in itertools.compress(range(len(flags)), flags) if i not in held]
    return _change(plan, options, keys, added, moved, removed)


def _change(
    plan: Plan,
    options: GroupOptions,
    keys: _Keys,
    added: list[int],
    moved: list[int],
    removed: list[int],
) -> GroupChange:
    removed.sort()
    moved.sort()
    new_groups: dict[tuple, Group] = {}
    for i in sorted(added + moved):
        decider = plan.param_deciders[i]
        key = options.key(keys[decider], i)
        if key not in new_groups:
            new_groups[key] = (options.options(key, _decision(plan, decider)), [])
        new_groups[key][1].append(i)
    return GroupChange(
        frozenset(removed) | frozenset(moved), tuple(new_groups.values()), tuple(added), tuple(moved), tuple(removed)
    )


def _decision(plan: Plan, decider: int) -> Any:
    return plan.statement_decisions[decider] if decider >= 0 else None


class _Keys(dict[int, OptionsKey]):
    """Options key per statement number, -1 (no statement) included, worked out for the numbers asked:
    a stage costs what its parameters need, not a key per statement in force."""

    def __init__(self, plan: Plan) -> None:
        super().__init__({-1: ()})
        self.decisions = plan.statement_decisions

    def __missing__(self, number: int) -> OptionsKey:
        key = self[number] = options_key(self.decisions[number])
        return key


def apply_to_optimizer(optimizer: Any, tensors: list[Any], names: list[str], steps: list[GroupChange]) -> Undo:
    """Carry out ``steps`` on ``optimizer``; returns the function that undoes it. All-or-nothing.

    New groups are appended in order. An optimizer built from named
    parameters (torch ≥ 2.6 keeps ``param_names``) stays named: new groups
    name their tensors too.
    """
    count = len(optimizer.param_groups)
    named = any("param_names" in group for group in optimizer.param_groups)
    # Only the groups a step changes are saved: an optimizer gains a group per stage, and copying
    # every one of them at every stage would make a long schedule quadratic. A step assigns new
    # lists, so the saved ones stay as they were.
    saved: list[tuple[dict, dict]] = []
    dropped_state: dict[Any, Any] = {}

    def undo() -> None:
        del optimizer.param_groups[count:]
        for group, lists in reversed(saved):  # the first saved of a group changed twice is its original
            group.update(lists)
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
                    saved.append((group, {key: group[key] for key in ("params", "param_names") if key in group}))
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

"""Committing a plan to its live model: the only stage that mutates, all-or-nothing."""

from __future__ import annotations

import itertools
import operator
from typing import Any

from ..errors import PolicyError, PolicyResolveError
from ..model import pins
from .resolve import Plan


def commit(plan: Plan) -> None:
    """Set the planned flags and eval pins; on any failure restore every one and re-raise."""
    live = plan.live_model()
    tensors, flags = live.tensors, plan.param_flags
    # The tensors whose flag differs now (a flag is a bool: each gets the opposite of what it has). A plan
    # resolved from scratch starts from the flags its walk read, which are the flags now (resolve and
    # commit run back to back): reading 50,000 flags again would cost as much as setting them.
    now = (
        plan.start_flags
        if plan.start_flags is plan.tree.param_requires_grad
        else map(operator.attrgetter("requires_grad"), tensors)
    )
    differs = list(map(operator.ne, now, flags))
    changing = list(itertools.compress(tensors, differs))
    targets = list(itertools.compress(flags, differs))
    # Only modules an eval/train statement decided can have a pin to change.
    decided = itertools.compress(range(len(plan.module_deciders)), map((0).__le__, plan.module_deciders))
    attempted = 0  # counted before each change: one that fails half-way is undone too
    changed_modes = []  # (module, what restores it): only modules whose pin changes are touched
    set_flag = set_requires_grad
    try:
        for tensor, flag in zip(changing, targets):
            attempted += 1
            set_flag(tensor, flag)
        modules, module_pins = live.modules, plan.module_pins
        for module_id in decided:
            if pins.is_pinned(modules[module_id]) != module_pins[module_id]:
                changed_modes.append((modules[module_id], pins.snapshot(modules[module_id])))
                set_pinned(modules[module_id], module_pins[module_id])
    except BaseException as exc:
        for tensor, flag in zip(changing[:attempted], targets):
            tensor.requires_grad_(not flag)
        for module, mode in reversed(changed_modes):
            pins.restore(module, mode)
        if isinstance(exc, PolicyError) or not isinstance(exc, Exception):
            raise
        raise PolicyResolveError(f"applying the policy failed and every change was undone: {exc}") from exc


def set_requires_grad(tensor: Any, flag: bool) -> None:
    """The one place a flag changes (tests inject faults here)."""
    tensor.requires_grad = flag


def set_pinned(module: Any, flag: bool) -> None:
    """The one place an eval pin changes (tests inject faults here)."""
    if flag:
        pins.pin(module)
    else:
        pins.unpin(module)

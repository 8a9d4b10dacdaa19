"""Committing a plan to its live model: the only stage that mutates, all-or-nothing."""

from __future__ import annotations

from typing import Any

from ..errors import PolicyError, PolicyResolveError
from ..model import pins
from .resolve import Plan


def commit(plan: Plan) -> None:
    """Set the planned flags and eval pins; on any failure restore every one and re-raise."""
    live = plan.live_model()
    tensors, flags = live.tensors, plan.param_flags
    # A flag is a bool: each tensor to change had the opposite of what it gets.
    to_change = [index for index, tensor in enumerate(tensors) if tensor.requires_grad != flags[index]]
    attempted = 0  # counted before each change: one that fails half-way is undone too
    changed_modes = []  # (module, what restores it): only modules whose pin changes are touched
    try:
        for index in to_change:
            attempted += 1
            set_requires_grad(tensors[index], flags[index])
        modules, module_pins = live.modules, plan.module_pins
        unpinned = []
        for module_id, decider in enumerate(plan.module_deciders):
            if decider >= 0 and pins.is_pinned(modules[module_id]) != module_pins[module_id]:
                changed_modes.append((modules[module_id], pins.snapshot(modules[module_id])))
                set_pinned(modules[module_id], module_pins[module_id])
                if not module_pins[module_id]:
                    unpinned.append(module_id)
        pins.follow_parents(live.tree, modules, unpinned)
    except BaseException as exc:
        for index in to_change[:attempted]:
            tensors[index].requires_grad_(not flags[index])
        for module, mode in reversed(changed_modes):
            pins.restore(module, mode)
        if isinstance(exc, PolicyError) or not isinstance(exc, Exception):
            raise
        raise PolicyResolveError(f"applying the policy failed and every change was undone: {exc}") from exc


def set_requires_grad(tensor: Any, flag: bool) -> None:
    """The one place a flag changes (tests inject faults here)."""
    tensor.requires_grad_(flag)


def set_pinned(module: Any, flag: bool) -> None:
    """The one place an eval pin changes (tests inject faults here)."""
    if flag:
        pins.pin(module)
    else:
        pins.unpin(module)

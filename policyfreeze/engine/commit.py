"""Committing a plan to its live model: the only stage that mutates, all-or-nothing."""

from __future__ import annotations

import itertools
import operator
import warnings
from typing import Any

from .. import collector
from ..errors import PolicyError, PolicyResolveError, PolicyWarning
from ..model import pins
from .resolve import Plan

#: Restores that failed, named in the error at most this many at a time.
MAX_NAMED_FAILURES = 5


@collector.paused
def commit(plan: Plan) -> None:
    """Set the planned flags and eval pins; on any failure restore every one and re-raise.

    Every change is undone even when some restores fail too; the error then
    says which parameters and modules could not be put back.
    """
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
    to_change = list(itertools.compress(range(len(flags)), map(operator.ne, now, flags)))
    # Only modules an eval/train statement decided can have a pin to change.
    decided = itertools.compress(range(len(plan.module_deciders)), map((0).__le__, plan.module_deciders))
    attempted = 0  # counted before each change: one that fails half-way is undone too
    changed_modes = []  # (module id, what restores it): only modules whose pin changes are touched
    set_flag = set_requires_grad
    try:
        for index in to_change:
            attempted += 1
            set_flag(tensors[index], flags[index])
        modules, module_pins = live.modules, plan.module_pins
        unpinned = []
        for module_id in decided:
            if pins.is_pinned(modules[module_id]) != module_pins[module_id]:
                changed_modes.append((module_id, pins.snapshot(modules[module_id])))
                set_pinned(modules[module_id], module_pins[module_id])
                if not module_pins[module_id]:
                    unpinned.append(module_id)
        pins.follow_parents(live.tree, modules, unpinned)
    except BaseException as exc:
        failed = _undo(plan, to_change[:attempted], changed_modes)
        if not isinstance(exc, Exception):  # Ctrl-C and the like stay themselves
            if failed:
                warnings.warn(
                    PolicyWarning(f"applying the policy was interrupted; {_not_restored(failed)}"), stacklevel=2
                )
            raise
        if isinstance(exc, PolicyError) and not failed:
            raise
        if len(changed_modes) + attempted == 0:
            failing = ""
        elif changed_modes:
            failing = " while " + _pin_change(plan, changed_modes[-1][0])
        else:
            failing = " while " + _flag_change(plan, to_change[attempted - 1])
        undone = _not_restored(failed) if failed else "every change was undone"
        raise PolicyResolveError(f"applying the policy failed{failing} ({_describe(exc)}); {undone}") from exc


def _flag_change(plan: Plan, index: int) -> str:
    return f"{'unfreezing' if plan.param_flags[index] else 'freezing'} {plan.tree.param_names[index]}"


def _pin_change(plan: Plan, module_id: int) -> str:
    return f"{'pinning' if plan.module_pins[module_id] else 'unpinning'} {_module_name(plan, module_id)}"


def _undo(plan: Plan, flagged: list[int], changed_modes: list[tuple[int, Any]]) -> list[str]:
    """Restore every flag and mode changed so far, whatever one restore raises; what could not be restored."""
    live = plan.live_model()
    failed = []
    for module_id, mode in reversed(changed_modes):
        problem = _restore_pin(live.modules[module_id], mode)
        if problem:
            failed.append(f"{_module_name(plan, module_id)} (eval pin): {problem}")
    for index in flagged:
        problem = _restore_flag(live.tensors[index], not plan.param_flags[index])
        if problem:
            failed.append(f"{plan.tree.param_names[index]} (requires_grad): {problem}")
    return failed


def _restore_pin(module: Any, mode: Any) -> str | None:
    """Put a module's pin and mode back; None when they are back (or never changed), else why not."""
    try:
        pins.restore(module, mode)
        return None
    except Exception as exc:  # every other change must still be undone
        try:
            if pins.snapshot(module) == mode:
                return None  # a change that never happened needs no undoing
        except Exception:
            pass
        return _describe(exc)


def _restore_flag(tensor: Any, flag: bool) -> str | None:
    """Put a parameter's flag back; None when it is back (or never changed), else why not."""
    try:
        tensor.requires_grad_(flag)
        return None
    except Exception as exc:  # every other change must still be undone
        try:
            if tensor.requires_grad == flag:
                return None  # a change that never happened needs no undoing
        except Exception:
            pass
        return _describe(exc)


def _module_name(plan: Plan, module_id: int) -> str:
    return plan.tree.module_names[module_id] or "the model"


def _not_restored(failed: list[str]) -> str:
    shown = "; ".join(failed[:MAX_NAMED_FAILURES])
    more = len(failed) - MAX_NAMED_FAILURES
    count = "1 change" if len(failed) == 1 else f"{len(failed)} changes"
    return f"{count} could not be undone, the model is left partly changed: {shown}" + (
        f"; … and {more} more" if more > 0 else ""
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def set_requires_grad(tensor: Any, flag: bool) -> None:
    """The one place a flag changes (tests inject faults here)."""
    tensor.requires_grad_(flag)


def set_pinned(module: Any, flag: bool) -> None:
    """The one place an eval pin changes (tests inject faults here)."""
    if flag:
        pins.pin(module)
    else:
        pins.unpin(module)

"""Applying a plan to a live model: the only stage that mutates, all-or-nothing."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from . import pins
from .errors import PolicyError, PolicyResolveError, PolicyUsageError, PolicyWarning
from .report import Report
from .resolver import Plan, coerce_policy, resolve
from .rules import Policy
from .tree import WRAPPERS


def apply(model: Any, policy: Policy | str | Path, *, epoch: int | None = None, step: int | None = None) -> Report:
    """Resolve ``policy`` on ``model`` and set every ``requires_grad`` and eval pin it decides.

    All-or-nothing: on any error every flag and pin is left as it was. Findings that do
    not stop the policy (a statement that selects nothing) are issued as
    ``PolicyWarning``. Returns the diff ``Report``.
    """
    refuse_distributed(model)
    policy = coerce_policy(policy)
    plan = resolve(model, policy, epoch=epoch, step=step)
    for finding in plan.warnings:
        warnings.warn(PolicyWarning(str(finding)), stacklevel=2)
    commit(plan)
    return Report(plan, applied=True)


#: Wrappers that fix at construction what trains: a policy is applied before them.
FIXING_WRAPPERS = {
    "DistributedDataParallel": "its gradient hooks",
    "FullyShardedDataParallel": "its gradient sharding",
}


def refuse_distributed(model: Any) -> None:
    """DDP and FSDP fix what trains when they wrap: a policy must be applied before."""
    module = model
    while True:
        names = [cls.__name__ for cls in type(module).__mro__]
        fixing = next((name for name in names if name in FIXING_WRAPPERS), None)
        if fixing is not None:
            raise PolicyUsageError(
                f"the model is already wrapped in {fixing}, which fixed {FIXING_WRAPPERS[fixing]} "
                "when it wrapped: apply the policy to the bare model, then wrap it",
            )
        attribute = next((WRAPPERS[n] for n in names if n in WRAPPERS), None)
        inner = getattr(module, "_modules", {}).get(attribute) if attribute else None
        if inner is None:
            return
        module = inner


def commit(plan: Plan) -> None:
    """Set the planned flags and eval pins; on any failure restore every one and re-raise."""
    tensors, flags = plan._tensors, plan.param_flags
    # A flag is a bool: each tensor to change had the opposite of what it gets.
    to_change = [index for index, tensor in enumerate(tensors) if tensor.requires_grad != flags[index]]
    attempted = 0  # counted before each change: one that fails half-way is undone too
    changed_modes = []  # (module, what restores it): only modules whose pin changes are touched
    try:
        for index in to_change:
            attempted += 1
            set_requires_grad(tensors[index], flags[index])
        modules, module_pins = plan._modules, plan.module_pins
        for module_id, decider in enumerate(plan.module_deciders):
            if decider >= 0 and pins.is_pinned(modules[module_id]) != module_pins[module_id]:
                changed_modes.append((modules[module_id], pins.snapshot(modules[module_id])))
                set_pinned(modules[module_id], module_pins[module_id])
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

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


def refuse_distributed(model: Any) -> None:
    """DDP fixes its gradient hooks when it wraps: a policy must be applied before."""
    module = model
    while True:
        names = [cls.__name__ for cls in type(module).__mro__]
        if "DistributedDataParallel" in names:
            raise PolicyUsageError(
                "the model is already wrapped in DistributedDataParallel, which fixed its "
                "gradient hooks when it wrapped: apply the policy to the bare model, then wrap it",
            )
        attribute = next((WRAPPERS[n] for n in names if n in WRAPPERS), None)
        inner = getattr(module, "_modules", {}).get(attribute) if attribute else None
        if inner is None:
            return
        module = inner


def commit(plan: Plan) -> None:
    """Set the planned flags and eval pins; on any failure restore every one and re-raise."""
    tensors, modules = plan._tensors, plan._modules
    previous_flags = [tensor.requires_grad for tensor in tensors]
    wanted_flags = map(plan.requires_grad.__getitem__, [info.name for info in plan.tree.params])
    changed_modes = []  # (module, what restores it): only modules whose pin changes are touched
    try:
        for tensor, wanted, before in zip(tensors, wanted_flags, previous_flags):
            if before != wanted:
                set_requires_grad(tensor, wanted)
        wanted_pins = map(plan.pinned.__getitem__, [info.name for info in plan.tree.modules])
        for module, wanted, pinned in zip(modules, wanted_pins, map(pins.is_pinned, modules)):
            if pinned != wanted:
                changed_modes.append((module, pins.snapshot(module)))
                set_pinned(module, wanted)
    except BaseException as exc:
        for tensor, flag in zip(tensors, previous_flags):
            if tensor.requires_grad != flag:
                tensor.requires_grad_(flag)
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

"""Applying a plan to a live model: the only stage that mutates, all-or-nothing."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from .errors import PolicyError, PolicyResolveError, PolicyUsageError, PolicyWarning
from .report import Report
from .resolver import Plan, coerce_policy, resolve
from .rules import Policy
from .tree import WRAPPERS


def apply(model: Any, policy: Policy | str | Path, *, epoch: int | None = None, step: int | None = None) -> Report:
    """Resolve ``policy`` on ``model`` and set every ``requires_grad`` it decides.

    All-or-nothing: on any error every flag is left as it was. Findings that do
    not stop the policy (a statement that selects nothing) are issued as
    ``PolicyWarning``. Returns the diff ``Report``.
    """
    refuse_distributed(model)
    policy = coerce_policy(policy)
    refuse_unsupported(policy)
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


def refuse_unsupported(policy: Policy) -> None:
    """Options, eval/train pins and schedules parse now; their effects come later."""
    for statement in policy.all_statements():
        feature = None
        if statement.verb in ("eval", "train"):
            feature = f"'{statement.verb}' (module mode pins)"
        elif statement.options is not None:
            feature = "'with' options"
        elif statement.stage is not None:
            feature = f"'at {policy.unit}' schedules"
        if feature:
            raise policy.source.error(
                PolicyResolveError,
                f"{feature} are not supported by apply() yet",
                statement.span.offset,
                statement.span.end_offset,
                help="resolve() already accepts them; apply() will in a later release",
            )


def commit(plan: Plan) -> None:
    """Set the planned flags; on any failure restore every flag and re-raise."""
    tensors = plan._tensors
    previous = [tensor.requires_grad for tensor in tensors]
    try:
        for tensor, info in zip(tensors, plan.tree.params):
            wanted = plan.requires_grad[info.name]
            if tensor.requires_grad != wanted:
                set_requires_grad(tensor, wanted)
    except BaseException as exc:
        for tensor, flag in zip(tensors, previous):
            if tensor.requires_grad != flag:
                tensor.requires_grad_(flag)
        if isinstance(exc, PolicyError) or not isinstance(exc, Exception):
            raise
        raise PolicyResolveError(f"applying the policy failed and every change was undone: {exc}") from exc


def set_requires_grad(tensor: Any, flag: bool) -> None:
    """The one place a flag changes (tests inject faults here)."""
    tensor.requires_grad_(flag)

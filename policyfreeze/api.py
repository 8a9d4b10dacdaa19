"""``apply``: the whole pipeline in one call (parse → resolve → commit → report)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from .engine.commit import commit
from .engine.resolve import coerce_policy, resolve
from .errors import PolicyWarning
from .language.policy import Policy
from .model.walk import refuse_distributed
from .report.report import Report


def apply(
    model: Any,
    policy: Policy | str | Path,
    *,
    epoch: int | None = None,
    step: int | None = None,
    phase: int | None = None,
) -> Report:
    """Resolve ``policy`` on ``model`` and set every ``requires_grad`` and eval pin it decides.

    All-or-nothing: on any error every flag and pin is left as it was. Findings that do
    not stop the policy (a statement that selects nothing) are issued as
    ``PolicyWarning``. Returns the diff ``Report``.
    """
    refuse_distributed(model)
    policy = coerce_policy(policy)
    plan = resolve(model, policy, epoch=epoch, step=step, phase=phase)
    for finding in plan.warnings:
        warnings.warn(PolicyWarning(str(finding)), stacklevel=2)
    commit(plan)
    return Report(plan, applied=True)

"""policyfreeze: version-controlled freeze policies for PyTorch fine-tuning.

import policyfreeze
plan = policyfreeze.resolve(model, Path("policies/resnet18-linear-probe.freeze"))
report = policyfreeze.apply(model, "freeze all; unfreeze fc")
print(report)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import (
    PolicyError,
    PolicyResolveError,
    PolicySyntaxError,
    PolicyUsageError,
    PolicyValidationError,
    PolicyWarning,
)

__version__ = "0.1.0"

# The rest of the API loads on first use (PEP 562): `policyfreeze lint`
# starts without importing the resolver, the training helpers or the report.
_LAZY = {
    "apply": "api",
    "Freezer": "training.freezer",
    "StageChange": "training.freezer",
    "check_optimizer": "training.optimizer",
    "load": "language.parser",
    "parse": "language.parser",
    "Report": "report.report",
    "Decision": "engine.resolve",
    "Plan": "engine.resolve",
    "resolve": "engine.resolve",
    "Policy": "language.policy",
}

if TYPE_CHECKING:
    from .api import apply
    from .engine.resolve import Decision, Plan, resolve
    from .language.parser import load, parse
    from .language.policy import Policy
    from .report.report import Report
    from .training.freezer import Freezer, StageChange
    from .training.optimizer import check_optimizer


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'policyfreeze' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Decision",
    "Freezer",
    "Plan",
    "Policy",
    "PolicyError",
    "PolicyResolveError",
    "PolicySyntaxError",
    "PolicyUsageError",
    "PolicyValidationError",
    "PolicyWarning",
    "Report",
    "StageChange",
    "apply",
    "check_optimizer",
    "load",
    "parse",
    "resolve",
]

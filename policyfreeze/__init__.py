"""policyfreeze: version-controlled freeze policies for PyTorch fine-tuning.

    import policyfreeze
    plan = policyfreeze.resolve(model, Path("policies/resnet18-linear-probe.freeze"))
    report = policyfreeze.apply(model, "freeze all; unfreeze fc")
    print(report)
"""

from .applier import apply
from .errors import (
    PolicyError,
    PolicyResolveError,
    PolicySyntaxError,
    PolicyUsageError,
    PolicyValidationError,
    PolicyWarning,
)
from .freezer import Freezer, StageChange
from .optim import check_optimizer
from .parser import load, parse
from .report import Report
from .resolver import Decision, Plan, resolve
from .rules import Policy

__version__ = "0.1.0"

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

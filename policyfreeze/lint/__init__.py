"""Policy linting: findings with stable codes, for the command line and CI.

Imports ``errors``, ``language`` and the ``report`` presentation helpers; ``engine`` and
``model`` only when a model tree is given (lint without a model never loads them, nor torch).
"""

from .codes import RULES, Rule, Severity
from .linter import Finding, filter_codes, lint

__all__ = ["RULES", "Finding", "Rule", "Severity", "filter_codes", "lint"]

"""Policy linting: findings with stable codes (spec §7), for the command line and CI."""

from .codes import RULES, Rule, Severity
from .linter import Finding, filter_codes, lint

__all__ = ["RULES", "Finding", "Rule", "Severity", "filter_codes", "lint"]

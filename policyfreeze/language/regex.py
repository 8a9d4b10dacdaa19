"""Regular expressions of ``match /REGEX/``: RE2, so matching runs in linear time."""

from __future__ import annotations

import functools
from typing import Any

import re2

HELP = (
    "regexes use RE2 syntax, which always runs in linear time: "
    "no backreferences or lookaround; write '\\/' for a literal slash"
)


def options() -> Any:
    """RE2 options that keep RE2 from printing to stderr (errors are reported as findings)."""
    result = re2.Options()
    result.log_errors = False
    return result


def problem(pattern: str) -> str | None:
    """Why RE2 rejects ``pattern``, or None when it compiles."""
    try:
        re2.compile(pattern, options())
    except re2.error as exc:
        detail = exc.args[0] if exc.args else "cannot compile"
        return detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    return None


@functools.lru_cache(maxsize=1024)
def compile(pattern: str, ignore_case: bool) -> Any:
    """The compiled regex of ``match /pattern/`` (with ``i``: ignoring case)."""
    return re2.compile(("(?i)" if ignore_case else "") + pattern, options())

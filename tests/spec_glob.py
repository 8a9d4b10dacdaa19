"""Spec §3's glob rule read literally, as the reference the compiled globs are checked against."""

import fnmatch
import functools


def spec_glob_matches(pattern: str, name: str) -> bool:
    """A ``*``/``**`` segment spans zero or more whole segments; any other segment is fnmatch."""
    wanted = pattern.split(".")
    segments = name.split(".") if name else []

    @functools.cache
    def match(p: int, n: int) -> bool:
        if p == len(wanted):
            return n == len(segments)
        if wanted[p] in ("*", "**"):
            return match(p + 1, n) or (n < len(segments) and match(p, n + 1))
        return n < len(segments) and fnmatch.fnmatchcase(segments[n], wanted[p]) and match(p + 1, n + 1)

    return match(0, 0)

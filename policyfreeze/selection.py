"""Selectors → sets of tree nodes (spec §3).

A set of nodes is a sorted list of disjoint, non-adjacent half-open index
intervals over ``ModelTree``'s pre-order. An atomic selector's matches are
closed downward (each match brings its whole subtree, which is one interval),
then set operators combine intervals without ever listing nodes one by one.
"""

from __future__ import annotations

import fnmatch
import functools
import itertools
import re
from collections.abc import Iterator

import re2

from .parser import regex_options
from .rules import (
    AllSelector,
    ChildrenSelector,
    DifferenceSelector,
    GlobSelector,
    IntersectionSelector,
    RegexSelector,
    TypeSelector,
    UnionSelector,
)
from .tree import ModelTree

Intervals = list[tuple[int, int]]


def select(tree: ModelTree, selector) -> Intervals:
    """The nodes ``selector`` denotes in ``tree``."""
    if isinstance(selector, UnionSelector):
        result: Intervals = []
        for item in selector.items:
            result = union(result, select(tree, item))
        return result
    if isinstance(selector, IntersectionSelector):
        result = select(tree, selector.items[0])
        for item in selector.items[1:]:
            if not result:
                break
            result = intersection(result, select(tree, item))
        return result
    if isinstance(selector, DifferenceSelector):
        left = select(tree, selector.left)
        return difference(left, select(tree, selector.right)) if left else left
    return closure(tree, matches(tree, selector))


def matches(tree: ModelTree, selector) -> list[int]:
    """Nodes an atomic selector matches directly, ascending."""
    if isinstance(selector, AllSelector):
        return [0] if len(tree) else []
    if isinstance(selector, GlobSelector):
        return _first_matches(tree.dotted_names, glob_regex(selector.pattern).fullmatch, tree.ends)
    if isinstance(selector, RegexSelector):
        return _first_matches(tree.names, compile_regex(selector.pattern, selector.ignore_case).search, tree.ends)
    if isinstance(selector, TypeSelector):
        return _match_types(tree, selector.pattern)
    if isinstance(selector, ChildrenSelector):
        return _match_children(tree, selector)
    raise TypeError(f"not an atomic selector: {selector!r}")


def _first_matches(names: list[str], test, ends: list[int]) -> list[int]:
    # A matched node brings its subtree anyway: skip testing below it.
    found: list[int] = []
    node, count = 0, len(names)
    while node < count:
        if test(names[node]):
            found.append(node)
            node = ends[node]
        else:
            node += 1
    return found


def _match_types(tree: ModelTree, pattern: str) -> list[int]:
    by_class: dict[tuple[str, ...], bool] = {}
    found: list[int] = []
    for node, (name, is_param) in enumerate(zip(tree.names, tree.is_param)):
        if is_param:
            continue
        classes = tree.modules[tree.ids[node]].classes
        hit = by_class.get(classes)
        if hit is None:
            hit = by_class[classes] = any(fnmatch.fnmatchcase(c, pattern) for c in classes)
        if hit:
            found.append(node)
    return found


def _match_children(tree: ModelTree, selector: ChildrenSelector) -> list[int]:
    if selector.parent is None:
        parents = [0] if len(tree) else []
    else:
        test = glob_regex(selector.parent.pattern).fullmatch
        # Every matching module, even one below another match: each has its own children.
        parents = [n for n, name in enumerate(tree.dotted_names) if not tree.is_param[n] and test(name)]
    picked = {child for parent in parents for child in selector.slice.pick(tree.children[parent])}
    return sorted(picked)


def closure(tree: ModelTree, nodes: list[int]) -> Intervals:
    """Close ascending ``nodes`` downward: the union of their subtrees."""
    out: Intervals = []
    ends = tree.ends
    for node in nodes:
        if out and node < out[-1][1]:
            continue  # inside a subtree already taken
        out.append((node, ends[node]))
    return _coalesce(out)


def _coalesce(intervals: Intervals) -> Intervals:
    out: Intervals = []
    for start, end in intervals:
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def union(a: Intervals, b: Intervals) -> Intervals:
    if not a:
        return b
    if not b:
        return a
    return _coalesce(sorted(a + b))


def intersection(a: Intervals, b: Intervals) -> Intervals:
    out: Intervals = []
    i = j = 0
    while i < len(a) and j < len(b):
        start = max(a[i][0], b[j][0])
        end = min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def difference(a: Intervals, b: Intervals) -> Intervals:
    out: Intervals = []
    j = 0
    for start, end in a:
        while j < len(b) and b[j][1] <= start:
            j += 1
        k = j
        while k < len(b) and b[k][0] < end:
            if b[k][0] > start:
                out.append((start, b[k][0]))
            start = max(start, b[k][1])
            k += 1
        if start < end:
            out.append((start, end))
    return out


@functools.lru_cache(maxsize=1024)
def glob_regex(pattern: str) -> re.Pattern:
    """Compile a dotted-name glob to a regex over ``ModelTree.dotted_names``.

    A segment that is exactly ``*`` or ``**`` spans zero or more whole segments;
    any other segment is an fnmatch pattern confined to one segment.

    Matching takes polynomial time whatever the glob: a run of fixed pieces
    between two wildcards is matched at its leftmost place and never
    revisited (an atomic group, as ``fnmatch.translate`` does), so ``re``
    cannot backtrack through every way to split a name among the wildcards.
    """
    groups = itertools.count()
    items: list[str | None] = []  # None: a wildcard segment; str: one segment's regex
    for segment in pattern.split("."):
        if segment not in ("*", "**"):
            items.append(r"\." + _segment_regex(segment, groups))
        elif not items or items[-1] is not None:
            items.append(None)  # consecutive wildcard segments mean the same
    parts: list[str] = []
    i = 0
    while i < len(items):
        if items[i] is not None:
            parts.append(items[i])
            i += 1
            continue
        run_end = i + 1
        while run_end < len(items) and items[run_end] is not None:
            run_end += 1
        run = "".join(items[i + 1 : run_end])
        if run and run_end < len(items):
            # A run between two wildcards: its leftmost place is as good as any.
            parts.append(_atomic(_ANY_SEGMENTS_LAZY + run + _SEGMENT_END, groups))
        else:
            parts.append(_ANY_SEGMENTS + run)
        i = run_end
    return re.compile("".join(parts), re.DOTALL)


_ANY_SEGMENTS = r"(?:\.[^.]*)*"
_ANY_SEGMENTS_LAZY = r"(?:\.[^.]*)*?"
_SEGMENT_END = r"(?![^.])"


def _atomic(regex: str, groups: Iterator[int]) -> str:
    # An atomic group that also works before Python 3.11: a lookahead never backtracks.
    name = f"g{next(groups)}"
    return f"(?=(?P<{name}>{regex}))(?P={name})"


def _segment_regex(segment: str, groups: Iterator[int]) -> str:
    """One segment's fnmatch pattern: ``*`` and ``?`` never match '.'."""
    pieces: list[str] = [""]  # the fixed-width pieces between the stars
    i, n = 0, len(segment)
    while i < n:
        ch = segment[i]
        i += 1
        if ch == "*":
            if pieces[-1] or len(pieces) == 1:
                pieces.append("")
        elif ch == "?":
            pieces[-1] += "[^.]"
        elif ch == "[":
            # Where fnmatch ends a class: ']' right after '[' or '[!' is a member.
            j = i + (segment[i : i + 1] == "!")
            j += segment[j : j + 1] == "]"
            close = segment.find("]", j)
            if close < 0:
                pieces[-1] += r"\["
            else:
                pieces[-1] += _class_regex(segment[i:close])
                i = close + 1
        else:
            pieces[-1] += re.escape(ch)
    if len(pieces) == 1:
        return pieces[0]
    first, *middle, last = pieces
    # Each middle piece at its leftmost place: correct because pieces are fixed-width.
    return first + "".join(_atomic(f"[^.]*?{piece}", groups) for piece in middle if piece) + f"[^.]*{last}"


def _class_regex(body: str) -> str:
    """An fnmatch ``[...]`` class as a regex that never matches '.' (empty ranges dropped, as fnmatch does)."""
    negate = body.startswith("!")
    body = body[1:] if negate else body
    members: list[str] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = body[i], body[i + 2]
            if low <= high:
                members.append(f"{re.escape(low)}-{re.escape(high)}")
            i += 3
        else:
            members.append(re.escape(body[i]))
            i += 1
    if not members:
        return "[^.]" if negate else "(?!)"
    return ("[^." if negate else "[") + "".join(members) + "]"


@functools.lru_cache(maxsize=1024)
def compile_regex(pattern: str, ignore_case: bool):
    """An RE2 regex: linear time, so no policy can make matching hang."""
    return re2.compile(("(?i)" if ignore_case else "") + pattern, regex_options())


"""Selectors → sets of tree nodes (docs/language.md, "Selectors").

A set of nodes is a sorted list of disjoint, non-adjacent half-open index
intervals over ``ModelTree``'s pre-order. An atomic selector's matches are
closed downward (each match brings its whole subtree, which is one interval),
then set operators combine intervals without ever listing nodes one by one.
"""

from __future__ import annotations

import bisect
import fnmatch
import functools
import heapq
import itertools
import operator
import re
from collections.abc import Iterable

import re2

from ..language import regex
from ..language.glob import fixed_last_segment, glob_regex, glob_scanner, has_wildcard
from ..language.policy import (
    AllSelector,
    ChildrenSelector,
    DifferenceSelector,
    GlobSelector,
    IntersectionSelector,
    RegexSelector,
    TypeSelector,
    UnionSelector,
)
from ..model.tree import ModelTree, NameLines

Intervals = list[tuple[int, int]]


def select(tree: ModelTree, selector, within: Intervals | None = None) -> Intervals:
    """The nodes ``selector`` denotes in ``tree``.

    With ``within``, only the part inside those nodes counts: the result may
    hold more, but inside ``within`` it is exact. ``a except b`` and ``a & b``
    look for ``b`` inside ``a`` only, so ``blocks.31 except *.mlp.*`` tests
    the names of one block, not every name of the model.
    """
    if isinstance(selector, UnionSelector):
        result: Intervals = []
        for item in selector.items:
            result = union(result, select(tree, item, within))
        return result
    if isinstance(selector, IntersectionSelector):
        result = select(tree, selector.items[0], within)
        for item in selector.items[1:]:
            if not result:
                break
            result = intersection(result, select(tree, item, result))
        return result
    if isinstance(selector, DifferenceSelector):
        left = select(tree, selector.left, within)
        return difference(left, select(tree, selector.right, left)) if left else left
    if within is not None and _narrow(tree, selector, within):
        return closure(tree, _matches_within(tree, selector, within))
    return closure(tree, matches(tree, selector))


#: ``within`` is narrow when it covers at most this share of the nodes.
_NARROW_SHARE = 8


def _narrow(tree: ModelTree, selector, within: Intervals) -> bool:
    """Whether testing the names in and above ``within`` one by one beats matching ``selector`` everywhere."""
    if not isinstance(selector, GlobSelector | RegexSelector) or _atom_key(selector) in tree.match_memo:
        return False
    if isinstance(selector, GlobSelector) and not has_wildcard(selector.pattern):
        return False  # a plain name is found by descent, which costs less still
    return sum(end - start for start, end in within) * _NARROW_SHARE <= len(tree)


def _matches_within(tree: ModelTree, selector, within: Intervals) -> list[int]:
    """The nodes a glob or regex matches among those in ``within`` and their ancestors, ascending.

    Only these can put a node of ``within`` in the selection: a node is
    selected through a match at itself or above it, and every node above a
    node of an interval is above the interval's first node.
    """
    inside = itertools.chain.from_iterable(itertools.starmap(range, within))
    nodes = sorted(_ancestors(tree, [start for start, _ in within]).union(inside))
    names = map(tree.names.__getitem__, nodes)
    if isinstance(selector, GlobSelector):
        test = glob_regex(selector.pattern).fullmatch
        names = map(_dotted, names)
    else:
        test = regex.compile(selector.pattern, selector.ignore_case).search
    return list(itertools.compress(nodes, map(test, names)))


def _dotted(name: str) -> str:
    return "." + name if name else ""


def _ancestors(tree: ModelTree, starts: list[int]) -> set[int]:
    """The nodes whose subtree holds one of the ascending ``starts`` (the starts themselves left out).

    One descent for all of them: a subtree is contiguous in pre-order, so the
    child of a node that holds a start is the last child to begin before it,
    and a later start lies in that child or in a later sibling. Each node is
    passed over at most once, however many starts there are.
    """
    ends, found = tree.ends, set()
    path = [0]
    next_child: dict[int, int] = {}  # per node on the path: the first child a later start can lie in
    for start in starts:
        while ends[path[-1]] <= start:
            path.pop()
        node = path[-1]
        while node != start:
            child = next_child.get(node, node + 1)
            while ends[child] <= start:
                child = ends[child]
            next_child[node] = child
            path.append(child)
            node = child
        found.update(path[:-1])
    return found


def matches(tree: ModelTree, selector) -> list[int]:
    """Nodes an atomic selector matches directly, ascending (a list shared with later callers: not to change).

    An atom written again (the same pattern in another statement, or a
    policy that repeats one statement thousands of times) is looked up, not
    matched again: a file's cost grows with its distinct patterns.
    """
    key = _atom_key(selector)
    memo = tree.match_memo
    found = memo.get(key)
    if found is None:
        if len(memo) >= MEMO_ATOMS:  # distinct atoms without end: keep memory bounded, start over
            memo.clear()
        found = memo[key] = find_matches(tree, selector)
    return found


#: Distinct atomic selectors whose matches a tree keeps.
MEMO_ATOMS = 256


def _atom_key(selector) -> tuple:
    """What an atom's matches depend on: not where it is written."""
    if isinstance(selector, GlobSelector | TypeSelector):
        return (selector.kind, selector.pattern)
    if isinstance(selector, RegexSelector):
        return (selector.kind, selector.pattern, selector.ignore_case)
    if isinstance(selector, ChildrenSelector):
        parent = None if selector.parent is None else selector.parent.pattern
        bounds = tuple((item.start, item.stop, item.step, item.is_index) for item in selector.slices)
        return (selector.kind, parent, bounds)
    return (type(selector).__name__,)


def find_matches(tree: ModelTree, selector) -> list[int]:
    """``matches`` found anew: what a benchmark of matching times."""
    if isinstance(selector, AllSelector):
        return [0] if len(tree) else []
    if isinstance(selector, GlobSelector):
        return _glob_matches(tree, selector.pattern, below_matches=False)
    if isinstance(selector, RegexSelector):
        scanner = _regex_scanner(selector.pattern, selector.ignore_case)
        search = regex.compile(selector.pattern, selector.ignore_case).search
        return _name_matches(tree.names, tree.name_lines, scanner, search, tree.ends)
    if isinstance(selector, TypeSelector):
        return _match_types(tree, selector.pattern)
    if isinstance(selector, ChildrenSelector):
        return _match_children(tree, selector)
    raise TypeError(f"not an atomic selector: {selector!r}")


def _glob_matches(tree: ModelTree, pattern: str, *, below_matches: bool) -> list[int]:
    """Nodes whose dotted name ``pattern`` matches; nodes below a match only if ``below_matches``."""
    if not has_wildcard(pattern):
        return tree.nodes_named(pattern)  # a plain name: no scan of every name
    ends = None if below_matches else tree.ends
    last = fixed_last_segment(pattern)
    if last is not None:
        return _candidate_matches(tree, tree.nodes_ending_in(last), glob_regex(pattern).fullmatch, ends)
    return _name_matches(
        tree.dotted_names, tree.dotted_name_lines, glob_scanner(pattern), glob_regex(pattern).fullmatch, ends
    )


def _candidate_matches(tree: ModelTree, candidates: list[int], test, ends: list[int] | None) -> list[int]:
    """The ``candidates`` (ascending) whose dotted name passes ``test``; with ``ends``, none inside a found one.

    A scan would find the same nodes, at a cost per match that dwarfs one
    ``test`` of a name known to end right; the tests run in C (``map``).
    """
    names = tree.names
    dotted = map(operator.add, itertools.repeat("."), map(names.__getitem__, candidates))
    found = list(itertools.compress(candidates, map(test, dotted)))
    return found if ends is None else outermost(found, ends)


def outermost(nodes: list[int], ends: list[int]) -> list[int]:
    """The ascending ``nodes`` that are not inside the subtree of an earlier one, in C (``accumulate``)."""
    if len(nodes) < 2:
        return nodes
    stops = list(map(ends.__getitem__, nodes))
    # A node is inside an earlier one's subtree when it comes before the furthest end so far.
    reach = itertools.accumulate(stops, max)
    keep = itertools.chain((True,), map(operator.ge, itertools.islice(nodes, 1, None), reach))
    return list(itertools.compress(nodes, keep))


def _name_matches(names: list[str], lines: NameLines, scanner, test, ends: list[int] | None) -> list[int]:
    """Nodes whose name passes ``test``, ascending; with ``ends``, none inside a found node's subtree.

    ``scanner``, when there is one, finds the same lines in one pass over
    ``lines`` (a regex run per name costs a call per name).
    """
    if scanner is None or not lines.exact:
        return _name_matches_one_by_one(names, test, ends)
    return _scan(lines, scanner, lambda node: test(names[node]) is not None, ends)


def _name_matches_one_by_one(names: list[str], test, ends: list[int] | None) -> list[int]:
    found: list[int] = []
    node, count = 0, len(names)
    while node < count:
        if test(names[node]):
            found.append(node)
            # A matched node brings its subtree anyway: skip testing below it.
            node = ends[node] if ends is not None else node + 1
        else:
            node += 1
    return found


#: Below this many nodes a found subtree is skipped by ignoring its matches; above, by a new scan.
_RESCAN_SPAN = 64


def _scan(lines: NameLines, scanner, test, ends: list[int] | None) -> list[int]:
    """``_name_matches`` by scanning the joined names.

    ``scanner`` matches at most once per line. A match that stays on its line
    is a match of that name (the line is the name, ``^``/``$`` are line
    anchors); one that runs past its line's end proves nothing, so ``test``
    decides that name alone and the scan starts again on the next line: no
    name is missed, and none is taken on a match that is not its own.
    """
    text, starts = lines.text, lines.starts
    count = len(starts) - 1
    found: list[int] = []
    resume = 0  # every node before this one is decided
    while resume < count:
        for match in scanner.finditer(text, starts[resume]):
            start, end = match.span()
            node = bisect.bisect_right(starts, start, resume) - 1
            if node < resume:  # inside a found subtree
                if end > starts[resume]:
                    break  # it ran on into lines still to decide: scan them again
                continue
            if end >= starts[node + 1]:
                if test(node):
                    found.append(node)
                    resume = ends[node] if ends is not None else node + 1
                else:
                    resume = node + 1
                break
            found.append(node)
            resume = ends[node] if ends is not None else node + 1
            if resume - node > _RESCAN_SPAN:
                break
        else:
            return found
    return found


def _match_types(tree: ModelTree, pattern: str) -> list[int]:
    """Module nodes with a class that ``pattern`` matches: each distinct list of classes tested once."""
    classes = tree.module_classes
    wanted = {names for names in set(classes) if any(fnmatch.fnmatchcase(name, pattern) for name in names)}
    if not wanted:
        return []
    slot_ids = tree.module_slot_ids
    per_node = classes if slot_ids is None else map(classes.__getitem__, slot_ids)
    return list(itertools.compress(tree.module_nodes, map(wanted.__contains__, per_node)))


def _match_children(tree: ModelTree, selector: ChildrenSelector) -> list[int]:
    picked = {child for parent in children_parents(tree, selector) for child in selector.pick(tree.children_of(parent))}
    return sorted(picked)


def children_parents(tree: ModelTree, selector: ChildrenSelector) -> list[int]:
    """The module nodes whose children ``selector`` indexes: the root, or every module its glob matches."""
    if selector.parent is None:
        return [0] if len(tree) else []
    # Every matching module, even one below another match: each has its own children.
    matched = _glob_matches(tree, selector.parent.pattern, below_matches=True)
    modules = tree.module_nodes

    def is_module(node: int) -> bool:  # a lookup in the sorted module nodes: no per-node table built for a few
        at = bisect.bisect_left(modules, node)
        return at < len(modules) and modules[at] == node

    return list(filter(is_module, matched))


def closure(tree: ModelTree, nodes: list[int]) -> Intervals:
    """Close ascending ``nodes`` downward: the union of their subtrees, adjacent ones joined.

    In C (``map``, ``compress``): a policy's atoms match tens of thousands of
    nodes in a large model, and a loop per node cost more than the scans.
    """
    if not nodes:
        return []
    ends = tree.ends
    starts = outermost(nodes, ends)
    stops = list(map(ends.__getitem__, starts))
    # A subtree that starts where the one before it stops continues its interval.
    opens = list(itertools.chain((True,), map(operator.ne, itertools.islice(starts, 1, None), stops)))
    closes = itertools.chain(itertools.islice(opens, 1, None), (True,))
    return list(zip(itertools.compress(starts, opens), itertools.compress(stops, closes)))


def _coalesce(intervals: Iterable[tuple[int, int]]) -> Intervals:
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
    return _coalesce(heapq.merge(a, b))


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


#: RE2 syntax that anchors to the whole text rather than a line: such a regex is run per name.
_TEXT_ANCHORED = re.compile(r"\\[Az]|\(\?[A-Za-z]*-[A-Za-z]*m")


@functools.lru_cache(maxsize=1024)
def _regex_scanner(pattern: str, ignore_case: bool):
    """``match /pattern/`` as one RE2 regex over ``NameLines``, or None when it must run per name.

    ``^``/``$`` become line anchors, and the rest of the line is consumed so a
    line matches once.
    """
    if _TEXT_ANCHORED.search(pattern):
        return None
    flags = "(?m)(?i)" if ignore_case else "(?m)"
    options = regex.options()
    options.never_capture = True  # a scan needs where a match is, never its groups (which cost a slower engine)
    try:
        return re2.compile(flags + "(?:" + pattern + r")[^\n]*", options)
    except re2.error:
        return None

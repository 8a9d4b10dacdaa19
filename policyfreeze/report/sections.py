"""What trains, what is frozen, what is pinned: a plan's parameters and modules in a few rows.

Each parameter tensor has a *key*: its state after the plan, its state before
and the statement that decided it. A subtree whose tensors all share a key is
one row (``layer1 … layer4 (4 × Sequential)`` when alike siblings share it
too); a subtree with several keys is split into its children. Every tensor is
in exactly one row. A key with more rows than the room allows is summarised
by class (``20 × BatchNorm2d``, ``21 × Linear.bias``), and what still does not
fit is one ``… and N more`` row that counts the rest: nothing is dropped.

Eval pins work the same way on modules, keyed by pinned after, pinned before
and the deciding ``eval``/``train`` statement; modules no statement reached
and that are not pinned are not listed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from .present import FROZEN, TRAINABLE

if TYPE_CHECKING:
    from ..engine.resolve import Decision, Plan
    from ..model.tree import ModelTree

#: a group lists at most this many subtrees before it is summarised by class
MOST_ROWS_PER_KEY = 8
_MIXED: tuple = ("several keys",)  # a subtree holding several keys (compared by identity)


@dataclass(frozen=True)
class Row:
    """Parameters (or modules) sharing a key: one subtree, a run of alike siblings, or a summary.

    ``label`` names what the row holds; ``names`` lists the subtrees a summary row
    stands for (empty for a subtree or a run, whose label says it all).
    ``count`` is tensors (modules, in the pins section), ``numel`` elements.
    """

    label: str
    names: tuple[str, ...]
    count: int
    numel: int
    before: bool
    after: bool
    decision: Decision | None


@dataclass(frozen=True)
class Section:
    """One part of the report: ``trainable``, ``frozen`` or ``eval pins``."""

    title: str
    count: int  # distinct tensors (modules, for pins)
    numel: int  # distinct elements
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Item:
    """A subtree, or a run of alike sibling subtrees, whose parameters (modules) share ``key``."""

    nodes: tuple[int, ...]
    key: tuple
    itself: bool = False  # only the module, not its subtree (a module pinned unlike its children)


def sections(plan: Plan, budget: int) -> tuple[Section, ...]:
    """The trainable, frozen and (when any module is pinned or decided) eval pins sections.

    ``budget`` is the most rows they may take together; each key keeps at
    least one row, so a plan with more keys than ``budget`` takes one row each.
    """
    params = _param_groups(plan)
    pins = _pin_groups(plan)
    limit = MOST_ROWS_PER_KEY
    while True:
        built = _build(plan, params, pins, limit)
        if limit == 1 or sum(len(s.rows) for s in built) <= budget:
            return built
        limit -= 1


def _build(plan: Plan, params: dict, pins: dict, limit: int) -> tuple[Section, ...]:
    tree = plan.tree
    counter = _Counter(tree)
    flags = plan.param_flags
    trainable_ids = [i for i, flag in enumerate(flags) if flag]
    frozen_ids = [i for i, flag in enumerate(flags) if not flag]
    out = []
    for title, ids, after in ((TRAINABLE, trainable_ids, True), (FROZEN, frozen_ids, False)):
        rows: list[Row] = []
        for key, items in params.items():
            if key[0] == after:
                rows += _rows(plan, counter, key, items, limit, pins=False)
        numel = sum(tree.params[i].numel for i in ids)
        out.append(Section(title, len(ids), numel, tuple(rows)))
    if pins:
        rows = []
        for key, items in pins.items():
            rows += _rows(plan, counter, key, items, limit, pins=True)
        listed = {
            tree.ids[n] for item in (i for items in pins.values() for i in items) for n in _module_nodes(tree, item)
        }
        out.append(Section("eval pins", len(listed), 0, tuple(rows)))
    return tuple(out)


# --- grouping -------------------------------------------------------------------------


def _param_groups(plan: Plan) -> dict[tuple, list[Item]]:
    tree = plan.tree
    keys = list(zip(plan.param_flags, plan.start_flags, plan.param_deciders))
    own: list[tuple | None] = [None] * len(tree)
    for node in tree.param_nodes:
        own[node] = keys[tree.ids[node]]
    return _group(cover(tree, own))


def _pin_groups(plan: Plan) -> dict[tuple, list[Item]]:
    tree = plan.tree
    keys = list(zip(plan.module_pins, plan.start_pins, plan.module_deciders))
    own: list[tuple | None] = [None] * len(tree)
    for node in tree.module_nodes:
        own[node] = keys[tree.ids[node]]
    quiet = (False, False, -1)  # not pinned, never was, no statement: not listed
    return {key: items for key, items in _group(cover(tree, own)).items() if key != quiet}


def _group(items: list[Item]) -> dict[tuple, list[Item]]:
    groups: dict[tuple, list[Item]] = {}
    for item in items:
        groups.setdefault(item.key, []).append(item)
    return groups


def cover(tree: ModelTree, own: Sequence[tuple | None]) -> list[Item]:
    """The fewest subtrees (and runs of alike siblings) whose nodes share a key, in tree order.

    ``own[node]`` is the node's own key (None: it has none). A subtree is
    uniform when every key in it is the same; runs of two or more uniform
    sibling modules of one class with the same key are one item.
    """
    if not len(tree):
        return []
    ends, is_param = tree.ends, tree.is_param
    uniform: list[tuple | None] = [None] * len(tree)
    for node in reversed(range(len(tree))):  # children before parents
        key = own[node]
        child, end = node + 1, ends[node]
        while child < end and key is not _MIXED:
            below = uniform[child]
            if below is not None:
                key = below if key is None or key == below else _MIXED
            child = ends[child]
        uniform[node] = key
    if uniform[0] is None:
        return []
    if uniform[0] is not _MIXED:
        return [Item((0,), uniform[0])]
    classes = tree.module_classes
    ids = tree.ids

    def run_item(run: list[int]) -> Item:
        return Item(tuple(run), cast(tuple, uniform[run[0]]))

    def kind(node: int) -> tuple[str, ...] | None:
        return None if is_param[node] else classes[ids[node]][:1]

    items: list[Item] = []
    # pending: nodes to expand (mixed) or items to emit, in reverse order
    pending: list[int | Item] = [0]
    while pending:
        entry = pending.pop()
        if isinstance(entry, Item):
            items.append(entry)
            continue
        node = entry
        later: list[int | Item] = []
        if own[node] is not None:
            later.append(Item((node,), cast(tuple, own[node]), itself=True))
        run: list[int] = []
        child, end = node + 1, ends[node]
        children = []
        while child < end:
            if uniform[child] is not None:
                children.append(child)
            child = ends[child]
        for child in children:
            key = uniform[child]
            if key is _MIXED:
                if run:
                    later.append(run_item(run))
                    run = []
                later.append(child)
            elif run and uniform[run[0]] == key and kind(child) is not None and kind(run[0]) == kind(child):
                run.append(child)
            else:
                if run:
                    later.append(run_item(run))
                run = [child]
        if run:
            later.append(run_item(run))
        pending.extend(reversed(later))
    return items


# --- rows -----------------------------------------------------------------------------


class _Counter:
    """Tensors, elements and modules of a subtree in one subtraction (prefix sums over nodes)."""

    def __init__(self, tree: ModelTree) -> None:
        self.tree = tree
        tensors, numel, modules = [0], [0], [0]
        params = tree.params
        for node, is_param in enumerate(tree.is_param):
            tensors.append(tensors[-1] + is_param)
            numel.append(numel[-1] + (params[tree.ids[node]].numel if is_param else 0))
            modules.append(modules[-1] + (not is_param))
        self._tensors, self._numel, self._modules = tensors, numel, modules

    def params(self, item: Item) -> tuple[int, int]:
        """Tensors and elements below the item's nodes (a tensor with two names there counts twice)."""
        ends = self.tree.ends
        tensors = sum(self._tensors[ends[n]] - self._tensors[n] for n in item.nodes)
        numel = sum(self._numel[ends[n]] - self._numel[n] for n in item.nodes)
        return tensors, numel

    def modules(self, item: Item) -> int:
        if item.itself:
            return 1
        ends = self.tree.ends
        return sum(self._modules[ends[n]] - self._modules[n] for n in item.nodes)


def _module_nodes(tree: ModelTree, item: Item) -> list[int]:
    if item.itself:
        return list(item.nodes)
    return [m for n in item.nodes for m in range(n, tree.ends[n]) if not tree.is_param[m]]


def _rows(plan: Plan, counter: _Counter, key: tuple, items: list[Item], limit: int, *, pins: bool) -> list[Row]:
    after: bool = key[0]
    before: bool = key[1]
    decider: int = key[2]
    decision = plan.statement_decisions[decider] if decider >= 0 else None

    def size(members: list[Item]) -> int:
        return sum(counter.modules(i) if pins else counter.params(i)[1] for i in members)

    rows = []
    for label, names, members in summarise(plan.tree, items, limit, size):
        if pins:
            rows.append(Row(label, names, sum(counter.modules(i) for i in members), 0, before, after, decision))
        else:
            counts = [counter.params(i) for i in members]
            rows.append(
                Row(label, names, sum(c for c, _ in counts), sum(n for _, n in counts), before, after, decision)
            )
    return rows


def summarise(
    tree: ModelTree, items: list[Item], limit: int, size: Callable[[list[Item]], int]
) -> list[tuple[str, tuple[str, ...], list[Item]]]:
    """At most ``limit`` (label, names, items) rows for items that share a key.

    Up to ``limit`` items: one row each. More: one row per class (``20 ×
    BatchNorm2d``) or parameter name in a class (``20 × BatchNorm2d.bias``),
    naming the subtrees it holds; more classes than ``limit``: the largest
    by ``size`` and one ``… and N more`` row for the rest.
    """
    if len(items) <= limit:
        return [(label_of(tree, item), (), [item]) for item in items]
    buckets: dict[tuple, list[Item]] = {}
    for item in items:
        buckets.setdefault(_bucket(tree, item), []).append(item)
    chosen = list(buckets)
    if len(chosen) > limit:
        order = {bucket: index for index, bucket in enumerate(chosen)}
        kept = set(heapq.nlargest(limit - 1, chosen, key=lambda b: (size(buckets[b]), -order[b])))
        chosen = [b for b in chosen if b in kept]
    rows: list[tuple[str, tuple[str, ...], list[Item]]] = []
    for bucket in chosen:
        members = buckets[bucket]
        if len(members) == 1 and len(members[0].nodes) == 1:
            rows.append((label_of(tree, members[0]), (), members))
        else:
            rows.append((_bucket_label(bucket, members), _names(tree, members), members))
    rest = [b for b in buckets if b not in set(chosen)]
    if rest:
        members = [item for b in rest for item in buckets[b]]
        classes = tuple(dict.fromkeys(_bucket_label(b, [], counted=False) for b in rest))
        rows.append((f"… and {sum(_width(i) for i in members):,} more", classes, members))
    return rows


def _width(item: Item) -> int:
    return len(item.nodes)


def _bucket(tree: ModelTree, item: Item) -> tuple:
    """What a summary groups by: a module's class, or a parameter's name in its module's class."""
    node = item.nodes[0]
    if tree.is_param[node]:
        parent = node - 1
        while tree.is_param[parent]:  # a module's own parameters follow it directly
            parent -= 1
        return ("param", _class(tree, parent), tree.names[node].rpartition(".")[2])
    return ("module", _class(tree, node), item.itself)


def _bucket_label(bucket: tuple, members: list[Item], *, counted: bool = True) -> str:
    if bucket[0] == "param":
        what = f"{bucket[1]}.{bucket[2]}"
    else:
        # Modules decided unlike their children are a bucket of their own: the label must tell it from the other.
        what = f"{bucket[1]} (module only)" if bucket[2] else bucket[1]
    if not counted:
        return what
    return f"{sum(_width(i) for i in members):,} × {what}"


def _names(tree: ModelTree, members: list[Item]) -> tuple[str, ...]:
    return tuple(tree.names[n] or "(root)" for item in members for n in item.nodes)


def _class(tree: ModelTree, node: int) -> str:
    classes = tree.module_classes[tree.ids[node]]
    return classes[0] if classes else "Module"


def label_of(tree: ModelTree, item: Item, *, with_class: bool = True) -> str:
    """``layer1 (Sequential)``, ``layer1 … layer4 (4 × Sequential)``, ``fc.bias``, ``ResNet (the whole model)``.

    Without the class: ``layer1``, ``layer1 … layer4``, ``fc.bias``, ``ResNet``.
    """
    first = item.nodes[0]
    if tree.is_param[first]:
        return tree.names[first]
    cls = _class(tree, first)
    if first == 0:
        if not with_class:
            return cls
        return f"{cls} (the module itself)" if item.itself else f"{cls} (the whole model)"
    name = tree.names[first]
    if len(item.nodes) > 1:
        name += (", " if len(item.nodes) == 2 else " … ") + tree.names[item.nodes[-1]]
    if not with_class:
        return name
    if item.itself:
        return f"{name} ({cls}, the module itself)"
    return f"{name} ({cls})" if len(item.nodes) == 1 else f"{name} ({len(item.nodes)} × {cls})"

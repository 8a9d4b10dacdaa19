"""The model as a tree of named nodes, as plain data (no torch).

``ModelTree`` holds every module path and parameter path of a model in
pre-order, so each node's subtree is one contiguous index range. ``walk``
builds it from a live ``nn.Module``; ``manifest`` rebuilds it from a saved
manifest, so linting against a manifest needs no torch at all.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import operator
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .walk import LiveDetails


@dataclass(frozen=True)
class ParamInfo:
    """One parameter tensor, listed under its first name as ``named_parameters()`` does."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool
    aliases: tuple[str, ...] = ()
    #: the frozen base weight of a PEFT adapter (an adapter layer's base layer, a ``modules_to_save`` original)
    adapter_base: bool = False

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count

    @property
    def can_require_grad(self) -> bool:
        return can_require_grad(self.dtype)


def can_require_grad(dtype: str) -> bool:
    """Whether a tensor of this dtype (``float32``, ``int64``...) can require gradients, without torch.

    A live model asks torch (floating point or complex); a manifest's dtype
    names are looked up in ``NO_GRAD_DTYPES``. A name missing from the table
    (a dtype newer than it) counts as able to: no false error, and applying
    to the model itself asks torch.
    """
    return dtype not in NO_GRAD_DTYPES


#: Every torch dtype that cannot require gradients (neither floating point nor complex), by name;
#: ``tests/test_walk_structures.py`` holds it equal to what torch says of each of its dtypes.
NO_GRAD_DTYPES = frozenset(
    {
        "bool",
        *(f"int{bits}" for bits in (1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64)),
        *(f"uint{bits}" for bits in (1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64)),
        *("qint8", "qint32", "quint8", "quint4x2", "quint2x4"),
        *("bits8", "bits16", "bits1x8", "bits2x4", "bits4x2"),
    }
)


@dataclass(frozen=True)
class ModuleInfo:
    """One module object, under its first name; ``classes`` is its MRO below nn.Module.

    ``running_stats``: the module updates running statistics in train mode
    (BatchNorm, or InstanceNorm with ``track_running_stats``), so freezing its
    parameters does not freeze it.
    """

    name: str
    classes: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    pinned: bool = False
    running_stats: bool = False


@dataclass(frozen=True)
class StoredDetails:
    """Per-object details known up front (a manifest), indexed by parameter or module id."""

    param_shapes: list[tuple[int, ...]]
    param_dtypes: list[str]
    module_classes: list[tuple[str, ...]]
    module_running_stats: list[bool]

    def param_dtypes_of(self, ids: list[int]) -> list[str]:
        return [self.param_dtypes[i] for i in ids]

    def can_require_grad_of(self, ids: list[int]) -> list[bool]:
        dtypes = self.param_dtypes
        return [can_require_grad(dtypes[i]) for i in ids]


@dataclass(eq=False)
class ModelTree:
    """Pre-order nodes of a model: modules and their direct parameters before submodules.

    A node is one name. Node numbers follow pre-order, so the subtree of node
    ``n`` is the range ``n .. ends[n]``. Objects are numbered in order of first
    appearance, parameters and modules separately: a tied tensor or a shared
    module is one id with several nodes. ``param_*`` and ``module_*`` columns
    are indexed by id.
    """

    #: per node: its full dotted name (the root is "")
    names: list[str]
    #: per node: one past the last node of its subtree
    ends: list[int]
    #: the nodes of parameters and of modules, ascending; a node's position here is its slot
    param_nodes: list[int]
    module_nodes: list[int]
    #: per slot: the id of its object; None when no object has two names (every slot is its own id)
    param_slot_ids: list[int] | None
    module_slot_ids: list[int] | None
    #: per parameter id: requires_grad when the tree was built, and whether it is the frozen base of a
    #: PEFT adapter (``ParamInfo.adapter_base``)
    param_requires_grad: list[bool]
    param_adapter_base: list[bool]
    #: per module id: whether it carried an eval pin
    module_pinned: list[bool]
    details: StoredDetails | LiveDetails = field(repr=False)

    # Building ---------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        """The same nodes and objects with the same details, however each tree was built."""
        if not isinstance(other, ModelTree):
            return NotImplemented
        return self._compared() == other._compared()

    def _compared(self) -> tuple:
        columns = tuple(getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "details")
        return columns + (self.param_shapes, self.param_dtypes, self.module_classes, self.module_running_stats)

    # Per-object names (from the nodes, on first use) ------------------------

    @functools.cached_property
    def param_names(self) -> list[str]:
        """Per parameter id: its first name, as ``named_parameters()`` lists it."""
        return _first_names(self.names, self.param_nodes, self.param_slot_ids, len(self.param_requires_grad))

    @functools.cached_property
    def param_aliases(self) -> list[tuple[str, ...]]:
        """Per parameter id: its other names (a tied tensor's), in node order."""
        return _other_names(self.names, self.param_nodes, self.param_slot_ids, len(self.param_requires_grad))

    @functools.cached_property
    def module_names(self) -> list[str]:
        """Per module id: its first name, as ``named_modules()`` lists it."""
        return _first_names(self.names, self.module_nodes, self.module_slot_ids, len(self.module_pinned))

    @functools.cached_property
    def module_aliases(self) -> list[tuple[str, ...]]:
        """Per module id: its other names (a shared module's), in node order."""
        return _other_names(self.names, self.module_nodes, self.module_slot_ids, len(self.module_pinned))

    # Per-object details -----------------------------------------------------

    @property
    def param_shapes(self) -> list[tuple[int, ...]]:
        return self.details.param_shapes

    @property
    def param_dtypes(self) -> list[str]:
        return self.details.param_dtypes

    @property
    def module_classes(self) -> list[tuple[str, ...]]:
        """Per module id: its class name, then its bases below nn.Module, nearest first."""
        return self.details.module_classes

    @property
    def module_running_stats(self) -> list[bool]:
        return self.details.module_running_stats

    @functools.cached_property
    def params(self) -> list[ParamInfo]:
        """Every parameter tensor by id."""
        return list(
            map(
                ParamInfo,
                self.param_names,
                self.param_shapes,
                self.param_dtypes,
                self.param_requires_grad,
                self.param_aliases,
                self.param_adapter_base,
            )
        )

    @functools.cached_property
    def modules(self) -> list[ModuleInfo]:
        """Every module object by id."""
        return list(
            map(
                ModuleInfo,
                self.module_names,
                self.module_classes,
                self.module_aliases,
                self.module_pinned,
                self.module_running_stats,
            )
        )

    # Per-node views ---------------------------------------------------------

    @functools.cached_property
    def is_param(self) -> list[bool]:
        """Per node: whether it is a parameter."""
        flags = [False] * len(self.names)
        for node in self.param_nodes:
            flags[node] = True
        return flags

    @functools.cached_property
    def ids(self) -> list[int]:
        """Per node: the parameter id or the module id of its object."""
        ids = [0] * len(self.names)
        for nodes, slot_ids in ((self.param_nodes, self.param_slot_ids), (self.module_nodes, self.module_slot_ids)):
            for node, number in zip(nodes, range(len(nodes)) if slot_ids is None else slot_ids):
                ids[node] = number
        return ids

    def children_of(self, node: int) -> list[int]:
        """The child module nodes of a module node, as ``module.children()`` lists them.

        A module registered twice under one parent is listed once (its second
        registration still has a node and a subtree).
        """
        module_nodes, ends, slot_ids = self.module_nodes, self.ends, self.module_slot_ids
        end = ends[node]
        slot = bisect.bisect_left(module_nodes, node + 1)
        if slot == len(module_nodes) or module_nodes[slot] >= end:
            return []
        # A module's parameters come before its submodules: from the first child module on, every
        # sibling is a module, and the next one starts where the last one's subtree ends.
        kids, child = [], module_nodes[slot]
        while child < end:
            kids.append(child)
            child = ends[child]
        if slot_ids is None:
            return kids
        seen: set[int] = set()
        unique = []
        for kid in kids:
            number = slot_ids[bisect.bisect_left(module_nodes, kid)]
            if number not in seen:
                seen.add(number)
                unique.append(kid)
        return unique

    # Queries ----------------------------------------------------------------

    @functools.cached_property
    def dotted_names(self) -> list[str]:
        """Names with a leading dot, the root as ``""``: a glob's regex needs no special case."""
        return ["." + name if name else "" for name in self.names]

    # Indexes for selection, built on first use (a tree is not changed once built).

    @functools.cached_property
    def match_memo(self) -> dict[tuple, list[int]]:
        """Matches of atomic selectors already matched on this tree, by ``engine.select``'s key."""
        return {}

    @functools.cached_property
    def name_lines(self) -> NameLines:
        """``names`` as one text: a regex scans it once instead of once per name."""
        return NameLines.of(self.names)

    @functools.cached_property
    def dotted_name_lines(self) -> NameLines:
        """``dotted_names`` as one text, for globs: ``name_lines`` with a dot after each newline."""
        names, lines = self.names, self.name_lines
        if not lines.exact or not names or names[0] != "" or names.count("") > 1:
            return NameLines.of(self.dotted_names)
        # Line i > 0 gains a dot, so it starts i - 1 bytes later (the end, one per line, likewise).
        shifts = itertools.chain((0,), range(len(names)))
        return NameLines(lines.text.replace(b"\n", b"\n."), list(map(operator.add, lines.starts, shifts)), True)

    def nodes_named(self, name: str) -> list[int]:
        """Every node called ``name``, ascending.

        A node's name extends its parent's by ``.local``, so only nodes whose
        name is a dotted prefix of ``name`` can lead to it: the search looks at
        the children of those alone, not at every name.
        """
        names, ends = self.names, self.ends
        if not names or name == names[0]:
            return [0] if names else []
        found: list[int] = []
        parents = [0]
        while parents:
            parent = parents.pop()
            child, end = parent + 1, ends[parent]
            while child < end:
                candidate = names[child]
                if candidate == name:
                    found.append(child)
                elif name.startswith(candidate) and name[len(candidate)] == "." and ends[child] > child + 1:
                    parents.append(child)
                child = ends[child]
        return sorted(found)

    def nodes_ending_in(self, segment: str) -> list[int]:
        """Every node whose last segment is ``segment`` (``w2``: ``w2``, ``blocks.0.w2``...), ascending."""
        lines = self.name_lines
        if not lines.exact:
            suffix = "." + segment
            return [node for node, name in enumerate(self.names) if name == segment or name.endswith(suffix)]
        # A literal-led pattern: re finds the candidates at C speed, far faster than a test per name.
        dotted = re.compile(re.escape(("." + segment).encode()) + rb"$", re.MULTILINE)
        starts = lines.starts
        found = [bisect.bisect_right(starts, match.start()) - 1 for match in dotted.finditer(lines.text)]
        top = [node for node in self._top_nodes() if self.names[node] == segment]  # names without a dot
        return sorted(found + top) if top else found

    def _top_nodes(self) -> list[int]:
        """The root's child nodes, modules and parameters."""
        ends, node, top = self.ends, 1, []
        while node < len(ends):
            top.append(node)
            node = ends[node]
        return top

    def __len__(self) -> int:
        return len(self.names)

    def param_ids_in(self, intervals: list[tuple[int, int]]) -> list[int] | range:
        """Parameter ids with a node inside the intervals (duplicates possible for aliases)."""
        return _ids_in(self.param_nodes, self.param_slot_ids, intervals)

    def module_ids_in(self, intervals: list[tuple[int, int]]) -> list[int] | range:
        return _ids_in(self.module_nodes, self.module_slot_ids, intervals)


def _first_names(names: list[str], nodes: list[int], slot_ids: list[int] | None, count: int) -> list[str]:
    if slot_ids is None:
        return list(map(names.__getitem__, nodes))
    first: list[str | None] = [None] * count
    for node, number in zip(nodes, slot_ids):
        if first[number] is None:
            first[number] = names[node]
    return first  # type: ignore[return-value]  # every id has a slot


def _other_names(names: list[str], nodes: list[int], slot_ids: list[int] | None, count: int) -> list[tuple[str, ...]]:
    if slot_ids is None:
        return [()] * count
    others: list[list[str]] = [[] for _ in range(count)]
    seen = [False] * count
    for node, number in zip(nodes, slot_ids):
        if seen[number]:
            others[number].append(names[node])
        seen[number] = True
    return [tuple(more) for more in others]


def _ids_in(nodes: list[int], slot_ids: list[int] | None, intervals: list[tuple[int, int]]) -> list[int] | range:
    """The ids with a node in the intervals: a ``range`` when they are contiguous (one interval, nothing shared)."""
    if slot_ids is None and len(intervals) == 1:
        start, end = intervals[0]
        return range(bisect.bisect_left(nodes, start), bisect.bisect_left(nodes, end))
    out: list[int] = []
    for start, end in intervals:
        first = bisect.bisect_left(nodes, start)
        last = bisect.bisect_left(nodes, end, first)
        out.extend(range(first, last) if slot_ids is None else slot_ids[first:last])
    return out


def slot_ids(ids: list[int]) -> list[int] | None:
    """``ids`` as ``ModelTree`` keeps them: None when each slot is its own id."""
    return None if ids == list(range(len(ids))) else ids


@dataclass(frozen=True)
class NameLines:
    """Names joined by newlines into one UTF-8 text, one name per line.

    ``starts[i]`` is the byte offset of name ``i``, and ``starts[-1]`` one past
    the text's end. ``exact`` is False when a name holds a newline (or cannot
    be encoded): lines are then not names, and nothing may scan the text.
    """

    text: bytes
    starts: list[int]
    exact: bool

    @classmethod
    def of(cls, names: list[str]) -> NameLines:
        joined = "\n".join(names)
        try:
            text = joined.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate
            return cls(b"", [0], False)
        # Name i starts after the bytes of every name before it and a newline each.
        lengths = map(len, names if len(text) == len(joined) else map(str.encode, names))
        starts = list(itertools.accumulate(map(operator.add, lengths, itertools.repeat(1)), initial=0))
        return cls(text, starts, joined.count("\n") == len(names) - 1)

"""The model as a tree of named nodes (spec §2), as plain data.

``ModelTree`` holds every module path and parameter path of a model in
pre-order, so each node's subtree is one contiguous index range. It is built
from a live ``nn.Module`` by ``ModelTree.from_module`` (the only place that
touches torch) and can equally be rebuilt from a saved manifest, so linting
against a manifest needs no torch at all.

Wrapper modules (DDP, DataParallel, ``torch.compile``, FSDP, activation
checkpointing) are transparent: they add no node and no name segment.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import operator
from dataclasses import dataclass, field
from typing import Any

from .pins import is_pinned

# Wrapper class name → the attribute holding the wrapped module.
WRAPPERS = {
    "DistributedDataParallel": "module",
    "DataParallel": "module",
    "OptimizedModule": "_orig_mod",
    "FullyShardedDataParallel": "_fsdp_wrapped_module",
    "CheckpointWrapper": "_checkpoint_wrapped_module",
    "OffloadWrapper": "_checkpoint_wrapped_module",
}


@dataclass(frozen=True)
class ParamInfo:
    """One parameter tensor, listed under its first name as ``named_parameters()`` does."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool
    aliases: tuple[str, ...] = ()

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count

    @property
    def can_require_grad(self) -> bool:
        return self.dtype.startswith(("float", "bfloat", "complex"))


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


@dataclass
class ModelTree:
    """Pre-order nodes of a model: modules and their direct parameters before submodules."""

    names: list[str] = field(default_factory=list)
    #: per node: the module id (index into ``modules``) or the parameter id (into ``params``)
    ids: list[int] = field(default_factory=list)
    is_param: list[bool] = field(default_factory=list)
    #: per node: one past the last node of its subtree
    ends: list[int] = field(default_factory=list)
    #: per module node: its direct child module nodes, as ``module.children()`` lists them
    children: dict[int, list[int]] = field(default_factory=dict)
    params: list[ParamInfo] = field(default_factory=list)
    modules: list[ModuleInfo] = field(default_factory=list)
    _param_nodes: list[int] = field(default_factory=list, repr=False)
    _module_nodes: list[int] = field(default_factory=list, repr=False)

    # Building ---------------------------------------------------------------

    @classmethod
    def from_module(cls, model: Any) -> ModelTree:
        """Walk a live ``nn.Module`` (no mutation, no tensor data read)."""
        return cls.from_module_with_objects(model)[0]

    @classmethod
    def from_module_with_objects(cls, model: Any) -> tuple[ModelTree, list[Any], list[Any]]:
        """The tree, the parameter tensors by id and the module objects by id."""
        tree = cls()
        names, is_param, ends, children = tree.names, tree.is_param, tree.ends, tree.children
        held: list[Any] = []  # per node: its module or tensor
        plain: set[type] = set()  # classes that wrap nothing
        # One pass, no recursion (any depth works). An entry is (module, name,
        # parent node), or a bare node index that closes that node's subtree.
        stack: list[Any] = [(model, "", -1)]
        pop, push = stack.pop, stack.append
        while stack:
            entry = pop()
            if entry.__class__ is int:
                ends[entry] = len(names)
                continue
            module, name, parent = entry
            if module.__class__ not in plain:
                if _wrapped_attribute(module.__class__) is None:
                    plain.add(module.__class__)
                else:
                    module = unwrap(module)
            node = len(names)
            if parent >= 0:
                children[parent].append(node)
            children[node] = []
            names.append(name)
            is_param.append(False)
            ends.append(-1)
            held.append(module)
            prefix = name + "." if name else ""
            for local, param in module._parameters.items():
                if param is not None:
                    names.append(prefix + local)
                    is_param.append(True)
                    ends.append(len(names))
                    held.append(param)
            kids = module._modules
            if kids:
                pending = [(child, prefix + local, node) for local, child in kids.items() if child is not None]
                if len(set(map(id, kids.values()))) < len(kids):
                    pending = _repeats_unlisted(pending)
                if pending:
                    push(node)  # popped once every child's subtree is complete
                    stack.extend(reversed(pending))
                    continue
            ends[node] = len(names)
        tree.finish()
        # Number objects in order of first appearance: a tied tensor or shared module is one id.
        tree.ids = [0] * len(names)
        tensors, param_names, param_aliases = _number(tree, tree._param_nodes, held)
        objects, module_names, module_aliases = _number(tree, tree._module_nodes, held)
        dtype_names = {dtype: str(dtype).removeprefix("torch.") for dtype in {p.dtype for p in tensors}}
        tree.params = list(
            map(
                ParamInfo,
                param_names,
                map(tuple, map(operator.attrgetter("shape"), tensors)),
                map(dtype_names.__getitem__, map(operator.attrgetter("dtype"), tensors)),
                map(operator.attrgetter("requires_grad"), tensors),
                param_aliases,
            )
        )
        tree.modules = list(
            map(
                ModuleInfo,
                module_names,
                map(_class_names, map(type, objects)),
                module_aliases,
                map(is_pinned, objects),  # resolution starts from the pins an earlier apply left
                map(_tracks_running_stats, objects),
            )
        )
        return tree, tensors, objects

    def finish(self) -> None:
        """Derive the lookup tables once the nodes are in place."""
        nodes = range(len(self.is_param))
        self._param_nodes = list(itertools.compress(nodes, self.is_param))
        self._module_nodes = list(itertools.compress(nodes, map(operator.not_, self.is_param)))

    # Queries ----------------------------------------------------------------

    @functools.cached_property
    def dotted_names(self) -> list[str]:
        """Names with a leading dot, the root as ``""``: a glob's regex needs no special case."""
        return ["." + name if name else "" for name in self.names]

    # Indexes for selection, built on first use (a tree is not changed once built).

    @functools.cached_property
    def name_lines(self) -> NameLines:
        """``names`` as one text: a regex scans it once instead of once per name."""
        return NameLines.of(self.names)

    @functools.cached_property
    def dotted_name_lines(self) -> NameLines:
        """``dotted_names`` as one text, for globs."""
        return NameLines.of(self.dotted_names)

    @functools.cached_property
    def node_by_name(self) -> dict[str, int]:
        """The first node of each name."""
        count = len(self.names)
        return dict(zip(reversed(self.names), range(count - 1, -1, -1)))

    @functools.cached_property
    def module_nodes_by_classes(self) -> dict[tuple[str, ...], list[int]]:
        """Module nodes (ascending) grouped by their ``classes``: ``type()`` tests each group once."""
        groups: dict[tuple[str, ...], list[int]] = {}
        classes = [module.classes for module in self.modules]
        ids = self.ids
        for node in self._module_nodes:
            groups.setdefault(classes[ids[node]], []).append(node)
        return groups

    def __len__(self) -> int:
        return len(self.names)

    def param_ids_in(self, intervals: list[tuple[int, int]]) -> list[int]:
        """Parameter ids with a node inside the intervals (duplicates possible for aliases)."""
        return self._ids_in(self._param_nodes, intervals)

    def module_ids_in(self, intervals: list[tuple[int, int]]) -> list[int]:
        return self._ids_in(self._module_nodes, intervals)

    def _ids_in(self, nodes: list[int], intervals: list[tuple[int, int]]) -> list[int]:
        ids = self.ids
        out: list[int] = []
        for start, end in intervals:
            lo = bisect.bisect_left(nodes, start)
            hi = bisect.bisect_left(nodes, end, lo)
            out.extend(map(ids.__getitem__, nodes[lo:hi]))
        return out


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
        if len(text) == len(joined):  # ASCII: a byte per character
            lengths = [len(name) + 1 for name in names]
        else:
            lengths = [len(name.encode("utf-8")) + 1 for name in names]
        starts = list(itertools.accumulate(lengths, initial=0))
        return cls(text, starts, joined.count("\n") == len(names) - 1)


def unwrap(module: Any) -> Any:
    """The module a known wrapper holds (repeatedly), or the module itself."""
    while True:
        attribute = _wrapped_attribute(type(module))
        inner = getattr(module, "_modules", {}).get(attribute) if attribute else None
        if inner is None:
            return module
        module = inner


@functools.lru_cache(maxsize=1024)
def _wrapped_attribute(cls: type) -> str | None:
    # Per class, not per module: a model has few classes and many modules.
    return next((WRAPPERS[c.__name__] for c in cls.__mro__ if c.__name__ in WRAPPERS), None)


def _repeats_unlisted(pending: list[tuple[Any, str, int]]) -> list[tuple[Any, str, int]]:
    """Children entries where a module registered twice under one parent is a child once.

    ``module.children()`` lists it once; its second registration still has a node.
    """
    seen: set[int] = set()
    out = []
    for child, name, parent in pending:
        out.append((child, name, parent if id(child) not in seen else -2))
        seen.add(id(child))
    return out


def _number(tree: ModelTree, nodes: list[int], held: list[Any]) -> tuple[list[Any], list[str], list[tuple[str, ...]]]:
    """Give ``nodes`` the ids of their objects, numbered in order of first appearance.

    Returns the objects by id, the first name of each and its other names.
    """
    found = list(map(held.__getitem__, nodes))
    ids, names = tree.ids, tree.names
    if len(set(map(id, found))) == len(found):  # nothing reachable twice: the common case
        for number, node in enumerate(nodes):
            ids[node] = number
        return found, list(map(names.__getitem__, nodes)), [()] * len(found)
    first: dict[int, int] = {}
    objects: list[Any] = []
    first_names: list[str] = []
    aliases: list[list[str]] = []
    for node, thing in zip(nodes, found):
        number = first.setdefault(id(thing), len(objects))
        if number == len(objects):
            objects.append(thing)
            first_names.append(names[node])
            aliases.append([])
        else:
            aliases[number].append(names[node])
        ids[node] = number
    return objects, first_names, [tuple(more) for more in aliases]


def _tracks_running_stats(module: Any) -> bool:
    # What _NormBase.forward checks before it updates running_mean/running_var.
    # The buffer first: most modules have none, and getattr of a missing
    # attribute goes through nn.Module.__getattr__ and an exception.
    return module._buffers.get("running_mean") is not None and getattr(module, "track_running_stats", False) is True


@functools.lru_cache(maxsize=1024)
def _class_names(cls: type) -> tuple[str, ...]:
    """The class and every ancestor below nn.Module, nearest first."""
    import torch

    return tuple(c.__name__ for c in cls.__mro__ if issubclass(c, torch.nn.Module) and c is not torch.nn.Module)

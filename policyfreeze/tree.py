"""The model as a tree of named nodes (spec §2), as plain data.

``ModelTree`` holds every module path and parameter path of a model in
pre-order, so each node's subtree is one contiguous index range. It is built
from a live ``nn.Module`` by ``ModelTree.from_module`` (the only place that
touches torch) and can equally be rebuilt from a saved manifest, so linting
against a manifest needs no torch at all.

Wrapper modules (DDP, DataParallel, ``torch.compile``, FSDP, activation
checkpointing) are transparent: they add no node and no name segment. FSDP
without ``use_orig_params`` is refused: it replaced the parameters with one
flat parameter, and their names are gone.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import operator
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import PolicyUsageError
from .pins import PINNED_METHOD, is_pinned

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
        return can_require_grad(self.dtype)


def can_require_grad(dtype: str) -> bool:
    """Whether a tensor of this dtype (``float32``, ``int64``...) can require gradients."""
    return dtype.startswith(("float", "bfloat", "complex"))


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


class LiveDetails:
    """Per-object details of a live model, read from its tensors and modules on first use.

    Resolving and applying a policy need none of them, so they cost nothing
    until a report, a lint or a manifest asks. Applying a policy changes no
    shape, dtype or class, so reading them later gives what the walk would
    have read.
    """

    def __init__(self, tensors: list[Any], modules: list[Any]) -> None:
        self.tensors = tensors
        self.modules = modules

    @functools.cached_property
    def param_shapes(self) -> list[tuple[int, ...]]:
        return list(map(tuple, map(operator.attrgetter("shape"), self.tensors)))

    @functools.cached_property
    def param_dtypes(self) -> list[str]:
        return list(map(_dtype_name, map(operator.attrgetter("dtype"), self.tensors)))

    def param_dtypes_of(self, ids: list[int]) -> list[str]:
        """The dtypes of a few parameters, without reading every tensor's."""
        tensors = self.tensors
        return [_dtype_name(tensors[i].dtype) for i in ids]

    @functools.cached_property
    def module_classes(self) -> list[tuple[str, ...]]:
        return list(map(_class_names, map(type, self.modules)))

    @functools.cached_property
    def module_running_stats(self) -> list[bool]:
        return list(map(_tracks_running_stats, self.modules))


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
    #: per parameter id: its first name, its other names, and requires_grad when the tree was built
    param_names: list[str]
    param_aliases: list[tuple[str, ...]]
    param_requires_grad: list[bool]
    #: per module id: its first name, its other names, and whether it carried an eval pin
    module_names: list[str]
    module_aliases: list[tuple[str, ...]]
    module_pinned: list[bool]
    details: StoredDetails | LiveDetails = field(repr=False)

    # Building ---------------------------------------------------------------

    @classmethod
    def from_module(cls, model: Any) -> ModelTree:
        """Walk a live ``nn.Module`` (no mutation, no tensor data read)."""
        return cls.from_module_with_objects(model)[0]

    @classmethod
    def from_module_with_objects(cls, model: Any) -> tuple[ModelTree, list[Any], list[Any]]:
        """The tree, the parameter tensors by id and the module objects by id."""
        _check_is_module(model)
        names: list[str] = []
        ends: list[int] = []
        param_nodes: list[int] = []
        module_nodes: list[int] = []
        tensors: list[Any] = []  # per parameter node
        modules: list[Any] = []  # per module node
        plain: set[type] = set()  # classes that wrap nothing
        maybe_pinned: list[Any] = []
        # One pass, no recursion (any depth works). An entry is (module, name),
        # or a bare node index that closes that node's subtree.
        stack: list[Any] = [(model, "")]
        pop, push = stack.pop, stack.append
        while stack:
            entry = pop()
            if entry.__class__ is int:
                ends[entry] = len(names)
                continue
            module, name = entry
            if module.__class__ not in plain:
                if _wrapped_attribute(module.__class__) is None:
                    plain.add(module.__class__)
                else:
                    module = unwrap(module)
            node = len(names)
            module_nodes.append(node)
            modules.append(module)
            if PINNED_METHOD in module.__dict__:  # rare, and only such a module can carry a pin
                maybe_pinned.append(module)
            names.append(name)
            ends.append(-1)
            prefix = name + "." if name else ""
            for local, param in module._parameters.items():
                if param is not None:
                    param_nodes.append(len(names))
                    tensors.append(param)
                    names.append(prefix + local)
                    ends.append(len(names))
            kids = module._modules
            if kids:
                push(node)  # popped once every child's subtree is complete
                stack.extend(reversed([(child, prefix + local) for local, child in kids.items() if child is not None]))
            else:
                ends[node] = len(names)
        param_slot_ids, tensors, param_names, param_aliases = _number(param_nodes, tensors, names)
        module_slot_ids, modules, module_names, module_aliases = _number(module_nodes, modules, names)
        if any(map(_is_uninitialized, set(map(type, tensors)))):
            _refuse_uninitialized(tensors, param_names)
        tree = cls(
            names=names,
            ends=ends,
            param_nodes=param_nodes,
            module_nodes=module_nodes,
            param_slot_ids=param_slot_ids,
            module_slot_ids=module_slot_ids,
            param_names=param_names,
            param_aliases=param_aliases,
            param_requires_grad=[tensor.requires_grad for tensor in tensors],
            module_names=module_names,
            module_aliases=module_aliases,
            # Resolution starts from the pins an earlier apply left.
            module_pinned=_pinned_flags(modules, maybe_pinned),
            details=LiveDetails(tensors, modules),
        )
        return tree, tensors, modules

    def __eq__(self, other: object) -> bool:
        """The same nodes and objects with the same details, however each tree was built."""
        if not isinstance(other, ModelTree):
            return NotImplemented
        return self._compared() == other._compared()

    def _compared(self) -> tuple:
        columns = tuple(getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "details")
        return columns + (self.param_shapes, self.param_dtypes, self.module_classes, self.module_running_stats)

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
            map(ParamInfo, self.param_names, self.param_shapes, self.param_dtypes, self.param_requires_grad, self.param_aliases)
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
        is_param, ends = self.is_param, self.ends
        shared = self.module_slot_ids is not None
        seen: set[int] = set()
        kids: list[int] = []
        child, end = node + 1, ends[node]
        while child < end:
            if is_param[child]:
                child += 1
                continue
            if not shared or self.ids[child] not in seen:
                kids.append(child)
                if shared:
                    seen.add(self.ids[child])
            child = ends[child]
        return kids

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

    @functools.cached_property
    def module_nodes_by_classes(self) -> dict[tuple[str, ...], list[int]]:
        """Module nodes (ascending) grouped by their classes: ``type()`` tests each group once."""
        groups: dict[tuple[str, ...], list[int]] = {}
        classes = self.module_classes
        slot_ids = self.module_slot_ids
        for slot, node in enumerate(self.module_nodes):
            groups.setdefault(classes[slot if slot_ids is None else slot_ids[slot]], []).append(node)
        return groups

    def __len__(self) -> int:
        return len(self.names)

    def param_ids_in(self, intervals: list[tuple[int, int]]) -> list[int]:
        """Parameter ids with a node inside the intervals (duplicates possible for aliases)."""
        return _ids_in(self.param_nodes, self.param_slot_ids, intervals)

    def module_ids_in(self, intervals: list[tuple[int, int]]) -> list[int]:
        return _ids_in(self.module_nodes, self.module_slot_ids, intervals)


def _ids_in(nodes: list[int], slot_ids: list[int] | None, intervals: list[tuple[int, int]]) -> list[int]:
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
        starts = list(map(operator.add, itertools.accumulate(lengths, initial=0), range(len(names) + 1)))
        return cls(text, starts, joined.count("\n") == len(names) - 1)


def unwrap(module: Any) -> Any:
    """The module a known wrapper holds (repeatedly), or the module itself."""
    while True:
        attribute = _wrapped_attribute(type(module))
        inner = getattr(module, "_modules", {}).get(attribute) if attribute else None
        if inner is None:
            return module
        if attribute == WRAPPERS["FullyShardedDataParallel"] and FLAT_PARAMETER in inner._parameters:
            raise PolicyUsageError(
                f"the model is wrapped in {type(module).__name__} without use_orig_params, which replaced "
                "its parameters with one flat parameter: their names are gone",
                help="resolve and apply the policy to the bare model, then wrap it",
            )
        module = inner


#: What FSDP (without ``use_orig_params``) registers on the module it wraps in place of its parameters.
FLAT_PARAMETER = "_flat_param"


@functools.lru_cache(maxsize=1024)
def _wrapped_attribute(cls: type) -> str | None:
    # Per class, not per module: a model has few classes and many modules.
    return next((WRAPPERS[c.__name__] for c in cls.__mro__ if c.__name__ in WRAPPERS), None)


def _check_is_module(model: Any) -> None:
    # What an nn.Module instance has and the walk reads; torch is not imported here.
    if not isinstance(model, type) and all(isinstance(getattr(model, a, None), dict) for a in ("_parameters", "_modules")):
        return
    if isinstance(model, type):
        what, advice = f"the class {model.__name__}", f"build the model first: {model.__name__}(...)"
    else:
        what, advice = type(model).__name__, "pass the model object: policyfreeze.apply(model, policy)"
    raise PolicyUsageError(f"a policy applies to a torch.nn.Module instance, not {what}", help=advice)


@functools.lru_cache(maxsize=64)
def _is_uninitialized(cls: type) -> bool:
    # torch.nn.parameter.UninitializedParameter, a lazy module's parameter before its first forward
    return any(c.__name__ == "UninitializedTensorMixin" for c in cls.__mro__)


def _refuse_uninitialized(tensors: list[Any], names: list[str]) -> None:
    lazy = [name for name, tensor in zip(names, tensors) if _is_uninitialized(type(tensor))]
    more = f" (and {len(lazy) - 1} more)" if len(lazy) > 1 else ""
    raise PolicyUsageError(
        f"parameter {lazy[0]}{more} is not initialized yet: a lazy module (nn.LazyLinear...) creates its "
        "parameters in its first forward pass",
        help="run one forward pass with a dummy batch, then resolve or apply the policy",
    )


def _number(nodes: list[int], found: list[Any], names: list[str]) -> tuple[list[int] | None, list[Any], list[str], list[tuple[str, ...]]]:
    """Number the objects ``found`` at ``nodes`` in order of first appearance.

    Returns the id per slot (None: nothing reachable twice, each slot its own
    id), the objects by id, the first name of each and its other names.
    """
    if len(set(map(id, found))) == len(found):  # nothing reachable twice: the common case
        return None, found, list(map(names.__getitem__, nodes)), [()] * len(found)
    first: dict[int, int] = {}
    objects: list[Any] = []
    first_names: list[str] = []
    aliases: list[list[str]] = []
    ids: list[int] = []
    for node, thing in zip(nodes, found):
        number = first.setdefault(id(thing), len(objects))
        if number == len(objects):
            objects.append(thing)
            first_names.append(names[node])
            aliases.append([])
        else:
            aliases[number].append(names[node])
        ids.append(number)
    return ids, objects, first_names, [tuple(more) for more in aliases]


def _pinned_flags(modules: list[Any], maybe_pinned: list[Any]) -> list[bool]:
    """Per module: ``is_pinned``; only the modules in ``maybe_pinned`` can be."""
    flags = [False] * len(modules)
    if maybe_pinned:
        candidates = {id(module) for module in maybe_pinned if is_pinned(module)}
        for index, module in enumerate(modules):
            if id(module) in candidates:
                flags[index] = True
    return flags


def _tracks_running_stats(module: Any) -> bool:
    # What _NormBase.forward checks before it updates running_mean/running_var.
    # The buffer first: most modules have none, and getattr of a missing
    # attribute goes through nn.Module.__getattr__ and an exception.
    return module._buffers.get("running_mean") is not None and getattr(module, "track_running_stats", False) is True


@functools.lru_cache(maxsize=64)
def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


@functools.lru_cache(maxsize=1024)
def _class_names(cls: type) -> tuple[str, ...]:
    """The class and every ancestor below nn.Module, nearest first."""
    import torch

    return tuple(c.__name__ for c in cls.__mro__ if issubclass(c, torch.nn.Module) and c is not torch.nn.Module)

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
from dataclasses import dataclass, field, replace
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
        import torch

        tree = cls()
        tensors: list[Any] = []
        objects: list[Any] = []
        module_ids: dict[int, int] = {}
        param_ids: dict[int, int] = {}
        module_aliases: dict[int, list[str]] = {}
        param_aliases: dict[int, list[str]] = {}
        stack: list[tuple[Any, str, int]] = [(unwrap(model), "", -1)]
        while stack:
            module, name, parent = stack.pop()
            module = unwrap(module)
            node = tree._add_node(name, is_param=False)
            if parent >= 0:
                tree.children[parent].append(node)
            tree.children[node] = []
            key = id(module)
            if key not in module_ids:
                module_ids[key] = len(tree.modules)
                module_aliases[module_ids[key]] = []
                objects.append(module)
                tree.modules.append(
                    ModuleInfo(
                        name,
                        _class_names(module, torch.nn.Module),
                        pinned=is_pinned(module),  # resolution starts from the pins an earlier apply left
                        running_stats=_tracks_running_stats(module),
                    )
                )
            else:
                module_aliases[module_ids[key]].append(name)
            tree.ids[node] = module_ids[key]
            for pname, param in module._parameters.items():
                if param is None:
                    continue
                full = f"{name}.{pname}" if name else pname
                pnode = tree._add_node(full, is_param=True)
                tree.ends[pnode] = pnode + 1
                pkey = id(param)
                if pkey not in param_ids:
                    param_ids[pkey] = len(tree.params)
                    param_aliases[param_ids[pkey]] = []
                    tensors.append(param)
                    tree.params.append(
                        ParamInfo(full, tuple(param.shape), str(param.dtype).removeprefix("torch."), param.requires_grad)
                    )
                else:
                    param_aliases[param_ids[pkey]].append(full)
                tree.ids[pnode] = param_ids[pkey]
            seen_children: set[int] = set()
            pending = []
            for cname, child in module._modules.items():
                if child is None:
                    continue
                full = f"{name}.{cname}" if name else cname
                # module.children() lists a module registered twice under one parent once.
                first = id(child) not in seen_children
                seen_children.add(id(child))
                pending.append((child, full, node if first else -2))
            # The end of this node's subtree is known once its children are done:
            # push a marker that closes it, then the children in reverse.
            stack.append((None, "", node))
            stack.extend(reversed(pending))
            tree._close_pending(stack)
        tree.params = [
            ParamInfo(p.name, p.shape, p.dtype, p.requires_grad, tuple(param_aliases[i]))
            for i, p in enumerate(tree.params)
        ]
        tree.modules = [
            replace(m, aliases=tuple(module_aliases[i])) for i, m in enumerate(tree.modules)
        ]
        tree.finish()
        return tree, tensors, objects

    def _add_node(self, name: str, *, is_param: bool) -> int:
        self.names.append(name)
        self.ids.append(-1)
        self.is_param.append(is_param)
        self.ends.append(-1)
        return len(self.names) - 1

    def _close_pending(self, stack: list) -> None:
        # Pop "close" markers sitting on top of the stack: their subtrees are complete.
        while stack and stack[-1][0] is None:
            _, _, node = stack.pop()
            self.ends[node] = len(self.names)

    def finish(self) -> None:
        """Derive the lookup tables once the nodes are in place."""
        self._param_nodes = [i for i, p in enumerate(self.is_param) if p]
        self._module_nodes = [i for i, p in enumerate(self.is_param) if not p]

    # Queries ----------------------------------------------------------------

    @functools.cached_property
    def dotted_names(self) -> list[str]:
        """Names with a leading dot, the root as ``""``: a glob's regex needs no special case."""
        return ["." + name if name else "" for name in self.names]

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
            out.extend(ids[n] for n in nodes[lo:hi])
        return out


def unwrap(module: Any) -> Any:
    """The module a known wrapper holds (repeatedly), or the module itself."""
    while True:
        attribute = next((WRAPPERS[c] for c in _mro_names(module) if c in WRAPPERS), None)
        inner = getattr(module, "_modules", {}).get(attribute) if attribute else None
        if inner is None:
            return module
        module = inner


def _mro_names(module: Any) -> list[str]:
    return [cls.__name__ for cls in type(module).__mro__]


def _tracks_running_stats(module: Any) -> bool:
    # What _NormBase.forward checks before it updates running_mean/running_var.
    return getattr(module, "track_running_stats", False) is True and module._buffers.get("running_mean") is not None


def _class_names(module: Any, base: type) -> tuple[str, ...]:
    """The class and every ancestor below ``base`` (nn.Module), nearest first."""
    return tuple(cls.__name__ for cls in type(module).__mro__ if issubclass(cls, base) and cls is not base)

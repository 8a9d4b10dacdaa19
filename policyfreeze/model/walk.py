"""A live ``nn.Module`` → ``ModelTree``: the one walk over a model's modules and parameters.

Wrapper modules (DDP, DataParallel, ``torch.compile``, FSDP, activation
checkpointing) are transparent: they add no node and no name segment. FSDP
without ``use_orig_params`` is refused: it replaced the parameters with one
flat parameter, and their names are gone. Wrappers that fix what trains when
they wrap (DDP, FSDP1) are refused before a policy is applied
(``refuse_distributed``); FSDP2 (``fully_shard``) adds no wrapper and keeps
every name, so a policy applies to a sharded model as to the bare one.

Torch is imported only to read class hierarchies, on first use.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from typing import Any

from ..errors import PolicyUsageError
from .pins import PINNED_METHOD, is_pinned
from .tree import ModelTree


@dataclass(frozen=True)
class LiveModel:
    """A model's tree with the live objects behind it: tensors and modules, indexed by id."""

    tree: ModelTree
    tensors: list[Any]
    modules: list[Any]

    @property
    def root(self) -> Any:
        """The (unwrapped) model itself."""
        return self.modules[0]


# Wrapper class name → the attribute holding the wrapped module.
WRAPPERS = {
    "DistributedDataParallel": "module",
    "DataParallel": "module",
    "OptimizedModule": "_orig_mod",
    "FullyShardedDataParallel": "_fsdp_wrapped_module",
    "CheckpointWrapper": "_checkpoint_wrapped_module",
    "OffloadWrapper": "_checkpoint_wrapped_module",
}


#: Wrappers that fix at construction what trains (what they fix, and what to do instead). FSDP2's
#: ``fully_shard`` is not one: it follows ``requires_grad`` as it changes, so a policy applies before or after it.
FIXING_WRAPPERS = {
    "DistributedDataParallel": (
        "its gradient hooks",
        "apply the policy to the bare model, then wrap it; for a schedule, let the Freezer rebuild the wrapper: "
        "Freezer(model, policy, wrap=DistributedDataParallel)",
    ),
    "FullyShardedDataParallel": (
        "its gradient sharding",
        "apply the policy to the bare model, then wrap it; or shard with FSDP2's fully_shard, which a policy "
        "and a Freezer follow before or after sharding",
    ),
}


def refuse_distributed(model: Any) -> None:
    """DDP and FSDP1 fix what trains when they wrap: a policy must be applied before."""
    module = model
    while True:
        names = [cls.__name__ for cls in type(module).__mro__]
        fixing = next((name for name in names if name in FIXING_WRAPPERS), None)
        if fixing is not None:
            fixed, advice = FIXING_WRAPPERS[fixing]
            raise PolicyUsageError(
                f"the model is already wrapped in {fixing}, which fixed {fixed} when it wrapped",
                help=advice,
            )
        attribute = next((WRAPPERS[n] for n in names if n in WRAPPERS), None)
        inner = getattr(module, "_modules", {}).get(attribute) if attribute else None
        if inner is None:
            return
        module = inner


def tree_of(model: Any) -> ModelTree:
    """The tree of a live ``nn.Module`` (no mutation, no tensor data read)."""
    return walk(model).tree


def walk(model: Any) -> LiveModel:
    """Walk a live ``nn.Module`` into its tree, keeping its tensors and modules by id.

    No mutation, no tensor data read.
    """
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
    tree = ModelTree(
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
    return LiveModel(tree, tensors, modules)


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
    if not isinstance(model, type) and all(
        isinstance(getattr(model, a, None), dict) for a in ("_parameters", "_modules")
    ):
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


def _number(
    nodes: list[int], found: list[Any], names: list[str]
) -> tuple[list[int] | None, list[Any], list[str], list[tuple[str, ...]]]:
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

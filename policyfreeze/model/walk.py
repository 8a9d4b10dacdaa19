"""A live ``nn.Module`` → ``ModelTree``: the one walk over a model's modules and parameters.

Wrapper modules are transparent: they add no node and no name segment. The
wrapped module takes the wrapper's place, and whatever else the wrapper holds
sits beside the wrapped module's own children. That covers DDP, DataParallel,
``torch.compile``, FSDP and activation checkpointing (which hold nothing else),
and PEFT: a ``PeftModel`` and its tuner (``base_model.model.``), an adapter
layer (``base_layer.``; its adapters, ``lora_A``..., stay under it) and a
``modules_to_save`` wrapper (transparent to the copy that runs). Wrappers are
recognised by class, never by attribute name. FSDP without
``use_orig_params`` is refused: it replaced the parameters with one flat
parameter, and their names are gone. Wrappers that fix what trains when they
wrap (DDP, FSDP1) are refused before a policy is applied (``refuse_distributed``);
FSDP2 (``fully_shard``) adds no wrapper and keeps every name, so a policy applies
to a sharded model as to the bare one.

Each module object is walked once, as ``named_modules()`` does: a module
reachable under a second name gets that name's nodes copied from its first
(names are nodes, so every name stays selectable), without walking its Python
objects again. A model that contains itself has no finite names and is refused.

Torch is imported only to read class hierarchies, on first use.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import operator
from dataclasses import dataclass
from typing import Any

from ..errors import PolicyUsageError, shorten
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


#: PEFT's wrappers (classes of the ``peft`` package), by class name → the attribute holding the wrapped module.
PEFT_WRAPPERS = {
    "PeftModel": "base_model",  # PeftModelForCausalLM...: holds a tuner, or the model itself for prompt learning
    "PeftMixedModel": "base_model",
    "BaseTuner": "model",  # LoraModel, IA3Model, LoHaModel...
    "BaseTunerLayer": "base_layer",  # an adapter layer (lora.Linear...): its adapters stay beside the base layer's
    "TrainableTokensWrapper": "token_adapter",
}

#: PEFT's ``modules_to_save`` wrapper: transparent to the copy that runs (``_running_copy``), which holds
#: the wrapper's name; the original and every copy keep their own names below it.
MODULES_TO_SAVE = "ModulesToSaveWrapper"

#: Nodes a model may have beyond its first names: the names of modules (and their subtrees) reachable
#: under a second name. Sharing a module at every level multiplies names by each level, so a small
#: model can have more names than memory holds.
MAX_ALIAS_NODES = 1_000_000


def walk(model: Any) -> LiveModel:
    """Walk a live ``nn.Module`` into its tree, keeping its tensors and modules by id.

    No mutation, no tensor data read.
    """
    _check_is_module(model)
    try:
        walker = _Walker(RECURSION_DEPTH, careful=False)
        walker.walk(model)
    except (_GiveUp, RecursionError):
        try:
            walker = _Walker(RECURSION_DEPTH, careful=True)
            walker.walk(model)
        except RecursionError:  # called from deep inside a program already: the walk without recursion
            walker = _Walker(0, careful=True)
            walker.walk(model)
    found_tensors, found_modules = walker.tensors, walker.modules
    param_slot_ids, tensors = _number(found_tensors, len(set(map(id, found_tensors))) == len(found_tensors))
    module_slot_ids, modules = _number(found_modules, _distinct(found_modules))
    tree = ModelTree(
        names=walker.names,
        ends=walker.ends,
        param_nodes=walker.param_nodes,
        module_nodes=walker.module_nodes,
        param_slot_ids=param_slot_ids,
        module_slot_ids=module_slot_ids,
        param_requires_grad=list(map(operator.attrgetter("requires_grad"), tensors)),
        param_adapter_base=walker.adapter_base_flags(len(tensors), param_slot_ids),
        # Resolution starts from the pins an earlier apply left.
        module_pinned=_pinned_flags(modules, walker.maybe_pinned),
        details=LiveDetails(tensors, modules),
    )
    if walker.lazy and any(map(_is_uninitialized, set(map(type, tensors)))):
        _refuse_uninitialized(tensors, tree.param_names)
    return LiveModel(tree, tensors, modules)


#: Module nesting walked by recursion (fast); deeper subtrees are walked by a loop (any depth).
RECURSION_DEPTH = 100

#: Nodes the first, quick walk makes before it gives up for the careful one.
QUICK_WALK_NODES = 1_000_000


class _GiveUp(Exception):
    """The quick walk met more than it should: the careful walk takes over."""


class _Walker:
    """Pre-order over the modules, each module object walked once.

    ``visit`` walks the common case (modules of classes that wrap nothing, up
    to ``depth_limit`` deep) by recursion, with leaves inline: a call per
    module would cost as much as the rest of its work. Everything else goes
    through ``enter``, which pushes a frame for a module's children (an
    iterator of (local name, module), the prefix of their names and its node;
    a wrapper's frames also say what closing them completes); ``drain``
    walks frames by recursion, ``iterate`` by a loop.

    A careful walk keeps in ``memo`` the first node of every module object
    with children (leaves are cheaper walked again than looked up). A node's
    end is -1 while its children are walked: meeting an open module again is
    a cycle; meeting a complete one again copies its nodes under the new
    name. Most models share no module, so a quick walk comes first: it takes
    a module met again for a new one (walking it again gives the nodes a copy
    would) and keeps no memo, and it gives up for the careful walk past
    ``QUICK_WALK_NODES`` nodes or ``RECURSION_DEPTH`` levels, which a model
    with a cycle, or with modules shared at every level, soon passes.
    """

    def __init__(self, depth_limit: int, *, careful: bool) -> None:
        self.depth_limit = depth_limit
        self.careful = careful
        self.names: list[str] = []
        self.ends: list[int] = []
        self.param_nodes: list[int] = []
        self.module_nodes: list[int] = []
        self.tensors: list[Any] = []  # per parameter slot
        self.modules: list[Any] = []  # per module slot
        self.maybe_pinned: list[Any] = []
        self.plain: set[type] = set()  # classes that wrap nothing
        self.memo: dict[int, int] = {}
        self.frames: list[tuple[Any, ...]] = []
        self.copied = 0
        #: whether a lazy module (nn.LazyLinear...) was met: only its parameters can be uninitialized
        self.lazy = False
        #: node ranges whose parameters are the frozen base of a PEFT adapter (base_layer, modules_to_save original)
        self.adapter_bases: list[tuple[int, int]] = []

    def walk(self, model: Any) -> None:
        self.visit = self._visitor()
        if self.enter(model, ""):
            self.drain(0, 0)

    def _visitor(self) -> Any:
        """``visit(items, prefix, depth)``: walk the modules of ``items`` (local name, module) and all below them.

        A closure over the walker's lists: a method would look each of them
        up again on every call, and there is a call per module with children.
        """
        names, ends, param_nodes, tensors = self.names, self.ends, self.param_nodes, self.tensors
        module_nodes, modules, maybe_pinned = self.module_nodes, self.modules, self.maybe_pinned
        plain, memo, frames, enter, drain, again, iterate = (
            self.plain,
            self.memo,
            self.frames,
            self.enter,
            self.drain,
            self.again,
            self.iterate,
        )
        depth_limit, careful = self.depth_limit, self.careful

        def visit(items: Any, prefix: str, depth: int) -> None:
            for local, child in items:
                if type(child) not in plain:  # a wrapper, a class met first, or None
                    if child is not None:
                        mark = len(frames)
                        if enter(child, prefix + local):
                            drain(mark, depth)
                    continue
                name = prefix + local
                # From the instance dict: an nn.Module attribute lookup goes through its __getattr__ hook.
                state = child.__dict__
                try:
                    kids, params = state["_modules"], state["_parameters"]
                except KeyError:  # a module that keeps them elsewhere
                    kids, params = child._modules, child._parameters
                if kids and careful and id(child) in memo:
                    again(name, id(child))
                    continue
                node = len(names)
                module_nodes.append(node)
                modules.append(child)
                names.append(name)
                ends.append(node + 1)
                if PINNED_METHOD in state:  # rare, and only such a module can carry a pin
                    maybe_pinned.append(child)
                if params:
                    own = name + "."
                    last = node
                    for pname, param in params.items():
                        if param is not None:
                            last += 1
                            param_nodes.append(last)
                            tensors.append(param)
                            names.append(own + pname)
                            ends.append(last + 1)
                    ends[node] = last + 1
                if kids:
                    if careful:
                        memo[id(child)] = node
                        ends[node] = -1
                    elif node > QUICK_WALK_NODES or depth >= depth_limit:
                        raise _GiveUp
                    if depth < depth_limit:
                        visit(kids.items(), name + ".", depth + 1)
                        ends[node] = len(names)
                    else:
                        mark = len(frames)
                        frames.append((iter(kids.items()), name + ".", node))
                        iterate(mark)

        return visit

    def drain(self, mark: int, depth: int) -> None:
        """Walk the children of the frames above ``mark`` (the last pushed first), recursively if depth allows."""
        frames = self.frames
        if depth >= self.depth_limit:
            self.iterate(mark)
            return
        while len(frames) > mark:
            frame = frames[-1]
            self.visit(frame[0], frame[1], depth + 1)  # drains whatever it pushes: the frame is last again
            frames.pop()
            self.close(frame)

    def iterate(self, mark: int) -> None:
        """``drain`` without recursion: any depth."""
        frames, enter = self.frames, self.enter
        while len(frames) > mark:
            frame = frames[-1]
            prefix = frame[1]
            for local, child in frame[0]:
                if child is not None and enter(child, prefix + local):
                    break  # its children first
            else:
                frames.pop()
                self.close(frame)

    def close(self, frame: tuple[Any, ...]) -> None:
        if len(frame) == 3:
            self.ends[frame[2]] = len(self.names)
        else:
            self.close_wrapped(frame)

    def enter(self, module: Any, name: str) -> bool:
        """Add the nodes of ``module`` named ``name``; True when a frame for its children was pushed."""
        cls = module.__class__
        if cls is _Pruned:  # a module on a wrapper's path to what it wraps, without that child
            node = self._open(module.module, name)
            self.ends[node] = -1
            kids = [(local, child) for local, child in module.module._modules.items() if local != module.without]
            self.frames.append((iter(kids), name + "." if name else "", node))
            return True
        if cls not in self.plain:
            how = _wrapping(cls)
            if how is None:
                self.plain.add(cls)
                self.lazy = self.lazy or _is_lazy(cls)
            else:
                wrapped = _unwrap(module, how)
                if wrapped is not None:
                    return self._enter_wrapped(module, name, *wrapped)
        kids = module._modules
        if kids and id(module) in self.memo:
            self.again(name, id(module))
            return False
        node = self._open(module, name)
        if not kids:
            self.ends[node] = len(self.names)
            return False
        self.memo[id(module)] = node
        self.ends[node] = -1
        self.frames.append((iter(kids.items()), name + "." if name else "", node))
        return True

    def _enter_wrapped(
        self, module: Any, name: str, inner: Any, levels: list[tuple[Any, tuple[str, ...]]], base: Any
    ) -> bool:
        """A wrapper (``levels``: each wrapper, outermost first, and the path to what it wraps) around ``inner``.

        One node for them all: the wrapped module's parameters and children,
        then whatever else the wrappers hold. Every name of one of these
        objects gets that node's subtree.
        """
        memo = self.memo
        wrappers = [wrapper for wrapper, _ in levels]
        for obj in (module, *wrappers, inner):
            if id(obj) in memo:
                self.again(name, id(obj))  # the same wrapped module under another name, or a cycle (raises)
                return False
        others = [item for wrapper, path in reversed(levels) for item in _others(wrapper, path)]
        _check_one_path(name, inner, wrappers, others)
        node = self._open(inner, name)
        prefix = name + "." if name else ""
        inner_params_end = len(self.names)
        for wrapper in reversed(wrappers):
            self._add_params(wrapper, prefix)
        self.ends[node] = -1
        for obj in (*wrappers, inner):
            memo[id(obj)] = node
        self.frames.append((iter(others), prefix, node, _WRAPPERS_DONE, base))
        if base is inner:
            self.adapter_bases.append((node + 1, inner_params_end))
        self.frames.append((iter(inner._modules.items()), prefix, node, _INNER_DONE, (base is inner, len(self.names))))
        return True

    def close_wrapped(self, frame: tuple[Any, ...]) -> None:
        """A wrapped module's children, or then its wrappers' other children, are done."""
        _, _, node, done, data = frame
        end = len(self.names)
        if done is _INNER_DONE:
            is_base, children_start = data
            if is_base:  # its children's parameters too (its own were marked when it opened)
                self.adapter_bases.append((children_start, end))
            return
        self.ends[node] = end
        base = data
        if base is not None:  # a modules_to_save original, beside the copy that runs
            module_nodes, modules = self.module_nodes, self.modules
            child = node + 1
            while child < end:  # the node's children (a parameter's end is the next node)
                slot = bisect.bisect_left(module_nodes, child)
                if slot < len(module_nodes) and module_nodes[slot] == child and modules[slot] is base:
                    self.adapter_bases.append((child, self.ends[child]))
                child = self.ends[child]

    def _open(self, module: Any, name: str) -> int:
        """The node of ``module`` and its own parameters' nodes (their end is set: the module's is not)."""
        node = len(self.names)
        self.module_nodes.append(node)
        self.modules.append(module)
        self.names.append(name)
        self.ends.append(node + 1)
        if PINNED_METHOD in module.__dict__:
            self.maybe_pinned.append(module)
        self._add_params(module, name + "." if name else "")
        return node

    def _add_params(self, module: Any, prefix: str) -> None:
        for local, param in module._parameters.items():
            if param is not None:
                self.param_nodes.append(len(self.names))
                self.tensors.append(param)
                self.names.append(prefix + local)
                self.ends.append(len(self.names))

    def again(self, name: str, key: int) -> None:
        """A module met before, now under ``name``: its nodes copied from its first, or a cycle refused."""
        names = self.names
        start = self.memo[key]
        end = self.ends[start]
        if end < 0:
            where = f"'{shorten(names[start], 80)}'" if names[start] else "the model itself"
            raise PolicyUsageError(
                f"the model contains itself: module '{shorten(name, 80)}' is {where}, which contains it, "
                "so its names never end",
                help="keep back references out of the module tree: object.__setattr__(module, 'parent', parent) "
                "or a weakref, instead of registering the parent as a submodule",
            )
        self.copied += end - start
        if self.copied > MAX_ALIAS_NODES:
            raise PolicyUsageError(
                f"the model has more than {MAX_ALIAS_NODES:,} names through shared modules "
                f"(module '{shorten(names[start], 80)}' is also '{shorten(name, 80)}', and so on): "
                "every name of a shared module is a node, and sharing at every level multiplies them",
                help="register a shared module under one name and keep other references out of the module tree",
            )
        old = names[start]
        shift = len(names) - start
        if old:
            cut = len(old)
            names.extend([name + n[cut:] for n in names[start:end]])
        else:  # the wrapped root met again
            names.extend([f"{name}.{n}" if n else name for n in names[start:end]])
        self.ends.extend([e + shift for e in self.ends[start:end]])
        for nodes, objects in ((self.param_nodes, self.tensors), (self.module_nodes, self.modules)):
            first, last = bisect.bisect_left(nodes, start), bisect.bisect_left(nodes, end)
            nodes.extend([n + shift for n in nodes[first:last]])
            objects.extend(objects[first:last])

    def adapter_base_flags(self, count: int, slot_ids: list[int] | None) -> list[bool]:
        """Per parameter id: whether it is the frozen base of a PEFT adapter."""
        flags = [False] * count
        for start, end in self.adapter_bases:
            first = bisect.bisect_left(self.param_nodes, start)
            last = bisect.bisect_left(self.param_nodes, end, first)
            for slot in range(first, last):
                flags[slot if slot_ids is None else slot_ids[slot]] = True
        return flags


# What closing a wrapper's frame completes (see _Walker.close_wrapped).
_INNER_DONE, _WRAPPERS_DONE = "inner", "wrappers"


@functools.lru_cache(maxsize=1024)
def _wrapping(cls: Any) -> str | None:
    """How a class wraps: the attribute holding the wrapped module, ``MODULES_TO_SAVE``, or None.

    Per class, not per module: a model has few classes and many modules.
    """
    for c in cls.__mro__:
        if c.__name__ in WRAPPERS:
            return WRAPPERS[c.__name__]
        if c.__module__.partition(".")[0] == "peft":
            if c.__name__ in PEFT_WRAPPERS:
                return PEFT_WRAPPERS[c.__name__]
            if c.__name__ == MODULES_TO_SAVE:
                return MODULES_TO_SAVE
    return None


def _unwrap(module: Any, how: str) -> tuple[Any, list[tuple[Any, tuple[str, ...]]], Any] | None:
    """The module a wrapper runs (through every wrapper around it), the wrappers, and a PEFT adapter's base.

    ``levels`` lists each wrapper, outermost first, with the path of local
    names to what it wraps (two names for a ``modules_to_save`` copy). The
    base is the module whose parameters an adapter trains beside: an adapter
    layer's ``base_layer``, a ``modules_to_save`` original. None when
    ``module`` wraps nothing after all.
    """
    levels: list[tuple[Any, tuple[str, ...]]] = []
    base = None
    inner = module
    while True:
        if how == MODULES_TO_SAVE:
            path = _running_copy(inner)
            base = inner._modules.get("original_module")
        else:
            path = (how,)
        target = inner
        for local in path:
            target = getattr(target, "_modules", {}).get(local)
        if target is None:
            break
        if how == PEFT_WRAPPERS["BaseTunerLayer"]:
            base = target
        if how == WRAPPERS["FullyShardedDataParallel"] and FLAT_PARAMETER in target._parameters:
            raise PolicyUsageError(
                f"the model is wrapped in {type(inner).__name__} without use_orig_params, which replaced "
                "its parameters with one flat parameter: their names are gone",
                help="resolve and apply the policy to the bare model, then wrap it",
            )
        if target is module or any(target is wrapper for wrapper, _ in levels):
            raise PolicyUsageError(f"the model contains itself: {type(inner).__name__} wraps one of its own wrappers")
        levels.append((inner, path))
        inner = target
        wraps = _wrapping(inner.__class__)
        if wraps is None:
            break
        how = wraps
    if any(base is wrapper for wrapper, _ in levels):
        base = inner  # a base layer that is itself wrapped: its own parameters are the inner module's
    return (inner, levels, base) if levels else None


def _others(wrapper: Any, path: tuple[str, ...]) -> list[tuple[str, Any]]:
    """A wrapper's children but the path to what it wraps (a module on a longer path stays, without it)."""
    others: list[tuple[str, Any]] = []
    for local, child in wrapper._modules.items():
        if local != path[0]:
            others.append((local, child))
        elif len(path) > 1 and child is not None:
            others.append((local, _Pruned(child, path[1])))
    return others


@dataclass(frozen=True)
class _Pruned:
    """A module on a wrapper's path to what it wraps, walked without that child (``modules_to_save``)."""

    module: Any
    without: str


def _check_one_path(name: str, inner: Any, wrappers: list[Any], others: list[tuple[str, Any]]) -> None:
    """The wrapped module's and the wrappers' own names side by side: none may be there twice."""
    seen: set[str] = set()
    for local in itertools.chain(
        inner._parameters, *(wrapper._parameters for wrapper in wrappers), inner._modules, (o for o, _ in others)
    ):
        if local in seen:
            where = f"'{name}'" if name else "the model"
            raise PolicyUsageError(
                f"{where} is a {type(wrappers[-1]).__name__} around a {type(inner).__name__}, and both have "
                f"'{local}': with the wrapper's names left out, that name would have two meanings"
            )
        seen.add(local)


def _running_copy(wrapper: Any) -> tuple[str, ...]:
    """The path to the module a ``ModulesToSaveWrapper`` runs: the active adapter's copy, else the original."""
    state = wrapper.__dict__
    active = state.get("_active_adapter")
    if isinstance(active, str):
        active = [active]
    copies = wrapper._modules.get("modules_to_save")
    if state.get("_disable_adapters") or not active or copies is None or active[0] not in copies._modules:
        return ("original_module",)
    return ("modules_to_save", active[0])


#: What FSDP (without ``use_orig_params``) registers on the module it wraps in place of its parameters.
FLAT_PARAMETER = "_flat_param"


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
        types = list(map(type, self.modules))
        names = {cls: _class_names(cls) for cls in set(types)}  # a model has few classes and many modules
        return list(map(names.__getitem__, types))

    @functools.cached_property
    def module_running_stats(self) -> list[bool]:
        return list(map(_tracks_running_stats, self.modules))

    def can_require_grad_of(self, ids: list[int]) -> list[bool]:
        """Whether each of a few parameters can require gradients, as torch says for its dtype."""
        tensors = self.tensors
        return [_can_require_grad(tensors[i].dtype) for i in ids]


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


def _is_lazy(cls: type) -> bool:
    # torch.nn.modules.lazy.LazyModuleMixin: a module whose parameters exist after its first forward pass
    return any(c.__name__ == "LazyModuleMixin" for c in cls.__mro__)


@functools.lru_cache(maxsize=64)
def _is_uninitialized(cls: Any) -> bool:
    # torch.nn.parameter.UninitializedParameter, a lazy module's parameter before its first forward
    return any(c.__name__ == "UninitializedTensorMixin" for c in cls.__mro__)


def _refuse_uninitialized(tensors: list[Any], names: list[str]) -> None:
    lazy = [name for name, tensor in zip(names, tensors) if _is_uninitialized(tensor.__class__)]
    more = f" (and {len(lazy) - 1} more)" if len(lazy) > 1 else ""
    raise PolicyUsageError(
        f"parameter {lazy[0]}{more} is not initialized yet: a lazy module (nn.LazyLinear...) creates its "
        "parameters in its first forward pass",
        help="run one forward pass with a dummy batch, then resolve or apply the policy",
    )


def _number(found: list[Any], distinct: bool) -> tuple[list[int] | None, list[Any]]:
    """Number the objects ``found`` (one per slot) in order of first appearance.

    Returns the id per slot (None when ``distinct``: each slot its own id) and
    the objects by id.
    """
    if distinct:  # nothing reachable twice: the common case
        return None, found
    first: dict[int, int] = {}
    objects: list[Any] = []
    ids: list[int] = []
    for thing in found:
        number = first.setdefault(id(thing), len(objects))
        if number == len(objects):
            objects.append(thing)
        ids.append(number)
    return ids, objects


def _distinct(modules: list[Any]) -> bool:
    """Whether no module object is listed twice."""
    try:  # a module's own hash is C-level (a tensor's is not); one that defines its own is counted by id
        if len(set(modules)) == len(modules):
            return True
    except Exception:  # an unhashable module (one that defines __eq__ only) or a failing __hash__
        pass
    return len(set(map(id, modules))) == len(modules)


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
    if module._buffers.get("running_mean") is None:
        return False
    try:
        return getattr(module, "track_running_stats", False) is True
    except Exception:  # a __getattr__ that raises something other than AttributeError: not a norm layer's flag
        return False


@functools.lru_cache(maxsize=64)
def _can_require_grad(dtype: Any) -> bool:
    # Exactly the dtypes autograd accepts (requires_grad_ refuses every other one).
    return bool(dtype.is_floating_point or dtype.is_complex)


@functools.lru_cache(maxsize=64)
def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


@functools.lru_cache(maxsize=1024)
def _class_names(cls: type) -> tuple[str, ...]:
    """The class and every ancestor below nn.Module, nearest first."""
    import torch

    return tuple(c.__name__ for c in cls.__mro__ if issubclass(c, torch.nn.Module) and c is not torch.nn.Module)

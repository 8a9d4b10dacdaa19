"""Model manifests: a model's tree as versioned JSON, so CI can lint with no torch and no model code.

``policyfreeze manifest --model SPEC -o FILE`` writes one; ``lint --manifest
FILE`` reads it back into the same ``ModelTree`` the live model gives, so the
findings are exactly those of ``lint --model SPEC``.

Format (version 1): ``modules`` in ``named_modules()`` order, each module object
once, with its class and MRO names below ``nn.Module``, its registered
children and its own parameters (local names, in registration order), the
other names it is reachable under (``aliases``), whether an earlier apply
pinned it in eval mode, and whether it tracks running statistics;
``parameters`` in ``named_parameters()`` order, each tensor once, with shape,
dtype, ``requires_grad``, the other names of a tied tensor, and (written only
when true) whether it is the frozen base of a PEFT adapter.

A manifest must describe a tree with one path per name: every entry reached
from the root exactly once per name, in ``named_modules()`` /
``named_parameters()`` order, no local name twice in one module. Anything
else is refused (naming the entry), so reading one costs time linear in its
size. A manifest file is at most ``MAX_MANIFEST_BYTES``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from ..errors import PolicyUsageError
from .tree import ModelTree, StoredDetails, slot_ids

MANIFEST_FORMAT: Final = "policyfreeze-manifest"
MANIFEST_VERSION: Final = 1

#: The largest manifest file read: a model of a million parameter tensors needs about a quarter of it.
MAX_MANIFEST_BYTES = 64 << 20


LocalName = Annotated[str, Field(pattern=r"^[^.]+$")]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModuleEntry(_Entry):
    """One module object, under the first name ``named_modules()`` gives it."""

    name: str = Field(description="dotted path from the root; the root is ''")
    classes: list[str] = Field(
        description="class name, then its bases below nn.Module, nearest first (empty for a bare nn.Module)"
    )
    children: list[LocalName] = Field(default=[], description="local names of registered child modules, in order")
    parameters: list[LocalName] = Field(default=[], description="local names of the module's own parameters, in order")
    aliases: list[str] = Field(default=[], description="other full names of this module object")
    pinned: bool = Field(default=False, description="pinned in eval mode by an earlier apply")
    running_stats: bool = Field(default=False, description="updates running statistics in train mode (BatchNorm)")


class ParameterEntry(_Entry):
    """One parameter tensor, under the first name ``named_parameters()`` gives it."""

    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    dtype: str = Field(description="torch dtype without the 'torch.' prefix, e.g. float32")
    requires_grad: bool
    aliases: list[str] = Field(default=[], description="other full names of this tensor (tied weights)")
    adapter_base: bool = Field(
        default=False,
        description="the frozen base weight of a PEFT adapter (an adapter layer's base layer, a modules_to_save "
        "original); written only when true",
    )


class Manifest(_Entry):
    """A model's structure: everything a policy can select, no weights."""

    format: Literal["policyfreeze-manifest"] = MANIFEST_FORMAT
    version: Literal[1] = MANIFEST_VERSION
    model: str = Field(default="", description="what the manifest was made from, e.g. the --model spec")
    modules: list[ModuleEntry]
    parameters: list[ParameterEntry]
    #: the file it was read from, for messages
    _source: str = PrivateAttr(default="<manifest>")

    def to_json(self) -> str:
        # adapter_base only where true: a manifest of a model without adapters reads in earlier versions too.
        bases = [p.adapter_base for p in self.parameters]
        if not any(bases):
            exclude: Any = {"parameters": {"__all__": {"adapter_base"}}}
        else:
            exclude = {"parameters": {i: {"adapter_base"} for i, base in enumerate(bases) if not base}}
        # ASCII only: a name's U+009B or U+202E printed raw would move a terminal's cursor or reorder a line.
        return json.dumps(self.model_dump(mode="json", exclude=exclude), indent=1, ensure_ascii=True) + "\n"


def json_schema() -> str:
    """The JSON Schema of the manifest format."""
    return json.dumps(Manifest.model_json_schema(), indent=2) + "\n"


def from_tree(tree: ModelTree, model: str = "") -> Manifest:
    """The manifest of a model tree.

    A model whose names a manifest cannot hold (a child registered under a
    dotted or empty name, a name that is not text) is a ``PolicyUsageError``.
    """
    first_nodes: dict[int, int] = {}
    for node, (is_param, index) in enumerate(zip(tree.is_param, tree.ids)):
        if not is_param:
            first_nodes.setdefault(index, node)
    modules = []
    try:
        for module_id, info in enumerate(tree.modules):
            node = first_nodes[module_id]
            children, own = [], []
            below = node + 1
            while below < tree.ends[node]:
                local = _local(tree.names[below], info.name)
                if "." in local or not local:
                    what = "a parameter" if tree.is_param[below] else "a child"
                    raise PolicyUsageError(
                        f"module '{info.name}' has {what} registered under the name {local!r}: "
                        "a manifest records dotted paths, so a local name must be non-empty and hold no '.'",
                        help="register it under a name without dots (nn.ModuleDict keys become names too)",
                    )
                if tree.is_param[below]:
                    own.append(local)
                    below += 1
                else:
                    children.append(local)
                    below = tree.ends[below]
            modules.append(
                ModuleEntry(
                    name=info.name,
                    classes=list(info.classes),
                    children=children,
                    parameters=own,
                    aliases=list(info.aliases),
                    pinned=info.pinned,
                    running_stats=info.running_stats,
                )
            )
        parameters = [
            ParameterEntry(
                name=p.name,
                shape=list(p.shape),
                dtype=p.dtype,
                requires_grad=p.requires_grad,
                aliases=list(p.aliases),
                adapter_base=p.adapter_base,
            )
            for p in tree.params
        ]
        return Manifest(model=model, modules=modules, parameters=parameters)
    except ValidationError as exc:
        raise PolicyUsageError(f"the model cannot be written as a manifest: {_first_problem(exc)}") from None


def _local(name: str, parent: str) -> str:
    return name[len(parent) + 1 :] if parent else name


def to_tree(manifest: Manifest) -> ModelTree:
    """The ``ModelTree`` a manifest describes: node for node what the live model gives.

    A manifest that is not a tree with one path per name, in
    ``named_modules()`` order, is a ``PolicyUsageError`` naming the entry.
    """
    source = manifest._source
    modules_by_name = _index_names(manifest.modules, source)
    params_by_name = _index_names(manifest.parameters, source)
    for entry in manifest.modules:
        _check_locals(entry, source)
    names: list[str] = []
    ends: list[int] = []
    param_nodes: list[int] = []
    module_nodes: list[int] = []
    param_ids: list[int] = []  # per slot
    module_ids: list[int] = []
    # Pre-order, as walk() walks a live model. An int on the stack marks a node
    # whose subtree is complete. Local names have no dots and none repeats in
    # an entry, so every name visited is new and must be in the manifest: each
    # name is visited once, even in a manifest that describes a cycle.
    stack: list[str | int] = [""]
    while stack:
        item = stack.pop()
        if isinstance(item, int):
            ends[item] = len(names)
            continue
        module_id = _lookup(modules_by_name, item, "module", source)
        entry = manifest.modules[module_id]
        node = len(names)
        module_nodes.append(node)
        module_ids.append(module_id)
        names.append(item)
        ends.append(-1)
        prefix = item + "." if item else ""
        for local in entry.parameters:
            param_nodes.append(len(names))
            param_ids.append(_lookup(params_by_name, prefix + local, "parameter", source))
            names.append(prefix + local)
            ends.append(len(names))
        stack.append(node)
        stack.extend(reversed([prefix + local for local in entry.children]))
    _check_all_reached(modules_by_name, len(module_nodes), "module", names, source)
    _check_all_reached(params_by_name, len(param_nodes), "parameter", names, source)
    _check_order(module_ids, module_nodes, names, manifest.modules, "named_modules()", source)
    _check_order(param_ids, param_nodes, names, manifest.parameters, "named_parameters()", source)
    params, modules = manifest.parameters, manifest.modules
    return ModelTree(
        names=names,
        ends=ends,
        param_nodes=param_nodes,
        module_nodes=module_nodes,
        param_slot_ids=slot_ids(param_ids),
        module_slot_ids=slot_ids(module_ids),
        param_requires_grad=[p.requires_grad for p in params],
        param_adapter_base=[p.adapter_base for p in params],
        module_pinned=[m.pinned for m in modules],
        details=StoredDetails(
            param_shapes=[tuple(p.shape) for p in params],
            param_dtypes=[p.dtype for p in params],
            module_classes=[tuple(m.classes) for m in modules],
            module_running_stats=[m.running_stats for m in modules],
        ),
    )


def _inconsistent(source: str, problem: str) -> PolicyUsageError:
    return PolicyUsageError(f"{source}: invalid manifest: {problem}")


def _index_names(entries: Sequence[ModuleEntry | ParameterEntry], source: str) -> dict[str, int]:
    table: dict[str, int] = {}
    for index, entry in enumerate(entries):
        for name in (entry.name, *entry.aliases):
            if table.setdefault(name, index) != index:
                raise _inconsistent(source, f"'{name}' names two entries")
    return table


def _check_locals(entry: ModuleEntry, source: str) -> None:
    """No local name twice in one module: each child and parameter has one path."""
    seen: set[str] = set()
    for local in (*entry.children, *entry.parameters):
        if local in seen:
            raise _inconsistent(source, f"module '{entry.name}' lists '{local}' twice (a name has one path)")
        seen.add(local)


def _lookup(table: dict[str, int], name: str, kind: str, source: str) -> int:
    try:
        return table[name]
    except KeyError:
        raise _inconsistent(source, f"no {kind} named '{name}'") from None


def _check_all_reached(table: dict[str, int], reached: int, kind: str, names: list[str], source: str) -> None:
    """Every name of every entry was reached from the root (the names reached are distinct: once each)."""
    if reached < len(table):
        found = set(names)
        missing = next(name for name in table if name not in found)
        raise _inconsistent(source, f"{kind} '{missing}' is not reached from the root (no module lists it)")


def _check_order(
    ids: list[int],
    nodes: list[int],
    names: list[str],
    entries: list[ModuleEntry] | list[ParameterEntry],
    order: str,
    source: str,
) -> None:
    """Entries in order of first appearance, each first reached under its ``name`` (its aliases after)."""
    expected = 0
    for node, number in zip(nodes, ids):
        if number < expected:
            continue  # another name of an entry already reached
        entry = entries[number]
        if number > expected:
            raise _inconsistent(
                source, f"'{entry.name}' comes before '{entries[expected].name}' in {order} order, not after it"
            )
        if names[node] != entry.name:
            raise _inconsistent(source, f"'{entry.name}' is first reached as '{names[node]}', which must be its name")
        expected += 1


def load(path: str | Path) -> Manifest:
    """Read and validate a manifest file (a ``PolicyUsageError`` says what is wrong).

    The file is read once, and no further than ``MAX_MANIFEST_BYTES``.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise PolicyUsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PolicyUsageError(f"{path}: is a directory, not a manifest") from None
    except PermissionError:
        raise PolicyUsageError(f"{path}: permission denied") from None
    except OSError as exc:
        raise PolicyUsageError(f"{path}: cannot read the manifest: {exc.strerror}") from None
    except ValueError:  # a NUL in the name: no file can have it
        raise PolicyUsageError(f"{str(path)!r}: not a valid file name") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise _too_large(str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyUsageError(f"{path}: cannot read the manifest: not UTF-8 at byte {exc.start}") from None
    return parse(text, str(path))


def parse(text: str, name: str = "<manifest>") -> Manifest:
    """Validate a manifest's JSON text (a ``PolicyUsageError`` says what is wrong)."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise _too_large(name)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyUsageError(f"{name}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    except (RecursionError, ValueError) as exc:  # absurd nesting, or an integer past Python's digit limit
        raise PolicyUsageError(f"{name}: not a manifest: {type(exc).__name__}: {str(exc)[:120]}") from None
    if _SURROGATE_ESCAPE.search(text) or not _is_text(text):
        where = _lone_surrogate(data)
        if where is not None:
            raise PolicyUsageError(
                f"{name}: invalid manifest at {where or 'the document'}: "
                "a lone surrogate (\\ud800-\\udfff) is not a character"
            )
    if isinstance(data, dict):
        if data.get("format") != MANIFEST_FORMAT:
            raise PolicyUsageError(f'{name}: not a policyfreeze manifest (no "format": "{MANIFEST_FORMAT}")')
        version = data.get("version")
        if isinstance(version, int) and version > MANIFEST_VERSION:
            raise PolicyUsageError(
                f"{name}: manifest version {version} is newer than this policyfreeze reads "
                f"({MANIFEST_VERSION}): upgrade policyfreeze or write the manifest again"
            )
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        raise PolicyUsageError(f"{name}: invalid manifest at {_first_problem(exc)}") from None
    manifest._source = name
    return manifest


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the document"
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _too_large(name: str) -> PolicyUsageError:
    return PolicyUsageError(
        f"{name}: larger than the {MAX_MANIFEST_BYTES >> 20} MiB limit for a manifest",
        help="a manifest of a model with a million parameter tensors is about 15 MiB: is this a manifest?",
    )


#: A JSON escape of a surrogate: JSON lets a string escape half of a character on its own.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _is_text(text: str) -> bool:
    """Whether ``text`` is characters only: no lone surrogate, which no output encoding accepts."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _lone_surrogate(data: Any) -> str | None:
    """The dotted path of the first string or key holding a lone surrogate ('' for the document), or None."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            if not _is_text(value):
                return where
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                if not _is_text(key):
                    return _path(where, ascii(key))
                stack.append((_path(where, key), item))
        elif isinstance(value, list):
            stack.extend((_path(where, str(index)), item) for index, item in reversed(list(enumerate(value))))
    return None


def _path(where: str, part: str) -> str:
    return f"{where}.{part}" if where else part

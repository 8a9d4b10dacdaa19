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
dtype, ``requires_grad`` and the other names of a tied tensor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import PolicyUsageError
from .tree import ModelTree, StoredDetails, slot_ids

MANIFEST_FORMAT = "policyfreeze-manifest"
MANIFEST_VERSION = 1


LocalName = Annotated[str, Field(pattern=r"^[^.]+$")]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModuleEntry(_Entry):
    """One module object, under the first name ``named_modules()`` gives it."""

    name: str = Field(description="dotted path from the root; the root is ''")
    classes: list[str] = Field(min_length=1, description="class name, then its bases below nn.Module, nearest first")
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


class Manifest(_Entry):
    """A model's structure: everything a policy can select, no weights."""

    format: Literal["policyfreeze-manifest"] = MANIFEST_FORMAT
    version: Literal[1] = MANIFEST_VERSION
    model: str = Field(default="", description="what the manifest was made from, e.g. the --model spec")
    modules: list[ModuleEntry]
    parameters: list[ParameterEntry]

    def to_json(self) -> str:
        return self.model_dump_json(indent=1) + "\n"


def json_schema() -> str:
    """The JSON Schema of the manifest format."""
    return json.dumps(Manifest.model_json_schema(), indent=2) + "\n"


def from_tree(tree: ModelTree, model: str = "") -> Manifest:
    """The manifest of a model tree."""
    first_nodes: dict[int, int] = {}
    for node, (is_param, index) in enumerate(zip(tree.is_param, tree.ids)):
        if not is_param:
            first_nodes.setdefault(index, node)
    modules = []
    for module_id, info in enumerate(tree.modules):
        node = first_nodes[module_id]
        children, own = [], []
        below = node + 1
        while below < tree.ends[node]:
            local = _local(tree.names[below], info.name)
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
            name=p.name, shape=list(p.shape), dtype=p.dtype, requires_grad=p.requires_grad, aliases=list(p.aliases)
        )
        for p in tree.params
    ]
    return Manifest(model=model, modules=modules, parameters=parameters)


def _local(name: str, parent: str) -> str:
    return name[len(parent) + 1 :] if parent else name


def to_tree(manifest: Manifest) -> ModelTree:
    """The ``ModelTree`` a manifest describes: node for node what the live model gives."""
    modules_by_name = _index_names(manifest.modules)
    params_by_name = _index_names(manifest.parameters)
    names: list[str] = []
    ends: list[int] = []
    param_nodes: list[int] = []
    module_nodes: list[int] = []
    param_ids: list[int] = []  # per slot
    module_ids: list[int] = []
    # Pre-order, as walk.walk goes through a live model. An int on
    # the stack marks a node whose subtree is complete. Local names have no dots,
    # so every name visited is longer than its parent's and must be in the
    # manifest: the walk ends even on a manifest that describes a cycle.
    stack: list[str | int] = [""]
    while stack:
        item = stack.pop()
        if isinstance(item, int):
            ends[item] = len(names)
            continue
        module_id = _lookup(modules_by_name, item, "module")
        entry = manifest.modules[module_id]
        node = len(names)
        module_nodes.append(node)
        module_ids.append(module_id)
        names.append(item)
        ends.append(-1)
        prefix = item + "." if item else ""
        for local in entry.parameters:
            param_nodes.append(len(names))
            param_ids.append(_lookup(params_by_name, prefix + local, "parameter"))
            names.append(prefix + local)
            ends.append(len(names))
        stack.append(node)
        stack.extend(reversed([prefix + local for local in entry.children]))
    params, modules = manifest.parameters, manifest.modules
    return ModelTree(
        names=names,
        ends=ends,
        param_nodes=param_nodes,
        module_nodes=module_nodes,
        param_slot_ids=slot_ids(param_ids),
        module_slot_ids=slot_ids(module_ids),
        param_names=[p.name for p in params],
        param_aliases=[tuple(p.aliases) for p in params],
        param_requires_grad=[p.requires_grad for p in params],
        module_names=[m.name for m in modules],
        module_aliases=[tuple(m.aliases) for m in modules],
        module_pinned=[m.pinned for m in modules],
        details=StoredDetails(
            param_shapes=[tuple(p.shape) for p in params],
            param_dtypes=[p.dtype for p in params],
            module_classes=[tuple(m.classes) for m in modules],
            module_running_stats=[m.running_stats for m in modules],
        ),
    )


def _index_names(entries: list[ModuleEntry] | list[ParameterEntry]) -> dict[str, int]:
    table: dict[str, int] = {}
    for index, entry in enumerate(entries):
        for name in (entry.name, *entry.aliases):
            if table.setdefault(name, index) != index:
                raise PolicyUsageError(f"the manifest is inconsistent: '{name}' names two entries")
    return table


def _lookup(table: dict[str, int], name: str, kind: str) -> int:
    try:
        return table[name]
    except KeyError:
        raise PolicyUsageError(f"the manifest is inconsistent: no {kind} named '{name}'") from None


def load(path: str | Path) -> Manifest:
    """Read and validate a manifest file (a ``PolicyUsageError`` says what is wrong)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyUsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyUsageError(f"{path}: cannot read the manifest: {exc}") from None
    return parse(text, str(path))


def parse(text: str, name: str = "<manifest>") -> Manifest:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyUsageError(f"{name}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    except (RecursionError, ValueError) as exc:  # absurd nesting, or an integer past Python's digit limit
        raise PolicyUsageError(f"{name}: not a manifest: {type(exc).__name__}: {str(exc)[:120]}") from None
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
        return Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the document"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise PolicyUsageError(f"{name}: invalid manifest at {where}: {first['msg']}{more}") from None

"""A cheap proof that a walked model still has the modules and parameters it had.

A ``Freezer`` resolves each later stage on the tree it walked first (each
statement selected once), which is only right while the model keeps its
structure. Walking again costs more than the stage change itself, so it
keeps what the walk read — every module's ``_parameters`` and ``_modules``
dict, and their entries — and checks, in C-level passes with no name built:
each ``_modules`` dict equals its recorded copy (modules compare by
identity), each ``_parameters`` dict has its recorded size and still holds
the very tensors recorded (by identity: a tensor's ``==`` compares values).
Then a new walk would give the same tree and tensors. When something
changed — ``fully_shard`` replaces every parameter with a sharded one,
``load_state_dict(assign=True)`` assigns new ones, a layer was swapped —
the Freezer walks again.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

from ..model.walk import LiveModel


@dataclass(frozen=True)
class Structure:
    """What a walk read from its modules, and the index of its tensors."""

    children: list[dict]  # per module: its _modules dict
    children_copies: list[dict]
    params: list[dict]  # per module: its _parameters dict
    param_sizes: list[int]
    #: per parameter entry (None slots included): its dict, its key and the tensor it held
    entry_dicts: list[dict]
    entry_keys: list[str]
    entry_values: list[Any]
    #: id(tensor) → parameter id, for mapping an optimizer's tensors to the model's
    index: dict[int, int]

    @classmethod
    def of(cls, live: LiveModel) -> Structure:
        children = [module._modules for module in live.modules]
        params = [module._parameters for module in live.modules]
        entry_dicts: list[dict] = []
        for container in params:
            entry_dicts.extend([container] * len(container))
        return cls(
            children,
            list(map(dict, children)),
            params,
            list(map(len, params)),
            entry_dicts,
            [key for container in params for key in container],
            [value for container in params for value in container.values()],
            dict(zip(map(id, live.tensors), range(len(live.tensors)))),
        )

    def unchanged(self) -> bool:
        """Whether every module still holds exactly the children and parameters recorded."""
        if list(map(len, self.params)) != self.param_sizes or self.children != self.children_copies:
            return False
        try:
            return not any(
                map(operator.is_not, map(operator.getitem, self.entry_dicts, self.entry_keys), self.entry_values)
            )
        except KeyError:  # an entry was replaced by one under another name
            return False

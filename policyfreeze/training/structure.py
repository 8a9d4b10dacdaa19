"""A cheap proof that a walked model still has the modules and parameters it had.

A ``Freezer`` resolves each later stage on the tree it walked first (each
statement selected once), which is only right while the model keeps its
structure. Walking again costs more than the stage change itself, so it
keeps, for every module of the walk, the ``_parameters`` and ``_modules``
entries it read: if every entry is still the same object and no module
gained or lost one, a new walk would give the same tree and tensors. When
something changed — ``fully_shard`` replaces every parameter with a sharded
one, ``load_state_dict(assign=True)`` assigns new ones — the Freezer walks
again.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

from ..model.walk import LiveModel


@dataclass(frozen=True)
class Structure:
    """Every ``_parameters``/``_modules`` entry of a walk's modules, and each container's size."""

    containers: list[dict]
    keys: list[str]
    values: list[Any]
    sizes: list[int]

    @classmethod
    def of(cls, live: LiveModel) -> Structure:
        containers: list[dict] = []
        keys: list[str] = []
        values: list[Any] = []
        for module in live.modules:
            for container in (module._parameters, module._modules):
                containers.extend([container] * len(container))
                keys.extend(container)
                values.extend(container.values())
        return cls(containers, keys, values, cls._sizes(live.modules))

    @staticmethod
    def _sizes(modules: list[Any]) -> list[int]:
        return list(map(len, map(operator.attrgetter("_parameters"), modules))) + list(
            map(len, map(operator.attrgetter("_modules"), modules))
        )

    def unchanged(self, live: LiveModel) -> bool:
        """Whether ``live``'s modules still hold exactly the entries recorded (one pass, no names built)."""
        if self._sizes(live.modules) != self.sizes:
            return False
        try:
            return not any(map(operator.is_not, map(operator.getitem, self.containers, self.keys), self.values))
        except KeyError:  # an entry was replaced by another name
            return False

"""Whether model trees mark adapter layers yet, which PF209 needs.

The model walk names a PEFT model's layers as the base model's and marks each
adapter layer (``ModelTree.module_adapter``). Tests of PF209 on a real PEFT
model are expected to fail until it does; the mark turns them into ordinary
tests as soon as the column exists (strict: an unexpected pass fails).
"""

import dataclasses

import pytest

from policyfreeze.model.tree import ModelTree

ADAPTER_AWARE = hasattr(ModelTree, "module_adapter") or any(
    f.name == "module_adapter" for f in dataclasses.fields(ModelTree)
)

until_adapter_aware = pytest.mark.xfail(
    not ADAPTER_AWARE,
    reason="PF209 needs ModelTree.module_adapter and PEFT-transparent names from the model walk",
    strict=True,
)

"""The benchmark's hand loops decide exactly what their policies decide.

bench/bench_resolve.py times ``policyfreeze.apply`` against these loops; the
comparison means something only if both leave every flag the same. Checked
here on small versions of the benchmark's model (every parameter compared).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import policyfreeze

_spec = importlib.util.spec_from_file_location("bench_moe", Path(__file__).parent.parent / "bench" / "moe.py")
moe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(moe)


def flags(model) -> dict[str, bool]:
    return {name: p.requires_grad for name, p in model.named_parameters()}


@pytest.mark.parametrize("experts", [3, 5])
@pytest.mark.parametrize("policy", list(moe.POLICIES))
def test_hand_loop_equals_policy(policy, experts):
    text, loop = moe.POLICIES[policy]
    by_hand, by_policy = moe.build(1000, experts), moe.build(1000, experts)
    assert len(by_hand.blocks) >= 40  # blocks 3, 5, 15 and 30-39 exist: every rule of the mixed policy bites
    loop(by_hand)
    policyfreeze.apply(by_policy, policyfreeze.parse(text))
    assert flags(by_policy) == flags(by_hand)
    assert len(set(flags(by_hand).values())) == 2 or policy == "first-children"

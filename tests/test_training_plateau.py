"""Plateau: when a monitored metric stops improving (the trigger of ``at phase`` stages)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from models import tiny

import policyfreeze
from policyfreeze import PolicyUsageError
from policyfreeze.training.plateau import Plateau

NAN = float("nan")

CASES = [
    # mode, patience, min_delta, values, the updates that report a plateau (1-based)
    ("min", 2, 0.0, [1.0, 0.9, 0.9, 0.95], [4]),
    ("min", 2, 0.0, [1.0, 0.9, 0.95, 0.8, 0.85, 0.85], [6]),  # an improvement restarts the count
    ("min", 1, 0.0, [1.0, 1.0, 0.5, 0.6], [2, 4]),  # after a plateau it starts over from the next value
    ("min", 0, 0.0, [1.0, 1.0, 2.0], [2]),  # 0 and 1 alike: the first value that does not improve
    ("min", 2, 0.1, [1.0, 0.95, 0.92, 0.85], [3]),  # improvements within min_delta do not count
    ("max", 2, 0.0, [0.5, 0.6, 0.6, 0.55, 0.7], [4]),
    ("max", 1, 0.05, [0.5, 0.54, 0.7], [2]),
    ("min", 2, 0.0, [1.0, NAN, math.inf], [3]),  # non-finite values never improve
    ("min", 3, 0.0, [NAN, NAN, NAN, 1.0], [3]),
]


@pytest.mark.parametrize("mode, patience, min_delta, values, plateaus", CASES)
def test_plateaus(mode, patience, min_delta, values, plateaus):
    plateau = Plateau(mode, patience=patience, min_delta=min_delta)
    assert [n for n, value in enumerate(values, start=1) if plateau.update(value)] == plateaus


def reference(mode: str, patience: int, min_delta: float, values: list[float]) -> list[bool]:
    """The rule written out: improvement against the best since the last plateau."""
    best, wait, out = None, 0, []
    for value in values:
        better = math.isfinite(value) and (
            best is None or (value < best - min_delta if mode == "min" else value > best + min_delta)
        )
        if better:
            best, wait = value, 0
            out.append(False)
            continue
        wait += 1
        if wait >= patience:
            best, wait = None, 0
            out.append(True)
        else:
            out.append(False)
    return out


@given(
    st.sampled_from(["min", "max"]),
    st.integers(0, 4),
    st.sampled_from([0.0, 0.01, 0.5]),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=30),
)
def test_plateau_follows_the_rule_and_survives_a_checkpoint_anywhere(mode, patience, min_delta, values):
    expected = reference(mode, patience, min_delta, values)
    plateau = Plateau(mode, patience=patience, min_delta=min_delta)
    got = []
    for value in values:
        got.append(plateau.update(value))
        restored = Plateau(mode, patience=patience, min_delta=min_delta)
        restored.load_state_dict(plateau.state_dict())
        plateau = restored
    assert got == expected


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"mode": "lowest"}, "mode is 'min' or 'max', not 'lowest'"),
        ({"patience": -1}, "patience is an integer 0 or more, not -1"),
        ({"patience": 1.5}, "patience is an integer 0 or more, not 1.5"),
        ({"min_delta": -0.1}, "min_delta is a finite number 0 or more, not -0.1"),
        ({"min_delta": math.nan}, "min_delta is a finite number 0 or more, not nan"),
    ],
)
def test_bad_settings(arguments, message):
    with pytest.raises(PolicyUsageError, match=message):
        Plateau(**arguments)


@pytest.mark.parametrize(
    "state, message",
    [
        ({}, "not a Plateau state"),
        ({"mode": "max", "patience": 2, "min_delta": 0.0, "best": None, "wait": 0}, "plateau settings"),
        ({"mode": "min", "patience": 2, "min_delta": 0.0, "best": "low", "wait": 0}, "'best' is 'low'"),
        ({"mode": "min", "patience": 2, "min_delta": 0.0, "best": 1.0, "wait": 2}, "'wait' is 2"),
    ],
)
def test_bad_states(state, message):
    with pytest.raises(PolicyUsageError, match=message):
        Plateau("min", patience=2).load_state_dict(state)


def test_a_phased_policy_advances_on_each_plateau_of_a_real_training_loop():
    """Train while the loss improves; on a plateau move to the next phase, until the last."""
    policy = "freeze all; unfreeze 3\nat phase 1 { unfreeze 2 with lr_scale=0.5 }\nat phase 2 { unfreeze 0 }"
    model = tiny()
    freezer = policyfreeze.Freezer(model, policy, lr=0.05)
    optimizer = torch.optim.SGD(freezer.param_groups())
    plateau = Plateau("min", patience=2, min_delta=1e-3)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    phases = []
    for epoch in range(60):
        optimizer.zero_grad()
        loss = (model(x) - 1).pow(2).mean()
        loss.backward()
        optimizer.step()
        if plateau.update(round(loss.item(), 2)) and freezer.next_stage is not None:
            phases.append((epoch, freezer.advance(optimizer).at))
        assert policyfreeze.check_optimizer(model, optimizer) == ()
    assert [phase for _, phase in phases] == [1, 2]
    assert freezer.at == 2 and all(p.requires_grad for p in model.parameters())

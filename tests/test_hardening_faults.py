"""All-or-nothing under faults: make the k-th change fail, for every k, and prove nothing changed.

``applier.set_requires_grad`` and ``applier.set_pinned`` are the only places
``apply`` mutates a model. Each test run replaces them with versions that
count every change and fail at the k-th, either before or after making it,
then checks every parameter flag, every eval pin (the very pin object) and
every module's mode, and that ``model.train()`` still behaves exactly as on
an untouched copy.
"""

from __future__ import annotations

import copy

import pytest
import torchvision

from policyfreeze import PolicyResolveError, apply, resolve
from policyfreeze.engine import commit as applier
from policyfreeze.model import pins

# A mixed starting point: some parameters frozen, some BatchNorms pinned, layer3 in eval mode.
START = "freeze layer2, conv1\neval layer1 & type(BatchNorm2d), bn1\n"
# Changes flags both ways, pins new modules and unpins old ones.
POLICY = "freeze all\nunfreeze layer3, layer4, fc, layer2.0\neval type(BatchNorm2d) except layer4\ntrain layer1\n"


class Fault(RuntimeError):
    pass


def state(model) -> tuple:
    """Every flag, every pin object and every mode: what must survive a failed apply."""
    flags = tuple((name, p.requires_grad) for name, p in model.named_parameters())
    held = tuple((name, vars(m).get(pins.PINNED_METHOD), m.training) for name, m in model.named_modules())
    return flags, held


def modes_after_train(model) -> list[bool]:
    model.train()
    return [m.training for m in model.modules()]


@pytest.fixture(scope="module")
def model():
    model = torchvision.models.resnet18(weights=None)
    apply(model, START)
    model.layer3.eval()
    return model


def count_changes(model) -> int:
    plan = resolve(model, POLICY)
    flags = sum(plan.requires_grad[p.name] != p.requires_grad for p in plan.tree.params)
    pinned = sum(plan.pinned[m.name] != m.pinned for m in plan.tree.modules)
    assert flags > 20 and pinned > 10  # the policy exercises both kinds of change
    return flags + pinned


def failing_at(k: int, monkeypatch, *, after: bool, error: type[BaseException] = Fault) -> list[int]:
    calls: list[int] = []

    def wrap(change):
        def faulty(target, flag):
            calls.append(1)
            if len(calls) == k and not after:
                raise error(f"fault injected before change {k}")
            change(target, flag)
            if len(calls) == k:
                raise error(f"fault injected after change {k}")

        return faulty

    monkeypatch.setattr(applier, "set_requires_grad", wrap(applier.set_requires_grad))
    monkeypatch.setattr(applier, "set_pinned", wrap(applier.set_pinned))
    return calls


@pytest.mark.parametrize("after", [False, True], ids=["fail-before-change", "fail-after-change"])
def test_a_fault_at_any_change_leaves_everything_as_it_was(model, monkeypatch, after):
    before = state(model)
    reference = copy.deepcopy(model)
    total = count_changes(model)
    for k in range(1, total + 1):
        with monkeypatch.context() as patch:
            calls = failing_at(k, patch, after=after)
            with pytest.raises(PolicyResolveError, match="every change was undone") as info:
                apply(model, POLICY)
        assert isinstance(info.value.__cause__, Fault)
        assert len(calls) == k
        assert state(model) == before, f"change {k} of {total} left the model changed"
    assert modes_after_train(model) == modes_after_train(reference)
    model.layer3.eval()  # back to the fixture's starting point for the next test


def test_an_interrupt_is_undone_too_and_not_wrapped(model, monkeypatch):
    before = state(model)
    failing_at(7, monkeypatch, after=True, error=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        apply(model, POLICY)
    assert state(model) == before


def test_without_a_fault_the_same_apply_succeeds(model):
    """The control: the policy the faults interrupt does apply, and changes what was counted."""
    before = state(model)
    trial = copy.deepcopy(model)
    report = apply(trial, POLICY)
    assert state(trial) != before
    assert {n for n, p in trial.named_parameters() if p.requires_grad} == set(report.plan.trainable)
    assert all(pins.is_pinned(m) for n, m in trial.named_modules() if n.startswith("layer2") and "bn" in n)
    assert not any(pins.is_pinned(m) for n, m in trial.named_modules() if n.startswith(("layer1", "layer4")))

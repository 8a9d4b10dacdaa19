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
import torch
import torchvision

from policyfreeze import PolicyResolveError, PolicyWarning, apply, resolve
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


# --- restores that fail too: every other change is still undone, and the error says what is left -------------


class FlakyParameter(torch.nn.Parameter):
    """A parameter whose ``requires_grad_`` works ``works`` times, then raises."""

    def requires_grad_(self, requires_grad: bool = True):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls > self.works:
            raise Fault(f"requires_grad_ refused (call {self.calls})")
        return super().requires_grad_(requires_grad)


def flaky(works: int) -> FlakyParameter:
    parameter = FlakyParameter(torch.zeros(2))
    parameter.works = works
    return parameter


def three_parameters() -> torch.nn.Module:
    model = torch.nn.Module()
    model.once = flaky(works=1)  # changes, then cannot change back
    model.normal = torch.nn.Parameter(torch.zeros(2))
    model.never = flaky(works=0)  # the change that fails
    return model


def test_a_restore_that_fails_does_not_stop_the_others():
    model = three_parameters()
    with pytest.raises(PolicyResolveError) as info, pytest.warns(PolicyWarning, match="PF205"):
        apply(model, "freeze all")
    assert model.normal.requires_grad, "the parameter between two failures was not restored"
    assert model.never.requires_grad  # it never changed
    assert not model.once.requires_grad  # it could not be put back, and the error says so
    message = info.value.message
    assert message.startswith(
        "applying the policy failed while freezing never (Fault: requires_grad_ refused (call 1))"
    )
    assert "1 change could not be undone, the model is left partly changed: once (requires_grad): Fault" in message
    assert "normal" not in message and "every change was undone" not in message
    assert isinstance(info.value.__cause__, Fault)


class StuckMode(torch.nn.Module):
    """A module whose mode can be set ``works`` more times after it is built, then setting it raises."""

    def __init__(self, works: int) -> None:
        super().__init__()
        self.__dict__["works"] = works

    @property
    def training(self) -> bool:
        return self.__dict__.get("mode", True)

    @training.setter
    def training(self, mode: bool) -> None:
        if "mode" in self.__dict__:
            if self.__dict__["works"] == 0:
                raise Fault("the mode is stuck")
            self.__dict__["works"] -= 1
        self.__dict__["mode"] = mode


def pinned_modules(model) -> list[str]:
    return [name for name, module in model.named_modules() if pins.is_pinned(module)]


@pytest.mark.parametrize("works", [0, 1], ids=["fails-to-pin", "pins-then-cannot-unpin"])
def test_a_module_whose_mode_cannot_change_leaves_the_root_and_siblings_unpinned(works):
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(2), StuckMode(works), torch.nn.BatchNorm1d(2), StuckMode(0))
    with pytest.raises(PolicyResolveError) as info:
        apply(model, "eval all")
    message = info.value.message
    assert isinstance(info.value.__cause__, Fault)
    if works == 0:  # the pin of module 1 failed: nothing changed that could not be put back
        assert pinned_modules(model) == []
        assert message.startswith("applying the policy failed while pinning 1 (Fault: the mode is stuck)")
        assert message.endswith("every change was undone")
    else:  # module 1 pinned, module 3 failed, then module 1's mode could not be restored
        assert pinned_modules(model) == []  # the pin object itself is removed
        assert not model[1].training
        assert message.startswith("applying the policy failed while pinning 3 (Fault: the mode is stuck)")
        assert "1 change could not be undone, the model is left partly changed: 1 (eval pin): Fault" in message
    assert all(m.training for i, m in enumerate(model.modules()) if i != 2 or works == 0)


def test_an_injected_restore_fault_is_reported_and_the_rest_restored(model, monkeypatch):
    """The last pin fails after it is made and restoring it fails too: everything else is back as it was."""
    before = state(model)
    snapshots = {id(module): pins.snapshot(module) for module in model.modules()}
    failing_at(count_changes(model), monkeypatch, after=True)
    restore = pins.restore
    refused = []

    def restore_but_the_first(module, mode):
        if not refused:
            refused.append(module)
            raise Fault("restore refused")
        restore(module, mode)

    monkeypatch.setattr(pins, "restore", restore_but_the_first)
    with pytest.raises(PolicyResolveError, match="1 change could not be undone") as info:
        apply(model, POLICY)
    [stuck] = refused
    name = next(name for name, module in model.named_modules() if module is stuck)
    assert info.value.message.startswith(f"applying the policy failed while pinning {name} (Fault: fault injected")
    assert info.value.message.endswith(f"left partly changed: {name} (eval pin): Fault: restore refused")
    restore(stuck, snapshots[id(stuck)])  # the one change left: everything else was restored
    assert state(model) == before


def test_an_interrupt_stays_itself_and_a_restore_it_could_not_make_is_warned(monkeypatch):
    model = three_parameters()
    model.never = torch.nn.Parameter(torch.zeros(2))
    change = applier.set_requires_grad
    calls = []

    def interrupted(tensor, flag):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        change(tensor, flag)

    monkeypatch.setattr(applier, "set_requires_grad", interrupted)
    with pytest.raises(KeyboardInterrupt), pytest.warns(PolicyWarning) as caught:
        apply(model, "unfreeze all; freeze all")
    [interrupt] = [w for w in caught if "interrupted" in str(w.message)]
    assert str(interrupt.message) == (
        "applying the policy was interrupted; 1 change could not be undone, the model is left partly changed: "
        "once (requires_grad): Fault: requires_grad_ refused (call 2)"
    )
    assert model.normal.requires_grad and model.never.requires_grad

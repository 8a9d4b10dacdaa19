"""Eval pins: ``eval S`` holds modules in eval mode across ``model.train()``; ``train S`` lets go."""

import copy
import io
import pickle

import pytest
import torch
import torchvision
from models import tiny
from torch import nn

import policyfreeze
from policyfreeze.engine import commit as applier
from policyfreeze.errors import PolicyError
from policyfreeze.model import pins
from policyfreeze.model.walk import tree_of

STATS = ("running_mean", "running_var", "num_batches_tracked")


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None)


def batchnorms(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}


def stats(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{name}.{s}": getattr(m, s).clone() for name, m in batchnorms(model).items() for s in STATS}


def modes(model: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def pinned(model: nn.Module) -> set[str]:
    return {name for name, m in model.named_modules() if pins.is_pinned(m)}


def train_step(model: nn.Module) -> None:
    model.train()
    torch.manual_seed(1)
    model(torch.randn(4, 3, 32, 32)).sum().backward()


def test_pinned_batchnorm_statistics_stay_bit_identical_while_unpinned_ones_update():
    model = resnet18()
    policyfreeze.apply(model, "freeze all; unfreeze layer4, fc; eval type(BatchNorm2d) except layer4")
    before = stats(model)
    train_step(model)
    after = stats(model)
    pinned_bns = {name for name in batchnorms(model) if not name.startswith("layer4")}
    assert pinned(model) == pinned_bns and len(pinned_bns) == 15
    for name, module in batchnorms(model).items():
        assert module.training is (name not in pinned_bns), name
        for stat in STATS:
            key = f"{name}.{stat}"
            if name in pinned_bns:
                assert torch.equal(after[key], before[key]), key
            else:
                assert not torch.equal(after[key], before[key]), key
    # Only BatchNorm is pinned: every other module follows model.train().
    assert {name for name, training in modes(model).items() if not training} == pinned_bns


def test_train_removes_the_pin():
    model = resnet18()
    policyfreeze.apply(model, "eval type(BatchNorm2d)")
    report = policyfreeze.apply(model, "train type(BatchNorm2d)")
    assert [change.name for change in report.pin_changes] == list(batchnorms(model))
    assert pinned(model) == set()
    before = stats(model)
    train_step(model)
    after = stats(model)
    assert all(not torch.equal(after[key], before[key]) for key in before)
    assert all(modes(model).values())


def test_dropout_is_pinned_too():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
    policyfreeze.apply(model, "eval type(Dropout)")
    model.train()
    x = torch.ones(2, 8)
    assert torch.equal(model(x), model(x))
    assert model[1].training is False and model[0].training is True


@pytest.mark.parametrize(
    "calls, expected_after_unpin",
    [
        ([], True),  # pinned while training: takes train back
        (["eval"], False),
        (["eval", "train"], True),
        (["train", "eval"], False),
    ],
)
def test_unpinning_restores_the_mode_last_asked_for(calls, expected_after_unpin):
    model = tiny()
    policyfreeze.apply(model, "eval 2.1")
    for call in calls:
        getattr(model, call)()
        assert model[2][1].training is False
    policyfreeze.apply(model, "train 2.1")
    assert model[2][1].training is expected_after_unpin
    assert model.training is expected_after_unpin


def test_a_pin_is_per_module_children_still_follow_train():
    model = resnet18()
    policyfreeze.apply(model, "eval layer1; train layer1.0.bn1")
    model.train()
    assert model.layer1.training is False
    assert model.layer1[0].training is False
    assert model.layer1[0].bn1.training is True
    assert model.layer2.training is True
    model.eval()
    assert model.layer1[0].bn1.training is False


def test_direct_train_call_on_a_pinned_module_keeps_it_in_eval():
    model = tiny()
    policyfreeze.apply(model, "eval 2")
    assert model[2].train() is model[2]
    assert model[2].training is False and model[2][1].training is False
    with pytest.raises(ValueError):  # nn.Module's own check still runs
        model[2].train("yes")


def test_a_subclass_train_override_still_runs():
    class Counting(nn.BatchNorm1d):
        calls = 0

        def train(self, mode=True):
            type(self).calls += 1
            return super().train(mode)

    model = nn.Sequential(nn.Linear(3, 3), Counting(3))
    policyfreeze.apply(model, "eval 1")
    model.train()
    assert Counting.calls == 1 and model[1].training is False


def test_resolution_starts_from_the_pins_an_earlier_apply_left():
    model = tiny()
    policyfreeze.apply(model, "eval type(BatchNorm1d)")
    tree = tree_of(model)
    assert {m.name for m in tree.modules if m.pinned} == {"2.1"}
    plan = policyfreeze.resolve(model, "freeze all")
    assert plan.pinned == {"": False, "0": False, "1": False, "2": False, "2.0": False, "2.1": True, "3": False}
    assert plan.pin_decisions["2.1"] is None
    report = policyfreeze.apply(model, "freeze all")
    assert report.pin_changes == [] and pinned(model) == {"2.1"}


def test_deepcopy_keeps_pins_on_the_copy_only():
    model = resnet18()
    policyfreeze.apply(model, "eval type(BatchNorm2d) except layer4")
    clone = copy.deepcopy(model)
    assert pinned(clone) == pinned(model)
    for name, module in batchnorms(clone).items():
        if pins.is_pinned(module):
            assert vars(module)["train"].module is module, name
    policyfreeze.apply(clone, "train all")
    assert pinned(clone) == set() and len(pinned(model)) == 15
    model.train()
    assert model.bn1.training is False


@pytest.mark.parametrize("round_trip", ["pickle", "torch.save"])
def test_pickling_keeps_pins(round_trip):
    model = tiny()
    policyfreeze.apply(model, "eval 2.1")
    if round_trip == "pickle":
        loaded = pickle.loads(pickle.dumps(model))
    else:
        buffer = io.BytesIO()
        torch.save(model, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
    assert pinned(loaded) == {"2.1"}
    loaded.train()
    assert loaded[2][1].training is False and loaded[2][0].training is True
    assert vars(loaded[2][1])["train"].module is loaded[2][1]


def test_state_dict_neither_records_nor_restores_pins():
    pinned_model, plain = resnet18(), resnet18()
    policyfreeze.apply(pinned_model, "eval type(BatchNorm2d)")
    state = pinned_model.state_dict()
    assert list(state) == list(plain.state_dict())  # no extra keys: loads strictly anywhere
    fresh = resnet18()
    fresh.load_state_dict(state)
    assert pinned(fresh) == set()
    # Loading weights into a pinned model keeps its pins.
    pinned_model.load_state_dict(plain.state_dict())
    assert pinned(pinned_model) == set(batchnorms(pinned_model))
    for key, value in plain.state_dict().items():
        assert torch.equal(pinned_model.state_dict()[key], value), key


def test_pins_hold_under_torch_compile():
    model = tiny()
    compiled = torch.compile(model, backend="eager")
    policyfreeze.apply(compiled, "eval type(BatchNorm1d)")
    assert pinned(model) == {"2.1"}
    assert policyfreeze.resolve(compiled, "freeze all").pinned["2.1"] is True
    compiled.train()
    assert model[2][1].training is False and model[2][0].training is True
    bn = model[2][1]
    before = [getattr(bn, s).clone() for s in STATS]
    compiled(torch.randn(4, 2)).sum().backward()
    assert all(torch.equal(getattr(bn, s), b) for s, b in zip(STATS, before))
    policyfreeze.apply(compiled, "train all")
    compiled.train()
    compiled(torch.randn(4, 2))
    assert not torch.equal(bn.running_mean, before[0])


def test_pins_hold_under_data_parallel():
    model = tiny()
    wrapped = nn.DataParallel(model)
    policyfreeze.apply(wrapped, "eval 2.1")
    wrapped.train()
    assert model[2][1].training is False and model.training is True


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_a_fault_while_pinning_undoes_flags_and_pins(monkeypatch, fail_at):
    model = tiny()
    policyfreeze.apply(model, "eval 0")
    model.eval()
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    before_modes, before_pins = modes(model), pinned(model)
    calls = []

    def flaky(module, flag):
        calls.append(module)
        if len(calls) == fail_at:
            raise RuntimeError("injected")
        pins.pin(module) if flag else pins.unpin(module)

    monkeypatch.setattr(applier, "set_pinned", flaky)
    with pytest.raises(PolicyError, match="undone"):
        policyfreeze.apply(model, "freeze all; train 0; eval 1, 2, 3")
    assert len(calls) == fail_at
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert modes(model) == before_modes and pinned(model) == before_pins
    model.train()
    assert model[0].training is False  # the restored pin still holds


def test_a_fault_while_setting_flags_leaves_pins_alone(monkeypatch):
    model = tiny()

    def broken(tensor, flag):
        raise RuntimeError("injected")

    monkeypatch.setattr(applier, "set_requires_grad", broken)
    with pytest.raises(PolicyError, match="undone"):
        policyfreeze.apply(model, "eval all; freeze all")
    assert pinned(model) == set() and all(modes(model).values())


def test_the_report_shows_pin_changes():
    report = policyfreeze.apply(tiny(), policyfreeze.parse("freeze 2\neval type(BatchNorm1d)\n", "bn.freeze"))
    text = str(report)
    assert (
        "eval pins: 1 module pinned in eval mode\n"
        "  2.1 (BatchNorm1d)  follows train() → pinned eval  line 2 eval type(BatchNorm1d)\n"
    ) in text
    assert (
        "eval pins changed (1):\n"
        "  module  before → after                 decided by\n"
        "  2.1     follows train() → pinned eval  bn.freeze:2 eval type(BatchNorm1d)\n"
    ) in report.table()
    assert "eval pins" not in str(policyfreeze.apply(tiny(), "freeze 2"))


# Unpinning follows the parent, however modes were changed ---------------------------------


def validate_like_lightning(model: nn.Module) -> None:
    """What Lightning does around a validation loop: capture every module's mode, eval(), restore by assignment."""
    captured = {module: module.training for module in model.modules()}
    model.eval()
    model(torch.randn(4, 2))
    for module, mode in captured.items():
        module.training = mode


MODE_CHANGES = {
    "validation loop": validate_like_lightning,
    "assignment": lambda model: [setattr(m, "training", True) for m in model.modules() if not pins.is_pinned(m)],
    "module.apply assigning": lambda model: model.apply(lambda m: setattr(m, "training", True)),
    "module.apply calling train": lambda model: model.apply(lambda m: m.train()),
    "a direct eval() on the pinned module, then model.train()": lambda model: (model[2][1].eval(), model.train()),
}


@pytest.mark.parametrize("change", MODE_CHANGES.values(), ids=MODE_CHANGES)
def test_an_unpinned_module_follows_its_parent_however_modes_changed_meanwhile(change):
    model = tiny()
    policyfreeze.apply(model, "eval 2.1")
    model.train()
    validate_like_lightning(model)  # leaves the pin's last request at eval
    change(model)
    policyfreeze.apply(model, "train 2.1")
    assert model[2][1].training is True and model[2].training is True
    model.eval()
    assert model[2][1].training is False
    model.train()
    assert model[2][1].training is True


def test_an_unpinned_module_in_an_evaluating_model_evaluates():
    model = tiny()
    policyfreeze.apply(model, "eval 2.1")
    model.train()
    for module in model.modules():  # a framework switches to eval by assignment
        module.training = False
    policyfreeze.apply(model, "train 2.1")
    assert model[2][1].training is False


def test_a_module_unpinned_inside_a_pinned_parent_follows_the_nearest_unpinned_ancestor():
    model = tiny()
    policyfreeze.apply(model, "eval 2, 2.1")
    model.eval()
    model.training = True  # the root trains again, by assignment
    policyfreeze.apply(model, "train 2.1")
    assert model[2].training is False and model[2][1].training is True
    policyfreeze.apply(model, "eval all; train 2.1")  # every ancestor pinned: the mode last asked for
    model.train()
    assert model[2][1].training is True


def test_a_freezer_stage_that_unpins_during_training_lets_batchnorm_learn_again():
    model = tiny()
    freezer = policyfreeze.Freezer(
        model, "freeze all; unfreeze 3; eval 2.1\nat epoch 1 { unfreeze 2; train 2.1 }", lr=0.1
    )
    optimizer = torch.optim.SGD(freezer.param_groups())
    bn = model[2][1]
    model.train()
    for epoch in range(3):
        freezer.update(optimizer, epoch=epoch)
        before = bn.running_mean.clone()
        model(torch.randn(4, 2)).sum().backward()
        optimizer.step()
        assert torch.equal(bn.running_mean, before) is (epoch == 0), epoch
        validate_like_lightning(model)

"""The Freezer: stages at boundaries, optimizer groups per stage, resume."""

import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from models import tiny
from torch import nn

import policyfreeze
from policyfreeze import Freezer, PolicyError, PolicyUsageError, PolicyWarning
from policyfreeze.engine import commit as applier
from policyfreeze.model import pins

TESTS = Path(__file__).parent

GRADUAL = """\
freeze all; unfreeze fc
eval type(BatchNorm2d)
at epoch 2 { unfreeze layer4 with lr_scale=0.1; train layer4 }
at epoch 4 { unfreeze layer3 with lr_scale=0.01 }
"""


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None)


def flags(model: nn.Module) -> dict[str, bool]:
    return {name: p.requires_grad for name, p in model.named_parameters()}


def layout(model: nn.Module, groups: list[dict]) -> list[tuple[dict, list[str]]]:
    """Each group's lr and parameter names ("?": not the model's)."""
    names = {id(p): name for name, p in model.named_parameters()}
    return [({k: g[k] for k in ("lr",) if k in g}, [names.get(id(p), "?") for p in g["params"]]) for g in groups]


def names(model: nn.Module, *prefixes: str) -> list[str]:
    return [name for name, _ in model.named_parameters() if name.startswith(prefixes)]


def test_stages_apply_at_their_epochs_and_the_optimizer_follows():
    model = resnet18()
    freezer = Freezer(model, policyfreeze.parse(GRADUAL, "gradual.freeze"), lr=1e-3)
    optimizer = torch.optim.AdamW(freezer.param_groups())
    fc = [({"lr": 1e-3}, ["fc.weight", "fc.bias"])]
    layer4 = [({"lr": 1e-3 * 0.1}, names(model, "layer4"))]
    layer3 = [({"lr": 1e-3 * 0.01}, names(model, "layer3"))]
    expected = {0: fc, 1: fc, 2: fc + layer4, 3: fc + layer4, 4: fc + layer4 + layer3, 5: fc + layer4 + layer3}
    for epoch in range(6):
        change = freezer.update(optimizer, epoch=epoch)
        assert (change is not None) is (epoch in (2, 4))
        model.train()
        assert flags(model) == policyfreeze.resolve(resnet18(), GRADUAL, epoch=epoch).requires_grad
        assert layout(model, optimizer.param_groups) == expected[epoch]
        assert layout(model, freezer.param_groups()) == expected[epoch]
        assert policyfreeze.check_optimizer(model, optimizer) == ()
        pinned_bns = {n for n, m in model.named_modules() if pins.is_pinned(m)}
        assert all(not n.startswith("layer4") for n in pinned_bns) is (epoch >= 2)
        assert model.layer4[0].bn1.training is (epoch >= 2)
        assert freezer.at == epoch


def test_the_stage_change_says_what_changed():
    model = resnet18()
    freezer = Freezer(model, policyfreeze.parse(GRADUAL, "gradual.freeze"), lr=1e-3)
    optimizer = torch.optim.AdamW(freezer.param_groups())
    assert freezer.update(optimizer, epoch=1) is None
    change = freezer.update(optimizer, epoch=2)
    assert change.added == tuple(names(model, "layer4")) and change.moved == change.removed == ()
    assert change.new_groups == 1 and (change.unit, change.at) == ("epoch", 2)
    assert [c.name for c in change.report.changes] == names(model, "layer4")
    assert len(change.report.pin_changes) == 5
    assert str(change) == (
        "epoch 2: gradual.freeze changed 15 parameter tensors and 5 eval pins; 8,906,728 of 11,689,512 parameters train\n"
        "optimizer: 15 added in 1 new group, 0 moved to new groups, 0 removed"
    )
    assert freezer.report is change.report


def test_refreezing_drops_optimizer_state_and_new_options_move_a_tensor():
    policy = "freeze all; unfreeze 2, 3\nat epoch 1 { freeze 2; unfreeze 3 with lr=0.5 }"
    model = tiny()
    freezer = Freezer(model, policy, lr=0.1)
    optimizer = torch.optim.SGD(freezer.param_groups(), momentum=0.9)
    model(torch.randn(4, 2)).sum().backward()
    optimizer.step()
    momentum = optimizer.state[model[3].weight]["momentum_buffer"].clone()
    change = freezer.update(optimizer, epoch=1)
    assert change.removed == ("2.0.weight", "2.0.bias", "2.1.weight", "2.1.bias")
    assert change.moved == ("3.weight", "3.bias") and change.added == ()
    assert layout(model, optimizer.param_groups) == [({"lr": 0.1}, []), ({"lr": 0.5}, ["3.weight", "3.bias"])]
    assert model[2][0].weight not in optimizer.state
    assert torch.equal(optimizer.state[model[3].weight]["momentum_buffer"], momentum)
    assert policyfreeze.check_optimizer(model, optimizer) == ()


def test_crossing_several_milestones_at_once_replays_them_in_order():
    stepwise, jumped = resnet18(), resnet18()
    results = []
    for model, epochs in ((stepwise, range(6)), (jumped, [0, 5])):
        freezer = Freezer(model, GRADUAL, lr=1e-3)
        optimizer = torch.optim.AdamW(freezer.param_groups())
        for epoch in epochs:
            freezer.update(optimizer, epoch=epoch)
        results.append((flags(model), layout(model, optimizer.param_groups)))
    assert results[0] == results[1]
    assert [len(names) for _, names in results[1][1]] == [2, 15, 15]  # fc, then layer4, then layer3


def test_step_schedules():
    model = tiny()
    freezer = Freezer(model, "freeze all; unfreeze 3\nat step 10 { unfreeze 0 }", lr=0.1)
    optimizer = torch.optim.SGD(freezer.param_groups())
    changes = [step for step in range(20) if freezer.update(optimizer, step=step)]
    assert changes == [10]
    assert layout(model, optimizer.param_groups) == [
        ({"lr": 0.1}, ["3.weight", "3.bias"]),
        ({"lr": 0.1}, ["0.weight", "0.bias"]),
    ]
    with pytest.raises(PolicyUsageError, match="schedules by step: pass step="):
        freezer.update(optimizer, epoch=20)


def test_a_policy_without_schedule_never_changes():
    model = tiny()
    freezer = Freezer(model, "freeze 0", lr=0.1)
    optimizer = torch.optim.SGD(freezer.param_groups())
    assert all(freezer.update(optimizer, epoch=e) is None for e in range(3))
    assert flags(model)["0.weight"] is False


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda f, o: f.update(o), "update() needs the epoch: update(optimizer, epoch=N)"),
        (lambda f, o: (f.update(o, epoch=3), f.update(o, epoch=2)), "epoch 2 is before epoch 3, where this Freezer"),
        (lambda f, o: f.update(o, epoch=-1), "epoch must be an integer 0 or more"),
    ],
)
def test_update_misuse(call, message):
    freezer = Freezer(tiny(), "freeze 0\nat epoch 1 { unfreeze 0 }")
    optimizer = torch.optim.SGD(freezer.param_groups(), lr=0.1)
    with pytest.raises(PolicyUsageError) as info:
        call(freezer, optimizer)
    assert message in str(info.value)


def test_lr_scale_needs_the_freezer_lr():
    policy = policyfreeze.parse("freeze all\nat epoch 2 { unfreeze 3 with lr_scale=0.1 }\n", "g.freeze")
    with pytest.raises(PolicyUsageError) as info:
        Freezer(tiny(), policy)
    assert str(info.value) == (
        "'unfreeze 3 with lr_scale=0.1' (g.freeze:2) scales the base learning rate, but the Freezer has none\n"
        "  = help: pass it: Freezer(model, policy, lr=...)"
    )


def test_findings_warn_once_not_at_every_stage():
    with pytest.warns(PolicyWarning, match="did you mean 'layer1'") as caught:
        freezer = Freezer(resnet18(), "freeze layr1\nat epoch 1 { unfreeze fc }\nat epoch 2 { freeze fc }")
        optimizer = torch.optim.SGD(freezer.param_groups(), lr=0.1)
        for epoch in range(3):
            freezer.update(optimizer, epoch=epoch)
    assert len([w for w in caught if issubclass(w.category, PolicyWarning)]) == 1


class Picky(torch.optim.SGD):
    """An optimizer that takes no groups after construction."""

    def add_param_group(self, param_group):
        if self.param_groups:
            raise ValueError("no more groups, please")
        super().add_param_group(param_group)


def test_an_optimizer_that_refuses_the_new_group_changes_nothing():
    model = tiny()
    freezer = Freezer(model, "freeze all; unfreeze 2, 3\nat epoch 1 { unfreeze 0; freeze 2 }", lr=0.1)
    optimizer = Picky(freezer.param_groups(), momentum=0.9)
    model(torch.randn(4, 2)).sum().backward()
    optimizer.step()
    before = (flags(model), layout(model, optimizer.param_groups), dict(optimizer.state))
    with pytest.raises(PolicyUsageError, match="failed and nothing was changed: no more groups, please"):
        freezer.update(optimizer, epoch=1)
    assert (flags(model), layout(model, optimizer.param_groups), dict(optimizer.state)) == before
    assert freezer.at == 0


def test_an_optimizer_of_named_parameters_stays_named():
    model = tiny()
    freezer = Freezer(model, "freeze all; unfreeze 2, 3\nat epoch 1 { unfreeze 0; freeze 2.0 }", lr=0.1)
    optimizer = torch.optim.SGD([(n, p) for n, p in model.named_parameters() if p.requires_grad], lr=0.1)
    freezer.update(optimizer, epoch=1)
    assert [g["param_names"] for g in optimizer.param_groups] == [
        ["2.1.weight", "2.1.bias", "3.weight", "3.bias"],
        ["0.weight", "0.bias"],
    ]
    assert [layout(model, [g])[0][1] for g in optimizer.param_groups] == [
        g["param_names"] for g in optimizer.param_groups
    ]
    assert policyfreeze.check_optimizer(model, optimizer) == ()


def test_a_fault_applying_the_stage_restores_the_optimizer(monkeypatch):
    model = tiny()
    freezer = Freezer(model, "freeze all; unfreeze 3\nat epoch 1 { unfreeze 0; freeze 3 }", lr=0.1)
    optimizer = torch.optim.SGD(freezer.param_groups(), momentum=0.9)
    model(torch.randn(4, 2)).sum().backward()
    optimizer.step()
    before = (flags(model), layout(model, optimizer.param_groups), dict(optimizer.state))

    def broken(tensor, flag):
        raise RuntimeError("injected")

    monkeypatch.setattr(applier, "set_requires_grad", broken)
    with pytest.raises(PolicyError, match="undone"):
        freezer.update(optimizer, epoch=1)
    assert (flags(model), layout(model, optimizer.param_groups), dict(optimizer.state)) == before
    monkeypatch.undo()
    assert freezer.update(optimizer, epoch=1) is not None


def test_tensors_of_other_models_are_left_alone():
    model, other = tiny(), nn.Linear(2, 2)
    freezer = Freezer(model, "freeze all; unfreeze 3\nat epoch 1 { unfreeze 0 }", lr=0.1)
    optimizer = torch.optim.SGD([{"params": list(other.parameters())}] + freezer.param_groups())
    freezer.update(optimizer, epoch=1)
    assert layout(model, optimizer.param_groups)[0][1] == ["?", "?"]
    assert optimizer.param_groups[0]["params"] == list(other.parameters())


# Property: any schedule, any update sequence ---------------------------------

TARGETS = ["all", "0", "2", "2.0", "2.1", "3", "*.bias", "type(BatchNorm1d)"]
OPTIONS = ["", " with lr=0.5", " with lr_scale=0.5", " with weight_decay=0"]


@st.composite
def statements(draw):
    verb = draw(st.sampled_from(["freeze", "unfreeze", "eval", "train"]))
    text = f"{verb} {draw(st.sampled_from(TARGETS))}"
    return text + draw(st.sampled_from(OPTIONS)) if verb == "unfreeze" else text


@st.composite
def schedules(draw):
    base = draw(st.lists(statements(), min_size=1, max_size=3))
    blocks = draw(st.lists(st.tuples(st.integers(0, 6), st.lists(statements(), min_size=1, max_size=3)), max_size=4))
    lines = base + [f"at epoch {at} {{ {'; '.join(body)} }}" for at, body in blocks]
    return "\n".join(lines)


def _run(policy: str, epochs: list[int]):
    model = tiny()
    anchor = torch.zeros(1, requires_grad=True)  # keeps the optimizer non-empty when nothing trains
    freezer = Freezer(model, policy, lr=0.1)
    optimizer = torch.optim.SGD([{"params": [anchor]}] + freezer.param_groups())
    for epoch in epochs:
        freezer.update(optimizer, epoch=epoch)
    return model, freezer, optimizer


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules(), st.lists(st.integers(0, 8), max_size=5).map(sorted))
def test_any_update_sequence_gives_the_stepwise_model_and_groups(policy, epochs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PolicyWarning)
        try:
            stepwise = _run(policy, list(range((epochs or [0])[-1] + 1)))
        except PolicyError as exc:  # e.g. nothing trainable is fine; only PF-coded policy errors may appear
            assert exc.code or "base learning rate" in str(exc)
            return
        model, freezer, optimizer = _run(policy, epochs)
        resumed_model = tiny()
        resumed = Freezer(resumed_model, policy, lr=0.1)
        resumed.load_state_dict(freezer.state_dict())
    at = (epochs or [0])[-1]
    reference = tiny()
    expected = policyfreeze.resolve(reference, policy, epoch=at)
    assert flags(model) == expected.requires_grad == flags(stepwise[0]) == flags(resumed_model)
    assert {n: pins.is_pinned(m) for n, m in model.named_modules()} == expected.pinned
    assert layout(model, optimizer.param_groups) == layout(stepwise[0], stepwise[2].param_groups)
    assert layout(model, optimizer.param_groups)[1:] == layout(model, freezer.param_groups())
    assert layout(resumed_model, resumed.param_groups()) == layout(model, freezer.param_groups())
    assert policyfreeze.check_optimizer(model, optimizer) == ()
    # Every tensor sits in a group with the options of the statement that decided it last.
    wanted = {name: options for options, group in layout(reference, expected.param_groups(lr=0.1)) for name in group}
    held = {name: options for options, group in layout(model, optimizer.param_groups[1:]) for name in group}
    assert held == wanted


# Checkpoints ----------------------------------------------------------------


def test_state_dict_is_plain_data_that_loads_with_weights_only(tmp_path):
    freezer = Freezer(resnet18(), GRADUAL, lr=1e-3)
    freezer.update(torch.optim.AdamW(freezer.param_groups()), epoch=3)
    state = freezer.state_dict()
    torch.save(state, tmp_path / "freezer.pt")
    assert torch.load(tmp_path / "freezer.pt", weights_only=True) == state
    assert {k: state[k] for k in ("version", "policy", "unit", "at")} == {
        "version": 1,
        "policy": "<string>",
        "unit": "epoch",
        "at": 3,
    }
    assert [len(g["params"]) for g in state["groups"]] == [2, 15]


def test_resume_in_process_gives_the_same_flags_pins_and_groups():
    model = resnet18()
    freezer = Freezer(model, GRADUAL, lr=1e-3)
    optimizer = torch.optim.AdamW(freezer.param_groups())
    for epoch in range(4):
        freezer.update(optimizer, epoch=epoch)
    fresh = resnet18()
    resumed = Freezer(fresh, GRADUAL, lr=1e-3)
    resumed.load_state_dict(freezer.state_dict())
    assert resumed.at == 3 and flags(fresh) == flags(model)
    assert [n for n, m in fresh.named_modules() if pins.is_pinned(m)] == [
        n for n, m in model.named_modules() if pins.is_pinned(m)
    ]
    assert layout(fresh, resumed.param_groups()) == layout(model, optimizer.param_groups)
    torch.optim.AdamW(resumed.param_groups()).load_state_dict(optimizer.state_dict())


def test_a_changed_policy_is_refused_on_resume():
    freezer = Freezer(tiny(), policyfreeze.parse("freeze all; unfreeze 3\nat epoch 1 { unfreeze 0 }", "old.freeze"))
    freezer.update(torch.optim.SGD(freezer.param_groups(), lr=0.1), epoch=1)
    state = freezer.state_dict()
    changed = policyfreeze.parse("freeze all; unfreeze 3\nat epoch 1 { unfreeze 2 }", "new.freeze")
    with pytest.raises(PolicyUsageError) as info:
        Freezer(tiny(), changed).load_state_dict(state)
    old, new = state["fingerprint"][:12], policyfreeze.training.freezer.fingerprint(changed)[:12]
    assert str(info.value) == (
        f"the policy changed since the checkpoint: it was saved under old.freeze (fingerprint {old}), "
        f"this Freezer runs new.freeze ({new})\n"
        "  = help: resume with the policy the run started with, or pass allow_policy_change=True "
        "to continue at the saved stage under the new policy"
    )
    model = tiny()
    resumed = Freezer(model, changed)
    with pytest.warns(PolicyWarning) as caught:
        resumed.load_state_dict(state, allow_policy_change=True)
    assert [str(w.message).split(":")[0] for w in caught] == [
        f"resuming a checkpoint of old.freeze (fingerprint {old}) under the changed policy new.freeze ({new})",
        "under the changed policy the optimizer's parameter groups at epoch 1 differ from the checkpoint's",
    ]
    assert resumed.at == 1 and flags(model)["2.0.weight"] is True and flags(model)["0.weight"] is False


def test_a_reworded_policy_is_the_same_policy():
    freezer = Freezer(tiny(), "freeze all; unfreeze 3\nat epoch 1 { unfreeze 0 }")
    reworded = '# same rules\nfreeze all\nunfreeze "3"   # the head\n\nat epoch 1 {\n  unfreeze 0\n}\n'
    Freezer(tiny(), reworded).load_state_dict(freezer.state_dict())


@pytest.mark.parametrize(
    "state, message",
    [
        ({}, "not a Freezer state"),
        ({"version": 2, "policy": "", "fingerprint": "", "unit": None, "at": 0, "groups": []}, "version 2"),
    ],
)
def test_not_a_freezer_state(state, message):
    with pytest.raises(PolicyUsageError, match=message):
        Freezer(tiny(), "freeze 0").load_state_dict(state)


def test_a_checkpoint_of_another_model_is_refused():
    freezer = Freezer(tiny(), "freeze all; unfreeze 3")
    with pytest.raises(PolicyUsageError, match="saved for a different model"):
        Freezer(
            nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)), "freeze all; unfreeze 3"
        ).load_state_dict({**freezer.state_dict(), "groups": [{"params": ["3.weight", "3.bias", "4.weight"]}]})


# End to end: resume in a fresh process ---------------------------------------

E2E_POLICY = """\
freeze all; unfreeze head
eval type(BatchNorm2d)
at epoch 1 { unfreeze block with lr_scale=0.1; train block }
at epoch 3 { unfreeze stem with lr_scale=0.01; train stem }
at epoch 4 { freeze block; unfreeze head with lr=0.05 }
"""
EPOCHS, CHECKPOINT_AFTER = 6, 2


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
            block=nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            head=nn.Linear(8, 4),
        )
    )


def train_epochs(model, freezer, optimizer, epochs) -> None:
    for epoch in epochs:
        freezer.update(optimizer, epoch=epoch)
        model.train()
        data = torch.Generator().manual_seed(epoch)  # the same batches whether resumed or not
        for _ in range(3):
            x, y = torch.randn(8, 3, 8, 8, generator=data), torch.randint(0, 4, (8,), generator=data)
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()


def outcome(model, optimizer) -> dict:
    return {
        "model": model.state_dict(),
        "requires_grad": flags(model),
        "groups": layout(model, optimizer.param_groups),
        "optimizer": optimizer.state_dict(),
        "pinned": [n for n, m in model.named_modules() if pins.is_pinned(m)],
    }


def resume_and_finish(checkpoint: str, result: str) -> None:
    """Run in a fresh process: resume from ``checkpoint``, train to the end, save the outcome."""
    saved = torch.load(checkpoint, weights_only=True)
    model = small_cnn()
    model.load_state_dict(saved["model"])
    freezer = Freezer(model, E2E_POLICY, lr=0.01, weight_decay=0.01)
    freezer.load_state_dict(saved["freezer"])
    optimizer = torch.optim.AdamW(freezer.param_groups())
    optimizer.load_state_dict(saved["optimizer"])
    train_epochs(model, freezer, optimizer, range(saved["epoch"] + 1, EPOCHS))
    torch.save(outcome(model, optimizer), result)


def test_resume_in_a_fresh_process_matches_an_uninterrupted_run(tmp_path):
    model = small_cnn()
    freezer = Freezer(model, E2E_POLICY, lr=0.01, weight_decay=0.01)
    optimizer = torch.optim.AdamW(freezer.param_groups())
    train_epochs(model, freezer, optimizer, range(CHECKPOINT_AFTER + 1))
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "freezer": freezer.state_dict(),
            "epoch": CHECKPOINT_AFTER,
        },
        checkpoint,
    )
    train_epochs(model, freezer, optimizer, range(CHECKPOINT_AFTER + 1, EPOCHS))
    uninterrupted = outcome(model, optimizer)

    result = tmp_path / "resumed.pt"
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_freezer; test_freezer.resume_and_finish({str(checkpoint)!r}, {str(result)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    resumed = torch.load(result, weights_only=True)

    assert resumed["requires_grad"] == uninterrupted["requires_grad"]
    assert resumed["groups"] == uninterrupted["groups"]
    # head (moved out at epoch 4), block (frozen again at 4), stem (from 3), head with its new lr
    assert [len(names) for _, names in resumed["groups"]] == [0, 0, 4, 2]
    assert resumed["pinned"] == uninterrupted["pinned"] == []
    assert resumed["model"].keys() == uninterrupted["model"].keys()
    for key, value in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    assert resumed["optimizer"]["param_groups"] == uninterrupted["optimizer"]["param_groups"]
    for index, state in uninterrupted["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(resumed["optimizer"]["state"][index][key], value), (index, key)
    assert resumed["optimizer"]["state"].keys() == uninterrupted["optimizer"]["state"].keys()

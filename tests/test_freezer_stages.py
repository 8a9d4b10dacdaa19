"""Freezer stage changes: clean (grads, options, warnings first), phases, validated state, incremental, compiled."""

import warnings

import pytest
import torch
from models import tiny
from torch import nn

import policyfreeze
from policyfreeze import Freezer, PolicyError, PolicyUsageError, PolicyWarning
from policyfreeze.training import freezer as freezer_module
from policyfreeze.training.freezer import fingerprint


def flags(model: nn.Module) -> dict[str, bool]:
    return {name: p.requires_grad for name, p in model.named_parameters()}


def held(model: nn.Module, optimizer) -> list[list[str]]:
    names = {id(p): name for name, p in model.named_parameters()}
    return [[names.get(id(p), "?") for p in group["params"]] for group in optimizer.param_groups]


def step(model: nn.Module, optimizer) -> None:
    model.train()
    optimizer.zero_grad(set_to_none=False)
    model(torch.randn(4, 2, generator=torch.Generator().manual_seed(0))).sum().backward()
    optimizer.step()


# Stage changes are clean --------------------------------------------------------


def test_a_parameter_frozen_again_loses_its_grad_and_leaves_the_optimizer_with_its_state():
    model = tiny()
    freezer = Freezer(model, "freeze all; unfreeze 2, 3\nat epoch 1 { freeze 2 }", lr=0.1)
    optimizer = torch.optim.SGD(freezer.param_groups(), momentum=0.9)
    step(model, optimizer)
    assert all(p.grad is not None for p in model[2].parameters())
    freezer.update(optimizer, epoch=1)
    assert all(p.grad is None for p in model[2].parameters())
    assert model[3].weight.grad is not None  # still trains: its gradient is the optimizer's business
    assert held(model, optimizer) == [["3.weight", "3.bias"]]
    assert not any(p in optimizer.state for p in model[2].parameters())
    before = {name: p.clone() for name, p in model.named_parameters()}
    step(model, optimizer)  # weight decay and momentum cannot touch what is frozen
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters() if name.startswith("2."))


def test_changed_options_of_a_reached_stage_warn_on_resume():
    old = "freeze all; unfreeze 3\nat epoch 1 { unfreeze 0 with lr=0.1 }"
    freezer = Freezer(tiny(), old)
    freezer.update(torch.optim.SGD(freezer.param_groups(), lr=0.1), epoch=1)
    resumed = Freezer(tiny(), old.replace("lr=0.1", "lr=0.5"))
    with pytest.warns(PolicyWarning) as caught:
        resumed.load_state_dict(freezer.state_dict(), allow_policy_change=True)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "under the changed policy" in messages[0] and "epoch 1 is resolved under the new policy" in messages[0]
    assert messages[1].startswith(
        "the optimizer options at epoch 1 differ from the checkpoint's (group 1: lr=0.5 here, lr=0.1 saved): "
        "optimizer.load_state_dict would restore the saved ones"
    )
    assert resumed.param_groups()[1]["lr"] == 0.5


def test_a_different_base_lr_on_resume_warns_too():
    freezer = Freezer(tiny(), "freeze 0", lr=0.1)
    with pytest.warns(PolicyWarning, match=r"\(group 0: lr=0.2 here, lr=0.1 saved\)"):
        Freezer(tiny(), "freeze 0", lr=0.2).load_state_dict(freezer.state_dict())


# Warnings come before any change --------------------------------------------------


def test_with_warnings_as_errors_the_freezer_raises_before_changing_the_model():
    model = tiny()
    before = flags(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PolicyWarning, match="selects no parameters"):
            Freezer(model, "freeze all; freeze nothing_here")
    assert flags(model) == before


def test_with_warnings_as_errors_update_raises_before_the_model_or_optimizer_change():
    model = tiny()
    freezer = Freezer(model, "freeze all; unfreeze 3\nat epoch 1 { unfreeze 0; freeze nothing_here }", lr=0.1)
    optimizer = torch.optim.SGD(freezer.param_groups(), momentum=0.9)
    step(model, optimizer)
    before = (flags(model), held(model, optimizer), dict(optimizer.state))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PolicyWarning, match="selects no parameters"):
            freezer.update(optimizer, epoch=1)
        assert (flags(model), held(model, optimizer), dict(optimizer.state)) == before
        assert freezer.at == 0
        with pytest.raises(PolicyWarning):  # not marked as issued: a retry still refuses
            freezer.update(optimizer, epoch=1)
    with pytest.warns(PolicyWarning):
        assert freezer.update(optimizer, epoch=1) is not None
    assert freezer.at == 1


# Phases -----------------------------------------------------------------------------

PHASED = """\
freeze all; unfreeze 3
at phase 1 { unfreeze 2 with lr_scale=0.5 }
at phase 3 { unfreeze 0 with lr_scale=0.25 }
"""


def test_advance_moves_to_each_next_phase_and_stops_after_the_last():
    model = tiny()
    freezer = Freezer(model, PHASED, lr=0.1)
    optimizer = torch.optim.SGD(freezer.param_groups())
    assert (freezer.unit, freezer.at, freezer.next_stage) == ("phase", 0, 1)
    first = freezer.advance(optimizer)
    assert (first.unit, first.at, freezer.at, freezer.next_stage) == ("phase", 1, 1, 3)
    assert first.added == ("2.0.weight", "2.0.bias", "2.1.weight", "2.1.bias")
    second = freezer.advance(optimizer)  # phase 2 has no block: the next phase with one
    assert (second.at, freezer.next_stage) == (3, None)
    assert held(model, optimizer) == [
        ["3.weight", "3.bias"],
        ["2.0.weight", "2.0.bias", "2.1.weight", "2.1.bias"],
        ["0.weight", "0.bias"],
    ]
    assert [group["lr"] for group in optimizer.param_groups] == [0.1, 0.05, 0.025]
    assert flags(model) == policyfreeze.resolve(tiny(), PHASED, phase=3).requires_grad
    assert freezer.advance(optimizer) is None and freezer.at == 3
    assert policyfreeze.check_optimizer(model, optimizer) == ()


def test_the_phase_reached_is_saved_and_restored():
    freezer = Freezer(tiny(), PHASED, lr=0.1)
    optimizer = torch.optim.SGD(freezer.param_groups())
    freezer.advance(optimizer)
    state = freezer.state_dict()
    assert (state["unit"], state["at"]) == ("phase", 1)
    model = tiny()
    resumed = Freezer(model, PHASED, lr=0.1)
    resumed.load_state_dict(state)
    assert (resumed.at, resumed.next_stage) == (1, 3)
    assert flags(model) == policyfreeze.resolve(tiny(), PHASED, phase=1).requires_grad
    optimizer = torch.optim.SGD(resumed.param_groups())
    assert resumed.advance(optimizer).at == 3


@pytest.mark.parametrize(
    "policy, call, message",
    [
        (PHASED, lambda f, o: f.update(o, epoch=1), "advances by phase: call freezer.advance(optimizer) when a phase"),
        (
            "freeze 0\nat epoch 2 { unfreeze 0 }",
            lambda f, o: f.advance(o),
            "schedules by epoch: update(optimizer, epoch=N)",
        ),
    ],
)
def test_update_and_advance_each_refuse_the_other_unit(policy, call, message):
    freezer = Freezer(tiny(), policy, lr=0.1)
    with pytest.raises(PolicyUsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(freezer, torch.optim.SGD(freezer.param_groups()))


def test_a_policy_without_schedule_never_advances():
    freezer = Freezer(tiny(), "freeze 0", lr=0.1)
    assert freezer.next_stage is None and freezer.advance(torch.optim.SGD(freezer.param_groups())) is None


# The state is validated ---------------------------------------------------------

POLICY = "freeze all; unfreeze 3\nat epoch 1 { unfreeze 0 }"


def saved_state() -> dict:
    freezer = Freezer(tiny(), POLICY)
    freezer.update(torch.optim.SGD(freezer.param_groups(), lr=0.1), epoch=1)
    return freezer.state_dict()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"fingerprint": 12}, "'fingerprint' is 12: input should be a valid string"),
        ({"fingerprint": None}, "'fingerprint' is None: input should be a valid string"),
        ({"fingerprint": "abc"}, "'fingerprint' is 'abc': string should match pattern '^[0-9a-f]{64}$'"),
        ({"groups": None}, "'groups' is None: input should be a valid list"),
        ({"groups": 3}, "'groups' is 3: input should be a valid list"),
        ({"groups": ["3.weight"]}, "'groups[0]' is '3.weight': input should be a valid dictionary"),
        ({"groups": [{"lr": 0.1}]}, "'groups[0].params' is missing"),
        ({"groups": [{"params": "3.weight"}]}, "'groups[0].params' is '3.weight': input should be a valid list"),
        ({"groups": [{"params": [3]}]}, "'groups[0].params[0]' is 3: input should be a valid string"),
        ({"groups": [{"params": [], "lr": -1.0}]}, "'groups[0].lr' is -1.0: value error, a learning rate is a pos"),
        ({"groups": [{"params": [], "momentum": 0.9}]}, "'groups[0].momentum' is 0.9: extra inputs are not permitted"),
        ({"at": True}, "'at' is True: input should be a valid integer"),
        ({"at": -1}, "'at' is -1: input should be greater than or equal to 0"),
        ({"unit": "week"}, "'unit' is 'week': input should be 'epoch', 'step' or 'phase'"),
        ({"policy": None}, "'policy' is None: input should be a valid string"),
        ({"extra": 1}, "'extra' is 1: extra inputs are not permitted"),
        ({"version": "1"}, "'version' is '1': input should be a valid integer"),
        ({"version": 2}, "Freezer state version 2 is not supported (this release reads 1)"),
    ],
)
@pytest.mark.parametrize("allow_policy_change", [False, True])
def test_a_tampered_state_is_refused_naming_the_field(change, message, allow_policy_change):
    model = tiny()
    freezer = Freezer(model, POLICY)
    before = flags(model)
    with pytest.raises(PolicyUsageError) as info:
        freezer.load_state_dict({**saved_state(), **change}, allow_policy_change=allow_policy_change)
    assert message in str(info.value)
    assert flags(model) == before and freezer.at == 0


@pytest.mark.parametrize("state", [None, [], "state", 3])
def test_not_a_dict(state):
    with pytest.raises(PolicyUsageError, match="not a Freezer state: a dict"):
        Freezer(tiny(), POLICY).load_state_dict(state)


def test_a_tampered_fingerprint_is_never_accepted_silently():
    state = {**saved_state(), "fingerprint": "0" * 64}
    with pytest.raises(PolicyUsageError, match="the policy changed since the checkpoint"):
        Freezer(tiny(), POLICY).load_state_dict(state)
    with pytest.warns(PolicyWarning, match="fingerprint 000000000000"):
        Freezer(tiny(), POLICY).load_state_dict(state, allow_policy_change=True)
    assert fingerprint(policyfreeze.parse(POLICY)) == saved_state()["fingerprint"]


# Incremental stages ------------------------------------------------------------


def test_a_stage_change_does_not_walk_the_model_again(monkeypatch):
    model = tiny()
    freezer = Freezer(model, "freeze all; unfreeze 3\nat epoch 1 { unfreeze 0 }\nat epoch 2 { freeze 3 }", lr=0.1)
    optimizer = torch.optim.SGD(freezer.param_groups())

    def no_walk(model):
        raise AssertionError("walked again")

    monkeypatch.setattr(freezer_module, "walk", no_walk)
    for epoch in range(3):
        freezer.update(optimizer, epoch=epoch)
    freezer.param_groups()
    assert flags(model) == policyfreeze.resolve(tiny(), freezer.policy, epoch=2).requires_grad


def test_replaced_parameters_are_read_again():
    """load_state_dict(assign=True) puts new tensors in place (as fully_shard does): param_groups hands out
    the model's parameters as they are now, and the next stage flags them."""
    model = tiny()
    freezer = Freezer(model, "freeze all; unfreeze 3\nat epoch 1 { unfreeze 0 }", lr=0.1)
    old = model[3].weight
    model.load_state_dict({k: v.clone() for k, v in model.state_dict().items()}, assign=True)
    assert model[3].weight is not old
    groups = freezer.param_groups()
    assert groups[0]["params"][0] is model[3].weight
    optimizer = torch.optim.SGD(groups)
    freezer.update(optimizer, epoch=1)
    assert held(model, optimizer) == [["3.weight", "3.bias"], ["0.weight", "0.bias"]]
    assert model[0].weight.requires_grad and not model[2][0].weight.requires_grad


def test_an_optimizer_holding_none_of_the_trainable_parameters_is_refused():
    model = tiny()
    freezer = Freezer(model, "freeze all; unfreeze 3\nat epoch 1 { unfreeze 0 }", lr=0.1)
    optimizer = torch.optim.SGD(freezer.param_groups())  # built before the parameters were replaced
    model.load_state_dict({k: v.clone() for k, v in model.state_dict().items()}, assign=True)
    with pytest.raises(PolicyUsageError, match="the optimizer holds none of the 2 parameters that train now"):
        freezer.update(optimizer, epoch=1)
    assert freezer.at == 0 and not model[0].weight.requires_grad


@pytest.mark.parametrize(
    "surgery",
    [
        lambda model: model.append(nn.Linear(1, 1)),
        lambda model: setattr(model, "2", nn.Linear(3, 3)),
        lambda model: model[0].register_parameter("extra", nn.Parameter(torch.zeros(1))),
    ],
    ids=["module added", "module replaced", "parameter added"],
)
def test_a_model_changed_under_the_freezer_is_refused(surgery):
    model = tiny()
    freezer = Freezer(model, "freeze all; unfreeze 3\nat epoch 1 { unfreeze 0 }", lr=0.1)
    optimizer = torch.optim.SGD(freezer.param_groups())
    surgery(model)
    if dict(model.named_parameters()).keys() == dict(tiny().named_parameters()).keys():
        # Same names, new module objects: read again like replaced parameters, not refused.
        freezer.update(optimizer, epoch=1)
        return
    with pytest.raises(PolicyUsageError, match="renamed, added or removed since the Freezer was made"):
        freezer.update(optimizer, epoch=1)


# torch.compile ----------------------------------------------------------------


def test_a_compiled_model_warns_once_when_stages_pass_the_recompile_limit():
    import torch._dynamo

    model = tiny()
    compiled = torch.compile(model, backend="eager")
    policy = "freeze all\nat epoch 1 { unfreeze 0 }\nat epoch 2 { unfreeze 2 }\nat epoch 3 { unfreeze 3 }\nat epoch 4 { freeze 0 }"
    with torch._dynamo.config.patch(recompile_limit=3):
        freezer = Freezer(compiled, policy, lr=0.1)
        optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
        caught = []
        for epoch in range(1, 5):
            with warnings.catch_warnings(record=True) as now:
                warnings.simplefilter("always")
                freezer.update(optimizer, epoch=epoch)
            caught += [(epoch, str(w.message)) for w in now if issubclass(w.category, PolicyWarning)]
    assert [epoch for epoch, _ in caught] == [3]
    assert caught[0][1].startswith(
        "epoch 3 is stage 4 of a torch.compile'd model: dynamo compiles the model once per set of requires_grad "
        "flags and stops at torch._dynamo.config.recompile_limit = 3"
    )
    assert caught[0][1].endswith("torch._dynamo.config.recompile_limit = 10")


def test_an_uncompiled_model_never_warns_about_recompiles():
    children = ["0", "2", "3"]
    policy = "freeze all\n" + "\n".join(
        f"at epoch {n} {{ unfreeze {children[n % 3]}; freeze {children[(n + 1) % 3]} }}" for n in range(1, 12)
    )
    freezer = Freezer(tiny(), policy, lr=0.1)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for epoch in range(12):
            freezer.update(optimizer, epoch=epoch)


def test_a_freezer_with_nothing_to_wrap_says_so():
    with pytest.raises(PolicyUsageError, match="this Freezer wraps nothing"):
        _ = Freezer(tiny(), POLICY).wrapped
    with pytest.raises(PolicyUsageError, match="wrap is a function that wraps the model"):
        Freezer(tiny(), POLICY, wrap="ddp")


def test_wrap_is_built_lazily_and_again_after_a_stage_that_changes_what_trains():
    built = []

    def wrap(model):
        built.append({name for name, p in model.named_parameters() if p.requires_grad})
        return nn.DataParallel(model)

    model = tiny()
    freezer = Freezer(model, "freeze all; unfreeze 3\nat epoch 1 { unfreeze 0 }\nat epoch 2 { eval 2 }", wrap=wrap)
    optimizer = torch.optim.SGD(freezer.param_groups(), lr=0.1)
    first = freezer.wrapped
    assert freezer.wrapped is first and len(built) == 1
    assert freezer.update(optimizer, epoch=1).trainable_changed
    second = freezer.wrapped
    assert second is not first and built[1] == {"3.weight", "3.bias", "0.weight", "0.bias"}
    assert not freezer.update(optimizer, epoch=2).trainable_changed  # only a pin: DDP needs nothing new
    assert freezer.wrapped is second


def test_errors_in_a_later_stage_change_nothing():
    model = tiny()
    model[0].weight = nn.Parameter(torch.zeros(3, 2, dtype=torch.int64), requires_grad=False)
    freezer = Freezer(model, "freeze all; unfreeze 3\nat epoch 1 { unfreeze 0 }", lr=0.1)
    optimizer = torch.optim.SGD(freezer.param_groups())
    with pytest.raises(PolicyError, match="PF207"):
        freezer.update(optimizer, epoch=1)
    assert freezer.at == 0 and len(optimizer.param_groups) == 1

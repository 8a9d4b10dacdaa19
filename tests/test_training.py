"""Optimizer parameter groups from a plan, and check_optimizer."""

import warnings

import pytest
import torch
import torchvision
from models import tied, tiny
from torch import nn

import policyfreeze
from policyfreeze import PolicyError
from policyfreeze.engine.resolve import evaluate
from policyfreeze.model.walk import tree_of


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None)


def names_of(model: nn.Module) -> dict[int, str]:
    return {id(p): name for name, p in model.named_parameters()}


def layout(model: nn.Module, groups: list[dict]) -> list[tuple[dict, list[str]]]:
    names = names_of(model)
    return [({k: v for k, v in g.items() if k != "params"}, [names[id(p)] for p in g["params"]]) for g in groups]


RESNET_NAMES = [name for name, _ in torchvision.models.resnet18(weights=None).named_parameters()]


def resnet_names(*prefixes: str) -> list[str]:
    return [name for name in RESNET_NAMES if name.startswith(prefixes)]


RESNET_CASES = [
    pytest.param(
        "freeze all; unfreeze fc", {"lr": 1e-3}, [({"lr": 1e-3}, ["fc.weight", "fc.bias"])], id="linear-probe"
    ),
    pytest.param(
        "freeze all; unfreeze layer4 with lr_scale=0.1; unfreeze fc",
        {"lr": 1e-3},
        [({"lr": 1e-3 * 0.1}, resnet_names("layer4")), ({"lr": 1e-3}, ["fc.weight", "fc.bias"])],
        id="lr_scale-groups-in-parameter-order",
    ),
    pytest.param(
        "freeze all; unfreeze *.bias with weight_decay=0; unfreeze fc",
        {"lr": 1e-3, "weight_decay": 0.01},
        [
            ({"lr": 1e-3, "weight_decay": 0.0}, [n for n in RESNET_NAMES if n.endswith(".bias") and n != "fc.bias"]),
            ({"lr": 1e-3, "weight_decay": 0.01}, ["fc.weight", "fc.bias"]),  # 'unfreeze fc' decides fc.bias last
        ],
        id="biases-without-decay",
    ),
    pytest.param(
        "freeze layer1",
        {},
        [({}, [n for n in resnet_names("") if not n.startswith("layer1")])],
        id="untouched-trainable-join-the-base-group",
    ),
    pytest.param(
        "freeze all; unfreeze fc with lr=0.1; unfreeze layer4",
        {},
        [({}, resnet_names("layer4")), ({"lr": 0.1}, ["fc.weight", "fc.bias"])],
        id="no-base-lr-keeps-the-optimizer-default",
    ),
    pytest.param(
        "unfreeze all with lr=0.1; unfreeze fc with lr=0.2",
        {"lr": 1.0},
        [({"lr": 0.1}, resnet_names("conv1", "bn1", "layer")), ({"lr": 0.2}, ["fc.weight", "fc.bias"])],
        id="the-last-statement-decides-options",
    ),
    pytest.param(
        "freeze all; unfreeze layer1 with lr=0.1; unfreeze layer3 with lr=0.1",
        {},
        [({"lr": 0.1}, resnet_names("layer1", "layer3"))],
        id="same-options-share-a-group",
    ),
]


@pytest.mark.parametrize("policy, base, expected", RESNET_CASES)
def test_param_groups(policy, base, expected):
    model = resnet18()
    report = policyfreeze.apply(model, policy)
    groups = report.param_groups(**base)
    assert layout(model, groups) == expected
    held = [id(p) for g in groups for p in g["params"]]
    assert len(held) == len(set(held))
    assert {names_of(model)[i] for i in held} == {n for n, p in model.named_parameters() if p.requires_grad}


def test_the_plan_and_the_report_give_the_same_groups():
    model = resnet18()
    plan = policyfreeze.resolve(model, "freeze all; unfreeze layer4 with lr_scale=0.5; unfreeze fc")
    report = policyfreeze.apply(model, plan.policy)
    assert layout(model, plan.param_groups(lr=0.1)) == layout(model, report.param_groups(lr=0.1))


def test_groups_are_deterministic_across_fresh_models():
    policy = "freeze all; unfreeze layer3 with lr=0.01; unfreeze layer4 with lr_scale=0.1; unfreeze fc"
    first, second = resnet18(), resnet18()
    a = layout(first, policyfreeze.apply(first, policy).param_groups(lr=1.0))
    b = layout(second, policyfreeze.apply(second, policy).param_groups(lr=1.0))
    assert a == b


def test_a_tied_weight_is_held_once():
    model = tied()
    groups = policyfreeze.apply(model, "unfreeze all").param_groups(lr=0.1)
    assert layout(model, groups) == [({"lr": 0.1}, ["embed.weight", "body.weight", "body.bias"])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns about duplicate parameters
        torch.optim.AdamW(groups)


def test_the_one_liner_optimizer_moves_only_what_trains():
    model = resnet18()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(policyfreeze.apply(model, "freeze all; unfreeze layer4, fc").param_groups(lr=1e-3))
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert len(optimizer.state) == len(trainable)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) is (name not in trainable), name


def test_lr_scale_needs_a_base_lr():
    plan = policyfreeze.resolve(
        resnet18(), policyfreeze.parse("freeze all\nunfreeze fc with lr_scale=0.1\n", "p.freeze")
    )
    with pytest.raises(PolicyError) as info:
        plan.param_groups()
    assert str(info.value) == (
        "'unfreeze fc with lr_scale=0.1' (p.freeze:2) scales the base learning rate (lr_scale=0.1), "
        "but no base lr was given\n"
        "  = help: pass the base learning rate: param_groups(lr=...) or Freezer(..., lr=...)"
    )


@pytest.mark.parametrize(
    "base", [{"lr": 0}, {"lr": -1.0}, {"lr": float("nan")}, {"lr": "1e-3"}, {"weight_decay": -0.1}]
)
def test_a_bad_base_is_a_usage_error(base):
    plan = policyfreeze.resolve(resnet18(), "freeze all; unfreeze fc")
    with pytest.raises(policyfreeze.PolicyUsageError, match="must be a"):
        plan.param_groups(**base)


def test_a_tree_only_plan_has_no_tensors():
    plan = evaluate(tree_of(tiny()), policyfreeze.parse("freeze 0"))
    with pytest.raises(policyfreeze.PolicyUsageError, match="no tensors"):
        plan.param_groups()


# check_optimizer -----------------------------------------------------------


def test_an_optimizer_built_from_the_plan_is_clean():
    model = resnet18()
    optimizer = torch.optim.SGD(policyfreeze.apply(model, "freeze all; unfreeze fc").param_groups(lr=0.1))
    assert policyfreeze.check_optimizer(model, optimizer) == ()
    assert policyfreeze.check_optimizer(nn.DataParallel(model), optimizer) == ()


def test_frozen_parameters_still_held():
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    policyfreeze.apply(model, "freeze all; unfreeze 3")
    (problem,) = policyfreeze.check_optimizer(model, optimizer)
    assert str(problem) == (
        "6 frozen parameters are still in the optimizer: 0.weight, 0.bias, 2.0.weight, 2.0.bias, 2.1.weight "
        "and 1 more; weight decay and momentum still change them whenever they hold a .grad, "
        "and their optimizer state costs memory\n"
        "  = help: build the optimizer from plan.param_groups(...): it holds only trainable parameters"
    )


def test_trainable_parameters_missing():
    model = tiny()
    optimizer = torch.optim.SGD(policyfreeze.apply(model, "freeze all; unfreeze 3").param_groups(lr=0.1))
    policyfreeze.apply(model, "unfreeze 0")
    (problem,) = policyfreeze.check_optimizer(model, optimizer)
    assert str(problem) == (
        "2 trainable parameters are missing from the optimizer: 0.weight, 0.bias; "
        "they get gradients but the optimizer never updates them\n"
        "  = help: build the optimizer from the plan, torch.optim.AdamW(policyfreeze.apply(model, policy)"
        ".param_groups(lr=...)), or let policyfreeze.Freezer.update() add what a new stage unfreezes"
    )


def test_a_tensor_held_twice():
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.param_groups[0]["params"].append(model[3].bias)  # add_param_group would refuse this
    (problem,) = policyfreeze.check_optimizer(model, optimizer)
    assert str(problem).startswith("1 parameter is in the optimizer more than once: 3.bias; ")


def test_every_problem_is_reported_at_once():
    model = tiny()
    with pytest.warns(UserWarning, match="duplicate parameters"):
        optimizer = torch.optim.SGD([model[0].weight, model[0].weight], lr=0.1)
    policyfreeze.apply(model, "freeze 0.weight")
    problems = policyfreeze.check_optimizer(model, optimizer)
    assert [str(p).split(":")[0] for p in problems] == [
        "7 trainable parameters are missing from the optimizer",
        "1 frozen parameter is still in the optimizer",
        "1 parameter is in the optimizer more than once",
    ]


@pytest.mark.parametrize("optimizer", [None, "AdamW", [torch.zeros(1)]], ids=["none", "str", "list"])
def test_what_is_not_an_optimizer_is_a_usage_error(optimizer):
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    with pytest.raises(policyfreeze.PolicyUsageError, match="expected a torch.optim.Optimizer"):
        policyfreeze.check_optimizer(model, optimizer)
    freezer = policyfreeze.Freezer(model, "freeze 0\nat epoch 1 { unfreeze 0 }", lr=0.1)
    with pytest.raises(policyfreeze.PolicyUsageError, match="expected a torch.optim.Optimizer"):
        freezer.update(optimizer, epoch=1)
    assert [p.requires_grad for p in model.parameters()] == [False, False, True, True]  # the stage did not change

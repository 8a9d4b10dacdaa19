"""Optimizers a framework builds (``AdamW(self.parameters())``) brought in line by ``Freezer.align``, and
per-parameter options (``param_options``) as the Hugging Face Trainer groups weight decay."""

import math

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as s

import policyfreeze
from policyfreeze import Freezer, PolicyUsageError

POLICY = """\
freeze all; unfreeze head
at epoch 1 { unfreeze body.1 with lr_scale=0.1 }
at epoch 2 { unfreeze body.0; freeze head }
"""
EPOCHS = 4


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 6), nn.LayerNorm(6))
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))


def net() -> nn.Module:
    torch.manual_seed(0)
    return Net()


def layout(model: nn.Module, optimizer) -> list[tuple[dict, list[str]]]:
    names = {id(p): name for name, p in model.named_parameters()}
    return [
        ({k: group[k] for k in ("lr", "weight_decay") if k in group}, [names.get(id(p), "?") for p in group["params"]])
        for group in optimizer.param_groups
    ]


IDIOMS = {
    "all parameters": lambda model: torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01),
    "trainable only": lambda model: torch.optim.AdamW(
        filter(lambda p: p.requires_grad, model.parameters()), lr=1e-3, weight_decay=0.01
    ),
}


@pytest.mark.parametrize("idiom", IDIOMS.values(), ids=IDIOMS)
def test_align_brings_a_framework_optimizer_in_line_at_every_stage(idiom):
    model = net()
    freezer = Freezer(model, POLICY, lr=1e-3)
    optimizer = idiom(model)
    freezer.align(optimizer)
    assert layout(model, optimizer) == [({"lr": 1e-3, "weight_decay": 0.01}, ["head.weight", "head.bias"])]
    assert policyfreeze.check_optimizer(model, optimizer) == ()
    freezer.update(optimizer, epoch=1)
    assert layout(model, optimizer)[1] == ({"lr": 1e-4, "weight_decay": 0.01}, ["body.1.weight", "body.1.bias"])
    freezer.update(optimizer, epoch=2)
    assert policyfreeze.check_optimizer(model, optimizer) == ()


def test_align_moves_parameters_whose_group_has_other_options_than_the_policy_gives():
    model = net()
    freezer = Freezer(model, "freeze all; unfreeze head; unfreeze body.2 with weight_decay=0", lr=1e-3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    freezer.align(optimizer)
    assert layout(model, optimizer) == [
        ({"lr": 1e-3, "weight_decay": 0.01}, ["head.weight", "head.bias"]),
        ({"lr": 1e-3, "weight_decay": 0.0}, ["body.2.weight", "body.2.bias"]),
    ]


def train(model, freezer, optimizer, scheduler, epochs) -> None:
    for epoch in epochs:
        freezer.update(optimizer, epoch=epoch, scheduler=scheduler)
        assert policyfreeze.check_optimizer(model, optimizer) == ()
        for step in range(2):
            data = torch.Generator().manual_seed(10 * epoch + step)
            optimizer.zero_grad()
            model(torch.randn(3, 4, generator=data)).pow(2).mean().backward()
            optimizer.step()
            scheduler.step()


@pytest.mark.parametrize("idiom", IDIOMS.values(), ids=IDIOMS)
def test_resume_rebuilding_the_framework_optimizer_is_bit_identical(idiom):
    """As Lightning resumes: restore the Freezer, rebuild the optimizer with configure_optimizers' idiom,
    align it, load the saved optimizer and scheduler state, go on."""

    def build(model, freezer):
        optimizer = idiom(model)
        scheduler = s.LambdaLR(optimizer, lambda step: 0.8**step)
        freezer.align(optimizer, scheduler=scheduler)
        return optimizer, scheduler

    model = net()
    freezer = Freezer(model, POLICY, lr=1e-3)
    optimizer, scheduler = build(model, freezer)
    train(model, freezer, optimizer, scheduler, range(EPOCHS))
    uninterrupted = ({k: v.clone() for k, v in model.state_dict().items()}, optimizer.state_dict())

    model = net()
    freezer = Freezer(model, POLICY, lr=1e-3)
    optimizer, scheduler = build(model, freezer)
    train(model, freezer, optimizer, scheduler, range(2))
    saved = (model.state_dict(), freezer.state_dict(), optimizer.state_dict(), scheduler.state_dict())

    model = net()
    model.load_state_dict(saved[0])
    freezer = Freezer(model, POLICY, lr=1e-3)
    freezer.load_state_dict(saved[1])
    optimizer, scheduler = build(model, freezer)
    optimizer.load_state_dict(saved[2])
    scheduler.load_state_dict(saved[3])
    train(model, freezer, optimizer, scheduler, range(2, EPOCHS))
    for key, value in uninterrupted[0].items():
        assert torch.equal(model.state_dict()[key], value), key
    assert optimizer.state_dict()["param_groups"] == uninterrupted[1]["param_groups"]


def test_align_keeps_scheduled_groups_on_schedule():
    model = net()
    freezer = Freezer(model, "freeze all; unfreeze head; unfreeze body.1 with lr_scale=0.1", lr=1e-3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = s.LinearLR(optimizer, start_factor=0.25, total_iters=4)  # warm-up: lr is 0.25e-3 now
    freezer.align(optimizer, scheduler=scheduler)
    assert [names for _, names in layout(model, optimizer)] == [
        ["head.weight", "head.bias"],
        ["body.1.weight", "body.1.bias"],
    ]
    for _ in range(6):
        base, scaled = (group["lr"] for group in optimizer.param_groups)
        assert math.isclose(scaled, 0.1 * base, rel_tol=1e-12)
        optimizer.step()
        scheduler.step()


# Per-parameter options -------------------------------------------------------------


def no_decay(name: str) -> dict:
    """The Hugging Face Trainer's grouping: no weight decay for biases and norms."""
    return {"weight_decay": 0.0} if name.endswith("bias") or name.startswith("body.2.") else {}


def test_param_options_split_groups_under_the_policys_own_options():
    model = net()
    policy = "freeze all; unfreeze head\nat epoch 1 { unfreeze body with lr_scale=0.5; unfreeze body.0 with weight_decay=0.3 }"
    freezer = Freezer(model, policy, lr=1e-3, weight_decay=0.01, param_options=no_decay)
    optimizer = torch.optim.AdamW(freezer.param_groups())
    assert layout(model, optimizer) == [
        ({"lr": 1e-3, "weight_decay": 0.01}, ["head.weight"]),
        ({"lr": 1e-3, "weight_decay": 0.0}, ["head.bias"]),
    ]
    freezer.update(optimizer, epoch=1)
    assert layout(model, optimizer)[2:] == [
        ({"lr": 1e-3, "weight_decay": 0.3}, ["body.0.weight", "body.0.bias"]),  # the last statement's options
        ({"lr": 1e-3 * 0.5, "weight_decay": 0.01}, ["body.1.weight"]),
        ({"lr": 1e-3 * 0.5, "weight_decay": 0.0}, ["body.1.bias", "body.2.weight", "body.2.bias"]),
    ]
    assert [group["params"] for group in freezer.state_dict()["groups"]] == [
        names for _, names in layout(model, optimizer)
    ]


@pytest.mark.parametrize(
    "param_options, message",
    [
        (lambda name: {"momentum": 0.9}, "returned {'momentum': 0.9}: a dict with the keys lr and/or weight_decay"),
        (lambda name: {"lr": 0}, "gives lr=0: not a lr"),
        (lambda name: None, "returned None"),
    ],
)
def test_bad_param_options_are_refused_before_anything_changes(param_options, message):
    model = net()
    with pytest.raises(PolicyUsageError, match=message.replace("(", r"\(").replace("{", r"\{")):
        Freezer(model, "freeze body", param_options=param_options)
    assert all(p.requires_grad for p in model.parameters())

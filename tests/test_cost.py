"""The cost report: FLOPs of one training step on the meta device, gradient and AdamW memory."""

import json
from pathlib import Path

import pytest
import torch
import torchvision
from models import tied, tiny
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import policyfreeze
from policyfreeze import PolicyUsageError
from policyfreeze.cli import main

POLICIES = Path(__file__).parent.parent / "policies"

SHAPE = (8, 3, 224, 224)
RESNET18_PARAMS = 11_689_512
FC_PARAMS = 512 * 1000 + 1000


@pytest.fixture(scope="module")
def meta_resnet18():
    with torch.device("meta"):
        return torchvision.models.resnet18(weights=None)


@pytest.fixture(scope="module")
def forward_flops(meta_resnet18):
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta_resnet18(torch.empty(SHAPE, device="meta"))
    return counter.get_total_flops()


def cost_of(model, policy, shape=SHAPE):
    return policyfreeze.Report(policyfreeze.resolve(model, policy), applied=False).cost(shape)


def test_a_linear_probe_costs_a_third_of_the_full_step(meta_resnet18, forward_flops):
    cost = cost_of(meta_resnet18, "freeze all; unfreeze fc")
    assert 0.33 < cost.flops_ratio < 0.35  # the issue measured 0.34
    # Forward, plus only fc's weight gradient: a 1000×8 by 8×512 matmul. No other backward runs.
    assert cost.with_policy.flops == forward_flops + 2 * 1000 * 8 * 512
    assert cost.with_policy.gradient_bytes == FC_PARAMS * 4
    assert cost.with_policy.optimizer_bytes == 2 * FC_PARAMS * 4
    assert cost.without.gradient_bytes == RESNET18_PARAMS * 4
    assert cost.without.optimizer_bytes == 2 * RESNET18_PARAMS * 4


@pytest.mark.parametrize(
    "policy, low, high",
    [
        ("freeze all", 0.999, 1.001),  # forward only: exactly the forward's share
        ("freeze all; unfreeze fc", 0.33, 0.35),
        ("freeze all; unfreeze *.bias", 0.6, 0.7),  # input gradients everywhere, no weight gradients
        ("freeze all; unfreeze layer4, fc", 0.4, 0.6),
        ("unfreeze all", 0.999, 1.001),
    ],
)
def test_flops_fall_with_what_is_frozen(meta_resnet18, forward_flops, policy, low, high):
    cost = cost_of(meta_resnet18, policy)
    full = cost.without.flops
    share = cost.with_policy.flops / (forward_flops if policy == "freeze all" else full)
    assert low < share < high


def test_cost_leaves_a_real_model_untouched():
    model = torchvision.models.resnet18(weights=None)
    report = policyfreeze.apply(model, "freeze all; unfreeze fc")
    before = {name: (p.requires_grad, p.device, p.grad) for name, p in model.named_parameters()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    cost = report.cost((2, 3, 64, 64))
    assert cost.without.flops > cost.with_policy.flops > 0
    assert {name: (p.requires_grad, p.device, p.grad) for name, p in model.named_parameters()} == before
    assert all(torch.equal(b, buffers[name]) for name, b in model.named_buffers())
    # "without" is the model as it was before the policy: every parameter trainable.
    assert cost.without.gradient_bytes == RESNET18_PARAMS * 4


def test_the_text_report(meta_resnet18):
    cost = policyfreeze.Report(
        policyfreeze.resolve(meta_resnet18, policyfreeze.parse("freeze all; unfreeze fc", "probe.freeze")),
        applied=False,
    ).cost(SHAPE)
    assert str(cost) == (
        "probe.freeze on ResNet: one training step at input 8×3×224×224\n"
        "\n"
        "                                 without         with  saving\n"
        "FLOPs (forward + backward)   85.19 GFLOP  29.03 GFLOP   65.9%\n"
        "parameter gradients             44.6 MiB      2.0 MiB   95.6%\n"
        "AdamW state (2 per element)     89.2 MiB      3.9 MiB   95.6%\n"
        "\n"
        "with the policy a step costs 0.34 of the FLOPs without it"
    )


def test_dtype_sets_the_bytes_and_the_input():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)).to(torch.bfloat16)
    cost = cost_of(model, "freeze 0", shape=(3, 4))
    assert cost.with_policy.gradient_bytes == (4 * 2 + 2) * 2
    assert cost.without.gradient_bytes == (4 * 4 + 4 + 4 * 2 + 2) * 2


class TiedPair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(self.a(x))


def test_a_tied_weight_counts_once():
    cost = cost_of(TiedPair(), "unfreeze all", shape=(2, 4))
    assert cost.with_policy.gradient_bytes == (4 * 4 + 4 + 4) * 4
    # forward: two 2×4 by 4×4 matmuls; backward: both weight gradients and a's output gradient
    assert cost.with_policy.flops == 5 * (2 * 2 * 4 * 4)


def test_a_model_without_a_float_input_is_a_usage_error():
    with pytest.raises(PolicyUsageError, match="running the model on a meta input"):
        cost_of(tied(), "unfreeze all", shape=(2, 4))  # TiedLM has no forward


@pytest.mark.parametrize("shape", [(), (8, 0), (8, -1), "8,3", (2.0, 3)])
def test_a_bad_input_shape(shape):
    with pytest.raises(PolicyUsageError, match="input_shape must be positive sizes"):
        cost_of(tiny(), "freeze 0", shape=shape)


def test_a_model_that_rejects_the_input():
    with pytest.raises(PolicyUsageError) as info:
        cost_of(tiny(), "freeze 0", shape=(4, 5))
    assert "running the model on a meta input of shape (4, 5) failed: RuntimeError" in str(info.value)
    assert "batch first" in info.value.help


# The command -----------------------------------------------------------------


def test_cost_command_text(capsys):
    code = main(
        [
            "cost",
            str(POLICIES / "resnet18-linear-probe.freeze"),
            "--model",
            "torchvision:resnet18",
            "--input-shape",
            "8,3,224,224",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(
        f"{POLICIES / 'resnet18-linear-probe.freeze'} on ResNet: one training step at input 8×3×224×224\n"
    )
    assert out.endswith("with the policy a step costs 0.34 of the FLOPs without it\n")


def test_cost_command_json(capsys):
    code = main(
        [
            "cost",
            str(POLICIES / "bitfit.freeze"),
            "--model",
            "torchvision:resnet18",
            "--input-shape",
            "2,3,64,64",
            "--format",
            "json",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(data) == {"version", "policy", "model", "input_shape", "without", "with", "flops_ratio"}
    assert data["input_shape"] == [2, 3, 64, 64] and data["model"] == "ResNet"
    assert data["with"]["optimizer_bytes"] == 2 * data["with"]["gradient_bytes"]
    assert 0 < data["flops_ratio"] < 1


@pytest.mark.parametrize(
    "shape, message",
    [
        ("8,3,x", "--input-shape '8,3,x': expected positive sizes separated by commas"),
        ("8,0", "--input-shape '8,0': expected positive sizes"),
        ("8,3", "running the model on a meta input of shape (8, 3) failed"),
    ],
)
def test_cost_command_usage_errors(capsys, shape, message):
    code = main(["cost", str(POLICIES / "bitfit.freeze"), "--model", "torchvision:resnet18", "--input-shape", shape])
    assert code == 2
    assert message in capsys.readouterr().err

"""The cost report from Python: FLOPs, activations, memory, the backward through frozen modules, stages, inputs.

The figures against real training steps are in ``test_cost_measured.py``;
the command line and its golden output in ``test_cost_cli.py``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy
import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from models import intparam, tied, tiny
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import policyfreeze
from policyfreeze import PolicyError, PolicyUsageError
from policyfreeze.report.cost import COST_VERSION, CPU_LIMIT_BYTES, InputSpec

POLICIES = Path(__file__).parent.parent / "policies"

SHAPE = (8, 3, 224, 224)
SMALL = (2, 3, 64, 64)
RESNET18_PARAMS = 11_689_512
FC_PARAMS = 512 * 1000 + 1000


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny steps: one CPU thread runs them faster than several spinning on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def meta_resnet18():
    with torch.device("meta"):
        return torchvision.models.resnet18(weights=None)


@pytest.fixture(scope="module")
def forward_flops(meta_resnet18):
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta_resnet18(torch.empty(SHAPE, device="meta"))
    return counter.get_total_flops()


def cost_of(model, policy, shape=SHAPE, **kwargs):
    return policyfreeze.Report(policyfreeze.resolve(model, policy), applied=False).cost(shape, **kwargs)


def test_a_linear_probe_costs_a_third_of_the_full_step(meta_resnet18, forward_flops):
    cost = cost_of(meta_resnet18, "freeze all; unfreeze fc")
    assert 0.33 < cost.flops_ratio < 0.35  # the issue measured 0.34
    # Forward, plus only fc's weight gradient: a 1000×8 by 8×512 matmul. No other backward runs.
    assert cost.with_policy.flops == forward_flops + 2 * 1000 * 8 * 512
    assert cost.with_policy.gradient_bytes == FC_PARAMS * 4
    assert cost.with_policy.optimizer_bytes == 2 * FC_PARAMS * 4
    assert cost.without.gradient_bytes == RESNET18_PARAMS * 4
    assert cost.without.optimizer_bytes == 2 * RESNET18_PARAMS * 4
    # fc saves its input for its weight gradient, and nothing else is saved: 8×512 float32.
    assert cost.with_policy.activation_bytes == 8 * 512 * 4
    assert cost.with_policy.frozen_backward == ()
    assert cost.device == "meta" and cost.meta_error is None


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


def test_nothing_trainable_saves_nothing_for_backward(meta_resnet18):
    cost = cost_of(meta_resnet18, "freeze all")
    step = cost.with_policy
    assert (step.activation_bytes, step.gradient_bytes, step.optimizer_bytes) == (0, 0, 0)
    assert step.peak_bytes == step.weight_bytes == cost.without.weight_bytes


def test_peak_is_weights_state_activations_and_gradients_together(meta_resnet18):
    step = cost_of(meta_resnet18, "freeze all; unfreeze layer4, fc").with_policy
    weights = RESNET18_PARAMS * 4 + sum(b.numel() * b.element_size() for b in meta_resnet18.buffers())
    assert step.weight_bytes == weights
    assert step.peak_bytes == weights + step.optimizer_bytes + step.activation_bytes + step.gradient_bytes


def test_cost_leaves_a_real_model_untouched():
    model = torchvision.models.resnet18(weights=None)
    report = policyfreeze.apply(model, "freeze all; unfreeze fc; eval type(BatchNorm2d)")
    model.eval()
    before = {name: (p.requires_grad, p.device, p.grad) for name, p in model.named_parameters()}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    rng = torch.random.get_rng_state()
    cost = report.cost(SMALL)
    assert cost.without.flops > cost.with_policy.flops > 0
    assert {name: (p.requires_grad, p.device, p.grad) for name, p in model.named_parameters()} == before
    assert all(torch.equal(b, buffers[name]) for name, b in model.named_buffers())
    assert not any(m.training for m in model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert torch.equal(torch.random.get_rng_state(), rng)
    # "without" is the model as it was before the policy: every parameter trainable.
    assert cost.without.gradient_bytes == RESNET18_PARAMS * 4


class NeedsValues(nn.Module):
    """A forward that reads a tensor's value: it cannot run on the meta device."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(width)
        self.lin = nn.Linear(width, width)

    def forward(self, x):
        if x.abs().sum().item() < 0:
            raise AssertionError("unreachable")
        return self.lin(self.norm(x))


def test_a_forward_that_reads_values_runs_on_the_cpu_and_leaves_the_model_untouched():
    model = NeedsValues()
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    rng, python_rng, numpy_rng = torch.random.get_rng_state(), random.getstate(), numpy.random.get_state()[1].copy()
    cost = cost_of(model, "freeze norm", shape=(2, 4))
    assert cost.device == "cpu"
    assert cost.meta_error == "RuntimeError: Tensor.item() cannot be called on meta tensors"
    # forward 2×4 by 4×4; backward: the weight's gradient only (the input needs none)
    assert cost.with_policy.flops == 2 * (2 * 2 * 4 * 4)
    assert all(torch.equal(b, buffers[name]) for name, b in model.named_buffers())
    assert torch.equal(torch.random.get_rng_state(), rng) and random.getstate() == python_rng
    assert (numpy.random.get_state()[1] == numpy_rng).all()
    assert all(p.grad is None for p in model.parameters())


def test_the_cpu_run_is_refused_beyond_its_limit():
    with torch.device("meta"):
        model = NeedsValues(width=40_000)  # 6.4 GB of weights: built on meta, never allocated
    with pytest.raises(PolicyUsageError) as info:
        cost_of(model, "freeze norm", shape=(2, 40_000))
    assert str(info.value).startswith(
        "the model cannot run on the meta device (RuntimeError: Tensor.item() cannot be called on meta tensors), "
        "and running it on the CPU needs 6.0 GiB for its weights and inputs (the limit is 4 GiB)"
    )
    assert CPU_LIMIT_BYTES == 4 << 30


def test_dtype_sets_the_bytes_and_the_input():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)).to(torch.bfloat16)
    cost = cost_of(model, "freeze 0", shape=(3, 4))
    assert cost.inputs == (InputSpec((3, 4), "bfloat16"),)
    assert cost.with_policy.gradient_bytes == (4 * 2 + 2) * 2
    assert cost.without.gradient_bytes == (4 * 4 + 4 + 4 * 2 + 2) * 2
    # layer 1 saves its input (layer 0's output, 3×4 bfloat16) for its weight gradient
    assert cost.with_policy.activation_bytes == 3 * 4 * 2


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


class Views(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        h = self.a(x)
        return (h * h).sum() + (h.t() * h.t()).sum()


def test_a_storage_saved_through_views_counts_once():
    """Both products save h (or its transpose, a view of it) twice: h counts once, with x that a saves."""
    cost = cost_of(Views(), "unfreeze all", shape=(2, 4))
    assert cost.with_policy.activation_bytes == 2 * (2 * 4 * 4)


def test_eval_pins_hold_a_module_in_eval_mode_for_the_step():
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    cost = cost_of(model, "eval 1", shape=(2, 4))
    # In train mode the dropout saves its mask (2×8, float32 as the CPU kernel makes it) and layer 2 the dropout's
    # output; pinned in eval mode, the dropout is the identity and layer 2 saves layer 0's output.
    assert cost.without.activation_bytes == 2 * 4 * 4 + 2 * 8 * 4 + 2 * 8 * 4
    assert cost.with_policy.activation_bytes == 2 * 4 * 4 + 2 * 8 * 4


# The backward through frozen modules --------------------------------------------------------------------


class MakesGrad(nn.Module):
    """Frozen, yet its forward makes a tensor that requires grad: the backward runs through it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        shift = torch.zeros(4, device=x.device, requires_grad=True)
        return self.lin(x + shift)


class Marks(nn.Module):
    """The parent marks its input as requiring grad before the frozen encoder (wav2vec2's pattern, one level up)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = x.detach()
        x.requires_grad = True
        return self.head(self.encoder(x))


class Stack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.middle = MakesGrad()
        self.last = nn.Linear(4, 4)

    def forward(self, x):
        return self.last(self.middle(self.first(x)))


@pytest.mark.parametrize(
    "model, policy, expected",
    [
        (Stack(), "freeze middle", [("middle", "middle", "upstream", "first.bias", None)]),
        (Stack(), "freeze first, middle", [("middle", "middle", "inside", None, None)]),
        (Marks(), "freeze encoder", [("encoder", "encoder", "marked", "", None)]),
    ],
    ids=["upstream", "inside", "marked-by-the-parent"],
)
def test_where_the_backward_through_a_frozen_module_starts(model, policy, expected):
    cost = cost_of(model, policy, shape=(2, 4))
    entries = cost.with_policy.frozen_backward
    assert [(e.module, e.starts_at, e.reason, e.source, e.help) for e in entries] == expected
    # its backward is the input gradient of its 4×4 linear layer: one 2×4 by 4×4 matmul
    assert [e.flops for e in entries] == [2 * 2 * 4 * 4]


@pytest.mark.parametrize(
    "entry, cause",
    [
        (("m", "m", "upstream", "a.weight"), "its input requires grad: a.weight trains before it"),
        (("m", "m", "inside", None), "a tensor its forward makes requires grad"),
        (("m", "m.conv.0", "marked", "m"), "its forward makes the input of conv.0 require grad"),
        (("m", "m", "marked", ""), "the forward of the model makes its input require grad"),
        (("m", "m", "marked", "top"), "the forward of top makes its input require grad"),
    ],
)
def test_each_cause_is_one_clause(entry, cause):
    module, starts_at, reason, source = entry
    assert policyfreeze.report.cost.FrozenBackward(module, "M", 1, starts_at, reason, source).cause == cause


# Schedules ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gradual():
    return policyfreeze.load(POLICIES / "resnet-gradual-unfreezing.freeze")


def test_every_stage_of_a_schedule_is_costed_as_resolving_at_it(meta_resnet18, gradual):
    plan = policyfreeze.resolve(meta_resnet18, gradual)
    cost = policyfreeze.Report(plan, applied=False).cost(SMALL, every_stage=True)
    assert [stage.label for stage in cost.stages] == ["epoch 0", "epoch 1", "epoch 2", "epoch 3", "epoch 4"]
    for stage in cost.stages:
        direct = policyfreeze.Report(policyfreeze.resolve(meta_resnet18, gradual, epoch=stage.at), applied=False)
        assert stage.cost == direct.cost(SMALL).with_policy
    assert cost.stages[0].cost == cost.with_policy
    flops = [stage.cost.flops for stage in cost.stages]
    assert flops == sorted(flops) and flops[-1] == cost.without.flops  # each stage trains more; the last, all


def test_a_plan_at_a_later_stage_costs_that_stage(meta_resnet18, gradual):
    at_two = policyfreeze.Report(policyfreeze.resolve(meta_resnet18, gradual, epoch=2), applied=False)
    cost = at_two.cost(SMALL, every_stage=True)
    assert cost.with_policy == cost.stages[2].cost
    assert at_two.cost(SMALL).stages == ()


def test_every_stage_of_a_plain_policy_is_the_policy(meta_resnet18):
    assert cost_of(meta_resnet18, "freeze all; unfreeze fc", shape=SMALL, every_stage=True).stages == ()


def test_a_later_stage_that_cannot_apply_is_an_error():
    """Stage 0 resolves; epoch 2 unfreezes an integer tensor: costing every stage refuses before running any."""
    plan = policyfreeze.resolve(intparam(), "freeze linear\nat epoch 2 { unfreeze table }\n")
    with pytest.raises(PolicyError, match="table"):
        policyfreeze.Report(plan, applied=False).cost((2, 2), every_stage=True)


# Inputs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, spec",
    [
        ("input_ids:int64[8,128]<50257", InputSpec((8, 128), "int64", "input_ids", 50257)),
        ("float32[8,3,224,224]", InputSpec((8, 3, 224, 224), "float32")),
        ("[2,4]", InputSpec((2, 4))),
        ("x:[2, 4]", InputSpec((2, 4), None, "x")),
        ("mask:bool[2,16]<2", InputSpec((2, 16), "bool", "mask", 2)),
        ("ids:long[2,16]", InputSpec((2, 16), "int64", "ids")),  # torch's alias, written as torch names it
        ("half[1]", InputSpec((1,), "float16")),
        ("t:float32[]", InputSpec((), "float32", "t")),  # a 0-d tensor
        (" ids : int32 [ 2 , 3 ] < 7 ", InputSpec((2, 3), "int32", "ids", 7)),
    ],
)
def test_input_specs(text, spec):
    assert InputSpec.parse(text) == spec
    assert InputSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(
    "text, message",
    [
        ("ids", "expected [NAME:][DTYPE][SIZES][<HIGH], for example input_ids:int64[8,128]<50257"),
        ("int64[8,128", "expected [NAME:][DTYPE][SIZES][<HIGH]"),
        ("int64(8,128)", "expected [NAME:][DTYPE][SIZES][<HIGH]"),
        ("1x:int64[2]", "expected [NAME:][DTYPE][SIZES][<HIGH]"),
        ("int64[8,0]", "expected positive sizes (1 or more), not 0"),
        ("int64[8,-1]", "expected positive sizes separated by commas"),
        ("int64[8,]", "expected positive sizes separated by commas"),
        ("int64[2.5]", "expected positive sizes separated by commas"),
        ("int64[١٢]", "expected positive sizes separated by commas"),  # Arabic-Indic digits are not sizes
        ("int64[99999999999999999999]", "too large: 1e+20 elements do not fit in one tensor"),
        ("int64[9999999999,9999999999]", "too large: 1e+20 elements do not fit in one tensor"),
        ("int64[" + "9" * 5000 + "]", "too large: a size of more than 20 digits fits in no tensor"),
        ("int65[2]", "torch has no dtype 'int65'"),
        ("Tensor[2]", "torch has no dtype 'Tensor'"),
        ("_C[2]", "torch has no dtype '_C'"),
        ("float32[2]<5", "a bound (<5) is for integer and bool inputs, not float32"),
        ("int8[2]<1000", "int8 holds values up to 127, below 1000"),
        ("bool[2]<3", "bool holds values up to 1, below 3"),
        ("int4[2]<2", "torch cannot draw int4 values, so they take no bound"),
        ("int64[2]<0", "the bound is a whole number 1 or more"),
        ("int64[2]<x", "the bound after '<' is a whole number (values 0 ≤ v < HIGH), not 'x'"),
        ("int64[2]<-1", "the bound after '<' is a whole number"),
        ("int64[2]<" + "9" * 30, "is too large for any integer dtype"),
    ],
)
def test_bad_input_specs(text, message):
    with pytest.raises(PolicyUsageError) as info:
        InputSpec.parse(text)
    assert message in str(info.value)


@given(st.text(alphabet="ab_:<>[],0123456789 -.intfloat", max_size=30))
def test_any_spec_text_parses_or_is_a_usage_error(text):
    try:
        spec = InputSpec.parse(text)
    except PolicyUsageError:
        return
    assert InputSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "give the step's input as input_shape= (one floating-point tensor) or inputs= (specs), not neither"),
        ({"input_shape": (2, 4), "inputs": ["[2,4]"]}, "not both"),
        ({"inputs": "int64[2]"}, "inputs is a non-empty list of input specs"),
        ({"inputs": []}, "inputs is a non-empty list of input specs"),
        ({"inputs": [(2, 4)]}, "an input is a spec string or an InputSpec, not tuple"),
        ({"inputs": ["x:[2,4]", "x:[2,4]"]}, "input 'x' is given more than once"),
        ({"inputs": [InputSpec((2, 4), "int65")]}, "torch has no dtype 'int65'"),
        ({"inputs": [InputSpec((2, 0))]}, "expected positive sizes (1 or more), not 0"),
        ({"inputs": [InputSpec(None)]}, "the shape is a sequence of sizes, not None"),
        ({"inputs": [InputSpec((2, 2), high=2.5)]}, "the bound is a whole number 1 or more"),
        ({"inputs": [InputSpec((2, 4), name="not an identifier")]}, "the name is a Python identifier"),
        ({"inputs": ["y:[2,2]"]}, "Sequential.forward takes no input 'y'"),
        ({"inputs": ["[2,2]", "[2,2]"]}, "Sequential.forward cannot take these inputs: too many positional arguments"),
    ],
)
def test_bad_inputs_from_python(kwargs, message):
    with pytest.raises(PolicyUsageError) as info:
        policyfreeze.Report(policyfreeze.resolve(tiny(), "freeze 0"), applied=False).cost(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("shape", [(), (8, 0), (8, -1), "8,3", (2.0, 3), (True, 2)])
def test_a_bad_input_shape(shape):
    with pytest.raises(PolicyUsageError, match="input_shape must be positive sizes"):
        cost_of(tiny(), "freeze 0", shape=shape)


def test_a_huge_input_shape():
    with pytest.raises(PolicyUsageError, match="too large: 1.51e\\+25 elements do not fit in one tensor"):
        cost_of(tiny(), "freeze 0", shape=(99999999999999999999, 3, 224, 224))


def test_a_model_that_rejects_the_input():
    with pytest.raises(PolicyUsageError) as info:
        cost_of(tiny(), "freeze 0", shape=(4, 5))
    assert "running the model on input float32[4,5] failed: RuntimeError: mat1 and mat2 shapes cannot be" in str(
        info.value
    )
    assert "batch first" in info.value.help


def test_a_model_without_a_forward():
    with pytest.raises(PolicyUsageError, match="running the model on input float32\\[2,4\\] failed: NotImplemented"):
        cost_of(tied(), "unfreeze all", shape=(2, 4))


def test_json_is_versioned(meta_resnet18):
    data = json.loads(cost_of(meta_resnet18, "freeze all; unfreeze fc", shape=SMALL).to_json())
    assert data["version"] == COST_VERSION == 2
    assert set(data) == {
        "version",
        "policy",
        "model",
        "inputs",
        "device",
        "meta_error",
        "without",
        "with",
        "stages",
        "flops_ratio",
        "peak_ratio",
    }
    assert data["inputs"] == [{"name": None, "dtype": "float32", "shape": [2, 3, 64, 64], "high": None}]
    assert set(data["with"]) == {
        "flops",
        "frozen_backward_flops",
        "activation_bytes",
        "gradient_bytes",
        "optimizer_bytes",
        "weight_bytes",
        "peak_bytes",
        "frozen_backward",
    }

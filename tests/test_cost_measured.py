"""The cost model against real CPU training steps: the same FLOPs, activations within 10 %.

Each case resolves a policy, costs the step (on the meta device where the
model's forward allows it, else on the CPU), then applies the policy to the
real model for real and measures one real training step: FlopCounterMode for
the FLOPs (per module too), a saved_tensors_hooks pack hook for the bytes
saved for backward (distinct storages, parameters and buffers left out). The
factories here are tiny so the whole file runs in seconds; the command-line
tests build them with ``--model tests/test_cost_measured.py:NAME``.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, Wav2Vec2Config, Wav2Vec2Model
from transformers.utils import logging

import policyfreeze

logging.set_verbosity_error()  # GPT2Config's default token ids lie outside a 1000-word vocabulary


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny steps: one CPU thread runs them faster than several spinning on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def resnet18() -> torch.nn.Module:
    return torchvision.models.resnet18(weights=None)


def tiny_bert() -> torch.nn.Module:
    return BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=1000)
    )


def tiny_gpt2() -> torch.nn.Module:
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000))


def tiny_wav2vec2() -> torch.nn.Module:
    return Wav2Vec2Model(
        Wav2Vec2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(64, 64, 64),
            conv_stride=(5, 2, 2),
            conv_kernel=(10, 3, 3),
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
            layerdrop=0.0,  # LayerDrop skips layers at random in training: the FLOPs would vary from step to step
        )
    )


@dataclasses.dataclass(frozen=True)
class Case:
    factory: object
    policy: str
    inputs: tuple[str, ...]
    #: where the cost model runs the step
    device: str


IDS = "input_ids:int64[2,16]<1000"
MASK = "attention_mask:int64[2,16]<2"

CASES = {
    "resnet18-linear-probe": Case(
        resnet18, "freeze all; unfreeze fc; eval type(BatchNorm2d)", ("[2,3,64,64]",), "meta"
    ),
    "resnet18-bitfit": Case(resnet18, "freeze all; unfreeze *.bias", ("float32[2,3,64,64]",), "meta"),
    "resnet18-frozen-middle": Case(resnet18, "freeze layer2, layer3", ("[2,3,64,64]",), "meta"),
    "bert-first-layers": Case(tiny_bert, "freeze embeddings, encoder.layer.0", (IDS, MASK), "cpu"),
    "gpt2-ids": Case(tiny_gpt2, "freeze transformer.h.0", (IDS,), "meta"),
    "gpt2-ids-and-mask": Case(tiny_gpt2, "freeze all; unfreeze transformer.h.1, transformer.ln_f", (IDS, MASK), "cpu"),
    "wav2vec2-feature-encoder": Case(tiny_wav2vec2, "freeze feature_extractor", ("float32[1,4000]",), "cpu"),
}


def real_inputs(specs: tuple[str, ...], default_dtype: torch.dtype) -> tuple[list, dict]:
    args, kwargs = [], {}
    for text in specs:
        spec = policyfreeze.report.cost.InputSpec.parse(text)
        dtype = getattr(torch, spec.dtype) if spec.dtype else default_dtype
        tensor = torch.randint(0, spec.high, spec.shape) if spec.high else torch.randn(spec.shape, dtype=dtype)
        if spec.name:
            kwargs[spec.name] = tensor
        else:
            args.append(tensor)
    return args, kwargs


@dataclasses.dataclass
class Measured:
    flops: int
    saved_bytes: int
    #: per module name in FlopCounterMode's breakdown ("ResNet.layer2"): its forward and its backward FLOPs
    forward: dict[str, int]
    backward: dict[str, int]


def measure_real_step(model: torch.nn.Module, args: list, kwargs: dict) -> Measured:
    """One real training step in the model's current state (flags, pins), as a training loop runs it."""
    model.train()
    kept = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in kept:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with FlopCounterMode(display=False) as counter:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            output = model(*args, **kwargs)
        forward = {name: sum(c.values()) for name, c in counter.get_flop_counts().items()}
        outputs = output.values() if isinstance(output, dict) else [output]
        loss = sum(t.sum() for t in outputs if isinstance(t, torch.Tensor) and t.requires_grad)
        loss.backward()
    total = {name: sum(c.values()) for name, c in counter.get_flop_counts().items()}
    backward = {name: flops - forward.get(name, 0) for name, flops in total.items()}
    return Measured(total["Global"], sum(saved.values()), forward, backward)


@functools.cache
def measured_without(factory, inputs: tuple[str, ...]) -> Measured:
    """A real step of the model as built (everything trainable): one per model and input, shared by its cases."""
    torch.manual_seed(0)
    return measure_real_step(factory(), *real_inputs(inputs, torch.float32))


@functools.cache
def measured(name: str) -> tuple:
    """The cost report and the measured real steps without and with the policy, for one case."""
    spec = CASES[name]
    torch.manual_seed(0)
    model = spec.factory()
    cost = policyfreeze.Report(policyfreeze.resolve(model, spec.policy), applied=False).cost(inputs=list(spec.inputs))
    policyfreeze.apply(model, spec.policy)
    with_policy = measure_real_step(model, *real_inputs(spec.inputs, torch.float32))
    return name, spec, model, cost, measured_without(spec.factory, spec.inputs), with_policy


@pytest.fixture(params=sorted(CASES))
def case(request):
    return measured(request.param)


def test_the_step_runs_where_the_forward_allows(case):
    _, spec, _, cost, _, _ = case
    assert cost.device == spec.device


def test_flops_equal_flop_counter_mode_on_the_real_step(case):
    _, _, _, cost, without, with_policy = case
    assert cost.without.flops == without.flops
    assert cost.with_policy.flops == with_policy.flops


def test_activations_are_within_ten_percent_of_the_bytes_saved_on_the_real_step(case):
    _, _, _, cost, without, with_policy = case
    assert cost.without.activation_bytes == pytest.approx(without.saved_bytes, rel=0.1)
    assert cost.with_policy.activation_bytes == pytest.approx(with_policy.saved_bytes, rel=0.1)


def test_backward_in_frozen_modules_equals_the_real_steps_count(case):
    """Each frozen module's backward against FlopCounterMode's module breakdown of the real step.

    That breakdown charges a module with the backward until its input's
    gradient is complete: exact for a module whose input feeds nothing else,
    too much for a residual block's inner convolutions (BitFit), whose input
    also feeds the skip path. Their reference is their forward instead: a
    frozen convolution's backward is its input gradient, which the counter
    prices as the forward convolution.
    """
    name, _, model, cost, _, with_policy = case
    root = type(model).__name__
    reference = with_policy.forward if name == "resnet18-bitfit" else with_policy.backward
    entries = cost.with_policy.frozen_backward
    assert {e.module: e.flops for e in entries} == {e.module: reference[f"{root}.{e.module}"] for e in entries}
    assert cost.with_policy.frozen_backward_flops <= with_policy.flops - with_policy.forward["Global"]
    assert cost.without.frozen_backward == ()  # every parameter trains: no module is frozen


def test_memory_follows_the_trainable_parameters(case):
    _, _, model, cost, _, _ = case
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    assert cost.with_policy.gradient_bytes == trainable
    assert cost.with_policy.optimizer_bytes == 2 * trainable
    assert cost.without.gradient_bytes == sum(p.numel() * p.element_size() for p in model.parameters())
    assert cost.with_policy.weight_bytes == cost.without.weight_bytes == weights
    step = cost.with_policy
    assert step.peak_bytes == weights + 3 * trainable + step.activation_bytes


# Where the backward runs through frozen modules -----------------------------------------------------------


#: resnet18 under BitFit: each convolution but the first, and the bias the backward reaches first through its input
BITFIT_SOURCES = {
    "layer1.0.conv1": "bn1.bias",
    "layer1.0.conv2": "layer1.0.bn1.bias",
    "layer1.1.conv1": "layer1.0.bn2.bias",
    "layer1.1.conv2": "layer1.1.bn1.bias",
    **{
        f"layer{stage}.{name}": source
        for stage in (2, 3, 4)
        for name, source in {
            "0.conv1": f"layer{stage - 1}.1.bn2.bias",
            "0.conv2": f"layer{stage}.0.bn1.bias",
            "0.downsample.0": f"layer{stage - 1}.1.bn2.bias",
            "1.conv1": f"layer{stage}.0.bn2.bias",
            "1.conv2": f"layer{stage}.1.bn1.bias",
        }.items()
    },
}


def test_a_frozen_middle_passes_the_backward_on_to_what_trains_before_it(case):
    name, _, _, cost, _, _ = case
    frozen = {entry.module: entry for entry in cost.with_policy.frozen_backward}
    expected = {
        "resnet18-linear-probe": {},
        "resnet18-bitfit": {  # the convolutions have no bias: the backward crosses each to reach the norms' biases
            name: (name, "upstream", source, f"its input requires grad: {source} trains before it")
            for name, source in BITFIT_SOURCES.items()
        },
        "resnet18-frozen-middle": {
            "layer2": (
                "layer2",
                "upstream",
                "layer1.1.bn2.weight",
                "its input requires grad: layer1.1.bn2.weight trains before it",
            ),
            "layer3": (
                "layer3",
                "upstream",
                "layer1.1.bn2.weight",
                "its input requires grad: layer1.1.bn2.weight trains before it",
            ),
        },
        "bert-first-layers": {},  # embeddings and layer 0 get no gradient from below: nothing trains there
        "gpt2-ids": {
            "transformer.h.0": (
                "transformer.h.0",
                "upstream",
                "transformer.wte.weight",
                "its input requires grad: transformer.wte.weight trains before it",
            )
        },
        "gpt2-ids-and-mask": {  # the head is tied to the frozen embedding: the backward reaches ln_f through it
            "lm_head": (
                "lm_head",
                "upstream",
                "transformer.ln_f.weight",
                "its input requires grad: transformer.ln_f.weight trains before it",
            )
        },
        "wav2vec2-feature-encoder": {
            "feature_extractor": (
                "feature_extractor.conv_layers.0",
                "marked",
                "feature_extractor",
                "its forward makes the input of conv_layers.0 require grad",
            )
        },
    }[name]
    assert {module: (e.starts_at, e.reason, e.source, e.cause) for module, e in frozen.items()} == expected


def test_wav2vec2_frozen_by_flags_costs_its_feature_encoder_twice_and_says_why():
    """The policy sets the flags HF's freeze_feature_encoder() sets, yet the encoder still runs a backward."""
    _, spec, ours, cost, _, our_step = measured("wav2vec2-feature-encoder")
    assert spec.policy == "freeze feature_extractor" and spec.inputs == ("float32[1,4000]",)
    [entry] = cost.with_policy.frozen_backward
    assert entry.help == "call freeze_feature_encoder() too: it sets Wav2Vec2FeatureEncoder._requires_grad = False"

    hf = tiny_wav2vec2()
    hf.freeze_feature_encoder()
    assert {n: p.requires_grad for n, p in ours.named_parameters()} == {
        n: p.requires_grad for n, p in hf.named_parameters()
    }
    audio = torch.randn(1, 4000)
    hf_step = measure_real_step(hf, [audio], {})
    # The whole difference is the backward inside the encoder, and it costs what the encoder's forward does.
    assert our_step.flops - hf_step.flops == entry.flops == our_step.backward["Wav2Vec2Model.feature_extractor"]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        hf(audio)
    assert entry.flops == sum(counter.get_flop_counts()["Wav2Vec2Model.feature_extractor"].values())
    assert cost.with_policy.flops - entry.flops == hf_step.flops

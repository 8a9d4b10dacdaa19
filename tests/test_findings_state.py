"""The stage's findings the resolver reports for apply, the Freezer, plan and lint alike.

PF205 (nothing left to train), PF208 (a tied tensor decided through one of its
names while another lies outside the deciding statement's selection) and PF209 (an ``unfreeze``
trains an adapter layer's base weights): each is in ``plan.warnings`` at every
stage it holds in, warned by ``apply`` before anything changes, and a lint
finding with a model or a manifest.
"""

from __future__ import annotations

import warnings

import pytest
import torchvision
from torch import nn

from policyfreeze import PolicyWarning, apply, resolve
from policyfreeze.language.source import Source
from policyfreeze.lint import lint
from policyfreeze.model import manifest
from policyfreeze.model.tree import ModelTree
from policyfreeze.model.walk import tree_of


def codes(plan) -> list[str]:
    return [w.code for w in plan.warnings]


def lint_codes(text: str, tree: ModelTree) -> list[tuple[str, int, str]]:
    return [(f.code, f.line, f.message) for f in lint(Source("p.freeze", text), tree)]


# --- PF205 --------------------------------------------------------------------------------------------


def test_nothing_trainable_is_a_plan_warning_with_the_fix():
    plan = resolve(torchvision.models.resnet18(), "freeze all\neval type(BatchNorm2d)")
    [warning] = plan.warnings
    assert (warning.code, warning.line, warning.message) == ("PF205", 1, "the policy leaves no parameter trainable")
    assert warning.help == (
        "an optimizer needs at least one trainable parameter: unfreeze the part to train (for example 'unfreeze fc')"
    )


def test_apply_warns_nothing_trainable_before_changing_anything():
    model = torchvision.models.resnet18()
    with warnings.catch_warnings():
        warnings.simplefilter("error", PolicyWarning)  # as pytest's filterwarnings = error would
        with pytest.raises(PolicyWarning, match=r"PF205 the policy leaves no parameter trainable(.|\n)*unfreeze fc"):
            apply(model, "freeze all")
    assert all(p.requires_grad for p in model.parameters())


def test_nothing_trainable_at_a_later_stage_only():
    model = torchvision.models.resnet18()
    text = "freeze all; unfreeze fc\nat epoch 3 { freeze fc }"
    assert codes(resolve(model, text, epoch=2)) == []
    [warning] = resolve(model, text, epoch=3).warnings
    assert (warning.code, warning.line) == ("PF205", 2)


# --- PF208 on GPT-2, whose lm_head is its token embedding -----------------------------------------------


@pytest.fixture(scope="module")
def gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(
        GPT2Config(n_layer=1, n_embd=8, n_head=2, n_positions=16, vocab_size=32, bos_token_id=0, eos_token_id=0)
    )


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (
            "freeze transformer.wte",
            "'freeze transformer.wte' also freezes 'lm_head.weight': it is the same tensor as 'transformer.wte.weight'",
        ),
        (
            "freeze all except lm_head",
            "'freeze all except lm_head' also freezes 'lm_head.weight': it is the same tensor as 'transformer.wte.weight'",
        ),
        (
            "unfreeze lm_head",
            "'unfreeze lm_head' also unfreezes 'transformer.wte.weight': it is the same tensor as 'lm_head.weight'",
        ),
        (
            "freeze all\nunfreeze lm_head",  # 'freeze all' reaches both names; 'unfreeze lm_head' only one
            "'unfreeze lm_head' also unfreezes 'transformer.wte.weight': it is the same tensor as 'lm_head.weight'",
        ),
        (
            "unfreeze all\nfreeze transformer.wte",
            "'freeze transformer.wte' also freezes 'lm_head.weight': it is the same tensor as 'transformer.wte.weight'",
        ),
        ("freeze transformer.wte, lm_head", None),
        ("freeze all\nunfreeze transformer.wte, lm_head", None),
        ("freeze transformer.wte\nfreeze lm_head", None),  # every name selected, the same way
        ("freeze transformer.h", None),  # the tied tensor is not decided
    ],
)
def test_a_tied_tensor_decided_through_one_name_warns_naming_the_other(gpt2, policy, expected):
    plan = resolve(gpt2, policy)
    tied = [w for w in plan.warnings if w.code == "PF208"]
    assert [w.message for w in tied] == ([expected] if expected else [])
    tree = tree_of(gpt2)
    from_manifest = manifest.to_tree(manifest.parse(manifest.from_tree(tree).to_json()))
    for linted in (tree, from_manifest):
        assert [m for c, _, m in lint_codes(policy, linted) if c == "PF208"] == ([expected] if expected else [])


def test_apply_warns_about_the_tied_name(gpt2):
    model = type(gpt2)(gpt2.config)
    with pytest.warns(PolicyWarning, match="PF208 'freeze transformer.wte' also freezes 'lm_head.weight'"):
        apply(model, "freeze transformer.wte")
    assert not model.lm_head.weight.requires_grad  # the warning is true


def test_apply_warns_when_an_unfreeze_reaches_one_name(gpt2):
    model = type(gpt2)(gpt2.config)
    with pytest.warns(PolicyWarning, match="PF208 'unfreeze lm_head' also unfreezes 'transformer.wte.weight'"):
        apply(model, "freeze all\nunfreeze lm_head")
    assert model.transformer.wte.weight.requires_grad  # the warning is true
    assert not model.transformer.wpe.weight.requires_grad


def test_tied_findings_are_per_stage(gpt2):
    text = "freeze transformer.wte\nat epoch 2 { freeze lm_head }"
    assert codes(resolve(gpt2, text, epoch=0)) == ["PF208"]
    assert codes(resolve(gpt2, text, epoch=2)) == []
    [finding] = [f for f in lint(Source("p.freeze", text), tree_of(gpt2)) if f.code == "PF208"]
    assert finding.message.endswith("(at epoch 0)") and finding.stages == (0,)


# --- PF209: adapter layers ----------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(4, 4)
        self.k_proj = nn.Linear(4, 4)


class Adapted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block() for _ in "ab")
        self.head = nn.Linear(4, 2)


def adapted() -> nn.Module:
    """LoRA on every q_proj (real PEFT): its names are the base model's, plus the adapters'."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(Adapted(), LoraConfig(target_modules=["q_proj"], r=2))


@pytest.mark.parametrize(
    ("policy", "expected", "help"),
    [
        (
            "unfreeze *.q_proj",
            "'unfreeze *.q_proj' unfreezes the base weights of 2 adapter layers ('layers.0.q_proj', "
            "'layers.1.q_proj'): the adapters are meant to train in their place",
            "to train the adapters only, select them: 'unfreeze *.q_proj.lora_*'",
        ),
        (
            "unfreeze layers.0",
            "'unfreeze layers.0' unfreezes the base weights of an adapter layer ('layers.0.q_proj'): "
            "the adapters are meant to train in their place",
            "to train the adapters only, select them: 'unfreeze *.q_proj.lora_*'",
        ),
        ("unfreeze *.q_proj.lora_*", None, None),
        ("unfreeze *.q_proj\nfreeze *.q_proj.weight, *.q_proj.bias", None, None),  # decided again: frozen
        ("freeze *.q_proj", None, None),
    ],
)
def test_unfreezing_an_adapter_layer_base_weights_warns(policy, expected, help):
    model = adapted()
    plan = resolve(model, policy)
    found = [(w.message, w.help) for w in plan.warnings if w.code == "PF209"]
    assert found == ([(expected, help)] if expected else [])
    tree = tree_of(model)
    assert [(c, m) for c, _, m in lint_codes(policy, tree) if c == "PF209"] == (
        [("PF209", expected)] if expected else []
    )


def test_adapter_findings_are_per_stage():
    text = "unfreeze all\nat epoch 1 { freeze *.q_proj; unfreeze *.lora_* }"
    model = adapted()
    assert codes(resolve(model, text, epoch=0)) == ["PF209"]
    assert codes(resolve(model, text, epoch=1)) == []
    [finding] = [f for f in lint(Source("p.freeze", text), tree_of(model)) if f.code == "PF209"]
    assert finding.stages == (0,)
    assert finding.message.startswith("'unfreeze all' unfreezes the base weights of 2 adapter layers")


@pytest.fixture(scope="module")
def llama_lora() -> nn.Module:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=64,
    )
    return get_peft_model(LlamaForCausalLM(config), LoraConfig(target_modules=["q_proj", "v_proj"], r=2))


def test_unfreezing_q_proj_on_a_peft_lora_llama_warns(llama_lora):
    plan = resolve(llama_lora, "unfreeze *.q_proj")
    [warning] = [w for w in plan.warnings if w.code == "PF209"]
    assert warning.message == (
        "'unfreeze *.q_proj' unfreezes the base weights of 2 adapter layers ('model.layers.0.self_attn.q_proj', "
        "'model.layers.1.self_attn.q_proj'): the adapters are meant to train in their place"
    )
    assert warning.help == "to train the adapters only, select them: 'unfreeze *.q_proj.lora_*'"
    assert {n for n, trains in plan.requires_grad.items() if trains and not plan.before[n]} == {
        f"model.layers.{i}.self_attn.q_proj.weight" for i in range(2)
    }
    assert codes(resolve(llama_lora, "unfreeze *.q_proj.lora_*")) == []

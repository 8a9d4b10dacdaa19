"""Each policy of the library does what its ecosystem does, on the model its header names.

Every parameter's resolved ``requires_grad`` (and every module's eval pin) is
compared with the ecosystem's own ground truth: transformers' freeze methods and
its split of a model into base and head, PEFT's module matching, timm's
``freeze``, ``FrozenBatchNorm2d`` and parameter groups. Where no ecosystem has
one, the reference is the hand-written loop the policy replaces (quoted in the
policy's comment). Models are built once per session, on the meta device
(``policy_library.model``); a reference that changes a model changes a copy.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path

import policy_library
import pytest
import torch
from peft import LoraConfig, get_peft_model
from references import (
    Expected,
    check_plan,
    params_of,
    peft_targets,
    timm_freeze,
    timm_frozen_batchnorm,
    trainable_after,
)
from timm.models._manipulate import group_parameters
from torch import nn

import policyfreeze

POLICIES = policy_library.ROOT / "policies"
EXAMPLES = policy_library.ROOT / "examples"

RESNET = "torchvision:resnet18"
VIT_TORCHVISION = "torchvision:vit_b_16"
BERT = "hf:bert:BertForSequenceClassification"
LLAMA = "hf:llama:AutoModelForCausalLM,num_hidden_layers=8"
VIT = "timm:vit_base_patch16_224"
SWIN = "timm:swin_tiny_patch4_window7_224"
CONVNEXT = "timm:convnext_tiny"
CLIP = "hf:clip"
WHISPER = "hf:whisper:WhisperForConditionalGeneration"
WAV2VEC2 = "hf:wav2vec2:Wav2Vec2ForCTC"


# --- references --------------------------------------------------------------------------------------------


def frozen_by_timm(submodules: list[str]) -> Callable[[nn.Module], Expected]:
    return lambda model: timm_freeze(model, submodules)


def every_child_but(head: str) -> Callable[[nn.Module], Expected]:
    return lambda model: timm_freeze(model, [name for name, _ in model.named_children() if name != head])


def first_children(count: int) -> Callable[[nn.Module], Expected]:
    # timm.utils.freeze's own docstring example: freeze(model, [n for n, _ in model.named_children()][:k])
    return lambda model: timm_freeze(model, [name for name, _ in model.named_children()][:count])


def bitfit(model: nn.Module) -> Expected:
    """BitFit trains the bias terms: every parameter whose own name holds 'bias' (in_proj_bias too)."""
    return Expected({name for name, _ in model.named_parameters() if "bias" in name.rsplit(".", 1)[-1]})


def headline(model: nn.Module) -> Expected:
    """The loops the headline's three statements replace, in order (the head was never frozen)."""
    frozen = params_of(model, list(model.children())[:2])
    frozen |= {name for name, _ in model.named_parameters() if "layer1" in name or "layer2" in name}
    return Expected({name for name, _ in model.named_parameters()} - frozen)


def transformers_head(model: nn.Module) -> Expected:
    """transformers' split: the head is what lies outside ``model.base_model`` (what a checkpoint of the
    base model lacks, reported as newly initialized when it is loaded)."""
    prefix = model.base_model_prefix
    base = {f"{prefix}.{name}" for name, _ in model.base_model.named_parameters()}
    return Expected({name for name, _ in model.named_parameters()} - base)


def bert_embeddings_and_first_8_layers(model: nn.Module) -> Expected:
    frozen = params_of(model, [model.bert.embeddings, *model.bert.encoder.layer[:8]])
    return Expected({name for name, _ in model.named_parameters()} - frozen)


def bert_layernorm_and_bias(model: nn.Module) -> Expected:
    norms = [module for module in model.modules() if isinstance(module, nn.LayerNorm)]
    biases = {name for name, _ in model.named_parameters() if name.endswith(".bias")}
    return Expected(params_of(model, [*norms, model.classifier]) | biases)


def llama_qv_last_4_layers(model: nn.Module) -> Expected:
    layers = model.config.num_hidden_layers
    config = LoraConfig(target_modules=["q_proj", "v_proj"], layers_to_transform=list(range(layers - 4, layers)))
    return Expected(peft_targets(model, config))


def rms_norms_and_output_head(model: nn.Module) -> set[str]:
    norms = [module for module in model.modules() if type(module).__name__.endswith("RMSNorm")]
    return params_of(model, [*norms, model.get_output_embeddings()])


def timm_groups(model: nn.Module) -> list[list[str]]:
    """timm's parameter groups, stem first (``coarse``: one per stage), as its layer-wise lr decay uses them."""
    return list(group_parameters(model, model.group_matcher(coarse=True)).values())


def timm_head_and_final_norm(model: nn.Module) -> Expected:
    """The classifier and the final norm, as timm marks them: its classifier, its last parameter group (the
    head, holding the final norm on Swin and ConvNeXt), and the rule its matcher ranks after every block
    (``(pattern, (99999,))``: ViT's and Swin's ``norm``)."""
    last_rules = [pattern for pattern, rank in model.group_matcher()["blocks"] if rank == (99999,)]
    after_blocks = {name for name, _ in model.named_parameters() if any(re.match(p, name) for p in last_rules)}
    classifier = params_of(model, [model.get_classifier()])
    return Expected(set(timm_groups(model)[-1]) | after_blocks | classifier)


def timm_first_groups(count: int) -> Callable[[nn.Module], Expected]:
    """The first ``count`` stages frozen with the stem: timm's first ``count + 1`` coarse groups."""

    def reference(model: nn.Module) -> Expected:
        frozen = {name for group in timm_groups(model)[: count + 1] for name in group}
        return Expected({name for name, _ in model.named_parameters()} - frozen)

    return reference


def clip_vision_tower(model: nn.Module) -> Expected:
    """The vision tower is what transformers' CLIPVisionModelWithProjection holds, under the same names."""
    from transformers import CLIPVisionModelWithProjection

    with torch.device("meta"):
        tower = CLIPVisionModelWithProjection(model.config.vision_config)
    frozen = {name for name, _ in tower.named_parameters()}
    assert frozen < {name for name, _ in model.named_parameters()}
    return Expected({name for name, _ in model.named_parameters()} - frozen)


#: (file, model spec) → the reference for that policy on that model
REFERENCES: dict[tuple[str, str], Callable[[nn.Module], Expected]] = {
    ("resnet18-linear-probe.freeze", RESNET): every_child_but("fc"),
    ("bitfit.freeze", RESNET): bitfit,
    ("bitfit.freeze", VIT_TORCHVISION): bitfit,
    ("freeze-first-two-children.freeze", RESNET): first_children(2),
    ("freeze-layer1-layer2.freeze", RESNET): frozen_by_timm(["layer1", "layer2"]),
    ("headline.freeze", RESNET): headline,
    ("resnet-freeze-stem-and-stages-1-2.freeze", RESNET): frozen_by_timm(["conv1", "bn1", "layer1", "layer2"]),
    ("resnet-frozen-batchnorm.freeze", RESNET): timm_frozen_batchnorm,
    ("bert-classifier-only.freeze", BERT): transformers_head,
    ("bert-freeze-embeddings-and-first-8-layers.freeze", BERT): bert_embeddings_and_first_8_layers,
    ("bert-layernorm-and-bias.freeze", BERT): bert_layernorm_and_bias,
    ("llama-qv-last-4-layers.freeze", LLAMA): llama_qv_last_4_layers,
    ("llama-lora-norms-and-lm-head.freeze", LLAMA): lambda model: Expected(rms_norms_and_output_head(model)),
    ("vit-swin-head-and-final-norm.freeze", VIT): timm_head_and_final_norm,
    ("vit-swin-head-and-final-norm.freeze", SWIN): timm_head_and_final_norm,
    ("convnext-head-and-final-norm.freeze", CONVNEXT): timm_head_and_final_norm,
    ("vit-freeze-patch-embed-and-first-6-blocks.freeze", VIT): timm_first_groups(6),
    ("swin-freeze-first-2-stages.freeze", SWIN): timm_first_groups(2),
    ("convnext-freeze-stem-and-first-2-stages.freeze", CONVNEXT): timm_first_groups(2),
    ("clip-freeze-vision-tower.freeze", CLIP): clip_vision_tower,
    ("whisper-freeze-encoder.freeze", WHISPER): lambda m: Expected(trainable_after(m, lambda c: c.freeze_encoder())),
    ("wav2vec2-freeze-feature-encoder.freeze", WAV2VEC2): lambda m: Expected(
        trainable_after(m, lambda c: c.freeze_feature_encoder())
    ),
}

#: the scheduled policies, checked stage by stage below
GRADUAL = [POLICIES / "resnet-gradual-unfreezing.freeze", EXAMPLES / "gradual-unfreezing.freeze"]


def test_every_policy_and_model_has_a_reference() -> None:
    named = {(path.name, spec) for path in policy_library.policy_files() for spec in policy_library.header_specs(path)}
    scheduled = {(path.name, RESNET) for path in GRADUAL}
    # The Trainer example's schedule: checked epoch by epoch in a real Trainer run (test_examples_integrations.py).
    trainer_example = {
        (
            "bert-gradual-unfreezing.freeze",
            "hf:bert:BertForSequenceClassification,num_hidden_layers=4,hidden_size=32,num_attention_heads=2,"
            "intermediate_size=64",
        )
    }
    assert named == set(REFERENCES) | scheduled | trainer_example


@pytest.mark.parametrize(("file", "spec"), list(REFERENCES), ids=[f"{f}-{s}" for f, s in REFERENCES])
def test_policy_does_what_its_ecosystem_does(file: str, spec: str) -> None:
    model = policy_library.model(spec)
    expected = REFERENCES[file, spec](model)
    assert expected.trainable, "a recipe trains something"
    check_plan(policyfreeze.resolve(model, POLICIES / file), model, expected)


@pytest.mark.parametrize("path", GRADUAL, ids=lambda p: p.parent.name)
def test_gradual_unfreezing_stage_by_stage(path: Path) -> None:
    """ULMFiT: epoch E has the top E stages unfrozen, each 2.6 times slower than the one above it."""
    model = policy_library.model(RESNET)
    order = [["layer4"], ["layer3"], ["layer2"], ["conv1", "bn1", "layer1"]]  # as they unfreeze, top down
    for epoch in range(len(order) + 1):
        still_frozen = [name for stage in order[epoch:] for name in stage]
        plan = policyfreeze.resolve(model, path, epoch=epoch)
        check_plan(plan, model, timm_freeze(model, still_frozen))
        for depth, stage in enumerate(order[:epoch], start=1):
            for name in params_of(model, [model.get_submodule(module) for module in stage]):
                assert plan.decisions[name].options.lr_scale == round(2.6**-depth, 3), name


def test_llama_qv_recipe_unfreezes_modules_not_adapters() -> None:
    """The adapted modules' weights, in full: the comment's LoRA variant is the recipes page's business."""
    model = policy_library.model(LLAMA)
    trained = policyfreeze.resolve(model, POLICIES / "llama-qv-last-4-layers.freeze").trainable
    assert sorted({name.rsplit(".", 1)[0] for name in trained}) == [
        f"model.layers.{layer}.self_attn.{projection}" for layer in range(4, 8) for projection in ("q_proj", "v_proj")
    ]


def test_llama_lora_recipe_on_a_peft_model() -> None:
    """On the PEFT model the policy trains PEFT's own trainable set (the LoRA adapters) plus the norms and the
    output head, under the names of ``peft_model.named_parameters()``."""
    peft_model = get_peft_model(
        copy.deepcopy(policy_library.model(LLAMA)), LoraConfig(target_modules=["q_proj", "v_proj"])
    )
    adapters = {name for name, p in peft_model.named_parameters() if p.requires_grad}
    assert adapters and all(".lora_" in name for name in adapters)
    expected = adapters | rms_norms_and_output_head(peft_model)
    policyfreeze.apply(peft_model, POLICIES / "llama-lora-norms-and-lm-head.freeze")
    assert {name: p.requires_grad for name, p in peft_model.named_parameters()} == {
        name: name in expected for name, _ in peft_model.named_parameters()
    }
    trainable, _ = peft_model.get_nb_trainable_parameters()  # what print_trainable_parameters reports
    assert trainable == sum(p.numel() for name, p in peft_model.named_parameters() if name in expected)

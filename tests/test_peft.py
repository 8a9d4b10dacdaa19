"""PEFT models are transparent: their names are the base model's, adapters keep theirs.

Real ``peft`` on tiny Hugging Face models built from configs: LoRA on Llama
(with a ``modules_to_save`` head) and on BERT, IA3 and LoHa on Llama, prompt
tuning. Every parameter's name is checked against the name torch gives it
(the ``base_model.model.`` prefix and ``base_layer.`` segments taken out, a
``modules_to_save`` wrapper named by the copy that runs) and every flag
against what the policy says.
"""

from __future__ import annotations

import json
import warnings

import peft  # from the dev extra (README, .ci/run): a missing peft fails here, it never skips
import pytest
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

import policyfreeze
from policyfreeze.engine import commit as applier
from policyfreeze.language.source import Source
from policyfreeze.lint import lint
from policyfreeze.model import manifest as manifests
from policyfreeze.model.walk import tree_of, walk

LLAMA = {
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 128,
}
BERT = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 100}


def llama():
    return AutoModelForCausalLM.from_config(AutoConfig.for_model("llama", **LLAMA))


def bert():
    return AutoModelForSequenceClassification.from_config(AutoConfig.for_model("bert", **BERT))


def lora_llama(**options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' and peft's own notices
        return peft.get_peft_model(llama(), peft.LoraConfig(target_modules=["q_proj", "v_proj"], **options))


BUILDERS = {
    "lora-llama": lambda: lora_llama(),
    "lora-llama-modules-to-save": lambda: lora_llama(modules_to_save=["lm_head"]),
    "lora-bert": lambda: peft.get_peft_model(
        bert(), peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, target_modules=["query", "value"])
    ),
    "ia3-llama": lambda: peft.get_peft_model(
        llama(), peft.IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])
    ),
    "loha-llama": lambda: peft.get_peft_model(llama(), peft.LoHaConfig(target_modules=["q_proj", "v_proj"])),
    "prompt-llama": lambda: peft.get_peft_model(
        llama(), peft.PromptTuningConfig(task_type=peft.TaskType.CAUSAL_LM, num_virtual_tokens=4)
    ),
}

#: The path from a modules_to_save wrapper to the copy it runs, in torch's names
COPY = ".modules_to_save.default."


def expected_name(torch_name: str, model) -> str:
    """The name a parameter has in a policy: torch's, with what PEFT wraps around the base model taken out.

    A ``PeftModel`` holds a tuner (``LoraModel``...) that holds the model, or
    for prompt learning the model itself.
    """
    tuned = isinstance(model.base_model, peft.tuners.tuners_utils.BaseTuner)
    name = torch_name.removeprefix("base_model.model." if tuned else "base_model.")
    name = name.replace(".base_layer.", ".").replace(".token_adapter.", ".")
    return name.replace(COPY, ".")


@pytest.fixture(scope="module")
def models():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' and peft's own notices
        return {name: build() for name, build in BUILDERS.items()}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_parameter_has_its_base_model_name(models, name):
    model = models[name]
    live = walk(model)
    by_name = dict(zip(live.tree.param_names, live.tensors))
    aliases = {alias: p.name for p in live.tree.params for alias in p.aliases}
    expected = {}
    for torch_name, tensor in model.named_parameters(remove_duplicate=False):
        ours = expected_name(torch_name, model)
        assert ours in by_name or ours in aliases, torch_name
        assert by_name[aliases.get(ours, ours)] is tensor, torch_name
        expected.setdefault(id(tensor), ours)
    # Each tensor once, under its first name, in named_parameters() order, but for a modules_to_save
    # wrapper: the copy that runs takes the wrapper's place, so its parameters come before the original's.
    assert sorted(live.tree.param_names) == sorted(expected.values())
    if not any(COPY in n for n, _ in model.named_parameters()):
        assert live.tree.param_names == list(expected.values())
    assert [p.requires_grad for p in live.tree.params] == [t.requires_grad for t in live.tensors]
    # No PEFT wrapper is a node, and adapters keep their names.
    assert not any(part in n for n in live.tree.names for part in ("base_model", "base_layer", "token_adapter"))


def test_the_base_model_names_are_all_there(models):
    base = tree_of(llama())
    for name in ("lora-llama", "ia3-llama", "loha-llama", "lora-llama-modules-to-save"):
        assert set(base.names) <= set(tree_of(models[name]).names), name


def flags(model) -> dict[str, bool]:
    return {expected_name(n, model): p.requires_grad for n, p in model.named_parameters()}


def test_a_base_model_policy_applies_unchanged_to_lora():
    model = lora_llama()
    with warnings.catch_warnings():
        warnings.simplefilter("error", policyfreeze.PolicyWarning)  # every statement selects something
        report = policyfreeze.apply(model, "freeze all\nunfreeze *.lora_*\nunfreeze model.norm, lm_head\n")
    expected = {n: ".lora_" in n or n.startswith(("model.norm.", "lm_head.")) for n in flags(model)}
    assert flags(model) == expected
    assert report.plan.requires_grad == expected
    assert sum(expected.values()) == 2 * 2 * 2 + 2  # lora_A, lora_B of q and v in 2 layers; norm, lm_head


def test_unfreezing_an_adapted_module_trains_its_base_weight_which_the_tree_marks():
    model = lora_llama()
    plan = policyfreeze.resolve(model, "freeze all\nunfreeze *.q_proj\n")
    q = [n for n, on in plan.requires_grad.items() if on]
    assert q == [
        f"model.layers.{i}.self_attn.q_proj.{p}"
        for i in range(2)
        for p in ("weight", "lora_A.default.weight", "lora_B.default.weight")
    ]
    bases = {p.name for p in plan.tree.params if p.adapter_base}
    assert bases == {f"model.layers.{i}.self_attn.{m}_proj.weight" for i in range(2) for m in "qv"}


def test_modules_to_save_is_named_by_the_copy_that_runs(models):
    model = models["lora-llama-modules-to-save"]
    wrapper = model.base_model.model.lm_head
    tree = walk(model).tree
    params = {p.name: p for p in tree.params}
    live = dict(zip(tree.param_names, walk(model).tensors))
    assert live["lm_head.weight"] is wrapper.modules_to_save["default"].weight
    # The path to the copy is part of no name, as base_layer is not: the copy has one name.
    assert params["lm_head.weight"].aliases == ()
    assert "lm_head.modules_to_save" in tree.names
    assert not any(name.startswith("lm_head.modules_to_save.") for name in tree.names)
    assert live["lm_head.original_module.weight"] is wrapper.original_module.weight
    assert params["lm_head.original_module.weight"].adapter_base
    assert not params["lm_head.weight"].adapter_base
    # With the adapters off, the wrapper runs (and is named by) the original; the copy keeps its own name.
    wrapper.enable_adapters(False)
    try:
        live = walk(model)
        by_name = dict(zip(live.tree.param_names, live.tensors))
        assert by_name["lm_head.weight"] is wrapper.original_module.weight
        assert by_name["lm_head.modules_to_save.default.weight"] is wrapper.modules_to_save["default"].weight
        assert "lm_head.original_module" not in live.tree.names
        assert {p.name: p.adapter_base for p in live.tree.params}["lm_head.weight"]
    finally:
        wrapper.enable_adapters(True)


def test_prompt_tuning_names_its_prompt_and_shares_the_embedding(models):
    tree = walk(models["prompt-llama"]).tree
    params = {p.name: p for p in tree.params}
    assert params["model.embed_tokens.weight"].aliases == ("word_embeddings.weight",)
    assert params["prompt_encoder.default.embedding.weight"].requires_grad


class Fault(RuntimeError):
    pass


@pytest.mark.parametrize("k", [1, 7, 30])
def test_apply_is_all_or_nothing_on_a_peft_model(models, monkeypatch, k):
    model = models["lora-bert"]
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    calls = []
    change = applier.set_requires_grad

    def faulty(tensor, flag):
        calls.append(1)
        change(tensor, flag)
        if len(calls) == k:
            raise Fault(f"fault after change {k}")

    monkeypatch.setattr(applier, "set_requires_grad", faulty)
    # 'unfreeze all' trains the adapted layers' base weights: apply warns before it changes anything.
    with (
        pytest.warns(policyfreeze.PolicyWarning, match="PF209 'unfreeze all' unfreezes the base weights"),
        pytest.raises(policyfreeze.PolicyResolveError, match="every change was undone"),
    ):
        policyfreeze.apply(model, "unfreeze all\nfreeze *.lora_*\n")
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before


@pytest.mark.parametrize("name", list(BUILDERS))
def test_a_peft_manifest_round_trips_and_lints_the_same(models, name):
    tree = tree_of(models[name])
    text = manifests.from_tree(tree, model=name).to_json()
    rebuilt = manifests.to_tree(manifests.parse(text))
    assert rebuilt == tree
    assert [p.adapter_base for p in rebuilt.params] == [p.adapter_base for p in tree.params]
    written = json.loads(text)["parameters"]
    assert [bool(p.get("adapter_base")) for p in written] == [p.adapter_base for p in tree.params]
    source = Source("p.freeze", "freeze all\nunfreeze *.lora_*, classifier, lm_head\nunfreeze *.q_proj\n")
    assert list(lint(source, rebuilt)) == list(lint(source, tree))

"""docs/recipes.md stays true: every policy on it parses and is in fmt's layout, and each that names a model
does on that model what the framework idiom beside it does, every parameter and every eval pin.

The framework's side is its own code where it is installed (PEFT, Lightning,
timm, finetuning-scheduler), fed the page's own configuration (the ``python``
or ``yaml`` block before the policy); OpenMMLab and fastai are not installed,
so their references are their documented loops, written out here.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass

import policy_library
import pytest
import timm
import torch
import yaml
from finetuning_scheduler import FinetuningScheduler
from lightning.pytorch.callbacks import BaseFinetuning
from peft import LoraConfig, get_peft_model
from references import (
    Expected,
    check_plan,
    names,
    params_of,
    peft_adapted,
    peft_saved,
    peft_targets,
    timm_frozen,
)
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import policyfreeze
from policyfreeze.language.fmt import fmt

DOC = policy_library.ROOT / "docs" / "recipes.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#{2,3} (.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Snippet:
    heading: str
    text: str
    #: the python or yaml block before it in its section: the framework's side
    idiom: str | None

    @property
    def specs(self) -> list[str]:
        return [line.removeprefix("# model: ") for line in self.text.splitlines() if line.startswith("# model: ")]


def snippets() -> list[Snippet]:
    doc = DOC.read_text(encoding="utf-8")
    headings = [(m.start(), m.group(1)) for m in HEADING.finditer(doc)]
    found = []
    idiom: tuple[str, str] | None = None  # (heading, text)
    for block in BLOCK.finditer(doc):
        heading = [title for start, title in headings if start < block.start()][-1]
        if block.group(1) == "freeze":
            found.append(Snippet(heading, block.group(2), idiom[1] if idiom and idiom[0] == heading else None))
        else:
            idiom = (heading, block.group(2))
    return found


SNIPPETS = snippets()
WITH_MODEL = [s for s in SNIPPETS if s.specs]


def snippet_under(heading: str) -> Snippet:
    [found] = [s for s in SNIPPETS if s.heading == heading]
    return found


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda s: s.heading)
def test_every_policy_parses_and_is_in_fmt_layout(snippet: Snippet) -> None:
    policyfreeze.parse(snippet.text)
    assert fmt(snippet.text) == snippet.text


# --- the frameworks' side ---------------------------------------------------------------------------------


def lora_config(snippet: Snippet) -> LoraConfig:
    """The page's ``LoraConfig(...)``."""
    return eval(snippet.idiom, {"LoraConfig": LoraConfig})


def run_idiom(snippet: Snippet, model: nn.Module, **names_in_scope) -> nn.Module:
    """Runs the page's Python on a copy of the model (``model`` in it) and returns that copy as it left it."""
    scope = {"model": copy.deepcopy(model), **names_in_scope}
    with torch.device("meta"):  # where the modules it creates go
        exec(snippet.idiom, scope)
    return scope["model"]


def trainable(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def lightning(snippet: Snippet, model: nn.Module) -> Expected:
    frozen = run_idiom(snippet, model, BaseFinetuning=BaseFinetuning)
    # train_bn=False sets track_running_stats=False: the statistics stop updating, as an eval pin stops them
    stopped = {name for name, m in frozen.named_modules() if isinstance(m, _BatchNorm) and not m.track_running_stats}
    return Expected(trainable(frozen), stopped)


def timm_idiom(snippet: Snippet, model: nn.Module) -> Expected:
    return timm_frozen(run_idiom(snippet, model, timm=timm))


def timm_new_head(snippet: Snippet, model: nn.Module) -> Expected:
    with_new_head = run_idiom(snippet, model)
    assert names(with_new_head) == names(model)  # the new head has the old one's names
    return Expected(params_of(with_new_head, [with_new_head.get_classifier()]))


def subtrees(model: nn.Module, roots: list[str]) -> set[str]:
    return {name for name, _ in model.named_modules() if any(name == r or name.startswith(f"{r}.") for r in roots)}


def openmmlab_frozen_stages(snippet: Snippet, model: nn.Module) -> Expected:
    """OpenMMLab's ResNet._freeze_stages with frozen_stages=2 (torchvision's bn1 is its norm1): the stem's
    parameters frozen and its norm in eval mode; each frozen stage's parameters frozen, the stage in eval mode."""
    stages = ["layer1", "layer2"]
    frozen = params_of(model, [model.conv1, model.bn1, *(model.get_submodule(s) for s in stages)])
    return Expected(set(names(model)) - frozen, subtrees(model, ["bn1", *stages]))


def openmmlab_norm_eval(snippet: Snippet, model: nn.Module) -> Expected:
    """norm_eval=True: every _BatchNorm put in eval mode by the backbone's train(); nothing frozen."""
    return Expected(set(names(model)), {name for name, m in model.named_modules() if isinstance(m, _BatchNorm)})


def fastai_freeze_to_1(snippet: Snippet, model: nn.Module) -> Expected:
    """fastai's freeze_to(1) with train_bn=True over its ResNet split (stem with layer1 and layer2; layer3 and
    layer4; the head): the first group's parameters frozen but its norm layers'."""
    first_group = list(model.children())[:6]
    frozen = {
        id(p)
        for child in first_group
        for module in child.modules()
        if not isinstance(module, _BatchNorm)
        for p in module.parameters(recurse=False)
    }
    return Expected({name for name, p in model.named_parameters() if id(p) not in frozen})


def finetuning_scheduler(snippet: Snippet, model: nn.Module) -> dict[int, Expected]:
    """Phase by phase, what finetuning-scheduler's own schedule parsing thaws (phases add up)."""
    scheduler = FinetuningScheduler()
    scheduler.ft_schedule = yaml.safe_load(snippet.idiom)
    scheduler.base_max_lr = 1e-3
    every = dict(model.named_parameters()).keys()
    thawed: set[str] = set()
    stages = {}
    for phase in sorted(scheduler.ft_schedule):
        scheduler._parse_phase(phase, every, ([], set()))
        thawed |= set(scheduler.ft_schedule[phase]["params"])
        stages[phase] = Expected(set(thawed))
    return stages


def bitfit(snippet: Snippet, model: nn.Module) -> Expected:
    return Expected({name for name in names(model) if "bias" in name.rsplit(".", 1)[-1]})


#: section heading → the framework's side of the policy under it
REFERENCES: dict[str, Callable[[Snippet, nn.Module], Expected | dict[int, Expected]]] = {
    "The policy library": bitfit,
    "`target_modules`: a list of names": lambda s, m: Expected(peft_targets(m, lora_config(s))),
    "`target_modules`: a regex": lambda s, m: Expected(peft_targets(m, lora_config(s))),
    '`target_modules="all-linear"`': lambda s, m: Expected(peft_adapted(m, lora_config(s))),
    "`layers_to_transform`: index lists": lambda s, m: Expected(peft_targets(m, lora_config(s))),
    "`exclude_modules`: `except`": lambda s, m: Expected(peft_targets(m, lora_config(s))),
    "`modules_to_save`: unfreeze in place": lambda s, m: Expected(peft_saved(m, lora_config(s))),
    "`BaseFinetuning.freeze(modules, train_bn=True)`": lightning,
    "`BaseFinetuning.freeze(modules, train_bn=False)`": lightning,
    "`timm.utils.freeze(model, submodules)`": timm_idiom,
    "`timm.layers.freeze_batch_norm_2d(model)`": timm_idiom,
    "`reset_classifier` and a linear probe": timm_new_head,
    "`frozen_stages`": openmmlab_frozen_stages,
    "`norm_eval`": openmmlab_norm_eval,
    "`freeze()`, `freeze_to(n)`": fastai_freeze_to_1,
    "finetuning-scheduler": finetuning_scheduler,
}


def test_every_policy_that_names_a_model_has_a_reference() -> None:
    assert [s.heading for s in WITH_MODEL] == list(dict.fromkeys(s.heading for s in WITH_MODEL))  # one each
    assert {s.heading for s in WITH_MODEL} == set(REFERENCES)


@pytest.mark.parametrize(
    ("snippet", "spec"), [(s, spec) for s in WITH_MODEL for spec in s.specs], ids=lambda v: getattr(v, "heading", v)
)
def test_policy_does_what_the_idiom_does(snippet: Snippet, spec: str) -> None:
    model = policy_library.model(spec)
    expected = REFERENCES[snippet.heading](snippet, model)
    stages = expected if isinstance(expected, dict) else {0: expected}
    for phase, stage in stages.items():
        assert stage.trainable
        check_plan(policyfreeze.resolve(model, snippet.text, phase=phase), model, stage)


def test_finetuning_scheduler_learning_rates_are_the_phases() -> None:
    snippet = snippet_under("finetuning-scheduler")
    schedule = yaml.safe_load(snippet.idiom)
    model = policy_library.model(BERT := snippet.specs[0])
    plan = policyfreeze.resolve(model, snippet.text, phase=max(schedule))
    for phase, stage in finetuning_scheduler(snippet, model).items():
        earlier = finetuning_scheduler(snippet, model).get(phase - 1, Expected(set())).trainable
        for name in stage.trainable - earlier:
            options = plan.decisions[name].options
            assert (options.lr if options else None) == schedule[phase].get("lr"), (BERT, name)


def test_the_adapters_of_some_layers_are_layers_to_transform() -> None:
    """On a model with LoRA on every layer, the policy trains exactly what PEFT trains when it adapts only the
    last four layers (``layers_to_transform``), under PEFT's own names."""
    base = policy_library.model("hf:llama:AutoModelForCausalLM,num_hidden_layers=8")
    everywhere = get_peft_model(copy.deepcopy(base), LoraConfig(target_modules=["q_proj", "v_proj"]))
    last_four = get_peft_model(
        copy.deepcopy(base), LoraConfig(target_modules=["q_proj", "v_proj"], layers_to_transform=[4, 5, 6, 7])
    )
    expected = trainable(last_four)
    policyfreeze.apply(everywhere, snippet_under("The adapters of some layers only").text)
    assert {name: p.requires_grad for name, p in everywhere.named_parameters()} == {
        name: name in expected for name in names(everywhere)
    }

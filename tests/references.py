"""The ecosystems' own answers to "what trains?", to check policies against, parameter by parameter.

Each reference takes a model (the shared one of ``policy_library.model``: a
reference that runs a framework's freezing code runs it on a copy) and returns
the parameters that train and the modules held in eval mode.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import timm.utils.model as timm_model
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer, check_target_module_exists
from peft.utils import ModulesToSaveWrapper
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d  # what timm.utils.freeze swaps BatchNorm2d for

import policyfreeze

#: the prefix a PeftModel adds to the base model's names
PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class Expected:
    """What trains (parameter names) and what is pinned in eval mode (module names)."""

    trainable: set[str]
    pinned: set[str] = field(default_factory=set)


def names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_parameters()]


def params_of(model: nn.Module, modules: Iterable[nn.Module]) -> set[str]:
    """The names of the parameters inside ``modules`` (by tensor, so tied names count once, as the plan lists them)."""
    inside = {id(p) for module in modules for p in module.parameters()}
    return {name for name, p in model.named_parameters() if id(p) in inside}


def trainable_after(model: nn.Module, change: Callable[[nn.Module], object]) -> set[str]:
    """What trains after ``change`` runs on a copy of the model (the ecosystem's own freezing code)."""
    changed = copy.deepcopy(model)
    change(changed)
    return {name for name, p in changed.named_parameters() if p.requires_grad}


def check_plan(plan: policyfreeze.Plan, model: nn.Module, expected: Expected) -> None:
    """Every parameter's requires_grad and every module's pin as expected, and nothing to warn about."""
    every = names(model)
    assert expected.trainable <= set(every)
    assert plan.requires_grad == {name: name in expected.trainable for name in every}
    assert {name for name, pinned in plan.pinned.items() if pinned} == expected.pinned
    assert plan.warnings == ()


# --- timm -------------------------------------------------------------------------------------------------


def timm_frozen(frozen: nn.Module) -> Expected:
    """What a model timm froze trains and pins: its FrozenBatchNorm2d layers have fixed statistics, as an eval
    pin gives a BatchNorm layer, and their affine parameters became buffers (frozen)."""
    return Expected(
        {name for name, p in frozen.named_parameters() if p.requires_grad},
        {name for name, module in frozen.named_modules() if isinstance(module, FrozenBatchNorm2d)},
    )


def timm_freeze(model: nn.Module, submodules: list[str]) -> Expected:
    """timm.utils.freeze(model, submodules): their parameters frozen, their BatchNorm2d layers made FrozenBatchNorm2d."""
    if not submodules:  # timm freezes the whole model for an empty list
        return Expected(set(names(model)))
    frozen = copy.deepcopy(model)
    with torch.device("meta"):  # the FrozenBatchNorm2d it makes
        timm_model.freeze(frozen, submodules)
    return timm_frozen(frozen)


def timm_frozen_batchnorm(model: nn.Module) -> Expected:
    """timm.utils.freeze_batch_norm_2d: every BatchNorm2d becomes a FrozenBatchNorm2d."""
    with torch.device("meta"):
        return timm_frozen(timm_model.freeze_batch_norm_2d(copy.deepcopy(model)))


# --- PEFT -------------------------------------------------------------------------------------------------


def peft_targets(model: nn.Module, config: LoraConfig) -> set[str]:
    """The parameters of the modules PEFT adapts under ``config``, by its own matching rule."""
    adapted = [module for name, module in model.named_modules() if check_target_module_exists(config, name)]
    return params_of(model, adapted)


def peft_wrapped(model: nn.Module, config: LoraConfig, kind: type) -> set[str]:
    """The parameters of the modules ``get_peft_model`` wraps in ``kind`` (its adapter layers, or its
    ModulesToSaveWrapper), named as in the base model."""
    peft_model = get_peft_model(copy.deepcopy(model), config)
    wrapped = [name.removeprefix(PEFT_PREFIX) for name, m in peft_model.named_modules() if isinstance(m, kind)]
    return params_of(model, [model.get_submodule(name) for name in wrapped])


def peft_adapted(model: nn.Module, config: LoraConfig) -> set[str]:
    return peft_wrapped(model, config, BaseTunerLayer)


def peft_saved(model: nn.Module, config: LoraConfig) -> set[str]:
    """What ``modules_to_save`` trains (a copy of each module: here, the module's own parameters)."""
    return peft_wrapped(model, config, ModulesToSaveWrapper)

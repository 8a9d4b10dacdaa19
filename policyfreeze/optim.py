"""Optimizer parameter groups from a plan (spec §4), and a check of an existing optimizer.

A trainable parameter's ``with`` options come from the statement that last
decided it; parameters no statement reached (or reached without options)
form the base group. Only trainable tensors are listed, each once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .errors import PolicyError, PolicyUsageError
from .tree import ModelTree

if TYPE_CHECKING:
    from .resolver import Decision, Plan

#: Options of a group, as the statement wrote them: (lr, lr_scale, weight_decay); () for the base group.
OptionsKey = tuple

_SHOWN_NAMES = 5


def options_key(decision: Decision | None) -> OptionsKey:
    """What puts two trainable parameters in the same group: the deciding statement's options."""
    options = decision.options if decision is not None else None
    if options is None:
        return ()
    return (options.lr, options.lr_scale, options.weight_decay)


def group_options(
    key: OptionsKey, decision: Decision | None, lr: float | None, weight_decay: float | None
) -> dict[str, float]:
    """The optimizer keys of a group: ``lr`` (absolute, or ``lr_scale`` × base ``lr``), ``weight_decay``.

    Keys without a value are left out, so the optimizer's own defaults apply.
    """
    own_lr, lr_scale, own_weight_decay = key or (None, None, None)
    result: dict[str, float] = {}
    if own_lr is not None:
        result["lr"] = own_lr
    elif lr_scale is not None:
        if lr is None:
            raise PolicyUsageError(
                f"'{decision.text}' ({decision.where()}) scales the base learning rate "
                f"(lr_scale={lr_scale:g}), but no base lr was given",
                help="pass the base learning rate: param_groups(lr=...) or Freezer(..., lr=...)",
            )
        result["lr"] = lr * lr_scale
    elif lr is not None:
        result["lr"] = lr
    chosen = own_weight_decay if own_weight_decay is not None else weight_decay
    if chosen is not None:
        result["weight_decay"] = chosen
    return result


def check_base(lr: float | None, weight_decay: float | None) -> None:
    """The base lr and weight decay are numbers a policy could have written."""
    for name, value, smallest in (("lr", lr, "positive"), ("weight_decay", weight_decay, "zero or positive")):
        if value is None:
            continue
        valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not valid or value < 0 or (value == 0 and name == "lr"):
            raise PolicyUsageError(f"{name} must be a {smallest} number, not {value!r}")


def layout(plan: Plan, lr: float | None = None, weight_decay: float | None = None) -> list[tuple[dict, list[str]]]:
    """The groups of ``plan`` as (optimizer options, parameter names), in parameter order."""
    check_base(lr, weight_decay)
    groups: dict[OptionsKey, tuple[dict, list[str]]] = {}
    for name, trainable in plan.requires_grad.items():
        if not trainable:
            continue
        decision = plan.decisions[name]
        key = options_key(decision)
        if key not in groups:
            groups[key] = (group_options(key, decision, lr, weight_decay), [])
        groups[key][1].append(name)
    return list(groups.values())


def param_groups(plan: Plan, *, lr: float | None = None, weight_decay: float | None = None) -> list[dict]:
    """Torch optimizer parameter groups: only trainable tensors, grouped by their ``with`` options.

    ``lr`` is the base learning rate (``lr_scale`` multiplies it; groups
    without options get it); ``weight_decay`` applies where no statement set
    one. Either left out means the optimizer's own default. Each tensor
    appears once (tied weights too), groups in order of their first parameter.
    """
    if not plan._tensors:
        raise PolicyUsageError(
            "this plan has no tensors (it was evaluated on a model tree)",
            help="resolve the policy on the model itself: policyfreeze.resolve(model, policy).param_groups(...)",
        )
    tensors = dict(zip(plan.tree.param_names, plan._tensors))
    return [{"params": [tensors[name] for name in names], **options} for options, names in layout(plan, lr, weight_decay)]


def check_is_optimizer(optimizer: Any) -> None:
    """A usage error unless ``optimizer`` has torch's ``param_groups`` (a list of dicts with ``params``)."""
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not all(isinstance(g, dict) and "params" in g for g in groups):
        raise PolicyUsageError(f"expected a torch.optim.Optimizer, not {type(optimizer).__name__}")


def check_optimizer(model: Any, optimizer: Any) -> tuple[PolicyError, ...]:
    """Problems between ``model``'s ``requires_grad`` flags and what ``optimizer`` holds.

    Reports trainable parameters the optimizer lacks (they get gradients but
    never move), frozen ones it still holds, and tensors it holds twice. An
    empty tuple means the optimizer holds exactly the trainable parameters.
    """
    check_is_optimizer(optimizer)
    tree, tensors, _ = ModelTree.from_module_with_objects(model)
    held: dict[int, int] = {}
    for group in optimizer.param_groups:
        for tensor in group["params"]:
            held[id(tensor)] = held.get(id(tensor), 0) + 1
    missing, frozen, twice = [], [], []
    for name, tensor in zip(tree.param_names, tensors):
        count = held.get(id(tensor), 0)
        if tensor.requires_grad and not count:
            missing.append(name)
        if not tensor.requires_grad and count:
            frozen.append(name)
        if count > 1:
            twice.append(name)
    problems = []
    if missing:
        problems.append(
            PolicyUsageError(
                f"{_count(missing, 'trainable parameter')} missing from the optimizer: {_names(missing)}; "
                "they get gradients but the optimizer never updates them",
                help="build the optimizer from the plan, torch.optim.AdamW(policyfreeze.apply(model, policy)"
                ".param_groups(lr=...)), or let policyfreeze.Freezer.update() add what a new stage unfreezes",
            )
        )
    if frozen:
        problems.append(
            PolicyUsageError(
                f"{_count(frozen, 'frozen parameter')} still in the optimizer: {_names(frozen)}; "
                "weight decay and momentum still change them whenever they hold a .grad, "
                "and their optimizer state costs memory",
                help="build the optimizer from plan.param_groups(...): it holds only trainable parameters",
            )
        )
    if twice:
        problems.append(
            PolicyUsageError(
                f"{_count(twice, 'parameter')} in the optimizer more than once: {_names(twice)}; "
                "each step updates them once per copy",
                help="keep each tensor in one parameter group (plan.param_groups(...) does)",
            )
        )
    return tuple(problems)


def _count(names: list[str], noun: str) -> str:
    return f"1 {noun} is" if len(names) == 1 else f"{len(names)} {noun}s are"


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN_NAMES])
    more = len(names) - _SHOWN_NAMES
    return f"{shown} and {more} more" if more > 0 else shown

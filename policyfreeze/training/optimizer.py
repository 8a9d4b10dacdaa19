"""Checking an existing optimizer against a model's ``requires_grad`` flags."""

from __future__ import annotations

from typing import Any

from ..errors import PolicyError, PolicyUsageError
from ..model.walk import walk

_SHOWN_NAMES = 5


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
    live = walk(model)
    tree, tensors = live.tree, live.tensors
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

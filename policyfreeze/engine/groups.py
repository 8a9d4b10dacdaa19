"""Optimizer parameter groups a plan decides (the ``with`` options), as data.

A trainable parameter's ``with`` options come from the statement that last
decided it; parameters no statement reached (or reached without options)
form the base group. Only trainable tensors are listed, each once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..errors import PolicyUsageError

if TYPE_CHECKING:
    from .resolve import Decision, Plan

#: Options of a group, as the statement wrote them: (lr, lr_scale, weight_decay); () for the base group.
OptionsKey = tuple


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
            assert decision is not None  # a key with options comes from a deciding statement
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
    The tensors are read from the model now (``Plan.current_tensors``).
    """
    tensors = dict(zip(plan.tree.param_names, plan.current_tensors()))
    return [
        {"params": [tensors[name] for name in names], **options} for options, names in layout(plan, lr, weight_decay)
    ]

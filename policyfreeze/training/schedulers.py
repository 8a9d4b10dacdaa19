"""Learning-rate schedulers across stage changes: added parameter groups follow the schedule.

A torch scheduler keeps per-group lists (``base_lrs``, ``lr_lambdas``,
``_last_lr``, ``max_lrs``, ``min_lrs`` …) and per-group keys in the
optimizer's groups (``initial_lr``, and OneCycleLR's ``max_lr``/``min_lr``).
A group added after the scheduler was built has none of them, so the next
``step()`` fails or leaves the group out of the schedule.

The rule (discriminative learning rates, as fastai/ULMFiT): a group the
Freezer adds is a *scaled copy* of a reference group. Its scale ``s`` is the
ratio of the two groups' learning rates as the policy gives them (an added
``lr_scale=0.1`` group against the base group: 0.1); every per-group value
that is a learning rate (``initial_lr``, ``base_lrs``, ``max_lrs``,
``min_lrs``, the current ``lr``) is the reference's times ``s``, and every
other per-group value (the ``lr_lambdas``, momentum bounds) is the
reference's. The added group then gets, at every later step, ``s`` times
the reference's learning rate: exactly what it would have had in the
optimizer from the start with ``initial_lr`` = ``s`` × the reference's.
Cosine schedules with ``eta_min > 0`` are affine, not proportional: the
added group gets the schedule's own formula for its base learning rate.

Only the torch classes listed in ``SUPPORTED`` are known; anything else is
refused before the optimizer changes, never scheduled wrongly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..errors import PolicyUsageError

#: How a per-group list extends: scaled by the group's ratio, copied from the reference, or the new lr.
SCALE, COPY, LR = "scale", "copy", "lr"

#: Group keys schedulers keep: learning rates (scaled) and momentum bounds (copied).
_SCALED_KEYS = ("initial_lr", "max_lr", "min_lr")
_COPIED_KEYS = ("max_momentum", "base_momentum")

Undo = Callable[[], None]


@functools.cache
def supported() -> dict[type, tuple[tuple[str, str], ...]]:
    """Each supported scheduler class and its per-group lists with how an added group extends them."""
    from torch.optim import lr_scheduler as s

    base = (("base_lrs", SCALE), ("_last_lr", LR))
    lambdas = (*base, ("lr_lambdas", COPY))
    cyclic = (*base, ("max_lrs", SCALE), ("base_momentums", COPY), ("max_momentums", COPY))
    composite = (("_last_lr", LR),)
    return {
        s.LambdaLR: lambdas,
        s.MultiplicativeLR: lambdas,
        s.StepLR: base,
        s.MultiStepLR: base,
        s.ConstantLR: base,
        s.LinearLR: base,
        s.ExponentialLR: base,
        s.PolynomialLR: base,
        s.CosineAnnealingLR: base,
        s.CosineAnnealingWarmRestarts: base,
        s.CyclicLR: cyclic,
        s.OneCycleLR: base,
        s.ReduceLROnPlateau: (("min_lrs", SCALE), ("_last_lr", LR)),
        s.SequentialLR: composite,
        s.ChainedScheduler: composite,
    }


def schedulers_of(scheduler: Any) -> list[Any]:
    """``scheduler`` (one, a list or tuple, or None) as a list."""
    if scheduler is None:
        return []
    if isinstance(scheduler, (list, tuple)):
        return list(scheduler)
    return [scheduler]


def check_schedulers(schedulers: list[Any], optimizer: Any) -> None:
    """A usage error unless each scheduler (and each one it wraps) is a known class driving ``optimizer``
    with one entry per optimizer group in each per-group list."""
    groups = len(optimizer.param_groups)
    for scheduler in schedulers:
        for part in _parts(scheduler):
            lists = supported().get(type(part))
            if lists is None:
                known = ", ".join(sorted(cls.__name__ for cls in supported()))
                raise PolicyUsageError(
                    f"cannot tell how {type(part).__name__} schedules a parameter group added after it was built, "
                    "so the Freezer cannot keep the added group on its schedule",
                    help=f"use one of torch's schedulers ({known}), or build the scheduler again after each "
                    "stage change",
                )
            if getattr(part, "optimizer", None) is not optimizer:
                raise PolicyUsageError(
                    f"the {type(part).__name__} passed to the Freezer drives another optimizer than the one updated"
                )
            for attribute, _ in lists:
                values = getattr(part, attribute, None)
                if values is not None and len(values) != groups:
                    raise PolicyUsageError(
                        f"{type(part).__name__}.{attribute} has {len(values)} entries but the optimizer has "
                        f"{groups} parameter groups: a group was added or removed behind the scheduler's back",
                        help="let the Freezer add groups (update(optimizer, ..., scheduler=scheduler)), "
                        "or build the scheduler again",
                    )
    _controlling_cosine(schedulers)  # refuses what it cannot work out


def follow(schedulers: list[Any], optimizer: Any, added: list[tuple[int, float]], reference: int) -> Undo:
    """Make each group in ``added`` (index, scale against group ``reference``) follow ``schedulers``.

    Call after the groups were appended to ``optimizer``. Returns what undoes it.
    """
    if not schedulers or not added:
        return lambda: None
    groups = optimizer.param_groups
    ref = groups[reference]
    saved_groups = [dict(groups[index]) for index, _ in added]
    cosine = _controlling_cosine(schedulers)
    for index, scale in added:
        group = groups[index]
        for key in _SCALED_KEYS:
            if key in ref:
                group[key] = ref[key] * scale
        for key in _COPIED_KEYS:
            if key in ref:
                group[key] = ref[key]
        if _cycles_momentum(schedulers):
            if "betas" in group and "betas" in ref:
                group["betas"] = (ref["betas"][0], *group["betas"][1:])
            if "momentum" in group and "momentum" in ref:
                group["momentum"] = ref["momentum"]
        group["lr"] = _added_lr(cosine, ref["lr"], reference, scale)
    lengths: list[tuple[list, int]] = []
    extended: set[int] = set()  # a SequentialLR's _last_lr is its current child's list: extend it once
    for scheduler in schedulers:
        for part in _parts(scheduler):
            for attribute, how in supported()[type(part)]:
                values = getattr(part, attribute, None)
                if values is None or id(values) in extended:
                    continue
                extended.add(id(values))
                lengths.append((values, len(values)))
                for index, scale in added:
                    if how == SCALE:
                        values.append(values[reference] * scale)
                    elif how == COPY:
                        values.append(values[reference])
                    else:
                        values.append(groups[index]["lr"])

    def undo() -> None:
        for values, length in lengths:
            del values[length:]
        for (index, _), saved in zip(added, saved_groups):
            groups[index].clear()
            groups[index].update(saved)

    return undo


def _parts(scheduler: Any) -> list[Any]:
    """The scheduler and every scheduler it wraps (SequentialLR, ChainedScheduler), outermost first."""
    parts = [scheduler]
    for child in getattr(scheduler, "_schedulers", ()) if type(scheduler) in _composites() else ():
        parts += _parts(child)
    return parts


@functools.cache
def _composites() -> tuple[type, ...]:
    from torch.optim import lr_scheduler as s

    return (s.SequentialLR, s.ChainedScheduler)


def _cycles_momentum(schedulers: list[Any]) -> bool:
    return any(getattr(part, "cycle_momentum", False) for scheduler in schedulers for part in _parts(scheduler))


def _controlling_cosine(schedulers: list[Any]) -> Any | None:
    """The cosine scheduler with ``eta_min > 0`` that sets the learning rate now, if any.

    Its learning rates are affine in the base learning rate, so an added
    group's is worked out from the formula. Inside a SequentialLR only the
    scheduler in force counts; beside other schedulers (a ChainedScheduler,
    several schedulers) the added group's learning rate cannot be worked out.
    """
    from bisect import bisect_right

    from torch.optim import lr_scheduler as s

    def active(scheduler: Any) -> list[Any]:
        if type(scheduler) is s.SequentialLR:
            return active(scheduler._schedulers[bisect_right(scheduler._milestones, scheduler.last_epoch)])
        if type(scheduler) is s.ChainedScheduler:
            return [part for child in scheduler._schedulers for part in active(child)]
        return [scheduler]

    in_force = [part for scheduler in schedulers for part in active(scheduler)]
    cosines = [
        part
        for part in in_force
        if type(part) in (s.CosineAnnealingLR, s.CosineAnnealingWarmRestarts) and part.eta_min != 0
    ]
    if not cosines:
        return None
    if len(in_force) > 1:
        raise PolicyUsageError(
            f"{type(cosines[0]).__name__} with eta_min={cosines[0].eta_min:g} combined with other schedulers: "
            "the learning rate of a group added now cannot be worked out",
            help="use eta_min=0, or run the cosine schedule alone or inside a SequentialLR",
        )
    return cosines[0]


def _added_lr(cosine: Any | None, ref_lr: Any, reference: int, scale: float) -> Any:
    """The learning rate of a group added with ``scale`` against the reference group, now."""
    if cosine is None:
        return ref_lr * scale
    # lr = eta_min + (base - eta_min) * f(t): the same f(t) for the added group's base.
    eta_min, ref_base = cosine.eta_min, cosine.base_lrs[reference]
    if ref_base == eta_min:
        # f(t) is not recoverable from the reference; it is the closed form the scheduler approximates.
        import math

        t, period = (cosine.T_cur, cosine.T_i) if hasattr(cosine, "T_cur") else (cosine.last_epoch, cosine.T_max)
        fraction = (1 + math.cos(math.pi * t / period)) / 2
    else:
        fraction = (ref_lr - eta_min) / (ref_base - eta_min)
    return eta_min + (ref_base * scale - eta_min) * fraction

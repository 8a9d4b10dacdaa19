"""Schedules in a training loop (spec §5): the ``Freezer``.

At each epoch (or step) boundary ``Freezer.update`` applies the stage in
force and keeps the optimizer holding exactly the trainable parameters:
newly trainable ones join as new parameter groups with their ``with``
options (as Lightning's ``unfreeze_and_add_param_group`` does), parameters
frozen again leave it (their state with them), and a parameter whose options
change moves to a new group (its state stays). No tensor is ever held twice.

Crossing several milestones at once replays them one by one, so the groups
come out exactly as an uninterrupted run builds them; that is what makes a
resumed run's optimizer checkpoint load into the groups it was saved from.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.commit import commit
from ..engine.groups import check_base, layout
from ..engine.resolve import Plan, coerce_policy, resolve, stage_at
from ..errors import PolicyUsageError, PolicyWarning
from ..language.policy import Policy
from ..model.walk import refuse_distributed
from ..report.report import Report
from .optimizer import check_is_optimizer
from .regroup import Group, GroupChange, apply_to_optimizer, held_by, names_in, regroup, tensors_by_name, transition

STATE_VERSION = 1


@dataclass(frozen=True)
class StageChange:
    """What one ``update`` changed: the model (``report``) and the optimizer."""

    unit: str
    at: int
    report: Report
    added: tuple[str, ...]
    moved: tuple[str, ...]
    removed: tuple[str, ...]
    new_groups: int

    def __str__(self) -> str:
        report = self.report
        after = report.after
        return (
            f"{self.unit} {self.at}: {report.plan.policy.source.name} changed "
            f"{_count(len(report.changes), 'parameter tensor')} and {_count(len(report.pin_changes), 'eval pin')}; "
            f"{after.trainable:,} of {after.total:,} parameters train\n"
            f"optimizer: {len(self.added)} added in {_count(self.new_groups, 'new group')}, "
            f"{len(self.moved)} moved to new groups, {len(self.removed)} removed"
        )


class Freezer:
    """Drives a scheduled policy through training.

    ::

        freezer = policyfreeze.Freezer(model, Path("policies/gradual.freeze"), lr=1e-3)
        optimizer = torch.optim.AdamW(freezer.param_groups())
        for epoch in range(start, epochs):
            if change := freezer.update(optimizer, epoch=epoch):
                print(change)
            ...

    Construction applies stage 0. ``lr`` is the base learning rate
    (``lr_scale`` multiplies it); ``weight_decay`` applies where no statement
    sets one; either left out means the optimizer's default.
    """

    def __init__(
        self,
        model: Any,
        policy: Policy | str | Path,
        *,
        lr: float | None = None,
        weight_decay: float | None = None,
    ) -> None:
        refuse_distributed(model)
        self.model = model
        self.policy = coerce_policy(policy)
        check_base(lr, weight_decay)
        self.lr = lr
        self.weight_decay = weight_decay
        self._require_base_lr()
        self._warned: set[str] = set()
        #: The epoch (or step) of the last update: the stage in force is the one at ``at``.
        self.at = 0
        plan = self._resolve(0)
        commit(plan)
        self._adopt(0, plan, layout(plan, lr, weight_decay))

    @property
    def unit(self) -> str:
        return self.policy.unit or "epoch"

    def param_groups(self) -> list[dict]:
        """Optimizer parameter groups for the current stage, laid out as an uninterrupted run has them.

        Build the optimizer from these (after ``load_state_dict`` when resuming).
        """
        tensors = tensors_by_name(self._plan)
        return [{"params": [tensors[name] for name in names], **options} for options, names in self._groups]

    def update(self, optimizer: Any, *, epoch: int | None = None, step: int | None = None) -> StageChange | None:
        """Apply the stage in force at ``epoch`` (or ``step``) and bring ``optimizer`` in line.

        Call it at every boundary; it does nothing (and returns None) unless a
        milestone was crossed. All-or-nothing: on an error neither the model
        nor the optimizer changes.
        """
        if epoch is None and step is None:
            raise PolicyUsageError(f"update() needs the {self.unit}: update(optimizer, {self.unit}=N)")
        check_is_optimizer(optimizer)
        at = stage_at(self.policy, epoch, step)
        plans = self._plans_until(at)
        if not plans:
            self.at = at
            return None
        final = plans[-1]
        groups = regroup(self._groups, self._steps(names_in(self._groups), plans))
        steps = self._steps(held_by(optimizer, final), plans)
        undo = apply_to_optimizer(optimizer, final, steps)
        try:
            commit(final)
        except BaseException:
            undo()
            raise
        self._adopt(at, final, groups)
        return StageChange(
            self.unit,
            at,
            self.report,
            added=tuple(name for step in steps for name in step.added),
            moved=tuple(name for step in steps for name in step.moved),
            removed=tuple(name for step in steps for name in step.removed),
            new_groups=sum(len(step.new_groups) for step in steps),
        )

    # Checkpoints ------------------------------------------------------------

    def state_dict(self) -> dict:
        """The stage reached, the policy's fingerprint and the group layout: plain data for ``torch.save``."""
        return {
            "version": STATE_VERSION,
            "policy": self.policy.source.name,
            "fingerprint": fingerprint(self.policy),
            "unit": self.policy.unit,
            "at": self.at,
            "groups": [{"params": list(names), **options} for options, names in self._groups],
        }

    def load_state_dict(self, state: dict, *, allow_policy_change: bool = False) -> None:
        """Resume: apply the saved stage to the model and lay the groups out as the saved run had them.

        Then build the optimizer from ``param_groups()`` and load its state.
        A policy that differs from the checkpoint's is an error unless
        ``allow_policy_change``; the stage is then resolved under the new
        policy (and a warning says when its groups no longer match the saved
        optimizer state).
        """
        _check_state(state)
        saved, current = state["fingerprint"], fingerprint(self.policy)
        changed = saved != current
        if changed and not allow_policy_change:
            raise PolicyUsageError(
                f"the policy changed since the checkpoint: it was saved under {state['policy']} "
                f"(fingerprint {saved[:12]}), this Freezer runs {self.policy.source.name} ({current[:12]})",
                help="resume with the policy the run started with, or pass allow_policy_change=True "
                "to continue at the saved stage under the new policy",
            )
        if state["unit"] is not None and self.policy.unit is not None and state["unit"] != self.policy.unit:
            raise PolicyUsageError(
                f"the checkpoint counts {state['unit']}s but {self.policy.source.name} schedules by {self.policy.unit}"
            )
        plans = self._plans_until(state["at"])
        groups = regroup(self._groups, self._steps(names_in(self._groups), plans))
        if [names for _, names in groups] != [list(group["params"]) for group in state["groups"]]:
            if not changed:
                raise PolicyUsageError(
                    "the checkpoint's optimizer groups hold other parameters than this policy gives this model: "
                    "was it saved for a different model?"
                )
            warnings.warn(
                PolicyWarning(
                    f"under the changed policy the optimizer's parameter groups at {self.unit} {state['at']} "
                    "differ from the checkpoint's: build a fresh optimizer from freezer.param_groups() "
                    "instead of loading the saved optimizer state"
                ),
                stacklevel=2,
            )
        if plans:
            commit(plans[-1])
            self._adopt(state["at"], plans[-1], groups)
        self.at = state["at"]

    # Internals --------------------------------------------------------------

    def _resolve(self, at: int) -> Plan:
        return (
            resolve(self.model, self.policy, **{self.unit: at})
            if self.policy.unit
            else resolve(self.model, self.policy)
        )

    def _plans_until(self, at: int) -> list[Plan]:
        """The plan of each milestone after the current one up to ``at``, in order (pure)."""
        if at < self.at:
            raise PolicyUsageError(
                f"{self.unit} {at} is before {self.unit} {self.at}, where this Freezer already is: it only moves forward",
                help="to start a schedule over, make a new Freezer",
            )
        milestones = self.policy.milestones
        crossed = milestones[bisect.bisect_right(milestones, self.at) : bisect.bisect_right(milestones, at)]
        return [self._resolve(milestone) for milestone in crossed]

    def _steps(self, held: set[str], plans: list[Plan]) -> list[GroupChange]:
        """Each milestone's effect on groups that now hold ``held`` (pure)."""
        previous, steps = self._plan, []
        for plan in plans:
            step = transition(held, previous, plan, self.lr, self.weight_decay)
            held = (held - step.drop) | {name for _, names in step.new_groups for name in names}
            steps.append(step)
            previous = plan
        return steps

    def _adopt(self, at: int, plan: Plan, groups: list[Group]) -> None:
        self._warn(plan)
        self.at = at
        self._plan = plan
        self._groups = groups
        self.report = Report(plan, applied=True)

    def _require_base_lr(self) -> None:
        if self.lr is not None:
            return
        for statement in self.policy.all_statements():
            if statement.options is not None and statement.options.lr_scale is not None:
                raise PolicyUsageError(
                    f"'{statement.text}' ({self.policy.source.name}:{statement.span.line}) scales the base "
                    "learning rate, but the Freezer has none",
                    help="pass it: Freezer(model, policy, lr=...)",
                )

    def _warn(self, plan: Plan) -> None:
        for finding in plan.warnings:
            text = str(finding)
            if text not in self._warned:
                self._warned.add(text)
                warnings.warn(PolicyWarning(text), stacklevel=4)


def fingerprint(policy: Policy) -> str:
    """A hash of what ``policy`` says: comments, layout, quoting and the file name do not change it."""

    def meaning(value: Any) -> Any:
        if isinstance(value, dict):
            if len(value.get("slices", ())) == 1:
                # A single slice hashes as 0.1 wrote it (before index lists): old checkpoints still resume.
                value = {("slice" if k == "slices" else k): (v[0] if k == "slices" else v) for k, v in value.items()}
            return {k: meaning(v) for k, v in value.items() if k not in ("span", "text", "quoted")}
        if isinstance(value, list):
            return [meaning(v) for v in value]
        return value

    payload = meaning(policy.model_dump(mode="json", exclude={"source"}))
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _check_state(state: Any) -> None:
    keys = {"version", "policy", "fingerprint", "unit", "at", "groups"}
    if not isinstance(state, dict) or not keys <= state.keys():
        raise PolicyUsageError("not a Freezer state: pass what Freezer.state_dict() returned")
    if state["version"] != STATE_VERSION:
        raise PolicyUsageError(
            f"Freezer state version {state['version']!r} is not supported (this release reads {STATE_VERSION})"
        )
    at = state["at"]
    if isinstance(at, bool) or not isinstance(at, int) or at < 0:
        raise PolicyUsageError(f"not a Freezer state: 'at' is {at!r}")

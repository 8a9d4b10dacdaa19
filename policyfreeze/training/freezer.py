"""Schedules in a training loop: the ``Freezer``.

At each epoch (or step) boundary ``Freezer.update`` applies the stage in
force, and at the end of each phase ``Freezer.advance`` moves to the next
one; both keep the optimizer holding exactly the trainable parameters:
newly trainable ones join as new parameter groups with their ``with``
options (as Lightning's ``unfreeze_and_add_param_group`` does), parameters
frozen again leave it (their state and ``.grad`` with them), and a parameter
whose options change moves to a new group (its state stays). No tensor is
ever held twice. Given the learning-rate scheduler, added groups follow its
schedule (``schedulers.py``).

Crossing several milestones at once replays them one by one, so the groups
come out exactly as an uninterrupted run builds them; that is what makes a
resumed run's optimizer checkpoint load into the groups it was saved from.

A stage change evaluates only the statements its blocks add
(``engine.resolve.advance``) on the tree walked when the Freezer was made;
the model is walked again only when its parameters were replaced
(``structure.py``).
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import itertools
import json
import operator
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..engine.commit import commit
from ..engine.groups import check_base
from ..engine.resolve import Plan, advance, coerce_policy, resolve, stage_at
from ..errors import PolicyError, PolicyUsageError, PolicyWarning
from ..language.policy import Policy
from ..model.walk import LiveModel, refuse_distributed, walk
from ..report.report import Report
from . import distributed
from .optimizer import check_is_optimizer
from .regroup import (
    Group,
    GroupChange,
    GroupOptions,
    apply_to_optimizer,
    conform,
    held_by,
    ids_in,
    regroup,
    transition,
)
from .schedulers import check_schedulers, follow, schedulers_of
from .state import STATE_VERSION, validate_state
from .structure import Structure

__all__ = ["STATE_VERSION", "Freezer", "StageChange", "fingerprint"]

Wrap = Callable[[Any], Any]


@dataclass(frozen=True)
class StageChange:
    """What one stage change did: to the model (``report``) and to the optimizer (parameter names)."""

    unit: str
    at: int
    report: Report
    added: tuple[str, ...]
    moved: tuple[str, ...]
    removed: tuple[str, ...]
    new_groups: int

    @property
    def trainable_changed(self) -> bool:
        """Whether the set of trainable parameters changed (a DistributedDataParallel must be rebuilt)."""
        plan = self.report.plan
        return any(map(operator.ne, plan.start_flags, plan.param_flags))

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

        freezer = policyfreeze.Freezer(model, Path("policies/resnet-gradual-unfreezing.freeze"), lr=1e-3)
        optimizer = torch.optim.AdamW(freezer.param_groups())
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        for epoch in range(start, epochs):
            if change := freezer.update(optimizer, epoch=epoch, scheduler=scheduler):
                print(change)
            ...

    Construction applies stage 0. ``lr`` is the base learning rate
    (``lr_scale`` multiplies it); ``weight_decay`` applies where no statement
    sets one; either left out means the optimizer's default.
    ``param_options(name)`` gives per-parameter defaults under the policy's
    own options (``{"weight_decay": 0.0}`` for biases and norms, as the
    Hugging Face Trainer groups them). ``wrap`` builds the
    DistributedDataParallel (or other) wrapper that ``wrapped`` returns, again
    after each stage that changes what trains; ``wrap=False`` says no such
    wrapper needs rebuilding.
    """

    def __init__(
        self,
        model: Any,
        policy: Policy | str | Path,
        *,
        lr: float | None = None,
        weight_decay: float | None = None,
        wrap: Wrap | Literal[False] | None = None,
        param_options: Callable[[str], dict] | None = None,
    ) -> None:
        refuse_distributed(model)
        self.model = model
        self.policy = coerce_policy(policy)
        check_base(lr, weight_decay)
        if param_options is not None and not callable(param_options):
            raise PolicyUsageError(
                f"param_options is a function of a parameter name, not {type(param_options).__name__}"
            )
        if wrap is not None and wrap is not False and not callable(wrap):
            raise PolicyUsageError(
                f"wrap is a function that wraps the model (such as DistributedDataParallel), "
                f"or False, not {type(wrap).__name__}"
            )
        self.lr = lr
        self.weight_decay = weight_decay
        self._require_base_lr()
        self._wrap = wrap
        self._wrapper: Any = None
        self._wrapper_stale = True
        self._warned: set[str] = set()
        self._plan: Plan
        self._groups: list[Group]
        self._compiled = distributed.is_compiled(model)
        self._stages_compiled = 1
        #: whether an update has checked that the optimizer holds the model's tensors
        self._holds_checked = False
        #: The epoch, step or phase reached: the stage in force is the one at ``at``.
        self.at = 0
        plan = resolve(model, self.policy, **({self.policy.unit: 0} if self.policy.unit else {}))
        self._warn(plan.warnings, stacklevel=2)
        self._options = GroupOptions(plan.tree.param_names, lr, weight_decay, param_options)
        first = transition(set(), plan, plan, self._options)  # checks param_options before any change
        commit(plan)
        self._structure = Structure.of(plan.live_model())
        #: stage 0, where ``align`` replays from
        self._origin = plan
        self._adopt(0, plan, regroup([], [first]))

    @property
    def unit(self) -> str:
        """What the policy counts: ``epoch``, ``step`` or ``phase`` (``epoch`` for a policy without schedule)."""
        return self.policy.unit or "epoch"

    @property
    def next_stage(self) -> int | None:
        """The next epoch, step or phase at which the policy changes; None after the last."""
        milestones = self.policy.milestones
        index = bisect.bisect_right(milestones, self.at)
        return milestones[index] if index < len(milestones) else None

    def param_groups(self) -> list[dict]:
        """Optimizer parameter groups for the current stage, laid out as an uninterrupted run has them.

        Build the optimizer from these (after ``load_state_dict`` when
        resuming, after ``fully_shard`` when sharding): they hold the
        model's parameters as they are now.
        """
        tensors = self._live().tensors
        return [{"params": [tensors[i] for i in ids], **options} for options, ids in self._groups]

    def update(
        self,
        optimizer: Any,
        *,
        epoch: int | None = None,
        step: int | None = None,
        scheduler: Any = None,
    ) -> StageChange | None:
        """Apply the stage in force at ``epoch`` (or ``step``) and bring ``optimizer`` in line.

        Call it at every boundary; it does nothing (and returns None) unless a
        milestone was crossed. ``scheduler`` (a torch LR scheduler, or a list
        of them, on ``optimizer``) makes added groups follow its schedule.
        All-or-nothing: on an error neither the model, the optimizer nor the
        scheduler changes.
        """
        if self.policy.unit == "phase":
            raise PolicyUsageError(
                f"{self.policy.source.name} advances by phase: call freezer.advance(optimizer) when a phase "
                "ends, not update()"
            )
        if epoch is None and step is None:
            raise PolicyUsageError(f"update() needs the {self.unit}: update(optimizer, {self.unit}=N)")
        return self._move_to(stage_at(self.policy, epoch, step), optimizer, scheduler)

    def advance(self, optimizer: Any, *, scheduler: Any = None) -> StageChange | None:
        """Move to the next phase of an ``at phase N`` policy and bring ``optimizer`` in line.

        The next phase is the next N with a block (``next_stage``); after the
        last one it does nothing and returns None. ``scheduler`` as for
        ``update``.
        """
        if self.policy.unit not in (None, "phase"):
            raise PolicyUsageError(
                f"{self.policy.source.name} schedules by {self.policy.unit}: "
                f"update(optimizer, {self.policy.unit}=N) at every boundary; advance() moves `at phase` policies"
            )
        following = self.next_stage
        if following is None:
            return None
        return self._move_to(following, optimizer, scheduler)

    def align(self, optimizer: Any, *, scheduler: Any = None) -> None:
        """Bring an optimizer built elsewhere in line with the stage reached; call it right after building it.

        For optimizers a framework builds from the model (Lightning's
        ``configure_optimizers`` returning ``AdamW(self.parameters())`` or
        only the trainable ones; a Trainer's own): frozen parameters leave
        (their state too), missing trainable ones join in new groups, and
        parameters whose group has other options than a statement (or
        ``param_options``) gives them move to new groups; the groups' own lr
        and weight decay stand for the base ones. The groups are laid out as
        a run that began with this optimizer at stage 0 and changed stage as
        this Freezer did, so an optimizer rebuilt on resume, aligned after
        ``load_state_dict``, takes the saved optimizer state. ``scheduler``
        as for ``update``. Tensors that are not the model's are left alone.
        """
        check_is_optimizer(optimizer)
        schedulers = schedulers_of(scheduler)
        check_schedulers(schedulers, optimizer)
        live = self._live()
        index = self._structure.index
        first = conform(optimizer, index, self._origin, self._options)
        held = (held_by(optimizer, index) - first.drop) | {i for _, ids in first.new_groups for i in ids}
        plans, plan = [], self._origin
        for milestone in self.policy.milestones[: bisect.bisect_right(self.policy.milestones, self.at)]:
            plan = advance(plan, milestone)
            plans.append(plan)
        steps = [first, *self._steps(held, plans, self._origin)]
        new_groups = [options for step in steps for options, _ in step.new_groups]
        reference, scales = self._scales(optimizer, steps, new_groups) if schedulers else (0, [])
        undo = apply_to_optimizer(optimizer, live.tensors, self._plan.tree.param_names, steps)
        try:
            follow(schedulers, optimizer, scales, reference)
        except BaseException:
            undo()
            raise

    @property
    def wrapped(self) -> Any:
        """``wrap(model)``: built on first use, and again on the first use after a stage changed what trains.

        The old wrapper's gradient hooks are removed first. Every rank must
        ask at the same point (building a DistributedDataParallel is collective).
        """
        if not callable(self._wrap):
            raise PolicyUsageError(
                "this Freezer wraps nothing: pass the wrapper, Freezer(model, policy, wrap=DistributedDataParallel)"
            )
        if self._wrapper is None or self._wrapper_stale:
            if self._wrapper is not None:
                distributed.release(self._wrapper)
                self._wrapper = None
            self._wrapper = self._wrap(self.model)
            self._wrapper_stale = False
        return self._wrapper

    # Checkpoints ------------------------------------------------------------

    def state_dict(self) -> dict:
        """The stage reached, the policy's fingerprint and the group layout: plain data for ``torch.save``."""
        names = self._plan.tree.param_names
        return {
            "version": STATE_VERSION,
            "policy": self.policy.source.name,
            "fingerprint": fingerprint(self.policy),
            "unit": self.policy.unit,
            "at": self.at,
            "groups": [{"params": [names[i] for i in ids], **options} for options, ids in self._groups],
        }

    def load_state_dict(self, state: dict, *, allow_policy_change: bool = False) -> None:
        """Resume: apply the saved stage to the model and lay the groups out as the saved run had them.

        Then build the optimizer from ``param_groups()`` and load its state.
        The whole state is checked first; a policy that differs from the
        checkpoint's is an error unless ``allow_policy_change``, and the stage
        is then resolved under the new policy, with a warning (and one more
        when its groups or their options no longer match the saved ones).
        """
        saved = validate_state(state)
        current = fingerprint(self.policy)
        changed = saved.fingerprint != current
        if changed and not allow_policy_change:
            raise PolicyUsageError(
                f"the policy changed since the checkpoint: it was saved under {saved.policy} "
                f"(fingerprint {saved.fingerprint[:12]}), this Freezer runs {self.policy.source.name} "
                f"({current[:12]})",
                help="resume with the policy the run started with, or pass allow_policy_change=True "
                "to continue at the saved stage under the new policy",
            )
        if saved.unit is not None and self.policy.unit is not None and saved.unit != self.policy.unit:
            raise PolicyUsageError(
                f"the checkpoint counts {saved.unit}s but {self.policy.source.name} schedules by {self.policy.unit}"
            )
        self._live()
        plans = self._plans_until(saved.at)
        groups = regroup(self._groups, self._steps(ids_in(self._groups), plans))
        names = self._plan.tree.param_names
        here = [([names[i] for i in ids], options) for options, ids in groups]
        there = [(group.params, group.options()) for group in saved.groups]
        findings = [finding for plan in plans for finding in plan.warnings]
        notes = []
        if changed:
            notes.append(
                f"resuming a checkpoint of {saved.policy} (fingerprint {saved.fingerprint[:12]}) under the changed "
                f"policy {self.policy.source.name} ({current[:12]}): {self.unit} {saved.at} is resolved under the "
                "new policy"
            )
        if [params for params, _ in here] != [params for params, _ in there]:
            if not changed:
                raise PolicyUsageError(
                    "the checkpoint's optimizer groups hold other parameters than this policy gives this model: "
                    "was it saved for a different model?"
                )
            notes.append(
                f"under the changed policy the optimizer's parameter groups at {self.unit} {saved.at} "
                "differ from the checkpoint's: build a fresh optimizer from freezer.param_groups() "
                "instead of loading the saved optimizer state"
            )
        elif differing := [index for index, (a, b) in enumerate(zip(here, there)) if a[1] != b[1]]:
            first = differing[0]
            notes.append(
                f"the optimizer options at {self.unit} {saved.at} differ from the checkpoint's "
                f"(group {first}: {_options(here[first][1])} here, {_options(there[first][1])} saved"
                f"{f', and {len(differing) - 1} more groups' if len(differing) > 1 else ''}): "
                "optimizer.load_state_dict would restore the saved ones; to train with these, set them on the "
                "loaded optimizer's groups or build a fresh optimizer from freezer.param_groups()"
            )
        self._warn(findings, stacklevel=2)
        for note in notes:
            warnings.warn(PolicyWarning(note), stacklevel=2)
        if plans:
            final = self._combined(plans)
            commit(final)
            self._clear_grads_of_frozen(final)
            if final.changed:
                self._wrapper_stale = True
            self._adopt(saved.at, final, groups)
        self.at = saved.at

    # Internals --------------------------------------------------------------

    def _move_to(self, at: int, optimizer: Any, scheduler: Any) -> StageChange | None:
        check_is_optimizer(optimizer)
        schedulers = schedulers_of(scheduler)
        check_schedulers(schedulers, optimizer)
        if not self._crossed(at):
            self._check_forward(at)
            if not self._holds_checked:
                # An optimizer built before fully_shard replaced the tensors trains nothing: say so at the
                # first update, not at the first stage change (a policy without stages has none).
                self._live()
                self._check_holds(held_by(optimizer, self._structure.index), self._plan)
                self._holds_checked = True
            self.at = at
            return None
        live = self._live()
        plans = self._plans_until(at)
        start, final = self._plan, self._combined(plans)
        tensors, names = live.tensors, self._plan.tree.param_names
        held = held_by(optimizer, self._structure.index)
        self._check_holds(held, start)
        steps = self._steps(held, plans)
        groups = regroup(self._groups, self._steps(ids_in(self._groups), plans))
        retrained = list(
            itertools.compress(range(len(tensors)), map(operator.ne, start.param_flags, final.param_flags))
        )
        # Everything that can refuse or warn does so before anything changes.
        self._refuse_unwrapped(at, tensors, retrained)
        self._warn(final.warnings, stacklevel=3)
        new_groups = [options for step in steps for options, _ in step.new_groups]
        if new_groups and not schedulers and any("initial_lr" in group for group in optimizer.param_groups):
            self._warn_once(
                "the optimizer's groups carry initial_lr, so an LR scheduler drives them: pass it, "
                "freezer.update(optimizer, ..., scheduler=scheduler), so the groups the Freezer adds follow "
                "its schedule (without it they start at the policy's lr and the scheduler may fail on them)",
                stacklevel=3,
            )
        stages_compiled = self._warn_recompile(at, bool(retrained) or final.module_pins != start.module_pins)
        reference, scales = self._scales(optimizer, steps, new_groups) if schedulers else (0, [])
        undo = apply_to_optimizer(optimizer, tensors, names, steps)
        try:
            undo_schedulers = follow(schedulers, optimizer, scales, reference)
            try:
                commit(final)
            except BaseException:
                undo_schedulers()
                raise
        except BaseException:
            undo()
            raise
        self._clear_grads_of_frozen(final)
        if retrained:
            self._wrapper_stale = True
        self._stages_compiled = stages_compiled
        self._adopt(at, final, groups)

        def named(kind: str) -> tuple[str, ...]:
            return tuple(names[i] for step in steps for i in getattr(step, kind))

        return StageChange(
            self.unit,
            at,
            self.report,
            added=named("added"),
            moved=named("moved"),
            removed=named("removed"),
            new_groups=len(new_groups),
        )

    def _crossed(self, at: int) -> bool:
        milestones = self.policy.milestones
        return bisect.bisect_right(milestones, at) > bisect.bisect_right(milestones, self.at)

    def _check_forward(self, at: int) -> None:
        if at < self.at:
            raise PolicyUsageError(
                f"{self.unit} {at} is before {self.unit} {self.at}, where this Freezer already is: it only moves forward",
                help="to start a schedule over, make a new Freezer",
            )

    def _plans_until(self, at: int) -> list[Plan]:
        """The plan of each milestone after the current one up to ``at``, in order (pure).

        Each is resolved from the one before, evaluating only the statements its blocks add.
        """
        self._check_forward(at)
        milestones = self.policy.milestones
        crossed = milestones[bisect.bisect_right(milestones, self.at) : bisect.bisect_right(milestones, at)]
        plans, plan = [], self._plan
        for milestone in crossed:
            plan = advance(plan, milestone)
            if plan.errors:
                raise PolicyError.collect(list(plan.errors))
            plans.append(plan)
        return plans

    def _combined(self, plans: list[Plan]) -> Plan:
        """The last plan, as a change from the current stage: its report shows everything the milestones did."""
        return dataclasses.replace(
            plans[-1],
            start_flags=self._plan.param_flags,
            start_pins=self._plan.module_pins,
            warnings=tuple(finding for plan in plans for finding in plan.warnings),
        )

    def _steps(self, held: set[int], plans: list[Plan], previous: Plan | None = None) -> list[GroupChange]:
        """Each milestone's effect on groups that hold ``held`` at ``previous`` (default: now) (pure)."""
        previous, steps = previous or self._plan, []
        for plan in plans:
            step = transition(held, previous, plan, self._options)
            held = (held - step.drop) | {i for _, ids in step.new_groups for i in ids}
            steps.append(step)
            previous = plan
        return steps

    def _live(self) -> LiveModel:
        """The model's tensors and modules now: walked again only if its parameters or modules were replaced."""
        live = self._plan.live_model()
        if self._structure.unchanged():
            return live
        fresh = walk(self.model)
        old, new = self._plan.tree, fresh.tree
        same = (old.param_names, old.param_aliases, old.module_names, old.module_aliases) == (
            new.param_names,
            new.param_aliases,
            new.module_names,
            new.module_aliases,
        )
        if not same:
            raise PolicyUsageError(
                "the model's modules or parameters were renamed, added or removed since the Freezer was made: "
                "its stages were resolved for the model as it was",
                help="change the model first (add adapters, swap layers), then make the Freezer; "
                "replacing parameters under the same names (fully_shard) is fine",
            )
        self._plan = dataclasses.replace(self._plan, tree=new, live=fresh)
        self._origin = dataclasses.replace(self._origin, tree=new, live=fresh)
        self._structure = Structure.of(fresh)
        return fresh

    def _check_holds(self, held: set[int], plan: Plan) -> None:
        if held or not any(plan.param_flags):
            return
        trainable = plan.trainable
        if trainable:
            raise PolicyUsageError(
                f"the optimizer holds none of the {len(trainable):,} parameters that train now "
                f"({', '.join(trainable[:3])}{', ...' if len(trainable) > 3 else ''}): it was built from other "
                "tensors, such as the parameters before fully_shard replaced them, and would train nothing",
                help="build the optimizer from freezer.param_groups() (after sharding, if the model is sharded)",
            )

    def _refuse_unwrapped(self, at: int, tensors: list[Any], retrained: list[int]) -> None:
        """A stage that changes what trains under several processes needs DDP rebuilt: say how, or refuse."""
        if self._wrap is not None or not retrained:
            return
        ranks = distributed.world_size()
        if ranks == 1 or all(distributed.sharded(tensors[i]) for i in retrained):
            return
        names = self._plan.tree.param_names
        raise PolicyUsageError(
            f"{self.unit} {at} changes which parameters train ({_count(len(retrained), 'tensor')}, "
            f"{names[retrained[0]]} first) while a process group of {ranks} ranks is initialised: a "
            "DistributedDataParallel built before the change never averages the gradients of parameters "
            "unfrozen after it, so the ranks drift apart",
            help="let the Freezer rebuild the wrapper, Freezer(model, policy, wrap=DistributedDataParallel), and "
            "train freezer.wrapped; or pass wrap=False if no DDP wraps this model",
        )

    def _scales(
        self, optimizer: Any, steps: list[GroupChange], new_groups: list[dict]
    ) -> tuple[int, list[tuple[int, float]]]:
        """The reference group and, for each group the steps add, its index and scale against the reference.

        The reference is the first optimizer group holding a parameter of
        the model that stays in it, with the learning rate the policy gave
        that parameter. With none, group 0: with the lr the Freezer recorded
        for it when the optimizer is laid out as the record (built from
        ``param_groups()`` and kept by ``update``); otherwise its
        ``initial_lr``, its own base rate (as if the added groups had been
        there when the scheduler was built). Not ``initial_lr`` first:
        OneCycleLR and CyclicLR set it to their own starting rate, not the
        policy's.
        """
        default_lr = optimizer.defaults.get("lr")
        dropped = set().union(*(step.drop for step in steps))
        index = self._structure.index
        reference, reference_lr = 0, None
        for group_index, group in enumerate(optimizer.param_groups):
            kept = next(
                (i for i in map(index.get, map(id, group["params"])) if i is not None and i not in dropped), None
            )
            if kept is not None:
                options = next((options for options, ids in self._groups if kept in ids), None)
                if options is not None:
                    reference, reference_lr = group_index, options.get("lr", default_lr)
                    break
        if not reference_lr and optimizer.param_groups:
            group = optimizer.param_groups[0]
            laid_out = len(optimizer.param_groups) == len(self._groups) and all(
                [index.get(id(tensor)) for tensor in held["params"]] == ids
                for held, (_, ids) in zip(optimizer.param_groups, self._groups)
            )
            reference = 0
            reference_lr = (
                self._groups[0][0].get("lr", default_lr) if laid_out else group.get("initial_lr", group["lr"])
            )
        first = len(optimizer.param_groups)
        added = [(first + k, options.get("lr", default_lr) / reference_lr) for k, options in enumerate(new_groups)]
        return reference, added

    def _clear_grads_of_frozen(self, plan: Plan) -> None:
        """A parameter frozen again drops its ``.grad``: no optimizer or weight decay can act on a stale one."""
        tensors = plan.live_model().tensors
        frozen_now = map(operator.and_, plan.start_flags, map(operator.not_, plan.param_flags))
        for i in itertools.compress(range(len(tensors)), frozen_now):
            tensors[i].grad = None

    def _adopt(self, at: int, plan: Plan, groups: list[Group]) -> None:
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

    def _warn(self, findings: tuple[PolicyError, ...] | list[PolicyError], *, stacklevel: int) -> None:
        """Issue each finding once per Freezer; ``stacklevel`` as if the caller called ``warnings.warn``."""
        for finding in findings:
            self._warn_once(str(finding), stacklevel=stacklevel + 1)

    def _warn_once(self, text: str, *, stacklevel: int, key: str | None = None) -> None:
        """Warn unless this text (or ``key``) was warned of before."""
        key = key or text
        if key not in self._warned:
            # Marked only once issued: under warnings-as-errors a retry raises again.
            warnings.warn(PolicyWarning(text), stacklevel=stacklevel + 1)
            self._warned.add(key)

    def _warn_recompile(self, at: int, changes_graph: bool) -> int:
        """Warn once when a compiled model enters more stages than dynamo compiles graphs for.

        Returns the number of stages compiled once this one is entered.
        """
        if not (self._compiled and changes_graph):
            return self._stages_compiled
        stages = self._stages_compiled + 1
        setting, limit = distributed.recompile_limit()
        if stages > limit:
            self._warn_once(
                f"{self.unit} {at} is stage {stages} of a torch.compile'd model: dynamo compiles the model once per "
                f"set of requires_grad flags and stops at {setting} = {limit}, running "
                f"the rest in eager mode; raise it before training, {setting} = {2 * len(self.policy.milestones) + 2}",
                stacklevel=4,
                key="recompile_limit",
            )
        return stages


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


def _options(options: dict) -> str:
    return ", ".join(f"{key}={value:g}" for key, value in options.items()) or "the optimizer's defaults"

"""What the model-aware checks read: each statement's reach, and each schedule stage resolved.

Stages are resolved one from the other (``resolver.advance``): a stage
evaluates only the statements it adds, and each statement's reach is computed
once, when its stage first brings it. The checks then read a stage's state in
time linear in the model, so linting S statements in B stages on a model of
P tensors costs O((S + B) · P).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterator
from dataclasses import dataclass

from ..engine.resolve import Plan, Schedule, advance, evaluate
from ..engine.select import select
from ..errors import PolicyError
from ..language.policy import Policy, Statement
from ..model.tree import ModelTree


@dataclass(frozen=True)
class Reach:
    """The distinct parameters and modules a statement's selector denotes."""

    params: tuple[int, ...]
    modules: tuple[int, ...]


def acts_on_params(statement: Statement) -> bool:
    return statement.verb in ("freeze", "unfreeze")


class Analysis:
    """A policy against a model tree: reach per statement, resolution per stage."""

    def __init__(self, policy: Policy, tree: ModelTree) -> None:
        self.policy = policy
        self.tree = tree
        #: every statement in the order stages apply them; a plan's decider numbers index it
        self.statements = Schedule.of(policy).statements
        self._reach: dict[int, Reach] = {}
        self._by_position = {(s.span.line, s.span.column): s for s in self.statements}
        #: the epoch/step/phase at which each schedule stage starts (just 0 for an unscheduled policy)
        self.points: tuple[int, ...] = tuple(sorted({0, *policy.milestones}))

    def stages(self) -> Iterator[Stage]:
        """Every stage in order, each resolved from the one before.

        Raises the plan's error when a statement's pattern is too costly to match.
        """
        previous: Plan | None = None
        for at in self.points:
            plan = evaluate(self.tree, self.policy, at) if previous is None else advance(previous, at)
            if any(error.code != "PF207" for error in plan.errors):  # PF207 is a check of its own, per stage
                raise PolicyError.collect(list(plan.errors))
            first = 0 if previous is None else previous.statement_count
            for statement in self.statements[first : plan.statement_count]:
                self._reach[id(statement)] = self._reach_of(statement)
            yield Stage(self, at, plan, first, previous)
            previous = plan

    def _reach_of(self, statement: Statement) -> Reach:
        tree = self.tree
        nodes = select(tree, statement.selector)
        return Reach(tuple(sorted(set(tree.param_ids_in(nodes)))), tuple(sorted(set(tree.module_ids_in(nodes)))))

    @functools.cached_property
    def tied_nodes(self) -> dict[int, list[int]]:
        """For each parameter with several names: its nodes, one per name."""
        tree = self.tree
        nodes: dict[int, list[int]] = {}
        for node, (is_param, index) in enumerate(zip(tree.is_param, tree.ids)):
            if is_param and tree.params[index].aliases:
                nodes.setdefault(index, []).append(node)
        return nodes

    @functools.cached_property
    def direct_params(self) -> dict[int, list[int]]:
        """For each module: the ids of its own parameters (not its submodules')."""
        tree = self.tree
        direct: dict[int, list[int]] = {}
        for node, is_param in enumerate(tree.is_param):
            module_id = tree.ids[node]
            if is_param or module_id in direct:
                continue  # a module seen before under another name has the same parameters
            params = direct[module_id] = []
            following = node + 1
            while following < len(tree) and tree.is_param[following]:
                params.append(tree.ids[following])
                following += 1
        return direct

    @functools.cached_property
    def non_float(self) -> list[int]:
        """The parameters whose dtype cannot require gradients."""
        return [i for i, param in enumerate(self.tree.params) if not param.can_require_grad]

    def reach(self, statement: Statement) -> Reach:
        return self._reach[id(statement)]

    def reached(self, statement: Statement) -> tuple[int, ...]:
        """The parameter ids (freeze/unfreeze) or module ids (eval/train) the statement acts on."""
        reach = self.reach(statement)
        return reach.params if acts_on_params(statement) else reach.modules

    def statement_at(self, line: int, column: int) -> Statement:
        """The statement starting at a position (where the resolver's findings point)."""
        return self._by_position[(line, column)]

    @staticmethod
    def first_point(statement: Statement) -> int:
        """The first stage a statement is in force in: its block's N, or 0 for the base."""
        return statement.stage or 0

    def in_force(self, statement: Statement) -> int:
        """How many stages the statement is in force in (its own and every later one)."""
        return len(self.points) - bisect.bisect_left(self.points, self.first_point(statement))

    def stage_label(self, points: tuple[int, ...]) -> str:
        """``at epoch 3`` / ``at epochs 0 and 3`` for a scheduled policy's stages."""
        unit = self.policy.unit
        if len(points) == 1:
            return f"at {unit} {points[0]}"
        listed = ", ".join(str(p) for p in points[:-1]) + f" and {points[-1]}"
        return f"at {unit}s {listed}"


@dataclass(frozen=True)
class Stage:
    """One schedule stage resolved: the plan, and the statements it brings (numbered from ``first``)."""

    analysis: Analysis
    at: int
    plan: Plan
    first: int
    #: the stage before, whose final state this one starts from (None for the first stage)
    previous: Plan | None

    @property
    def tree(self) -> ModelTree:
        return self.analysis.tree

    @property
    def new(self) -> tuple[Statement, ...]:
        """The statements first in force in this stage, in order."""
        return self.analysis.statements[self.first : self.plan.statement_count]

    def statement(self, number: int) -> Statement | None:
        """The statement a decider number names (-1: none)."""
        return self.analysis.statements[number] if number >= 0 else None

    @functools.cached_property
    def param_deciders(self) -> list[Statement | None]:
        """Per parameter id: the statement that decides it in this stage."""
        return list(map(self.statement, self.plan.param_deciders))

    @functools.cached_property
    def module_deciders(self) -> list[Statement | None]:
        return list(map(self.statement, self.plan.module_deciders))

    def deciders_before(self) -> tuple[list[int], list[int]]:
        """Per parameter id and per module id: the decider numbers before this stage's statements."""
        if self.previous is None:
            return [-1] * len(self.tree.params), [-1] * len(self.tree.modules)
        return list(self.previous.param_deciders), list(self.previous.module_deciders)

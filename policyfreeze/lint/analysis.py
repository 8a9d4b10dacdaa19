"""What the model-aware checks read: each statement's reach, and each schedule stage resolved.

Reach does not depend on the stage (a selector denotes the same nodes
whatever else is in force), so it is computed once per statement; each stage
is then resolved with ``resolver.evaluate`` and the deciding statement of
every parameter and module is kept for the checks.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass

from ..engine.resolve import Plan, evaluate
from ..engine.select import select
from ..language.policy import Policy, Statement
from ..model.tree import ModelTree

Intervals = list[tuple[int, int]]


@dataclass(frozen=True)
class Reach:
    """The nodes a statement's selector denotes, and the distinct parameters and modules among them."""

    nodes: Intervals
    params: tuple[int, ...]
    modules: tuple[int, ...]

    def contains(self, node: int) -> bool:
        index = bisect.bisect_right(self.nodes, (node, float("inf"))) - 1
        return index >= 0 and self.nodes[index][0] <= node < self.nodes[index][1]


def acts_on_params(statement: Statement) -> bool:
    return statement.verb in ("freeze", "unfreeze")


class Analysis:
    """A policy against a model tree: reach per statement, resolution per stage."""

    def __init__(self, policy: Policy, tree: ModelTree) -> None:
        self.policy = policy
        self.tree = tree
        self.statements = policy.all_statements()
        self._reach: dict[int, Reach] = {}
        for statement in self.statements:
            nodes = select(tree, statement.selector)
            self._reach[id(statement)] = Reach(
                nodes,
                tuple(sorted(set(tree.param_ids_in(nodes)))),
                tuple(sorted(set(tree.module_ids_in(nodes)))),
            )
        self._by_position = {(s.span.line, s.span.column): s for s in self.statements}
        #: the epoch/step at which each schedule stage starts (just 0 for an unscheduled policy)
        self.points: tuple[int, ...] = tuple(sorted({0, *policy.milestones}))

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

    def in_force(self, statement: Statement) -> tuple[int, ...]:
        return tuple(p for p in self.points if p >= self.first_point(statement))

    def stage(self, at: int) -> Stage:
        statements = self.policy.stage(at)
        param_deciders: list[Statement | None] = [None] * len(self.tree.params)
        module_deciders: list[Statement | None] = [None] * len(self.tree.modules)
        for statement in statements:
            deciders = param_deciders if acts_on_params(statement) else module_deciders
            for index in self.reached(statement):
                deciders[index] = statement
        plan = evaluate(self.tree, self.policy, at)
        return Stage(self, at, statements, plan, param_deciders, module_deciders)

    def stage_label(self, points: tuple[int, ...]) -> str:
        """``at epoch 3`` / ``at epochs 0 and 3`` for a scheduled policy's stages."""
        unit = self.policy.unit
        if len(points) == 1:
            return f"at {unit} {points[0]}"
        listed = ", ".join(str(p) for p in points[:-1]) + f" and {points[-1]}"
        return f"at {unit}s {listed}"


@dataclass(frozen=True)
class Stage:
    """One schedule stage resolved: its statements in order, the plan and every decider."""

    analysis: Analysis
    at: int
    statements: tuple[Statement, ...]
    plan: Plan
    param_deciders: list[Statement | None]
    module_deciders: list[Statement | None]

    @property
    def tree(self) -> ModelTree:
        return self.analysis.tree

    def is_first_for(self, statement: Statement) -> bool:
        """Whether this is the first stage ``statement`` is in force in."""
        return self.at == Analysis.first_point(statement)

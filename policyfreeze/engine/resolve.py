"""Resolution: a policy and a model tree → a pure ``Plan``.

Nothing here changes a model. ``evaluate`` works on a torch-free
``ModelTree`` (so lint can run on a manifest); ``resolve`` is the public entry
point that accepts a live ``nn.Module``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import itertools
import operator
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PolicyError, PolicyResolveError, PolicyUsageError, shorten
from ..language.parser import load, parse
from ..language.policy import GlobSelector, Options, Policy, Statement, TypeSelector, quote_name
from ..language.source import Source
from ..model.tree import ModelTree, ParamInfo
from ..model.walk import LiveModel, walk
from . import groups
from .select import select


@dataclass(frozen=True)
class Decision:
    """The statement that decided a parameter or module: provenance for reports."""

    verb: str
    text: str
    source: str
    line: int
    column: int
    options: Options | None = None

    @classmethod
    def of(cls, statement: Statement, source: Source) -> Decision:
        return cls(
            statement.verb,
            statement.text,
            source.name,
            statement.span.line,
            statement.span.column,
            statement.options,
        )

    def where(self) -> str:
        return f"{self.source}:{self.line}"

    def __str__(self) -> str:
        return f"{self.where()} {self.text}"


@dataclass(frozen=True)
class Plan:
    """What a policy decides for a model, before anything is changed.

    ``requires_grad`` and ``decisions`` are keyed by parameter name in
    ``named_parameters()`` order; ``pinned`` and ``pin_decisions`` by module
    name in ``named_modules()`` order (True: held in eval mode). They are built
    on first use from the columns below, which are indexed by the parameter
    and module ids of ``tree``.
    """

    policy: Policy
    tree: ModelTree
    at: int
    #: one per statement of the stage, in order: what a decider number points to
    statement_decisions: tuple[Decision, ...]
    #: per parameter id: the final requires_grad, and the deciding statement's number (-1: none)
    param_flags: list[bool]
    param_deciders: list[int]
    #: per module id: the final eval pin, and the deciding statement's number (-1: none)
    module_pins: list[bool]
    module_deciders: list[int]
    #: the state resolution started from: per parameter id requires_grad, per module id the eval pin
    start_flags: list[bool]
    start_pins: list[bool]
    warnings: tuple[PolicyError, ...] = ()
    errors: tuple[PolicyError, ...] = ()
    #: the model the plan was resolved on, with its tensors and modules by id; None for a tree (a manifest)
    live: LiveModel | None = field(default=None, repr=False, compare=False)

    def live_model(self) -> LiveModel:
        """The live model behind the plan: what committing, optimizer groups and cost need.

        A plan evaluated on a bare ``ModelTree`` (a manifest) has none: a usage error.
        """
        if self.live is None:
            raise PolicyUsageError(
                "this plan has no tensors (it was evaluated on a model tree, such as a manifest)",
                help="resolve the policy on the model itself: policyfreeze.resolve(model, policy)",
            )
        return self.live

    @functools.cached_property
    def requires_grad(self) -> dict[str, bool]:
        return dict(zip(self.tree.param_names, self.param_flags))

    @functools.cached_property
    def decisions(self) -> dict[str, Decision | None]:
        return dict(zip(self.tree.param_names, map(self._decision, self.param_deciders)))

    @functools.cached_property
    def pinned(self) -> dict[str, bool]:
        return dict(zip(self.tree.module_names, self.module_pins))

    @functools.cached_property
    def pin_decisions(self) -> dict[str, Decision | None]:
        return dict(zip(self.tree.module_names, map(self._decision, self.module_deciders)))

    def _decision(self, decider: int) -> Decision | None:
        return self.statement_decisions[decider] if decider >= 0 else None

    @property
    def params(self) -> dict[str, ParamInfo]:
        return {p.name: p for p in self.tree.params}

    @property
    def before(self) -> dict[str, bool]:
        """Each parameter's ``requires_grad`` when the plan was made."""
        return dict(zip(self.tree.param_names, self.start_flags))

    @property
    def changed(self) -> list[str]:
        """Names whose ``requires_grad`` the plan changes, in parameter order."""
        columns = zip(self.tree.param_names, self.start_flags, self.param_flags)
        return [name for name, before, after in columns if before != after]

    @property
    def trainable(self) -> list[str]:
        return list(itertools.compress(self.tree.param_names, self.param_flags))

    @property
    def frozen(self) -> list[str]:
        return list(itertools.compress(self.tree.param_names, map(operator.not_, self.param_flags)))

    def param_groups(self, *, lr: float | None = None, weight_decay: float | None = None) -> list[dict]:
        """Optimizer parameter groups holding only what trains, grouped by ``with`` options.

        ``torch.optim.AdamW(plan.param_groups(lr=1e-3))``; see ``groups.param_groups``.
        """
        return groups.param_groups(self, lr=lr, weight_decay=weight_decay)


def coerce_policy(policy: Policy | str | Path) -> Policy:
    """A ``Policy`` from a Policy, policy text or a path."""
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, Path):
        return load(policy)
    if isinstance(policy, str):
        try:
            return parse(policy)
        except PolicyError as exc:
            if "\n" not in policy and len(policy) < 4096 and _is_file(policy):
                exc.help = f"{policy!r} is a file: pass pathlib.Path({policy!r}) or use policyfreeze.load()"
                exc.args = (exc.render(),)
            raise
    raise PolicyUsageError(f"a policy is a Policy, policy text or a pathlib.Path, not {type(policy).__name__}")


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def stage_at(policy: Policy, epoch: int | None = None, step: int | None = None, phase: int | None = None) -> int:
    """The epoch, step or phase to resolve, checked against the policy's unit (0 when none is given)."""
    given = [(unit, at) for unit, at in (("epoch", epoch), ("step", step), ("phase", phase)) if at is not None]
    if len(given) > 1:
        raise PolicyUsageError("give one of epoch=, step= and phase=, not several")
    if not given:
        return 0
    [(unit, at)] = given
    if isinstance(at, bool) or not isinstance(at, int) or at < 0:
        raise PolicyUsageError(f"{unit} must be an integer 0 or more, not {at!r}")
    if policy.unit is not None and policy.unit != unit:
        raise PolicyUsageError(f"{policy.source.name} schedules by {policy.unit}: pass {policy.unit}=, not {unit}=")
    return at


def resolve(
    model: Any,
    policy: Policy | str | Path,
    *,
    epoch: int | None = None,
    step: int | None = None,
    phase: int | None = None,
) -> Plan:
    """Decide every parameter's ``requires_grad`` (and module pins) without touching the model.

    ``epoch``/``step``/``phase`` pick the schedule stage in force (default: 0).
    Raises ``PolicyResolveError`` when the policy cannot apply to this model.
    """
    policy = coerce_policy(policy)
    at = stage_at(policy, epoch, step, phase)
    live = walk(model)
    plan = evaluate(live.tree, policy, at)
    if plan.errors:
        raise PolicyError.collect(list(plan.errors))
    return dataclasses.replace(plan, live=live)


def evaluate(tree: ModelTree, policy: Policy, at: int = 0) -> Plan:
    """The plan for ``tree``; problems are returned in ``errors``/``warnings``, not raised."""
    start = Plan(
        policy,
        tree,
        at,
        (),
        list(tree.param_requires_grad),
        [-1] * len(tree.param_requires_grad),
        list(tree.module_pinned),
        [-1] * len(tree.module_pinned),
        tree.param_requires_grad,
        tree.module_pinned,
    )
    return _extend(start, at, policy.stage(at))


def advance(plan: Plan, at: int) -> Plan:
    """The plan at the later stage ``at``, evaluating only the statements that stage adds.

    A later stage's statements are an earlier stage's followed by the blocks in
    between, so each statement is selected once however many stages are
    resolved. The new plan starts from ``plan``'s final state: what it changes
    is what the stage changes. Its warnings and errors are the new statements'.
    """
    if at < plan.at:
        raise PolicyUsageError(f"stage {at} is before the plan's stage {plan.at}")
    statements = plan.policy.stage(at)
    known = len(plan.statement_decisions)
    start = dataclasses.replace(
        plan,
        at=at,
        param_flags=list(plan.param_flags),
        param_deciders=list(plan.param_deciders),
        module_pins=list(plan.module_pins),
        module_deciders=list(plan.module_deciders),
        start_flags=plan.param_flags,
        start_pins=plan.module_pins,
        warnings=(),
        errors=(),
    )
    return _extend(start, at, statements[known:])


def _extend(plan: Plan, at: int, statements: tuple[Statement, ...]) -> Plan:
    """``plan`` (whose lists it takes over) with ``statements`` applied after its own, numbered on."""
    tree, source = plan.tree, plan.policy.source
    first = len(plan.statement_decisions)
    warnings: list[PolicyError] = []
    suggestions = _Suggestions(tree)
    unfrozen: list[int] = []  # parameters a new unfreeze reached: the only candidates for PF207
    for number, statement in enumerate(statements, start=first):
        nodes = select(tree, statement.selector)
        acts_on_params = statement.verb in ("freeze", "unfreeze")
        reached = tree.param_ids_in(nodes) if acts_on_params else tree.module_ids_in(nodes)
        deciders, flags = (
            (plan.param_deciders, plan.param_flags) if acts_on_params else (plan.module_deciders, plan.module_pins)
        )
        # The flag each statement sets: unfreeze → trainable, eval → pinned.
        sets = statement.verb in ("unfreeze", "eval")
        if isinstance(reached, range):  # contiguous ids: set them in one go
            deciders[reached.start : reached.stop] = [number] * len(reached)
            flags[reached.start : reached.stop] = [sets] * len(reached)
        else:
            for reached_id in reached:
                deciders[reached_id] = number
                flags[reached_id] = sets
        if statement.verb == "unfreeze":
            unfrozen.extend(reached)
        if not reached:
            warnings.append(_selects_nothing(source, statement, acts_on_params, suggestions))
    decisions = plan.statement_decisions + tuple(Decision.of(statement, source) for statement in statements)
    every = plan.policy.stage(at)
    return dataclasses.replace(
        plan,
        statement_decisions=decisions,
        warnings=tuple(warnings),
        errors=tuple(_unfrozen_non_float(tree, source, every, plan.param_deciders, first, unfrozen)),
    )


def _unfrozen_non_float(
    tree: ModelTree,
    source: Source,
    statements: tuple[Statement, ...],
    param_deciders: list[int],
    first: int,
    reached: list[int],
) -> Iterator[PolicyError]:
    """PF207 for each parameter in ``reached`` that an ``unfreeze`` numbered ``first`` or later
    decided, whose dtype cannot require gradients."""
    unfrozen = sorted(
        {i for i in reached if param_deciders[i] >= first and statements[param_deciders[i]].verb == "unfreeze"}
    )
    for param_id, able in zip(unfrozen, tree.details.can_require_grad_of(unfrozen)):
        if not able:
            [dtype] = tree.details.param_dtypes_of([param_id])
            statement = statements[param_deciders[param_id]]
            name = tree.param_names[param_id]
            yield source.error(
                PolicyResolveError,
                f"cannot unfreeze {name}: its dtype {dtype} cannot require gradients",
                statement.span.offset,
                statement.span.end_offset,
                code="PF207",
                help=f"leave it out: add 'except {quote_name(name)}' to the statement",
            )


def _selects_nothing(
    source: Source, statement: Statement, acts_on_params: bool, suggestions: _Suggestions
) -> PolicyError:
    what = "parameters" if acts_on_params else "modules"
    return source.error(
        PolicyResolveError,
        f"'{shorten(statement.text, 60)}' selects no {what} in this model",
        statement.span.offset,
        statement.span.end_offset,
        code="PF201",
        help=suggestions.for_statement(statement),
    )


class _Suggestions:
    """Did-you-mean help for statements that select nothing, each pattern worked out once."""

    POOL = 1000  # names compared per pattern: keeps difflib fast on huge models

    def __init__(self, tree: ModelTree) -> None:
        self.tree = tree
        self._by_depth: dict[int, list[str]] | None = None
        self._help: dict[tuple[str, str], str | None] = {}

    def for_statement(self, statement: Statement) -> str | None:
        """Help for the first glob or class name of ``statement`` that matches nothing."""
        for atom in statement.atoms():
            if isinstance(atom, (GlobSelector, TypeSelector)):
                key = (atom.kind, atom.pattern)
                if key not in self._help:
                    self._help[key] = None if select(self.tree, atom) else self._work_out(atom)
                if self._help[key]:
                    return self._help[key]
        return None

    def _work_out(self, atom: GlobSelector | TypeSelector) -> str:
        pattern = shorten(atom.pattern)
        if isinstance(atom, TypeSelector):
            classes = sorted({c for module_classes in self.tree.module_classes for c in module_classes})
            close = difflib.get_close_matches(atom.pattern, classes, n=1, cutoff=0.6)
            return f"no module is a {pattern}" + (f"; did you mean '{close[0]}'?" if close else "")
        close = difflib.get_close_matches(atom.pattern, self._names_as_deep_as(atom.pattern), n=1, cutoff=0.6)
        return f"'{pattern}' matches nothing" + (f"; did you mean '{close[0]}'?" if close else " in this model")

    def _names_as_deep_as(self, pattern: str) -> list[str]:
        if self._by_depth is None:
            self._by_depth = {}
            for name in dict.fromkeys(self.tree.names):
                if name:
                    pool = self._by_depth.setdefault(name.count("."), [])
                    if len(pool) < self.POOL:
                        pool.append(name)
        return self._by_depth.get(pattern.count("."), [])

"""Resolution: a policy and a model tree → a pure ``Plan``.

Nothing here changes a model. ``evaluate`` works on a torch-free
``ModelTree`` (so lint can run on a manifest); ``resolve`` is the public entry
point that accepts a live ``nn.Module``.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import functools
import itertools
import operator
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import collector
from ..errors import (
    PolicyError,
    PolicyResolveError,
    PolicyUsageError,
    printable,
    shorten,
)
from ..language.glob import glob_too_costly, has_wildcard
from ..language.parser import load, parse
from ..language.policy import (
    ChildrenSelector,
    GlobSelector,
    Options,
    Policy,
    Slice,
    Statement,
    TypeSelector,
    quote_name,
)
from ..language.source import Source
from ..model.tree import ModelTree, ParamInfo
from ..model.walk import LiveModel, walk
from . import groups
from .select import children_parents, select


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
        return f"{printable(self.source)}:{self.line}"

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
    #: the policy's statements in the order stages apply them, of which the stage holds the first
    #: ``statement_count``: what a decider number points to
    schedule: Schedule = field(repr=False, compare=False)
    statement_count: int
    #: per parameter id: the final requires_grad, and the deciding statement's number (-1: none)
    param_flags: list[bool]
    param_deciders: list[int]
    #: per module id: the final eval pin, and the deciding statement's number (-1: none)
    module_pins: list[bool]
    module_deciders: list[int]
    #: the state resolution started from: per parameter id requires_grad, per module id the eval pin
    start_flags: list[bool]
    start_pins: list[bool]
    #: the statements' findings (PF201) and the stage's (PF205, PF208, PF209); errors stop an apply (PF207)
    warnings: tuple[PolicyError, ...] = ()
    errors: tuple[PolicyError, ...] = ()
    #: the model the plan was resolved on, with its tensors and modules by id; None for a tree (a manifest)
    live: LiveModel | None = field(default=None, repr=False, compare=False)
    #: per node of a tensor with several names (tied weights): the number of the last statement whose
    #: selection holds that name; a name no statement selected is absent
    tied_deciders: dict[int, int] = field(default_factory=dict, repr=False)

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

    def current_tensors(self) -> list[Any]:
        """The model's parameter tensors as they are now, in the plan's parameter order.

        Read again from the model: ``fully_shard`` (or ``load_state_dict(assign=True)``)
        replaces the tensors a plan made before it holds, and an optimizer
        built from those would train nothing.
        """
        fresh = walk(self.live_model().root)
        old, new = self.tree, fresh.tree
        if (old.param_names, old.param_aliases) != (new.param_names, new.param_aliases):
            raise PolicyUsageError(
                "the model's parameters were renamed, added or removed since the policy was resolved: "
                "the plan's groups no longer name its parameters",
                help="change the model first, then resolve or apply the policy",
            )
        return fresh.tensors

    @property
    def statement_decisions(self) -> tuple[Decision, ...]:
        """One per statement of the schedule, shared by its stages: the decision a decider number points to."""
        return self.schedule.decisions

    @property
    def statements(self) -> tuple[Statement, ...]:
        """The statements of the stage, in the order they apply."""
        return self.schedule.statements[: self.statement_count]

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

    def _repr_html_(self) -> str:
        """The plan's visual report, so a plan shown in Jupyter draws itself.

        IPython looks for this on the object, so the plan names its view; the
        report package is imported only when a notebook displays a plan.
        """
        from ..report.html import render_html

        return render_html(self, fragment=True)

    def param_groups(self, *, lr: float | None = None, weight_decay: float | None = None) -> list[dict]:
        """Optimizer parameter groups holding only what trains, grouped by ``with`` options.

        ``torch.optim.AdamW(plan.param_groups(lr=1e-3))``; see ``groups.param_groups``.
        The tensors are the model's now (after ``fully_shard``, the sharded ones).
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


@collector.paused
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


@collector.paused
def evaluate(tree: ModelTree, policy: Policy, at: int = 0) -> Plan:
    """The plan for ``tree``; problems are returned in ``errors``/``warnings``, not raised."""
    schedule = Schedule.of(policy)
    start = Plan(
        policy,
        tree,
        at,
        schedule,
        0,
        list(tree.param_requires_grad),
        [-1] * len(tree.param_requires_grad),
        list(tree.module_pinned),
        [-1] * len(tree.module_pinned),
        tree.param_requires_grad,
        tree.module_pinned,
    )
    return _extend(start, schedule.statements[: schedule.count_at(at)])


@collector.paused
def advance(plan: Plan, at: int) -> Plan:
    """The plan at the later stage ``at``, evaluating only the statements that stage adds.

    A later stage's statements are an earlier stage's followed by the blocks in
    between, so each statement is selected once however many stages are
    resolved. The new plan starts from ``plan``'s final state: what it changes
    is what the stage changes. Its warnings are the new statements' (PF201)
    and the stage's (PF205, PF208, PF209); its errors the new statements'.
    """
    if at < plan.at:
        raise PolicyUsageError(f"stage {at} is before the plan's stage {plan.at}")
    schedule, known = plan.schedule, plan.statement_count
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
        tied_deciders=dict(plan.tied_deciders),
    )
    return _extend(start, schedule.statements[known : schedule.count_at(at)])


@dataclass(frozen=True)
class Schedule:
    """A policy's statements in the order its stages apply them, so each stage's statements are a prefix:
    the base statements, then the blocks by ascending N (in file order among equal N)."""

    statements: tuple[Statement, ...]
    #: how many statements are in force before any block
    base: int
    #: per block in that order: its N, and how many statements are in force once it has joined
    block_ats: tuple[int, ...]
    block_ends: tuple[int, ...]
    source: Source = field(repr=False, compare=False)

    @classmethod
    def of(cls, policy: Policy) -> Schedule:
        statements = list(policy.statements)
        ats, ends = [], []
        for block in sorted(policy.blocks, key=operator.attrgetter("at")):  # stable: file order among equal N
            statements.extend(block.statements)
            ats.append(block.at)
            ends.append(len(statements))
        return cls(tuple(statements), len(policy.statements), tuple(ats), tuple(ends), policy.source)

    @functools.cached_property
    def decisions(self) -> tuple[Decision, ...]:
        """The decision of each statement, by number: built once, so a stage costs nothing per statement."""
        return tuple(Decision.of(statement, self.source) for statement in self.statements)

    def count_at(self, at: int) -> int:
        """How many statements are in force at epoch/step/phase ``at``."""
        due = bisect.bisect_right(self.block_ats, at)
        return self.block_ends[due - 1] if due else self.base


def _extend(plan: Plan, statements: tuple[Statement, ...]) -> Plan:
    """``plan`` (whose lists it takes over) with ``statements`` applied after its own, numbered on."""
    tree, source = plan.tree, plan.policy.source
    first = plan.statement_count
    warnings: list[PolicyError] = []
    suggestions = _Suggestions(tree)
    unfrozen: list[int] = []  # parameters a new unfreeze reached: the only candidates for PF207
    tied = _TiedNames.of(tree)
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
        if tied is not None and acts_on_params:
            tied.note(plan.tied_deciders, nodes, number)
        if not reached:
            warnings.append(_selects_nothing(source, statement, acts_on_params, suggestions))
        else:
            warnings.extend(_list_items_selecting_nothing(tree, source, statement))
    extended = dataclasses.replace(
        plan,
        statement_count=first + len(statements),
        errors=tuple(_unfrozen_non_float(tree, source, statements, first, plan.param_deciders, unfrozen)),
    )
    return dataclasses.replace(extended, warnings=(*warnings, *stage_findings(extended)))


def _unfrozen_non_float(
    tree: ModelTree,
    source: Source,
    statements: tuple[Statement, ...],
    first: int,
    param_deciders: list[int],
    reached: list[int],
) -> Iterator[PolicyError]:
    """PF207 for each parameter in ``reached`` that one of ``statements`` (numbered from ``first``), an
    ``unfreeze``, decided, whose dtype cannot require gradients."""
    unfrozen = sorted(
        {i for i in reached if param_deciders[i] >= first and statements[param_deciders[i] - first].verb == "unfreeze"}
    )
    for param_id, able in zip(unfrozen, tree.details.can_require_grad_of(unfrozen)):
        if not able:
            [dtype] = tree.details.param_dtypes_of([param_id])
            statement = statements[param_deciders[param_id] - first]
            yield unfreeze_non_float_error(source, statement, tree.param_names[param_id], dtype)


def unfreeze_non_float_error(source: Source, statement: Statement, name: str, dtype: str) -> PolicyError:
    """PF207: ``statement`` unfreezes ``name``, whose dtype cannot require gradients."""
    return source.error(
        PolicyResolveError,
        f"cannot unfreeze {name}: its dtype {dtype} cannot require gradients",
        statement.span.offset,
        statement.span.end_offset,
        code="PF207",
        help=f"leave it out: add 'except {quote_name(name)}' to the statement",
    )


# The stage's findings: what the decided state says, whichever statements decided it. ------------------


def stage_findings(plan: Plan) -> list[PolicyError]:
    """PF205 (nothing trainable), PF208 (a tied tensor decided through some of its names) and PF209
    (an adapter layer's base weights unfrozen) for the state ``plan`` ends in."""
    return [*_nothing_trainable(plan), *_one_sided_tied(plan), *_unfrozen_adapter_bases(plan)]


def _statement(plan: Plan, number: int) -> Statement:
    return plan.schedule.statements[number]


def _nothing_trainable(plan: Plan) -> Iterator[PolicyError]:
    tree = plan.tree
    count = plan.statement_count
    if not tree.param_nodes or not count or any(plan.param_flags):
        return
    freezers = {d for d in plan.param_deciders if d >= 0 and _statement(plan, d).verb == "freeze"}
    candidates = [_statement(plan, d) for d in freezers] or [_statement(plan, count - 1)]
    anchor = max(candidates, key=lambda s: s.span.offset)
    head = _last_child_with_params(tree)
    example = f" (for example 'unfreeze {quote_name(head)}')" if head else ""
    yield plan.policy.source.error(
        PolicyResolveError,
        "the policy leaves no parameter trainable",
        anchor.span.offset,
        anchor.span.end_offset,
        code="PF205",
        help=f"an optimizer needs at least one trainable parameter: unfreeze the part to train{example}",
    )


def _last_child_with_params(tree: ModelTree) -> str | None:
    for child in reversed(tree.children_of(0) if len(tree) else []):
        if any(tree.is_param[node] for node in range(child, tree.ends[child])):
            return tree.names[child]
    return None


class _TiedNames:
    """The nodes of every tensor that has several names (tied weights, a shared module's parameters)."""

    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes  # ascending

    @classmethod
    def of(cls, tree: ModelTree) -> _TiedNames | None:
        if tree.param_slot_ids is None:
            return None  # every tensor has one name
        aliased = tree.param_aliases
        return cls([n for n, i in zip(tree.param_nodes, tree.param_slot_ids) if aliased[i]])

    def note(self, deciders: dict[int, int], intervals: list[tuple[int, int]], number: int) -> None:
        """Record statement ``number`` as the last to select each tied name inside ``intervals``."""
        nodes = self.nodes
        for start, end in intervals:
            for index in range(bisect.bisect_left(nodes, start), bisect.bisect_left(nodes, end)):
                deciders[nodes[index]] = number


def _one_sided_tied(plan: Plan) -> Iterator[PolicyError]:
    """PF208: the statement deciding a tied tensor reaches it through some names while another lies outside
    its selection, selected by no statement or last by one that sets the other flag (``freeze all;
    unfreeze lm_head`` unfreezes ``transformer.wte.weight``). A name last selected the same way is
    deliberate."""
    tree = plan.tree
    if not plan.tied_deciders:
        return
    by_statement: dict[int, list[tuple[str, str]]] = {}  # statement number → (name left out, name selected)
    nodes_by_param: dict[int, list[int]] = {}
    for node, param_id in zip(tree.param_nodes, tree.param_slot_ids or ()):
        if tree.param_aliases[param_id]:
            nodes_by_param.setdefault(param_id, []).append(node)
    for param_id, nodes in nodes_by_param.items():
        decider = plan.param_deciders[param_id]
        if decider < 0:
            continue
        deciding_verb = _statement(plan, decider).verb
        selected = [n for n in nodes if plan.tied_deciders.get(n) == decider]
        left_out = [
            n
            for n in nodes
            if n not in plan.tied_deciders or _statement(plan, plan.tied_deciders[n]).verb != deciding_verb
        ]
        if selected and left_out:
            via = tree.names[selected[0]]
            by_statement.setdefault(decider, []).extend((tree.names[n], via) for n in left_out)
    for number, names in sorted(by_statement.items()):
        statement = _statement(plan, number)
        verb = f"{statement.verb}s"
        if len(names) == 1:
            [(other, via)] = names
            message = f"'{_text(statement)}' also {verb} '{other}': it is the same tensor as '{via}'"
            fix = (
                f"'{via}' and '{other}' are one tensor and cannot be decided apart: "
                f"add '{other}' to the statement to say so, or untie them in the model"
            )
        else:
            message = (
                f"'{_text(statement)}' also {verb} {len(names)} tied names outside its selection "
                f"({_listed([o for o, _ in names])}): they are the same tensors as {_listed([v for _, v in names])}"
            )
            fix = (
                "a tied tensor is one parameter under several names and cannot be decided apart: "
                "select every name, or untie them in the model"
            )
        yield plan.policy.source.error(
            PolicyResolveError, message, statement.span.offset, statement.span.end_offset, code="PF208", help=fix
        )


def _unfrozen_adapter_bases(plan: Plan) -> Iterator[PolicyError]:
    """PF209: an ``unfreeze`` decides the base weights of adapter layers, which end up trainable.

    A base weight is a parameter the walk marks ``adapter_base``: an adapter layer's own (its base
    layer's, ``q_proj.weight`` under LoRA) or the original a ``modules_to_save`` copy stands in for.
    """
    tree = plan.tree
    bases = tree.param_adapter_base
    if not any(bases):
        return
    by_statement: dict[int, list[str]] = {}  # statement number → the layers whose base weights it unfreezes
    for param_id in itertools.compress(range(len(bases)), bases):
        decider = plan.param_deciders[param_id]
        if plan.param_flags[param_id] and decider >= 0 and _statement(plan, decider).verb == "unfreeze":
            layer = tree.param_names[param_id].rpartition(".")[0]
            layers = by_statement.setdefault(decider, [])
            if layer not in layers:
                layers.append(layer)
    for number, layers in sorted(by_statement.items()):
        statement = _statement(plan, number)
        what = "an adapter layer" if len(layers) == 1 else f"{len(layers)} adapter layers"
        yield plan.policy.source.error(
            PolicyResolveError,
            f"'{_text(statement)}' unfreezes the base weights of {what} ({_listed(layers)}): "
            "the adapters are meant to train in their place",
            statement.span.offset,
            statement.span.end_offset,
            code="PF209",
            help=_adapter_help(tree, layers),
        )


def _adapter_help(tree: ModelTree, layers: list[str]) -> str:
    """Select the adapters instead (``*.q_proj.lora_*``), or leave a ``modules_to_save`` original out."""
    originals = [layer for layer in layers if layer.rpartition(".")[2] == "original_module"]
    if originals and len(originals) == len(layers):
        return f"the modules_to_save copy trains in its place: add 'except {quote_name(originals[0])}'"
    heads = set()  # the first name segment of each adapter parameter below a layer: lora_A, lora_B
    for layer in layers:
        for node in tree.nodes_named(layer)[:1]:
            depth = layer.count(".") + 1 if layer else 0
            for below in range(node + 1, tree.ends[node]):
                segments = tree.names[below].split(".")
                if tree.is_param[below] and len(segments) > depth + 1:
                    heads.add(segments[depth])
    if not heads:
        return "keep them frozen: the adapter trains in their place"
    common = _common_prefix(sorted(heads))
    adapters = common if len(heads) == 1 else common + "*"
    locals_ = {layer.rpartition(".")[2] for layer in layers}
    glob = f"*.{locals_.pop()}.{adapters}" if len(locals_) == 1 else f"*.{adapters}"
    return f"to train the adapters only, select them: 'unfreeze {glob}'"


def _common_prefix(words: list[str]) -> str:
    first, last = words[0], words[-1]
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[:size]


_SHOWN_NAMES = 3


def _listed(names: list[str]) -> str:
    shown = ", ".join(f"'{shorten(name, 80)}'" for name in names[:_SHOWN_NAMES])
    more = len(names) - _SHOWN_NAMES
    return shown + (f", … ({more} more)" if more > 0 else "")


def _text(statement: Statement) -> str:
    return shorten(statement.text, 60)


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


def _list_items_selecting_nothing(tree: ModelTree, source: Source, statement: Statement) -> Iterator[PolicyError]:
    """PF201 for each item of an index list (``children[0, 10]``) that picks no child of any module it indexes,
    in a statement that selects something through its other items."""
    for atom in statement.atoms():
        if isinstance(atom, ChildrenSelector) and len(atom.slices) > 1:
            for item, where, count in _empty_children_items(tree, atom):
                text = shorten(source.text[atom.span.offset : atom.span.end_offset], 60)
                yield source.error(
                    PolicyResolveError,
                    f"'{text}': {_item_said(item)} selects nothing: {where}",
                    statement.span.offset,
                    statement.span.end_offset,
                    code="PF201",
                    help=(
                        f"drop it from the list; indices run 0..{count - 1}, or {-count}..-1 from the end"
                        if count
                        else "drop it from the list: there are no children to index"
                    ),
                )


def _empty_children_items(tree: ModelTree, selector: ChildrenSelector) -> Iterator[tuple[Slice, str, int]]:
    """Each item of ``selector`` that picks no child of any module it indexes, with how many children
    there are, said and counted (the most of any module it indexes).

    Nothing when it indexes no module: that is the glob's problem, not the items'.
    """
    parents = children_parents(tree, selector)
    counts = sorted({len(tree.children_of(parent)) for parent in parents})
    if not counts:
        return
    most = counts[-1]
    if selector.parent is None:
        classes = tree.modules[0].classes
        owner = f"the model ({classes[0]}) has" if classes else "the model has"
    elif len(parents) == 1:
        owner = f"'{shorten(tree.names[parents[0]], 80)}' has"
    else:
        owner = f"the {len(parents)} modules '{shorten(selector.parent.pattern, 80)}' matches have at most"
    for item in selector.slices:
        if not any(item.pick(range(count)) for count in counts):
            yield item, f"{owner} {_children_range(most)}", most


def _children_range(count: int) -> str:
    """``10 children (0..9)``, ``1 child (0)``, ``no children``."""
    if count == 0:
        return "no children"
    return "1 child (0)" if count == 1 else f"{count} children (0..{count - 1})"


def _item_said(item: Slice) -> str:
    """``index 10``, ``slice '20:'``."""
    return f"index {item}" if item.is_index else f"slice '{item}'"


class _Suggestions:
    """Did-you-mean help for statements that select nothing, each pattern worked out once."""

    POOL = 1000  # names compared per pattern: keeps difflib fast on huge models

    def __init__(self, tree: ModelTree) -> None:
        self.tree = tree
        self._by_depth: dict[int, list[str]] | None = None
        self._help: dict[tuple[str, str], str | None] = {}

    def for_statement(self, statement: Statement) -> str | None:
        """Help for the first glob or class name of ``statement`` that matches nothing, or the first
        ``children[...]`` item past the end."""
        for atom in statement.atoms():
            if isinstance(atom, ChildrenSelector):
                for item, where, _ in _empty_children_items(self.tree, atom):
                    return f"{_item_said(item)} selects nothing: {where}"
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
        if has_wildcard(atom.pattern):
            # A name close in spelling means little for a glob; a glob that spans more segments does.
            wider = self._spanning(atom)
            if wider is not None:
                return (
                    f"'{pattern}' matches nothing: '*' inside a segment stays within it; "
                    f"did you mean '{shorten(wider)}', where a whole '*' segment spans several?"
                )
            return f"'{pattern}' matches nothing in this model"
        close = difflib.get_close_matches(atom.pattern, self._names_as_deep_as(atom.pattern), n=1, cutoff=0.6)
        return f"'{pattern}' matches nothing" + (f"; did you mean '{close[0]}'?" if close else " in this model")

    def _spanning(self, atom: GlobSelector) -> str | None:
        """The glob with one whole ``*`` segment added between two of its segments, if that matches."""
        segments = atom.pattern.split(".")
        for gap in range(1, len(segments)):
            if "*" in (segments[gap - 1], segments[gap]):
                continue
            wider = ".".join([*segments[:gap], "*", *segments[gap:]])
            if glob_too_costly(wider) is None and select(self.tree, atom.model_copy(update={"pattern": wider})):
                return wider
        return None

    def _names_as_deep_as(self, pattern: str) -> list[str]:
        if self._by_depth is None:
            self._by_depth = {}
            for name in dict.fromkeys(self.tree.names):
                if name:
                    pool = self._by_depth.setdefault(name.count("."), [])
                    if len(pool) < self.POOL:
                        pool.append(name)
        return self._by_depth.get(pattern.count("."), [])

"""The model-aware checks (PF2xx): each reads one resolved stage and yields hits.

Each check is registered with its code; ``codes.RULES`` holds its severity and
documentation. Checks of statement properties that do not depend on the stage
(PF201–PF203) look only at the statements a stage brings, so a scheduled
policy reports them once; the others read the stage's state. PF201, PF205,
PF208 and PF209 are the resolver's own findings (``plan.warnings``), so
``apply`` and ``lint`` say the same. Each check costs time linear in the
model per stage, plus its statements' reach.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..engine.resolve import unfreeze_non_float_error
from ..language.policy import AllSelector, DifferenceSelector, Statement, UnionSelector
from .analysis import Stage, acts_on_params

MAX_NAMES_SHOWN = 3
MAX_TEXT = 60


@dataclass(frozen=True)
class Hit:
    """One finding of a check, anchored at the statement it is about."""

    code: str
    statement: Statement
    message: str
    help: str | None = None


Check = Callable[[Stage], Iterator[Hit]]
CHECKS: dict[str, Check] = {}


def check(code: str) -> Callable[[Check], Check]:
    def register(function: Check) -> Check:
        CHECKS[code] = function
        return function

    return register


def quoted(statement: Statement) -> str:
    text = statement.text
    return f"'{text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + '…'}'"


def cited(statement: Statement) -> str:
    return f"{quoted(statement)} (line {statement.span.line})"


def names_list(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_SHOWN])
    return shown + (f", … ({len(names) - MAX_NAMES_SHOWN} more)" if len(names) > MAX_NAMES_SHOWN else "")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _things(statement: Statement) -> str:
    return "parameter" if acts_on_params(statement) else "module"


def _resolver_findings(code: str) -> Check:
    """The resolver's own findings of ``code``, each at the statement it names."""

    def found(stage: Stage) -> Iterator[Hit]:
        for warning in stage.plan.warnings:
            if warning.code == code and warning.location is not None:  # the resolver's always have one
                statement = stage.analysis.statement_at(warning.location.line, warning.location.column)
                yield Hit(code, statement, warning.message, warning.help)

    found.__doc__ = f"The resolver's {code} warnings."
    return found


#: A statement's PF201 comes with the stage that first brings it (a plan warns about its new statements),
#: so a scheduled policy reports it once.
check("PF201")(_resolver_findings("PF201"))


@check("PF202")
def dead_statement(stage: Stage) -> Iterator[Hit]:
    """A statement whose every parameter (module) is decided again by a later statement.

    Judged in the first stage the statement is in force in: a later stage that
    re-decides what it reached is the schedule working, not a dead statement.
    """
    for statement in stage.new:
        reached = stage.analysis.reached(statement)
        deciders = stage.param_deciders if acts_on_params(statement) else stage.module_deciders
        if not reached or any(deciders[i] is statement for i in reached):
            continue
        later = sorted({id(s): s for i in reached if (s := deciders[i]) is not None}.values(), key=_offset)
        overriders = ", ".join(cited(s) for s in later[:MAX_NAMES_SHOWN])
        yield Hit(
            "PF202",
            statement,
            f"{quoted(statement)} is dead: every {_things(statement)} it reaches is decided again later",
            f"the last statement that reaches a {_things(statement)} decides it; overridden by {overriders}",
        )


def _offset(statement: Statement | None) -> int:
    return statement.span.offset if statement is not None else -1


@check("PF203")
def no_op_statement(stage: Stage) -> Iterator[Hit]:
    """A statement whose every parameter (module) already has the state it sets.

    Judged in the first stage the statement is in force in, against the state
    the statements before it leave (the stages before, then this stage's).
    """
    tree = stage.tree
    param_deciders, module_deciders = stage.deciders_before()
    for number, statement in enumerate(stage.new, start=stage.first):
        reached = stage.analysis.reached(statement)
        on_params = acts_on_params(statement)
        deciders = param_deciders if on_params else module_deciders
        if reached:
            before = [stage.statement(deciders[i]) for i in reached]
            if on_params:
                wanted = (statement.verb == "unfreeze", statement.options)
                current = [_param_state(tree.params[i].requires_grad, s) for i, s in zip(reached, before)]
            else:
                wanted = (statement.verb == "eval", None)
                current = [_module_state(tree.modules[i].pinned, s) for i, s in zip(reached, before)]
            if all(state == wanted for state in current):
                yield _no_op_hit(statement, len(reached), before)
        for index in reached:
            deciders[index] = number


def _param_state(initial: bool, decider: Statement | None) -> tuple[bool, object]:
    # A parameter's state is its flag and, when trainable, the options of the unfreeze that decided it.
    if decider is None:
        return initial, None
    return (True, decider.options) if decider.verb == "unfreeze" else (False, None)


def _module_state(initial: bool, decider: Statement | None) -> tuple[bool, None]:
    # A module's state is its eval pin.
    return (initial if decider is None else decider.verb == "eval"), None


def _no_op_hit(statement: Statement, count: int, before: list[Statement | None]) -> Hit:
    state = {
        "freeze": "frozen",
        "unfreeze": "trainable" + (" with these options" if statement.options else ""),
        "eval": "pinned in eval mode",
        "train": "unpinned",
    }[statement.verb]
    noun = _things(statement) if count == 1 else f"{count} {_things(statement)}s"
    earlier = sorted({id(s): s for s in before if s is not None}.values(), key=_offset)
    reasons = (["the model as built"] if None in before else []) + [cited(s) for s in earlier[:MAX_NAMES_SHOWN]]
    return Hit(
        "PF203",
        statement,
        f"{quoted(statement)} changes nothing: the {noun} it reaches {'is' if count == 1 else 'are'} already {state}",
        f"already so by {' and '.join(reasons)}; remove the statement if nothing else was meant",
    )


@check("PF204")
def tied_parameter_conflict(stage: Stage) -> Iterator[Hit]:
    """A tensor with several names whose names are decided differently.

    One hit per pair of statements at odds (the one overridden, the one that
    decides), listing every tied name between them.
    """
    tree, name_deciders = stage.tree, stage.plan.tied_deciders
    conflicts: dict[tuple[int, int], tuple[Statement, Statement, list[tuple[str, str]]]] = {}
    for param_id, nodes in stage.analysis.tied_nodes.items():
        final = stage.param_deciders[param_id]
        if final is None:
            continue
        by_name = {tree.names[n]: stage.analysis.statements[name_deciders[n]] for n in nodes if n in name_deciders}
        winner_name = next(name for name, s in by_name.items() if s is final)
        for name, decider in by_name.items():
            if decider.verb != final.verb:
                pair = conflicts.setdefault((id(decider), id(final)), (decider, final, []))
                pair[2].append((name, winner_name))
    for decider, final, names in conflicts.values():
        state = "trainable" if final.verb == "unfreeze" else "frozen"
        if len(names) == 1:
            [(name, winner)] = names
            yield Hit(
                "PF204",
                decider,
                f"{quoted(decider)} {decider.verb}s '{name}', but that tensor is tied to '{winner}', "
                f"which the later {cited(final)} {final.verb}s: it ends up {state}",
                f"'{name}' and '{winner}' are one tensor: decide all of its names the same way",
            )
        else:
            yield Hit(
                "PF204",
                decider,
                f"{quoted(decider)} {decider.verb}s {len(names)} tied parameters "
                f"({names_list([n for n, _ in names])}), but they are the same tensors as "
                f"{names_list([w for _, w in names])}, which the later {cited(final)} {final.verb}s: "
                f"they end up {state}",
                "a tied tensor is one parameter under several names: decide all of its names the same way",
            )


#: What the decided state says, whichever statements decided it: the resolver finds these for every stage.
check("PF205")(_resolver_findings("PF205"))


@check("PF206")
def unpinned_frozen_norm(stage: Stage) -> Iterator[Hit]:
    """Norm layers with running statistics whose parameters a statement froze, not pinned in eval."""
    tree, plan = stage.tree, stage.plan
    by_statement: dict[int, tuple[Statement, list[int]]] = {}
    for module_id, params in stage.analysis.direct_params.items():
        module = tree.modules[module_id]
        if not module.running_stats or not params or plan.module_pins[module_id]:
            continue
        if any(plan.param_flags[p] for p in params):
            continue
        decider = stage.param_deciders[params[0]]
        if decider is None or decider.verb != "freeze":
            continue  # frozen as built: not this policy's doing
        by_statement.setdefault(id(decider), (decider, []))[1].append(module_id)
    for statement, module_ids in by_statement.values():
        modules = [tree.modules[i] for i in module_ids]
        classes = sorted({m.classes[0] for m in modules})
        kind = classes[0] if len(classes) == 1 else "normalization"
        names = [m.name or "(the model)" for m in modules]
        yield Hit(
            "PF206",
            statement,
            f"{quoted(statement)} freezes {plural(len(modules), kind + ' layer')} ({names_list(names)}) "
            f"whose running statistics still update in train mode",
            f"pin them in eval mode too: {_eval_suggestion(statement, classes, modules)}",
        )


def _eval_suggestion(statement: Statement, classes: list[str], modules: list) -> str:
    shared = [c for c in modules[0].classes if all(c in m.classes for m in modules)]
    type_selector = f"type({shared[0] if shared else classes[0]})"
    if isinstance(statement.selector, AllSelector):
        return f"'eval {type_selector}'"
    selection = statement.text.split(None, 1)[1]
    if isinstance(statement.selector, (UnionSelector, DifferenceSelector)):
        selection = f"({selection})"  # ',' and 'except' bind looser than '&'
    return f"'eval {selection} & {type_selector}'"


@check("PF207")
def unfreeze_non_float(stage: Stage) -> Iterator[Hit]:
    """An ``unfreeze`` decides a parameter whose dtype cannot require gradients (in this stage)."""
    tree, source = stage.tree, stage.analysis.policy.source
    for param_id in stage.analysis.non_float:
        decider = stage.param_deciders[param_id]
        if decider is not None and decider.verb == "unfreeze":
            error = unfreeze_non_float_error(source, decider, tree.param_names[param_id], tree.param_dtypes[param_id])
            yield Hit("PF207", decider, error.message, error.help)


check("PF208")(_resolver_findings("PF208"))
check("PF209")(_resolver_findings("PF209"))

"""``explain``: why a parameter (or every parameter of a module) ends up as it does.

For each name: the final state and every statement that reached it, in the
order they apply, with the one that decided it marked. Torch-free: it reads
the plan's model tree.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..engine.resolve import Plan
from ..engine.select import select
from ..errors import PolicyUsageError, printable
from ..language.policy import Statement
from .present import one_line, plural, shape, statement_cell, tensors_state

MAX_LISTED = 5


@dataclass(frozen=True)
class Reached:
    """One statement that reached what is explained: how many it reached and how many it decided."""

    statement: Statement
    reached: int
    decided: int
    order: int  # position in the stage's statements: the order they apply in


@dataclass(frozen=True)
class Explanation:
    """What a policy did to one parameter or to the parameters of one module."""

    name: str
    kind: str  # "parameter" or "module"
    title: str  # the name as the model lists it, and what it is
    params: tuple[str, ...]
    flags: tuple[bool, ...]  # each parameter's final requires_grad
    before: tuple[int, int]  # (trainable, total) tensors as built
    after: tuple[int, int]
    steps: tuple[Reached, ...]
    pin_steps: tuple[Reached, ...] = ()
    pinned: bool | None = None  # a module's final eval pin


def explain(plan: Plan, names: list[str]) -> list[Explanation]:
    """One explanation per name (a parameter or module name, aliases included)."""
    tree = plan.tree
    params_by_name: dict[str, int] = {}
    for index, param in enumerate(tree.params):
        for name in (param.name, *param.aliases):
            params_by_name.setdefault(name, index)
    modules_by_name: dict[str, int] = {}
    for node, is_param in enumerate(tree.is_param):
        if not is_param:
            modules_by_name.setdefault(tree.names[node], node)
    statements = plan.policy.stage(plan.at)
    reach = []
    for statement in statements:
        nodes = select(tree, statement.selector)
        reach.append((set(tree.param_ids_in(nodes)), set(tree.module_ids_in(nodes))))

    out = []
    for name in names:
        if name in params_by_name:
            index = params_by_name[name]
            param = tree.params[index]
            also = [n for n in (param.name, *param.aliases) if n != name]
            title = f"{name}: parameter {shape(param.shape)} {param.dtype}" + (
                f" (the same tensor as {', '.join(also)})" if also else ""
            )
            out.append(_explain_params(plan, name, "parameter", title, [index], statements, reach))
        elif name in modules_by_name:
            node = modules_by_name[name]
            module_id = tree.ids[node]
            module = tree.modules[module_id]
            ids = sorted(set(tree.param_ids_in([(node, tree.ends[node])])))
            label = name or "(the model)"
            title = (
                f"{label}: {module.classes[0] if module.classes else 'module'}, {plural(len(ids), 'parameter tensor')}"
            )
            explanation = _explain_params(plan, name, "module", title, ids, statements, reach)
            pin_steps = tuple(
                Reached(s, 1, int(_is_decider(plan, s, module.name)), order)
                for order, (s, (_, modules)) in enumerate(zip(statements, reach))
                if module_id in modules and s.verb in ("eval", "train")
            )
            out.append(
                Explanation(**{**explanation.__dict__, "pin_steps": pin_steps, "pinned": plan.pinned[module.name]})
            )
        else:
            raise PolicyUsageError(_unknown(name, list(params_by_name) + list(modules_by_name)))
    return out


def _is_decider(plan: Plan, statement: Statement, module: str) -> bool:
    decision = plan.pin_decisions[module]
    return decision is not None and (decision.line, decision.column) == (statement.span.line, statement.span.column)


def _explain_params(plan, name, kind, title, ids, statements, reach) -> Explanation:
    tree = plan.tree
    deciders: dict[int, int] = {}
    for position, (params, _) in enumerate(reach):
        if statements[position].verb in ("freeze", "unfreeze"):
            for index in ids:
                if index in params:
                    deciders[index] = position
    steps = []
    for position, (statement, (params, _)) in enumerate(zip(statements, reach)):
        if statement.verb not in ("freeze", "unfreeze"):
            continue
        reached = sum(index in params for index in ids)
        if reached:
            decided = sum(deciders.get(index) == position for index in ids)
            steps.append(Reached(statement, reached, decided, position))
    infos = [tree.params[i] for i in ids]
    before = (sum(plan.start_flags[i] for i in ids), len(infos))
    after = (sum(plan.requires_grad[p.name] for p in infos), len(infos))
    names = tuple(p.name for p in infos)
    flags = tuple(plan.requires_grad[p.name] for p in infos)
    return Explanation(name, kind, title, names, flags, before, after, tuple(steps))


def _unknown(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"'{name}' is neither a parameter nor a module of this model{hint}"


def format_explanations(
    explanations: list[Explanation], source: str, stages: list[tuple[int, Plan]] | None = None
) -> str:
    """Text: per name, the state before → after and each statement that reached it.

    With ``stages`` (each stage of a schedule and its plan), also the stages at which the state changes.
    """
    blocks = []
    for e in explanations:
        lines = [e.title, f"  {tensors_state(*e.before)} as built → {tensors_state(*e.after)}"]
        trainable, total = e.after
        if 0 < trainable < total:
            flags = dict(zip(e.params, e.flags))
            minority = "trainable" if trainable <= total - trainable else "frozen"
            listed = [name for name in e.params if flags[name] == (minority == "trainable")]
            shown = ", ".join(listed[:MAX_LISTED]) + (
                f", … ({len(listed) - MAX_LISTED} more)" if len(listed) > MAX_LISTED else ""
            )
            lines.append(f"  {minority}: {shown}")
        if e.pinned is not None:
            lines.append(f"  mode: {'pinned in eval mode' if e.pinned else 'follows train()/eval()'}")
        if not e.steps and not e.pin_steps:
            lines.append("  no statement reaches it: it keeps its state")
        for step in sorted(e.steps + e.pin_steps, key=lambda step: step.order):
            lines.append(_step_line(step, e, source))
        if stages:
            lines += _schedule_lines(e, stages)
        # Names come from the model: a control character in one must not reach the terminal raw.
        blocks.append("\n".join(map(printable, lines)))
    return "\n\n".join(blocks)


def _step_line(step: Reached, e: Explanation, source: str) -> str:
    span = step.statement.span
    where = f"{source}:{span.line}:{span.column}"
    if step.statement.verb in ("eval", "train"):
        mark = "  ← decides the mode" if step.decided else ""
    elif e.kind == "parameter":
        mark = "  ← decides" if step.decided else ""
    else:
        mark = f"  (reaches {step.reached}, decides {step.decided})"
    return f"  {where}  {one_line(step.statement.text)}{mark}"


def _schedule_lines(e: Explanation, stages: list[tuple[int, Plan]]) -> list[str]:
    """``by epoch:`` and a line per stage where the state (or the deciding statement) changes."""
    unit = stages[0][1].policy.unit
    lines = [f"  by {unit}:"]
    shown = None
    for at, plan in stages:
        flags = [plan.requires_grad[name] for name in e.params]
        deciders = {statement_cell(plan.decisions[name]) for name in e.params}
        decider = deciders.pop() if len(deciders) == 1 else "several statements"
        current = (tensors_state(sum(flags), len(flags)), decider)
        if current != shown:
            lines.append(f"    {at:>4}  {current[0]}  ({decider})")
            shown = current
    return lines

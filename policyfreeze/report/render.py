"""More views of a plan's ``Report``: ``markdown`` for a pull request, ``tree`` for a terminal.

(``report.format_text``, ``report.format_table``, ``Report.to_json`` and
``html.render_html`` are the others; ``present`` holds what they share.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .present import (
    delta,
    md_code,
    md_decision,
    md_table,
    model_class,
    options_cell,
    pin_mode,
    plural,
    shape,
    share,
    stage_suffix,
    state,
    transition,
)
from .term import paint

if TYPE_CHECKING:
    from ..engine.resolve import Plan
    from ..model.tree import ModelTree
    from .report import Report

RUN_TO_COLLAPSE = 3
_STATE_STYLE = {"trainable": ("green",), "frozen": ("cyan",), "partial": ("yellow",), "no parameters": ("dim",)}


# --- markdown -------------------------------------------------------------------


MARKDOWN_SUMMARY_ROWS = 30


def format_markdown(report: Report) -> str:
    """The report as GitHub-flavoured Markdown, ready to post on a pull request.

    The counts, what trains and what is frozen (the text report's rows), a
    schedule's stages, then every changed tensor and pin in collapsed tables.
    """
    plan = report.plan
    before, after = report.before, report.after
    changes = report.changes
    lines = [
        f"### policyfreeze plan: {md_code(plan.policy.source.name)}{stage_suffix(plan)} on {md_code(model_class(plan))}",
        "",
        "| | before | after | delta |",
        "|---|---:|---:|---:|",
        f"| total params | {before.total:,} | {after.total:,} | |",
        f"| trainable | {before.trainable:,} | {after.trainable:,} | {delta(before.trainable, after.trainable, before.total)} |",
        f"| frozen | {before.frozen:,} | {after.frozen:,} | {delta(before.frozen, after.frozen, before.total)} |",
        "",
        *_markdown_sections(report),
    ]
    if plan.policy.unit:
        lines += _markdown_schedule(plan)
    untouched = len(report.untouched)
    tensors = len(plan.tree.params)
    if changes:
        lines.append(
            f"**{len(changes)} of {tensors} parameter tensors change**; {untouched} untouched (no statement reached them)."
        )
        lines += ["", f"<details><summary>Changed parameters ({len(changes)})</summary>", ""]
        lines += md_table(
            ["parameter", "shape", "numel", "before → after", "decided by"],
            {2},
            [
                [
                    md_code(change.name),
                    shape(change.shape),
                    f"{change.numel:,}",
                    f"{state(change.before)} → {state(change.after)}",
                    md_decision(change.decision),
                ]
                for change in changes
            ],
        )
        lines += ["", "</details>"]
    else:
        lines.append(f"**No parameter changes state** ({tensors} tensors; {untouched} untouched).")
    pins = report.pin_changes
    if pins:
        lines += ["", f"<details><summary>Eval pins changed ({len(pins)})</summary>", ""]
        lines += md_table(
            ["module", "before → after", "decided by"],
            (),
            [
                [
                    md_code(pin.name or "(root)"),
                    f"{pin_mode(pin.before)} → {pin_mode(pin.after)}",
                    md_decision(pin.decision),
                ]
                for pin in pins
            ],
        )
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _markdown_sections(report: Report) -> list[str]:
    from .sections import sections

    plan = report.plan
    total = report.after.total
    lines = []
    for section in sections(plan, MARKDOWN_SUMMARY_ROWS):
        pins = section.title == "eval pins"
        if pins:
            heading = f"**Eval pins**: {plural(section.count, 'module')} reached or pinned"
        else:
            heading = f"**{section.title.capitalize()}**: " + (
                f"{section.numel:,} parameters ({share(section.numel, total)}) in {plural(section.count, 'tensor')}"
                if section.count
                else "nothing"
            )
        lines.append(heading)
        if section.rows:
            rows = []
            for row in section.rows:
                label = md_code(row.label) + (
                    ": " + ", ".join(md_code(name) for name in row.names[:5]) + (" …" if len(row.names) > 5 else "")
                    if row.names
                    else ""
                )
                change = (
                    transition(pin_mode(row.before), pin_mode(row.after))
                    if pins
                    else transition(state(row.before), state(row.after))
                )
                numbers = [] if pins else [f"{row.numel:,}"]
                options = [options_cell(row.decision)] if section.title == "trainable" else []
                rows.append([label, *numbers, change, *options, md_decision(row.decision)])
            header = [
                "",
                *([] if pins else ["numel"]),
                "state",
                *(["optimizer"] if section.title == "trainable" else []),
                "decided by",
            ]
            lines += ["", *md_table(header, set() if pins else {1}, rows)]
        lines.append("")
    return lines


def _markdown_schedule(plan: Plan) -> list[str]:
    from .timeline import current_point, stage_summary, timeline

    unit = plan.policy.unit or ""
    stages = timeline(plan)
    now = current_point(plan)
    rows = [
        [
            f"**{stage.at}**" if stage.at == now else str(stage.at),
            f"{stage.trainable:,} ({share(stage.trainable, stage.total)})",
            stage_summary(stage, first=stage is stages[0]).replace("|", "\\|"),
        ]
        for stage in stages
    ]
    return [
        f"**Schedule**: {plural(len(stages), 'stage')} by {unit}",
        "",
        *md_table([unit, "trainable", "what changes"], {1}, rows),
        "",
    ]


# --- tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stats:
    tensors: int
    trainable_tensors: int
    numel: int
    trainable_numel: int

    @property
    def state(self) -> str:
        if self.tensors == 0:
            return "no parameters"
        if self.trainable_tensors == self.tensors:
            return "trainable"
        return "frozen" if self.trainable_tensors == 0 else "partial"


def format_tree(report: Report, *, color: bool = False) -> str:
    """The module tree with each subtree's state and parameter counts.

    A tensor reachable under several names counts in each subtree that names
    it, and once in the model's total. A subtree that is all trainable or all
    frozen is one line; so is a subtree
    where a parameter's state follows from its own name alone (BitFit:
    ``trainable: bias``). Three or more consecutive siblings alike (same
    class and state, or same structure) collapse into one line. ``[eval]``
    marks a module pinned in eval mode.
    """
    return "\n".join(TreeView(report.plan).lines(color=color)) + "\n"


@dataclass(frozen=True)
class TreeRow:
    """One line of the tree: a node, or a run of alike siblings (``group``), and what is below it."""

    depth: int
    group: tuple[int, ...]
    label: str
    state: str  # trainable, frozen, partial (or "partial, trainable: bias"), no parameters
    stats: _Stats
    last: bool  # the last of its siblings
    opens: bool  # its children follow (a partial module)


class TreeView:
    """The rows of the module tree: uniform subtrees and alike siblings collapsed, partial ones opened."""

    def __init__(self, plan: Plan) -> None:
        self.tree: ModelTree = plan.tree
        tree = self.tree
        self.flags = list(plan.param_flags)
        self.pinned = list(plan.module_pins)
        # Prefix sums over nodes: a subtree's totals are one subtraction.
        self._tensors, self._trainable, self._numel, self._trainable_numel = [0], [0], [0], [0]
        for node, is_param in enumerate(tree.is_param):
            numel = tree.params[tree.ids[node]].numel if is_param else 0
            on = is_param and self.flags[tree.ids[node]]
            self._tensors.append(self._tensors[-1] + is_param)
            self._trainable.append(self._trainable[-1] + on)
            self._numel.append(self._numel[-1] + numel)
            self._trainable_numel.append(self._trainable_numel[-1] + (numel if on else 0))
        self._signatures: list[int] | None = None

    def stats(self, node: int) -> _Stats:
        start, end = node, self.tree.ends[node]
        return _Stats(
            self._tensors[end] - self._tensors[start],
            self._trainable[end] - self._trainable[start],
            self._numel[end] - self._numel[start],
            self._trainable_numel[end] - self._trainable_numel[start],
        )

    def lines(self, *, color: bool = False) -> list[str]:
        if not len(self.tree):
            return ["(empty model)"]
        rows = []
        open_levels: list[bool] = []  # per depth: whether a later sibling follows (draws │)
        for row in self.rows():
            del open_levels[row.depth :]
            prefix = "".join("│   " if more else "    " for more in open_levels[1:])
            connector = "" if row.depth == 0 else ("└── " if row.last else "├── ")
            rows.append((prefix + connector + row.label, row.state, self._counts(row.stats)))
            open_levels.append(not row.last)
        width = max(len(part) for part, _, _ in rows)
        state_width = max(len(label) for _, label, _ in rows)
        out = []
        for part, label, counts in rows:
            styled = paint(label.ljust(state_width), *_STATE_STYLE.get(label, ("yellow",)), enabled=color)
            out.append(f"{part.ljust(width)}  {styled}  {counts}".rstrip())
        return out

    def rows(self, *, open_by_name: bool = False) -> list[TreeRow]:
        """The rows in pre-order, depth first without recursion.

        ``open_by_name``: open a partial subtree even when its state follows from
        parameter names (the text tree shows ``partial, trainable: bias`` closed).
        """
        tree = self.tree
        rows = []
        # (depth, the nodes of one group, parent name, is the last sibling)
        stack: list[tuple[int, list[int], str, bool]] = [(0, [0], "", True)]
        while stack:
            depth, group, parent, last = stack.pop()
            state, stats = self._state(group, summarise=depth > 0)
            partial = state == "partial" or (open_by_name and state.startswith("partial"))
            opens = len(group) == 1 and not tree.is_param[group[0]] and partial
            rows.append(TreeRow(depth, tuple(group), self._label(group, parent), state, stats, last, opens))
            if not opens:
                continue
            node = group[0]
            groups = self._groups(node)
            for index in reversed(range(len(groups))):
                stack.append((depth + 1, groups[index], tree.names[node], index == len(groups) - 1))
        return rows

    def _state(self, group: list[int], *, summarise: bool) -> tuple[str, _Stats]:
        if group == [0]:
            # The whole model: a tied tensor counts once, as in the report's totals.
            params = self.tree.params
            numel = [p.numel for p in params]
            total = _Stats(
                len(params),
                sum(self.flags),
                sum(numel),
                sum(n for n, flag in zip(numel, self.flags) if flag),
            )
            return total.state, total
        stats = [self.stats(n) for n in group]
        total = _Stats(
            *(sum(getattr(s, f) for s in stats) for f in ("tensors", "trainable_tensors", "numel", "trainable_numel"))
        )
        state = total.state
        if state == "partial" and summarise:
            by_name = self._by_name(group[0])
            if by_name is not None:
                state = f"partial, trainable: {by_name}"
        return state, total

    def _label(self, group: list[int], parent: str) -> str:
        tree = self.tree

        def local(node: int) -> str:
            return tree.names[node][len(parent) + 1 :] if parent else tree.names[node]

        first = group[0]
        if tree.is_param[first]:
            return local(first)
        cls = tree.modules[tree.ids[first]].classes[:1] or ("Module",)
        pin = " [eval]" if self.pinned[tree.ids[first]] else ""
        if len(group) > 1:
            alike = f", each like {local(first)}" if self.stats(first).state == "partial" else ""
            return f"{local(first)} … {local(group[-1])} ({len(group)} × {cls[0]}{alike}){pin}"
        return (f"{local(first)} ({cls[0]})" if local(first) else cls[0]) + pin

    @staticmethod
    def _counts(stats: _Stats) -> str:
        if stats.tensors == 0:
            return ""
        if stats.state == "partial":
            return f"{stats.trainable_numel:,} of {stats.numel:,} trainable"
        return f"{stats.numel:,}"

    def _groups(self, node: int) -> list[list[int]]:
        """The node's own parameters and child modules; runs of alike sibling modules grouped."""
        tree = self.tree
        runs: list[list[int]] = []
        child = node + 1
        while child < tree.ends[node]:
            if runs and self._alike(runs[-1][0], child):
                runs[-1].append(child)
            else:
                runs.append([child])
            child = tree.ends[child]
        groups = []
        for run in runs:
            groups.extend([run] if len(run) >= RUN_TO_COLLAPSE else [[n] for n in run])
        return groups

    def _alike(self, a: int, b: int) -> bool:
        tree = self.tree
        if tree.is_param[a] or tree.is_param[b]:
            return False
        sa, sb = self.stats(a), self.stats(b)
        if self.pinned[tree.ids[a]] != self.pinned[tree.ids[b]]:
            return False
        if sa.state != sb.state or tree.modules[tree.ids[a]].classes[:1] != tree.modules[tree.ids[b]].classes[:1]:
            return False
        return sa.state != "partial" or self._signature(a) == self._signature(b)

    def _by_name(self, node: int) -> str | None:
        """When every parameter's state follows from its own (last) name: the trainable names."""
        tree = self.tree
        states: dict[str, bool] = {}
        for n in range(node, tree.ends[node]):
            if tree.is_param[n]:
                flag = self.flags[tree.ids[n]]
                if states.setdefault(tree.names[n].rsplit(".", 1)[-1], flag) != flag:
                    return None
        trainable = sorted(name for name, flag in states.items() if flag)
        return ", ".join(trainable) if trainable and len(trainable) < len(states) else None

    def _signature(self, node: int) -> int:
        """An id equal for two subtrees alike in classes, local names, shapes and states."""
        if self._signatures is None:
            self._signatures = self._all_signatures()
        return self._signatures[node]

    def _all_signatures(self) -> list[int]:
        tree = self.tree
        interned: dict[tuple, int] = {}
        signatures = [0] * len(tree)
        for node in reversed(range(len(tree))):  # children before parents
            if tree.is_param[node]:
                continue
            parts: list = [tree.modules[tree.ids[node]].classes[:1], self.pinned[tree.ids[node]]]
            child = node + 1
            while child < tree.ends[node]:
                local = tree.names[child].rsplit(".", 1)[-1]
                if tree.is_param[child]:
                    param = tree.params[tree.ids[child]]
                    parts.append((local, param.shape, self.flags[tree.ids[child]]))
                else:
                    parts.append((local, signatures[child]))
                child = tree.ends[child]
            signatures[node] = interned.setdefault(tuple(parts), len(interned))
        return signatures

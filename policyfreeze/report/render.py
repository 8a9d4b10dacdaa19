"""More views of a plan's ``Report``: ``markdown`` for a pull request, ``tree`` for a terminal.

(``report.format_text`` and ``Report.to_json`` are the other two.)
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .report import _delta, _shape, _state, model_class
from .term import paint

if TYPE_CHECKING:
    from ..engine.resolve import Decision
    from ..model.tree import ModelTree
    from .report import Report

MAX_MARKDOWN_ROWS = 200
RUN_TO_COLLAPSE = 3
_STATE_STYLE = {"trainable": ("green",), "frozen": ("cyan",), "partial": ("yellow",), "no parameters": ("dim",)}


# --- markdown -------------------------------------------------------------------


def format_markdown(report: Report) -> str:
    """The diff report as GitHub-flavoured Markdown, ready to post on a pull request."""
    plan = report.plan
    stage = f" at {plan.policy.unit} {plan.at}" if plan.policy.unit else ""
    before, after = report.before, report.after
    changes = report.changes
    lines = [
        f"### policyfreeze plan: {md_code(plan.policy.source.name)}{stage} on {md_code(model_class(plan))}",
        "",
        "| | before | after | delta |",
        "|---|---:|---:|---:|",
        f"| total params | {before.total:,} | {after.total:,} | |",
        f"| trainable | {before.trainable:,} | {after.trainable:,} | {_delta(before.trainable, after.trainable, before.total)} |",
        f"| frozen | {before.frozen:,} | {after.frozen:,} | {_delta(before.frozen, after.frozen, before.total)} |",
        "",
    ]
    untouched = len(report.untouched)
    tensors = len(plan.tree.params)
    if changes:
        lines.append(
            f"**{len(changes)} of {tensors} parameter tensors change**; {untouched} untouched (no statement reached them)."
        )
        lines += ["", f"<details><summary>Changed parameters ({len(changes)})</summary>", ""]
        lines += ["| parameter | shape | numel | before → after | decided by |", "|---|---|---:|---|---|"]
        for change in changes[:MAX_MARKDOWN_ROWS]:
            decided = md_decision(change.decision)
            lines.append(
                f"| {md_code(change.name)} | {_shape(change.shape)} | {change.numel:,} "
                f"| {_state(change.before)} → {_state(change.after)} | {decided} |"
            )
        if len(changes) > MAX_MARKDOWN_ROWS:
            lines.append(f"| … and {len(changes) - MAX_MARKDOWN_ROWS} more | | | | |")
        lines += ["", "</details>"]
    else:
        lines.append(f"**No parameter changes state** ({tensors} tensors; {untouched} untouched).")
    pins = report.pin_changes
    if pins:
        lines += ["", f"<details><summary>Eval pins changed ({len(pins)})</summary>", ""]
        lines += ["| module | before → after | decided by |", "|---|---|---|"]
        for pin in pins[:MAX_MARKDOWN_ROWS]:
            lines.append(
                f"| {md_code(pin.name or '(root)')} | {_pin(pin.before)} → {_pin(pin.after)} | {md_decision(pin.decision)} |"
            )
        if len(pins) > MAX_MARKDOWN_ROWS:
            lines.append(f"| … and {len(pins) - MAX_MARKDOWN_ROWS} more | | |")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _pin(pinned: bool) -> str:
    return "pinned eval" if pinned else "follows train()"


def md_decision(decision: Decision | None) -> str:
    """The deciding statement as a Markdown cell."""
    if decision is None:
        return "–"
    return f"{md_code(decision.text)} ({html.escape(decision.where())})"


def md_code(text: str) -> str:
    """``text`` as a Markdown code span that survives a table cell."""
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") else text
    return f"{fence}{padded}{fence}".replace("|", "\\|")


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
    return "\n".join(_TreeView(report, color).lines()) + "\n"


class _TreeView:
    def __init__(self, report: Report, color: bool) -> None:
        self.tree: ModelTree = report.plan.tree
        self.color = color
        tree = self.tree
        wanted = report.plan.requires_grad
        self.flags = [wanted[p.name] for p in tree.params]
        pinned = report.plan.pinned
        self.pinned = [pinned[m.name] for m in tree.modules]
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

    def lines(self) -> list[str]:
        if not len(self.tree):
            return ["(empty model)"]
        rows = self._rows()
        width = max(len(part) for part, _, _ in rows)
        state_width = max(len(state) for _, state, _ in rows)
        out = []
        for part, state, counts in rows:
            styled = paint(state.ljust(state_width), *_STATE_STYLE.get(state, ("yellow",)), enabled=self.color)
            out.append(f"{part.ljust(width)}  {styled}  {counts}".rstrip())
        return out

    def _rows(self) -> list[tuple[str, str, str]]:
        """(tree drawing and label, state, counts) per line, depth first without recursion."""
        tree = self.tree
        rows = []
        # (prefix of the line, the nodes of one group, parent name, connector, is the root)
        stack: list[tuple[str, list[int], str, str, bool]] = [("", [0], "", "", True)]
        while stack:
            prefix, group, parent, connector, root = stack.pop()
            state, stats = self._state(group, summarise=not root)
            rows.append((prefix + connector + self._label(group, parent), state, self._counts(stats)))
            if len(group) > 1 or tree.is_param[group[0]] or state != "partial":
                continue
            node = group[0]
            child_prefix = prefix + ("" if root else ("    " if connector == "└── " else "│   "))
            groups = self._groups(node)
            for index in reversed(range(len(groups))):
                last = index == len(groups) - 1
                stack.append((child_prefix, groups[index], tree.names[node], "└── " if last else "├── ", False))
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

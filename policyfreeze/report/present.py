"""Presentation helpers every renderer shares: labels, numbers, names, tables, Markdown cells.

Written once so the text, table, tree, Markdown, JSON and HTML views of a plan
(and of a diff or an explanation) say the same thing the same way.
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from ..errors import printable

if TYPE_CHECKING:
    from ..engine.resolve import Decision, Plan

TRAINABLE, FROZEN = "trainable", "frozen"
PINNED, FOLLOWS = "pinned eval", "follows train()"
#: the width every text view fits in (names are shortened in the middle, never wrapped)
LINE_WIDTH = 100
#: rows of one Markdown table before "… and N more" (a pull request comment stays readable)
MAX_MARKDOWN_ROWS = 200
ELLIPSIS = "…"


def state(trainable: bool) -> str:
    """``trainable`` or ``frozen``."""
    return TRAINABLE if trainable else FROZEN


def tensors_state(trainable: int, total: int) -> str:
    """``trainable``, ``all 15 frozen``, ``3 of 15 trainable``: the state of ``total`` tensors."""
    if total == 0:
        return "no parameters"
    if trainable == total:
        return TRAINABLE if total == 1 else f"all {total} {TRAINABLE}"
    if trainable == 0:
        return FROZEN if total == 1 else f"all {total} {FROZEN}"
    return f"{trainable} of {total} {TRAINABLE}"


def pin_mode(pinned: bool) -> str:
    """``pinned eval`` or ``follows train()``."""
    return PINNED if pinned else FOLLOWS


def transition(before: str, after: str) -> str:
    """``before → after``, or just ``after`` when nothing changes."""
    return after if before == after else f"{before} → {after}"


def shape(dims: Sequence[int]) -> str:
    """``64×3×7×7``; ``scalar`` for a 0-d tensor."""
    return "×".join(str(size) for size in dims) if dims else "scalar"


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 tensor``, ``2 tensors``, ``3 statuses`` (with ``many``)."""
    return f"{count:,} {noun if count == 1 else many or noun + 's'}"


def share(part: int, total: int) -> str:
    """``4.4%``: ``part`` of ``total``, one decimal (``<0.1%``, ``>99.9%`` rather than a rounded 0 or 100)."""
    if not total:
        return "-"
    ratio = part / total
    if 0 < ratio < 0.001:
        return "<0.1%"
    if 0.999 < ratio < 1:
        return ">99.9%"
    return f"{ratio:.1%}"


def delta(old: int, new: int, total: int) -> str:
    """``-11,176,512 (-95.6%)``: a change of a count, with its share of ``total``."""
    if old == new:
        return "0"
    percent = f" ({(new - old) / total:+.1%})" if total else ""
    return f"{new - old:+,}{percent}"


def model_class(plan: Plan) -> str:
    """The model's class name (``ResNet``)."""
    modules = plan.tree.modules
    return modules[0].classes[0] if modules and modules[0].classes else "Module"


def stage_suffix(plan: Plan) -> str:
    """`` at epoch 2`` for a scheduled policy's plan, else empty."""
    return f" at {plan.policy.unit} {plan.at}" if plan.policy.unit else ""


def one_line(text: str) -> str:
    """A statement as one line: runs of white space (a selector over several lines) become one space."""
    return " ".join(text.split())


def decided_by(decision: Decision | None) -> str:
    """``resnet18-linear-probe.freeze:1 freeze all``; ``-`` when no statement decided."""
    return f"{decision.where()} {one_line(decision.text)}" if decision else "-"


def statement_cell(decision: Decision | None) -> str:
    """``line 1 freeze all`` (the file is named once, in the heading); ``as built`` when no statement decided."""
    return f"line {decision.line} {one_line(decision.text)}" if decision else "as built (no statement)"


def options_cell(decision: Decision | None) -> str:
    """The optimizer options a trainable parameter gets from its deciding statement."""
    if decision is None or decision.verb != "unfreeze" or decision.options is None:
        return "base group"
    return str(decision.options)


def shorten_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: the start and the end kept, ``…`` between."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    head = (width - 1 + 1) // 2
    tail = width - 1 - head
    return text[:head] + ELLIPSIS + (text[-tail:] if tail else "")


def names_list(names: Sequence[str], width: int) -> str:
    """``a, b, c`` in at most ``width`` characters: ``a, b, … (5 more)`` when they do not fit, empty when
    not even the first name does."""
    kept, used = 0, -2
    for name in names:  # the longest prefix that fits with its "… (N more)"
        if used + 2 + len(name) > width:
            break
        used += 2 + len(name)
        kept += 1
    if kept == len(names):
        return ", ".join(names)
    while kept and used + len(f", … ({len(names) - kept} more)") > width:
        kept -= 1
        used -= 2 + len(names[kept])
    return ", ".join(names[:kept]) + f", … ({len(names) - kept} more)" if kept else ""


def with_names(label: str, names: Sequence[str], width: int) -> str:
    """``20 × BatchNorm2d: bn1, layer1.0.bn1, … (18 more)`` in ``width``: a summary's label and the names it
    stands for, as many as fit."""
    listed = names_list(names, width - len(label) - 2) if names else ""
    return shorten_middle(f"{label}: {listed}" if listed else label, width)


def align(rows: Sequence[Sequence[str]], right: Collection[int] = (), indent: str = "") -> list[str]:
    """Rows of cells as lines: each column as wide as its widest cell, ``right`` columns right-aligned."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent
        + "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths))
        ).rstrip()
        for row in rows
    ]


#: ``fit_columns``' ``first`` columns keep this much: a statement cell's ``line N`` and a little of its text
FIRST_FLOOR = 16


def fit_columns(
    rows: Sequence[Sequence[str]],
    shrinkable: Collection[int],
    width: int,
    indent: int,
    names: Sequence[Sequence[str]] | None = None,
    label_room: int = 50,
    first: Collection[int] = (),
) -> list[list[str]]:
    """Rows whose ``shrinkable`` columns are shortened in the middle so every aligned line fits ``width``.

    The ``first`` columns give way before the others, down to ``FIRST_FLOOR``
    characters. Then the shrinkable columns share one cap, the widest that
    fits: the widest columns give way first, none below 8 characters.
    ``names`` (per row, for the first column) are listed after its label as
    far as the room left allows, at most ``label_room`` characters in all
    (``20 × Conv2d: conv1, …``).
    """
    if not rows:
        return []
    columns = len(rows[0])
    widths = [max(len(row[i]) for row in rows) for i in range(columns)]
    room = width - indent - 2 * (columns - 1)
    if first:
        rest = sum(w for i, w in enumerate(widths) if i not in first)
        first_cap = max(widths[i] for i in first)
        while first_cap > FIRST_FLOOR and rest + sum(min(widths[i], first_cap) for i in first) > room:
            first_cap -= 1
        rows = [[shorten_middle(cell, first_cap) if i in first else cell for i, cell in enumerate(row)] for row in rows]
        widths = [max(len(row[i]) for row in rows) for i in range(columns)]
    fixed = sum(w for i, w in enumerate(widths) if i not in shrinkable)
    cap = max((w for i, w in enumerate(widths) if i in shrinkable), default=0)
    while cap > 8 and fixed + sum(min(widths[i], cap) for i in shrinkable) > room:
        cap -= 1
    out = [[shorten_middle(cell, cap) if i in shrinkable else cell for i, cell in enumerate(row)] for row in rows]
    if names and any(names):
        others = sum(min(widths[i], cap) for i in shrinkable if i != 0)
        label_width = min(label_room, max(cap, room - fixed - others))
        for row, original, listed in zip(out, rows, names):
            row[0] = with_names(original[0], listed, max(label_width, min(len(original[0]), cap)))
        return fit_columns(out, shrinkable, width, indent)
    return out


# --- Markdown -----------------------------------------------------------------------


def md_code(text: str) -> str:
    """``text`` as a Markdown code span that survives a table cell (control characters escaped)."""
    text = printable(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") else text
    return f"{fence}{padded}{fence}".replace("|", "\\|")


def md_decision(decision: Decision | None) -> str:
    """The deciding statement as a Markdown cell."""
    if decision is None:
        return "–"
    return f"{md_code(one_line(decision.text))} ({html.escape(decision.where())})"


def md_table(header: Sequence[str], align_right: Collection[int], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table of at most ``MAX_MARKDOWN_ROWS`` rows, then ``… and N more``."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if i in align_right else "---" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows[:MAX_MARKDOWN_ROWS]]
    if len(rows) > MAX_MARKDOWN_ROWS:
        lines.append(f"| … and {len(rows) - MAX_MARKDOWN_ROWS} more |" + " |" * (len(header) - 1))
    return lines


def decision_dict(decision: Decision | None) -> dict | None:
    """The deciding statement for JSON."""
    if decision is None:
        return None
    return {
        "verb": decision.verb,
        "text": decision.text,
        "source": decision.source,
        "line": decision.line,
        "column": decision.column,
        "options": decision.options.model_dump(exclude_none=True) if decision.options else None,
    }

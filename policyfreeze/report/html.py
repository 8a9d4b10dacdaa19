"""The visual report: one self-contained HTML page (or a Jupyter cell's output) for a plan.

What trains at a glance (the report's sections), the stage timeline of a
schedule, and the module tree: each row a subtree (or a run of alike
siblings) with its trainable share as a bar, collapsible, the deciding
statements on hover and when expanded. Only the model opens by default, so a
50,000-tensor model's page is a few hundred rows until one expands them.

No script, no network, no font or image to fetch: plain HTML and one style
sheet scoped to ``.pf-report``, so it reads the same in a browser, a
notebook and a sanitised viewer. Trainable is blue, frozen vermillion (orange
in the dark) and hatched: Okabe–Ito colours, which colour-blind readers tell
apart, told apart without colour too, each with its word. A light and a dark
palette follow the page's colour scheme (and JupyterLab's and VS Code's dark themes), each
colour at least 3:1 against its background, text at least 4.5:1.
"""

from __future__ import annotations

import json
from collections import Counter
from html import escape
from typing import TYPE_CHECKING

from ..errors import printable
from . import present
from .render import TreeRow, TreeView
from .sections import sections

if TYPE_CHECKING:
    from ..engine.resolve import Plan
    from .timeline import Stage

#: rows an opened module lists before "… and N more"; and rows of the whole tree
MAX_CHILDREN = 200
MAX_ROWS = 5_000
#: rows of the "what trains" summary at the top
SUMMARY_ROWS = 24
SUMMARY_NAMES = 4

STYLE = """
.pf-report{--pf-t:#0072b2;--pf-f:#d55e00;--pf-fg:#1f2328;--pf-muted:#59636e;--pf-line:#d1d9e0;
 --pf-bg:#ffffff;--pf-alt:#f6f8fa;color:var(--pf-fg);background:var(--pf-bg);
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;padding:12px 16px;max-width:1100px}
@media (prefers-color-scheme:dark){.pf-report{--pf-t:#56b4e9;--pf-f:#e69f00;--pf-fg:#e6edf3;--pf-muted:#9198a1;
 --pf-line:#3d444d;--pf-bg:#0d1117;--pf-alt:#151b23}}
body[data-jp-theme-light="false"] .pf-report,body.vscode-dark .pf-report{--pf-t:#56b4e9;--pf-f:#e69f00;--pf-fg:#e6edf3;
 --pf-muted:#9198a1;--pf-line:#3d444d;--pf-bg:#0d1117;--pf-alt:#151b23}
.pf-report h2{font-size:1.15em;margin:0 0 4px}
.pf-report h3{font-size:1em;margin:16px 0 6px}
.pf-report .pf-muted{color:var(--pf-muted)}
.pf-report code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.pf-report .pf-bar{display:inline-flex;width:120px;height:10px;border:1px solid var(--pf-line);
 border-radius:2px;overflow:hidden;vertical-align:middle;background:var(--pf-bg)}
.pf-report .pf-bar.pf-wide{width:100%;height:14px}
.pf-report .pf-bar i{display:block;height:100%}
.pf-report .pf-bar .pf-t{background:var(--pf-t)}
.pf-report .pf-bar .pf-f,.pf-report .pf-swatch.pf-f{background:repeating-linear-gradient(135deg,var(--pf-f) 0 3px,
 transparent 3px 5px)}
.pf-report .pf-swatch{display:inline-block;width:12px;height:12px;border:1px solid var(--pf-line);vertical-align:-2px}
.pf-report .pf-swatch.pf-t{background:var(--pf-t)}
.pf-report .pf-state{font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.pf-report .pf-state.pf-trainable{color:var(--pf-t)}
.pf-report .pf-state.pf-frozen,.pf-report .pf-state.pf-partial{color:var(--pf-fg)}
.pf-report .pf-state.pf-frozen::before{content:"";display:inline-block;width:9px;height:9px;margin-right:4px;
 background:repeating-linear-gradient(135deg,var(--pf-f) 0 2px,transparent 2px 4px);border:1px solid var(--pf-f)}
.pf-report .pf-state.pf-trainable::before{content:"";display:inline-block;width:9px;height:9px;margin-right:4px;
 background:var(--pf-t);border:1px solid var(--pf-t)}
.pf-report table{border-collapse:collapse;margin:4px 0}
.pf-report th,.pf-report td{text-align:left;padding:3px 10px 3px 0;border-bottom:1px solid var(--pf-line);
 vertical-align:top}
.pf-report td{white-space:nowrap}
.pf-report td.pf-what{white-space:normal;max-width:44em}
.pf-report td.pf-n,.pf-report th.pf-n{text-align:right;font-variant-numeric:tabular-nums}
.pf-report tr.pf-now td{background:var(--pf-alt);font-weight:600}
.pf-report ul.pf-tree,.pf-report ul.pf-tree ul{list-style:none;margin:0;padding-left:18px}
.pf-report ul.pf-tree{padding-left:0}
.pf-report details>summary{cursor:pointer;list-style:none;padding:2px 0}
.pf-report details>summary::-webkit-details-marker{display:none}
.pf-report details>summary::before{content:"\\25B8";display:inline-block;width:1em;color:var(--pf-muted)}
.pf-report details[open]>summary::before{content:"\\25BE"}
.pf-report summary:hover,.pf-report summary:focus-visible{background:var(--pf-alt);outline:none}
.pf-report .pf-row{display:inline-grid;gap:8px;
 grid-template-columns:max(8em,calc(26em - var(--depth,0) * 18px)) 15em 122px 14em;
 align-items:center;width:calc(100% - 1.2em)}
.pf-report .pf-label{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.pf-report .pf-cls{color:var(--pf-muted)}
.pf-report .pf-count{font-variant-numeric:tabular-nums;text-align:right;white-space:nowrap}
.pf-report .pf-why{margin:2px 0 6px 1.2em;padding:4px 8px;border-left:3px solid var(--pf-line);color:var(--pf-muted)}
.pf-report .pf-why li{list-style:none}
.pf-report .pf-pin{font-size:.8em;border:1px solid var(--pf-line);border-radius:3px;padding:0 3px;margin-left:4px}
"""


def render_html(plan: Plan, *, applied: bool = False, fragment: bool = False) -> str:
    """The report of ``plan`` as a self-contained HTML page (``fragment``: the ``<div>`` alone, for Jupyter)."""
    body = _Page(plan, applied).render()
    if fragment:
        return body
    title = escape(f"policyfreeze: {printable(plan.policy.source.name)} on {present.model_class(plan)}")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light dark">\n'
        f"<title>{title}</title>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


class _Page:
    def __init__(self, plan: Plan, applied: bool) -> None:
        self.plan = plan
        self.applied = applied
        self.tree = plan.tree
        params = self.tree.params
        self.total = sum(p.numel for p in params)
        self.trainable = sum(p.numel for p, flag in zip(params, plan.param_flags) if flag)

    def render(self) -> str:
        parts = ['<div class="pf-report">', f"<style>{STYLE}</style>", *self._header(), *self._summary()]
        if self.plan.policy.unit:
            parts += self._timeline()
        parts += self._tree()
        parts.append("</div>")
        return "\n".join(parts)

    # --- the parts ----------------------------------------------------------------

    def _header(self) -> list[str]:
        plan = self.plan
        verb = "applied to" if self.applied else "planned for"
        tensors = sum(plan.param_flags)
        pinned = sum(plan.module_pins)
        facts = [
            f"<b>{self.trainable:,}</b> of {self.total:,} parameters trainable "
            f"({present.share(self.trainable, self.total)})",
            f"{tensors:,} of {present.plural(len(plan.param_flags), 'tensor')}",
        ]
        if pinned:
            facts.append(f"{present.plural(pinned, 'module')} pinned in eval mode")
        return [
            f"<h2><code>{escape(printable(plan.policy.source.name))}</code>{escape(present.stage_suffix(plan))} {verb} "
            f"<code>{escape(present.model_class(plan))}</code></h2>",
            f'<p class="pf-muted">{" · ".join(facts)}</p>',
            _bar(self.trainable, self.total, wide=True),
            '<p class="pf-muted"><span class="pf-swatch pf-t"></span> trainable &nbsp; '
            '<span class="pf-swatch pf-f"></span> frozen (hatched) &nbsp; '
            '<span class="pf-pin">eval</span> pinned in eval mode</p>',
        ]

    def _summary(self) -> list[str]:
        out = []
        for section in sections(self.plan, SUMMARY_ROWS):
            if not section.rows:
                out.append(f"<h3>{escape(section.title)}: nothing</h3>")
                continue
            pins = section.title == "eval pins"
            if pins:
                pinned = sum(self.plan.module_pins)
                heading = f"eval pins: {present.plural(pinned, 'module')} pinned in eval mode"
                if section.count > pinned:
                    heading += f"; {present.plural(section.count - pinned, 'other module')} reached by eval/train"
            else:
                heading = f"{section.title}: {present.plural(section.count, 'tensor')}, {section.numel:,} parameters"
                heading += f" ({present.share(section.numel, self.total)})"
            out += [f"<h3>{escape(heading)}</h3>", "<table>"]
            for row in section.rows:
                label = row.label
                if row.names:
                    label += (
                        ": " + ", ".join(row.names[:SUMMARY_NAMES]) + (" …" if len(row.names) > SUMMARY_NAMES else "")
                    )
                if pins:
                    change = present.transition(present.pin_mode(row.before), present.pin_mode(row.after))
                    numbers = f'<td class="pf-n">{present.plural(row.count, "module")}</td>'
                else:
                    change = present.transition(present.state(row.before), present.state(row.after))
                    numbers = f'<td class="pf-n">{row.numel:,}</td>'
                options = ""
                if section.title == "trainable":
                    options = f"<td>{escape(present.options_cell(row.decision))}</td>"
                out.append(
                    f'<tr><td class="pf-what"><code>{escape(label)}</code></td>{numbers}<td>{escape(change)}</td>{options}'
                    f"<td><code>{escape(present.statement_cell(row.decision))}</code></td></tr>"
                )
            out.append("</table>")
        return out

    def _timeline(self) -> list[str]:
        from .timeline import current_point, stage_summary, timeline

        plan = self.plan
        unit = plan.policy.unit or ""
        now = current_point(plan)
        stages: tuple[Stage, ...] = timeline(plan)
        out = [
            f"<h3>schedule: {present.plural(len(stages), 'stage')} by {escape(unit)}</h3>",
            '<table class="pf-timeline">',
            f'<tr><th>{escape(unit)}</th><th class="pf-n">trainable</th><th></th><th>what changes</th></tr>',
        ]
        for stage in stages:
            current = ' class="pf-now"' if stage.at == now else ""
            out.append(
                f'<tr{current} data-at="{stage.at}"><td>{stage.at}</td>'
                f'<td class="pf-n">{stage.trainable:,} ({present.share(stage.trainable, stage.total)})</td>'
                f"<td>{_bar(stage.trainable, stage.total)}</td>"
                f'<td class="pf-what">{escape(stage_summary(stage, first=stage is stages[0]))}</td></tr>'
            )
        out.append("</table>")
        return out

    def _tree(self) -> list[str]:
        view = TreeView(self.plan)
        rows = view.rows(open_by_name=True)
        out = ["<h3>model tree</h3>", '<ul class="pf-tree">']
        depth = 0  # the <ul> levels open below the root list
        shown: list[int] = [0]  # per open level: rows listed so far
        hidden: list[int] = [0]  # per open level: rows left out
        total = 0
        skip_below: int | None = None  # the depth of a row left out: its descendants go with it
        for row in rows:
            if skip_below is not None:
                if row.depth > skip_below:
                    continue
                skip_below = None
            while depth > row.depth:
                out += self._close(hidden.pop())
                shown.pop()
                depth -= 1
            if shown[-1] >= MAX_CHILDREN or total >= MAX_ROWS:
                hidden[-1] += 1
                skip_below = row.depth
                continue
            shown[-1] += 1
            total += 1
            out.append(self._row(view, row))
            if row.opens:
                out.append("<ul>")
                depth += 1
                shown.append(0)
                hidden.append(0)
            else:
                out.append("</details></li>")
        while depth > 0:
            out += self._close(hidden.pop())
            depth -= 1
        out.append("</ul>")
        return out

    @staticmethod
    def _close(hidden: int) -> list[str]:
        more = []
        if hidden:
            more = [
                f'<li class="pf-muted">… and {present.plural(hidden, "more row")} '
                "(the whole list: <code>policyfreeze plan --format table</code>)</li>"
            ]
        return [*more, "</ul></details></li>"]

    def _row(self, view: TreeView, row: TreeRow) -> str:
        tree, plan = self.tree, self.plan
        first = row.group[0]
        names = [tree.names[n] for n in row.group]
        stats = row.stats
        kind = row.state.split(",")[0]
        state_class = {"trainable": "pf-trainable", "frozen": "pf-frozen"}.get(kind, "pf-partial")
        why = self._why(row)
        pin = ""
        if not tree.is_param[first] and plan.module_pins[tree.ids[first]]:
            pin = '<span class="pf-pin">eval</span>'
        label = escape(row.label.replace(" [eval]", ""))
        counts = f"{stats.numel:,}" if stats.tensors else ""
        if kind == "partial":
            counts = f"{stats.trainable_numel:,} of {stats.numel:,}"
        share = present.share(stats.numel, self.total) if stats.tensors else ""
        is_open = " open" if row.depth == 0 else ""
        # Every member's name at the top level (what a reader or a test checks first), the first one below.
        listed = f"data-names='{escape(json.dumps(names), quote=True)}'" if row.depth <= 1 else ""
        return (
            f'<li style="--depth:{row.depth}" data-depth="{row.depth}" data-state="{escape(kind)}" '
            f'data-name="{escape(names[0], quote=True)}" '
            f"{listed}>"
            f'<details{is_open}><summary title="{escape(why[0], quote=True)}">'
            f'<span class="pf-row"><span class="pf-label"><code>{label}</code>{pin}</span>'
            f'<span class="pf-state {state_class}">{escape(row.state)}</span>'
            f"{_bar(stats.trainable_numel, stats.numel) if stats.tensors else '<span></span>'}"
            f'<span class="pf-count">{counts} <span class="pf-muted">{share}</span></span></span></summary>'
            f'<ul class="pf-why">{"".join(f"<li>{escape(line)}</li>" for line in why[1:])}</ul>'
        )

    def _why(self, row: TreeRow) -> list[str]:
        """The hover text, then the expanded lines: which statements decided the row's tensors and pin."""
        tree, plan = self.tree, self.plan
        deciders: Counter[int] = Counter()
        seen: set[int] = set()
        for start in row.group:
            for node in range(start, tree.ends[start]):
                if tree.is_param[node] and tree.ids[node] not in seen:
                    seen.add(tree.ids[node])
                    deciders[plan.param_deciders[tree.ids[node]]] += 1
        lines = []
        for decider, count in sorted(deciders.items(), key=lambda item: (-item[1], item[0])):
            decision = plan.statement_decisions[decider] if decider >= 0 else None
            lines.append(f"{present.statement_cell(decision)} ({present.plural(count, 'tensor')})")
        first = row.group[0]
        if not tree.is_param[first]:
            decider = plan.module_deciders[tree.ids[first]]
            if decider >= 0:
                decision = plan.statement_decisions[decider]
                mode = present.pin_mode(plan.module_pins[tree.ids[first]])
                lines.append(f"mode {mode}: {present.statement_cell(decision)}")
        if not lines:
            lines = ["no parameters"]
        return ["decided by: " + "; ".join(lines), *lines]


def _bar(part: int, total: int, *, wide: bool = False) -> str:
    """A bar split trainable (solid) / frozen (hatched), with the share as its accessible name."""
    trained = 100 * part / total if total else 0
    return (
        f'<span class="pf-bar{" pf-wide" if wide else ""}" role="img" '
        f'aria-label="{present.share(part, total)} trainable">'
        f'<i class="pf-t" style="width:{trained:.2f}%"></i><i class="pf-f" style="width:{100 - trained:.2f}%"></i></span>'
    )

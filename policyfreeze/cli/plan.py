"""``policyfreeze plan``: what a policy does to a model — what trains, what is frozen, what changes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PolicyUsageError
from . import common

if TYPE_CHECKING:
    from ..engine.resolve import Plan
    from ..errors import PolicyError
    from ..report.report import Report

FORMATS = ("text", "table", "json", "markdown", "tree", "html")


def register(commands) -> None:
    plan = common.command(
        commands,
        "plan",
        help="show what a policy does on a model: what trains, what is frozen, what changes",
        description=(
            "Resolve POLICY on a freshly built model (on the meta device) and report it: what trains\n"
            "(with its optimizer options), what is frozen, the eval pins, a scheduled policy's stages,\n"
            "and the counts before and after. Nothing is applied. Exit 1 when the policy leaves no\n"
            "parameter trainable (PF205)."
        ),
        examples=[
            "policyfreeze plan policies/resnet18-linear-probe.freeze --model torchvision:resnet18",
            "policyfreeze plan policies/bitfit.freeze --model torchvision:resnet50 --format tree",
            "policyfreeze plan policies/resnet-gradual-unfreezing.freeze --model torchvision:resnet18 "
            "--format html -o plan.html",
        ],
    )
    plan.add_argument("policy", metavar="POLICY", help=f"a policy file ('{common.STDIN}': stdin)")
    plan.add_argument("--model", required=True, metavar="SPEC", help=common.MODEL_HELP)
    common.add_no_cache(plan)
    plan.add_argument(
        "--format",
        choices=FORMATS,
        # None, not "text": --full must tell "--format text" given from no --format at all.
        default=None,
        help="text (default: what trains, at a glance), table (every changed or decided tensor), json, markdown (for a "
        "pull request), tree (the module tree with each subtree's state) or html (a page to open in a browser)",
    )
    plan.add_argument("--full", action="store_true", help="the per-tensor table: the same as --format table")
    plan.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    common.add_stage(plan)
    common.add_stdin_filename(plan)
    plan.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..report.report import Report

    format = output_format(args)
    policy = common.load_policy(args.policy, args.stdin_filename)
    plan = common.plan_of(policy, common.model_tree(args.model, cache=not args.no_cache), args)
    problem = nothing_trainable(plan)
    for finding in plan.warnings:
        if finding is not problem:
            print(f"warning: {finding}", file=sys.stderr)
    to_file = args.output not in (None, common.STDIN)
    text = render(Report(plan, applied=False), format, color=not to_file and common.use_color(sys.stdout))
    if to_file:
        common.write(Path(args.output), text.encode("utf-8"))
    else:
        sys.stdout.write(text)
    if problem is not None:
        print(problem, file=sys.stderr)
        return common.EXIT_FINDINGS
    return common.EXIT_OK


def output_format(args: argparse.Namespace) -> str:
    """The format asked for: ``--full`` is ``--format table``, and refuses any other ``--format``."""
    if not args.full:
        return args.format or "text"
    if args.format not in (None, "table"):
        raise PolicyUsageError(
            f"plan: --full is the same as --format table; it cannot be given with --format {args.format} "
            "(see 'policyfreeze plan --help')"
        )
    return "table"


def render(report: Report, format: str, *, color: bool = False) -> str:
    """The report in ``format`` (one of FORMATS), ending with a newline."""
    if format == "json":
        return report.to_json() + "\n"
    if format == "markdown":
        from ..report.render import format_markdown

        return format_markdown(report)
    if format == "tree":
        from ..report.render import format_tree

        return format_tree(report, color=color)
    if format == "html":
        from ..report.html import render_html

        return render_html(report.plan, applied=report.applied)
    if format == "table":
        return report.table() + "\n"
    return str(report) + "\n"


def nothing_trainable(plan: Plan) -> PolicyError | None:
    """PF205 when the plan leaves no parameter trainable: an optimizer would get an empty parameter list.

    The resolver's own PF205 warning when it gives one; else worked out here from
    the plan's flags, anchored (as lint anchors it) at the last ``freeze`` that
    decided a parameter.
    """
    for finding in plan.warnings:
        if finding.code == "PF205":
            return finding
    tree = plan.tree
    if not tree.params or any(plan.param_flags):
        return None
    from ..errors import PolicyResolveError
    from ..language.policy import quote_name

    statements = plan.policy.stage(plan.at)
    freezers = [statements[d] for d in set(plan.param_deciders) if d >= 0 and statements[d].verb == "freeze"]
    anchor = max(freezers, key=lambda s: s.span.offset) if freezers else (statements[-1] if statements else None)
    head = next(
        (
            tree.names[child]
            for child in reversed(tree.children_of(0))
            if any(tree.is_param[n] for n in range(child, tree.ends[child]))
        ),
        None,
    )
    message = "the policy leaves no parameter trainable"
    fix = "an optimizer needs at least one trainable parameter: unfreeze the part to train" + (
        f" (for example 'unfreeze {quote_name(head)}')" if head else ""
    )
    if anchor is None:
        return PolicyResolveError(message, help=fix, code="PF205")
    source = plan.policy.source
    return source.error(PolicyResolveError, message, anchor.span.offset, anchor.span.end_offset, help=fix, code="PF205")

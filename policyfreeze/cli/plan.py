"""``policyfreeze plan``: the diff report of a policy on a model."""

from __future__ import annotations

import argparse
import sys

from . import common


def register(commands) -> None:
    plan = common.command(
        commands,
        "plan",
        help="show what a policy changes on a model (the diff report)",
        description="Resolve POLICY on a freshly built model (on the meta device) and print the diff report.",
        examples=[
            "policyfreeze plan policies/resnet18-linear-probe.freeze --model torchvision:resnet18",
            "policyfreeze plan policies/bitfit.freeze --model torchvision:resnet50 --format tree",
        ],
    )
    plan.add_argument("policy", metavar="POLICY", help=f"a policy file ('{common.STDIN}': stdin)")
    plan.add_argument("--model", required=True, metavar="SPEC", help=common.MODEL_HELP)
    common.add_no_cache(plan)
    plan.add_argument(
        "--format",
        choices=("text", "json", "markdown", "tree"),
        default="text",
        help="text (default), json, markdown (for a pull request) or tree (the module tree with each subtree's state)",
    )
    common.add_stage(plan)
    common.add_stdin_filename(plan)
    plan.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..report.render import format_markdown, format_tree
    from ..report.report import Report

    plan = common.resolve(
        common.load_policy(args.policy, args.stdin_filename),
        common.model_tree(args.model, cache=not args.no_cache),
        args,
    )
    report = Report(plan, applied=False)
    if args.format == "json":
        print(report.to_json())
    elif args.format == "markdown":
        sys.stdout.write(format_markdown(report))
    elif args.format == "tree":
        sys.stdout.write(format_tree(report, color=common.use_color(sys.stdout)))
    else:
        print(report)
    return common.EXIT_OK

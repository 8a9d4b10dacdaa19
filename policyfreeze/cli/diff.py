"""``policyfreeze diff``: what differs between two policies on one model."""

from __future__ import annotations

import argparse
import sys

from ..errors import PolicyUsageError
from . import common


def register(commands) -> None:
    diff = common.command(
        commands,
        "diff",
        help="the parameters whose state differs between two policies",
        description=(
            "Resolve OLD and NEW on the same model and list what differs: requires_grad, optimizer\n"
            f"options and eval pins, with counts. One of them may be '{common.STDIN}' (stdin), e.g. a\n"
            "revision from git."
        ),
        examples=[
            "policyfreeze diff policies/a.freeze policies/b.freeze --model torchvision:resnet18",
            "git show main:policies/probe.freeze | policyfreeze diff - policies/probe.freeze --model torchvision:resnet18",
        ],
    )
    diff.add_argument("old", metavar="OLD", help="the policy before")
    diff.add_argument("new", metavar="NEW", help="the policy after")
    diff.add_argument("--model", required=True, metavar="SPEC", help=common.MODEL_HELP)
    common.add_no_cache(diff)
    diff.add_argument(
        "--format", choices=("text", "json", "markdown"), default="text", help="output format (default: text)"
    )
    common.add_stage(diff)
    common.add_stdin_filename(diff)
    diff.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..report.diff import diff_plans, format_markdown, format_text, to_json

    if args.old == common.STDIN and args.new == common.STDIN:
        raise PolicyUsageError(f"only one of OLD and NEW can be '{common.STDIN}' (stdin)")
    old = common.load_policy(args.old, args.stdin_filename)
    new = common.load_policy(args.new, args.stdin_filename)
    model = common.model_tree(args.model, cache=not args.no_cache)
    difference = diff_plans(common.resolve(old, model, args), common.resolve(new, model, args))
    if args.format == "json":
        print(to_json(difference))
    elif args.format == "markdown":
        sys.stdout.write(format_markdown(difference))
    else:
        print(format_text(difference))
    return common.EXIT_OK

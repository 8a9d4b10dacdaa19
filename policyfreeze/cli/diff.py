"""``policyfreeze diff``: what differs between two policies on one model, at every stage of a schedule."""

from __future__ import annotations

import argparse
import sys

from ..errors import PolicyUsageError
from . import common


def register(commands) -> None:
    diff = common.command(
        commands,
        "diff",
        help="what differs between two policies on a model, at every stage",
        description=(
            "Resolve OLD and NEW on the same model and list what differs: requires_grad, optimizer\n"
            "options and eval pins, with counts. When either is scheduled, every stage is compared\n"
            "(0 and each 'at' N of either) and the stages that differ are reported; --epoch/--step/\n"
            f"--phase compares one. One of OLD and NEW may be '{common.STDIN}' (stdin), e.g. a revision\n"
            "from git. With --exit-code, exit 1 when they differ (as 'git diff --exit-code')."
        ),
        examples=[
            "policyfreeze diff policies/resnet18-linear-probe.freeze policies/bitfit.freeze --model torchvision:resnet18",
            "git show main:policies/bitfit.freeze | policyfreeze diff - policies/bitfit.freeze --model torchvision:resnet18",
            "policyfreeze diff policies/resnet-gradual-unfreezing.freeze policies/resnet18-linear-probe.freeze "
            "--model torchvision:resnet18 --exit-code",
        ],
    )
    diff.add_argument("old", metavar="OLD", help="the policy before")
    diff.add_argument("new", metavar="NEW", help="the policy after")
    diff.add_argument("--model", required=True, metavar="SPEC", help=common.MODEL_HELP)
    common.add_no_cache(diff)
    diff.add_argument(
        "--format", choices=("text", "json", "markdown"), default="text", help="output format (default: text)"
    )
    diff.add_argument("--exit-code", action="store_true", help="exit 1 when the policies differ, 0 when they do not")
    common.add_stage(diff)
    common.add_stdin_filename(diff)
    diff.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..report.diff import diff_schedules, format_markdown, format_text, to_json

    if args.old == common.STDIN and args.new == common.STDIN:
        raise PolicyUsageError(f"only one of OLD and NEW can be '{common.STDIN}' (stdin)")
    old = common.load_policy(args.old, args.stdin_filename)
    new = common.load_policy(args.new, args.stdin_filename)
    model = common.model_tree(args.model, cache=not args.no_cache)
    one_stage = any(at is not None for at in (args.epoch, args.step, args.phase))
    difference = diff_schedules(
        common.resolve(old, model, args), common.resolve(new, model, args), every_stage=not one_stage
    )
    if args.format == "json":
        print(to_json(difference))
    elif args.format == "markdown":
        sys.stdout.write(format_markdown(difference))
    else:
        print(format_text(difference))
    return common.EXIT_FINDINGS if args.exit_code and difference.differs else common.EXIT_OK

"""``policyfreeze explain``: why a parameter or module ends up as it does."""

from __future__ import annotations

import argparse

from . import common


def register(commands) -> None:
    explain = common.command(
        commands,
        "explain",
        help="why a parameter or module ends up trainable or frozen",
        description=(
            "For each NAME (a parameter, or a module: then all its parameters, summarised): its final\n"
            "state and every statement that reached it, in order, with the deciding one marked."
        ),
        examples=["policyfreeze explain policies/headline.freeze --model torchvision:resnet18 fc.weight layer1"],
    )
    explain.add_argument("policy", metavar="POLICY", help=f"a policy file ('{common.STDIN}': stdin)")
    explain.add_argument("names", nargs="+", metavar="NAME", help="parameter or module names, as the model names them")
    explain.add_argument("--model", required=True, metavar="SPEC", help=common.MODEL_HELP)
    common.add_no_cache(explain)
    common.add_stage(explain)
    common.add_stdin_filename(explain)
    explain.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..report.explain import explain, format_explanations

    policy = common.load_policy(args.policy, args.stdin_filename)
    plan = common.resolve(policy, common.model_tree(args.model, cache=not args.no_cache), args)
    print(format_explanations(explain(plan, args.names), policy.source.name))
    return common.EXIT_OK

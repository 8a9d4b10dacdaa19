"""``policyfreeze explain``: why a parameter or module ends up as it does (at each stage of a schedule)."""

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
            "state and every statement that reached it, in order, with the deciding one marked. On a\n"
            "scheduled policy, also the stages at which its state changes; --epoch/--step/--phase picks\n"
            "the stage explained (default: 0)."
        ),
        examples=[
            "policyfreeze explain policies/headline.freeze --model torchvision:resnet18 fc.weight layer1",
            "policyfreeze explain policies/resnet-gradual-unfreezing.freeze --model torchvision:resnet18 layer4 --epoch 1",
        ],
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
    from ..report.timeline import stage_plans, stage_points

    policy = common.load_policy(args.policy, args.stdin_filename)
    plan = common.resolve(policy, common.model_tree(args.model, cache=not args.no_cache), args)
    explanations = explain(plan, args.names)
    stages = list(zip(stage_points(plan), stage_plans(plan))) if policy.unit else None
    print(format_explanations(explanations, policy.source.name, stages))
    return common.EXIT_OK

"""``policyfreeze cost``: FLOPs and memory of a training step with and without a policy."""

from __future__ import annotations

import argparse

from . import common


def register(commands) -> None:
    cost = common.command(
        commands,
        "cost",
        help="FLOPs and memory of one training step with and without a policy",
        description=(
            "Count one training step's forward+backward FLOPs on the meta device (no memory, no compute),\n"
            "and the gradient and AdamW state memory, with and without POLICY."
        ),
        examples=[
            "policyfreeze cost policies/resnet18-linear-probe.freeze --model torchvision:resnet18 --input-shape 8,3,224,224"
        ],
    )
    cost.add_argument("policy", metavar="POLICY", help=f"a policy file ('{common.STDIN}': stdin)")
    cost.add_argument("--model", required=True, metavar="SPEC", help=common.MODEL_HELP)
    cost.add_argument(
        "--input-shape", required=True, metavar="N,C,H,W", help="the model's input, batch first: 8,3,224,224"
    )
    cost.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    common.add_stage(cost)
    common.add_stdin_filename(cost)
    cost.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..report.cost import measure, parse_shape

    shape = parse_shape(args.input_shape)
    policy = common.load_policy(args.policy, args.stdin_filename)
    plan = common.resolve(policy, common.build_model(args.model), args)
    cost = measure(plan, shape)
    print(cost.to_json() if args.format == "json" else cost)
    return common.EXIT_OK

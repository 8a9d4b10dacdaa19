"""``policyfreeze cost``: FLOPs and memory of a training step with and without a policy."""

from __future__ import annotations

import argparse
import sys

from . import common


def register(commands) -> None:
    cost = common.command(
        commands,
        "cost",
        help="FLOPs and memory of one training step with and without a policy",
        description=(
            "Run one training step of the model on the meta device (no memory, no compute; on the CPU when its\n"
            "forward needs tensor values) and report its FLOPs, the activations saved for backward, the\n"
            "gradients, AdamW state and peak memory, and the backward spent in frozen modules, with and\n"
            "without POLICY. A scheduled policy is costed at every stage unless --epoch/--step/--phase picks one.\n"
            "\n"
            "An input SPEC is [NAME:][DTYPE][SIZES][<HIGH]: NAME is the forward's keyword argument (none: the\n"
            "next positional one), DTYPE a torch dtype (default: the model's floating-point dtype, int64 with a\n"
            "bound), HIGH bounds integer values: 0 <= v < HIGH."
        ),
        examples=[
            "policyfreeze cost policies/resnet18-linear-probe.freeze --model torchvision:resnet18 --input-shape 8,3,224,224",
            "policyfreeze cost policies/bitfit.freeze --model hf:gpt2 "
            "--input 'input_ids:int64[8,128]<50257' --input 'attention_mask:int64[8,128]<2'",
        ],
    )
    cost.add_argument("policy", metavar="POLICY", help=f"a policy file ('{common.STDIN}': stdin)")
    cost.add_argument("--model", required=True, metavar="SPEC", help=common.MODEL_HELP)
    given = cost.add_mutually_exclusive_group(required=True)
    given.add_argument(
        "--input",
        action="append",
        dest="inputs",
        metavar="SPEC",
        help="one input of the forward, repeatable: input_ids:int64[8,128]<50257",
    )
    given.add_argument("--input-shape", metavar="N,C,H,W", help="one floating-point input, batch first: 8,3,224,224")
    cost.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    common.add_stage(cost)
    common.add_stdin_filename(cost)
    cost.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..report.cost import InputSpec, measure, parse_shape

    shape = parse_shape(args.input_shape) if args.input_shape is not None else None
    inputs = [InputSpec.parse(text) for text in args.inputs] if args.inputs else None
    policy = common.load_policy(args.policy, args.stdin_filename)
    plan = common.resolve(policy, common.build_model(args.model), args)
    every_stage = args.epoch is None and args.step is None and args.phase is None
    cost = measure(plan, shape, inputs=inputs, every_stage=every_stage)
    if cost.meta_error:
        print(
            f"policyfreeze: note: the model's step cannot run on the meta device ({cost.meta_error}); "
            "ran it on the CPU instead",
            file=sys.stderr,
        )
    print(cost.to_json() if args.format == "json" else cost)
    return common.EXIT_OK

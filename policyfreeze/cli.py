"""The ``policyfreeze`` command. Only this module prints or exits.

Exit codes, as ruff: 0 clean, 1 findings or a policy error, 2 usage, I/O or
internal error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .errors import PolicyError, PolicyUsageError

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise PolicyUsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="policyfreeze",
        description="Version-controlled freeze policies for PyTorch fine-tuning.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"policyfreeze {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    plan = commands.add_parser(
        "plan",
        help="show what a policy changes on a model (the diff report)",
        description="Resolve POLICY on a freshly built model and print the diff report.",
        epilog="example:\n  policyfreeze plan policies/resnet18-linear-probe.freeze --model torchvision:resnet18",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plan.add_argument("policy", metavar="POLICY", help="a policy file")
    plan.add_argument("--model", required=True, metavar="SPEC", help="torchvision:NAME, pkg.module:factory or file.py:factory")
    plan.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    plan.set_defaults(run=run_plan)

    cost = commands.add_parser(
        "cost",
        help="FLOPs and memory of one training step with and without a policy",
        description="Count one training step's forward+backward FLOPs on the meta device (no memory, no compute), "
        "and the gradient and AdamW state memory, with and without POLICY.",
        epilog="example:\n  policyfreeze cost policies/resnet18-linear-probe.freeze --model torchvision:resnet18 "
        "--input-shape 8,3,224,224",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cost.add_argument("policy", metavar="POLICY", help="a policy file")
    cost.add_argument("--model", required=True, metavar="SPEC", help="torchvision:NAME, pkg.module:factory or file.py:factory")
    cost.add_argument("--input-shape", required=True, metavar="N,C,H,W", help="the model's input, batch first: 8,3,224,224")
    cost.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    cost.set_defaults(run=run_cost)
    return parser


def run_plan(args: argparse.Namespace) -> int:
    from .models import build_model
    from .parser import load
    from .report import Report
    from .resolver import resolve

    policy = load(args.policy)
    model = build_model(args.model)
    plan = resolve(model, policy)
    for finding in plan.warnings:
        print(f"warning: {finding}", file=sys.stderr)
    report = Report(plan, applied=False)
    print(report.to_json() if args.format == "json" else report)
    return EXIT_OK


def run_cost(args: argparse.Namespace) -> int:
    from .cost import measure, parse_shape
    from .models import build_model
    from .parser import load
    from .resolver import resolve

    shape = parse_shape(args.input_shape)
    policy = load(args.policy)
    plan = resolve(build_model(args.model, device="meta"), policy)
    for finding in plan.warnings:
        print(f"warning: {finding}", file=sys.stderr)
    cost = measure(plan, shape)
    print(cost.to_json() if args.format == "json" else cost)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except PolicyUsageError as exc:
        print(f"policyfreeze: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FINDINGS
    except KeyboardInterrupt:
        return EXIT_USAGE
    except Exception as exc:  # a bug in policyfreeze: say so, without a traceback
        print(f"policyfreeze: internal error: {type(exc).__name__}: {exc} (please report this)", file=sys.stderr)
        return EXIT_USAGE

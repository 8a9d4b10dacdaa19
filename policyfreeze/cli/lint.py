"""``policyfreeze lint``: findings for policy files, in text, json, github or sarif."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..errors import PolicyError, PolicyUsageError

if TYPE_CHECKING:
    from ..model.tree import ModelTree

from . import common


def register(commands) -> None:
    lint = common.command(
        commands,
        "lint",
        help="check policy files: syntax and validation, and with a model every finding PF1xx-PF2xx",
        description=(
            "Report every finding in every FILE (a directory means every *.freeze file below it).\n"
            "Without a model: syntax and validation findings (PF1xx). With --model or --manifest:\n"
            "also the model-aware findings (PF2xx). '# noqa: CODE' at the end of a line silences\n"
            "that code there. Exit 0 clean, 1 when a finding is an error (or a warning, with\n"
            "--strict), 2 on a usage or I/O error."
        ),
        examples=[
            "policyfreeze lint policies/",
            "policyfreeze lint policies/ --model torchvision:resnet18 --format sarif > lint.sarif",
            "policyfreeze lint policies/ --manifest resnet18.manifest.json --strict --ignore PF203",
            "git show HEAD:policies/probe.freeze | policyfreeze lint - --stdin-filename policies/probe.freeze",
        ],
    )
    lint.add_argument(
        "files", nargs="+", metavar="FILE", help=f"policy files or directories; '{common.STDIN}' reads stdin"
    )
    model = lint.add_mutually_exclusive_group()
    model.add_argument("--model", metavar="SPEC", help=common.MODEL_HELP + " (built on the meta device)")
    model.add_argument(
        "--manifest", metavar="FILE", help="a model manifest written by 'policyfreeze manifest' (no torch needed)"
    )
    lint.add_argument(
        "--format", choices=("text", "json", "github", "sarif"), default="text", help="output format (default: text)"
    )
    lint.add_argument("--strict", action="store_true", help="exit 1 on warnings too, not only on errors")
    lint.add_argument(
        "--select",
        type=_codes,
        action="extend",
        default=[],
        metavar="CODES",
        help="report only these codes or prefixes, comma-separated (PF201,PF204 or PF2)",
    )
    lint.add_argument(
        "--ignore",
        type=_codes,
        action="extend",
        default=[],
        metavar="CODES",
        help="do not report these codes or prefixes (PF1xx cannot be ignored)",
    )
    common.add_stdin_filename(lint)
    lint.set_defaults(run=run)


def _codes(text: str) -> list[str]:
    from ..lint.codes import RULES

    codes = [code.strip().upper() for code in text.split(",") if code.strip()]
    for code in codes:
        if not code.startswith("PF") or not any(known.startswith(code) for known in RULES):
            raise argparse.ArgumentTypeError(
                f"unknown code '{code}': codes are {min(RULES)} … {max(RULES)}; a prefix such as PF2 names a group"
            )
    return codes


def run(args: argparse.Namespace) -> int:
    from ..lint import filter_codes, lint, output
    from ..lint.linter import Finding, findings_from_error

    unignorable = [code for code in args.ignore if "PF1".startswith(code) or code.startswith("PF1")]
    if unignorable:
        raise PolicyUsageError(
            f"--ignore {unignorable[0]}: syntax and validation findings (PF1xx) cannot be ignored: "
            "a policy with one does not load"
        )
    tree = _lint_tree(args)
    findings: list[Finding] = []
    names: list[str] = []
    unreadable = 0
    for path in common.expand(args.files):
        try:
            source, _ = common.read(path, args.stdin_filename)
        except PolicyUsageError as exc:
            common.print_error(exc)
            unreadable += 1
            continue
        except PolicyError as exc:  # not UTF-8, too long: a PF101 finding
            names.append(exc.source or path)
            findings += findings_from_error(exc)
            continue
        names.append(source.name)
        findings += lint(source, tree)
    findings = sorted(filter_codes(findings, args.select, args.ignore), key=Finding.sort_key)

    if args.format == "json":
        print(output.format_json(findings, files=names))
    elif args.format == "sarif":
        print(output.format_sarif(findings, root=common.repository_root()))
    elif args.format == "github":
        if findings:
            print(output.format_github(findings))
    else:
        print(output.format_text(findings, files=len(names), unreadable=unreadable, color=common.use_color(sys.stdout)))
    if unreadable:
        return common.EXIT_USAGE
    failing = {"error", "warning"} if args.strict else {"error"}
    return common.EXIT_FINDINGS if any(f.severity in failing for f in findings) else common.EXIT_OK


def _lint_tree(args: argparse.Namespace) -> ModelTree | None:
    if args.manifest:
        from ..model.manifest import load, to_tree

        return to_tree(load(args.manifest))
    if args.model:
        from ..model.tree import ModelTree

        return ModelTree.from_module(common.build_model(args.model))
    return None

"""``policyfreeze lint``: findings for policy files, in text, json, github or sarif."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..errors import PolicyError, PolicyUsageError

if TYPE_CHECKING:
    from ..language.source import Source
    from ..lint.linter import Finding
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
            "that code there. A scheduled policy is checked at every stage; with --epoch/--step/--phase\n"
            "N, at the stage in force at N only. Exit 0 clean, 1 when a finding is an error (or a\n"
            "warning, with --strict), 2 on a usage or I/O error."
        ),
        examples=[
            "policyfreeze lint policies/",
            "policyfreeze lint policies/resnet*.freeze --model torchvision:resnet18 --format sarif > lint.sarif",
            "policyfreeze lint policies/resnet*.freeze --manifest resnet18.manifest.json --strict --ignore PF203",
            "policyfreeze lint policies/resnet-gradual-unfreezing.freeze --model torchvision:resnet18 --epoch 2",
            "git show HEAD:policies/bitfit.freeze | policyfreeze lint - --stdin-filename policies/bitfit.freeze",
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
    common.add_no_cache(lint)
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
        help="do not report these codes or prefixes (syntax and validation errors cannot be ignored)",
    )
    common.add_stage(lint)
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
    from ..lint import RULES, filter_codes, lint, output
    from ..lint.linter import Finding, always_reported, findings_from_error

    unignorable = [
        prefix for prefix in args.ignore if any(always_reported(code) and code.startswith(prefix) for code in RULES)
    ]
    if unignorable:
        raise PolicyUsageError(
            f"--ignore {unignorable[0]}: syntax and validation errors (PF101–PF106) cannot be ignored: "
            "a policy with one does not load"
        )
    tree = _lint_tree(args)
    findings: list[Finding] = []
    names: list[str] = []
    omitted: dict[str, int] = {}  # per file: findings past the cap, counted but not shown
    severities: set[str] = set()
    unreadable = 0
    for path in common.expand(args.files):
        try:
            source, _ = common.read(path, args.stdin_filename)
        except PolicyUsageError as exc:
            common.print_error(exc)
            unreadable += 1
            continue
        except PolicyError as exc:  # not UTF-8, too long: a PF101 finding
            name, found = exc.source or path, findings_from_error(exc)
        else:
            name, found = source.name, list(lint(source, tree))
            stage = common.stage(args)
            if tree is not None and stage is not None:
                found = in_stage(found, source, *stage)
        names.append(name)
        found = sorted(filter_codes(found, args.select, args.ignore), key=Finding.sort_key)
        severities.update(f.severity for f in found)
        findings += found[: output.MAX_FINDINGS_PER_FILE]
        if len(found) > output.MAX_FINDINGS_PER_FILE:
            omitted[name] = len(found) - output.MAX_FINDINGS_PER_FILE
    findings.sort(key=Finding.sort_key)

    if args.format == "json":
        print(output.format_json(findings, files=names, omitted=omitted))
    elif args.format == "sarif":
        print(output.format_sarif(findings, root=common.repository_root(), omitted=omitted))
    elif args.format == "github":
        if findings:
            print(output.format_github(findings, omitted=omitted))
    else:
        color = common.use_color(sys.stdout)
        print(output.format_text(findings, files=len(names), unreadable=unreadable, color=color, omitted=omitted))
    if unreadable:
        return common.EXIT_USAGE
    failing = {"error", "warning"} if args.strict else {"error"}
    return common.EXIT_FINDINGS if severities & failing else common.EXIT_OK


def _lint_tree(args: argparse.Namespace) -> ModelTree | None:
    if args.manifest:
        from ..model.manifest import load, to_tree

        return to_tree(load(args.manifest))
    if args.model:
        return common.model_tree(args.model, cache=not args.no_cache)
    return None


def in_stage(findings: list[Finding], source: Source, unit: str, at: int) -> list[Finding]:
    """The findings that hold in the stage in force at ``unit`` ``at``.

    Syntax and validation findings always do. A model-aware finding does when
    its statement is in force then and, for a finding that names its stages
    (``at epochs 0 and 5``), when that stage is one of them. A policy that
    counts another unit is a usage error: the command exits 2 with no report.
    """
    from ..language.parser import parse_source

    if any(f.code.startswith("PF1") for f in findings):
        return findings
    policy = parse_source(source)
    if policy.unit is None:
        return findings
    common.check_unit(policy, unit)
    point = max(p for p in (0, *policy.milestones) if p <= at)
    first_point = {(s.span.line, s.span.column): 0 for s in policy.statements}
    for block in policy.blocks:
        first_point.update({(s.span.line, s.span.column): block.at for s in block.statements})
    kept = []
    for finding in findings:
        starts = first_point.get((finding.line, finding.column), 0)
        if starts <= point and (not finding.stages or point in finding.stages):
            kept.append(finding)
    return kept

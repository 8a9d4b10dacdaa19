"""The ``policyfreeze`` command. Only this module prints or exits.

Exit codes, as ruff: 0 clean, 1 findings or a policy error, 2 usage, I/O or
internal error.

Each command is a function that adds its subparser (with an example in its
help and ``run=`` set) to the subcommands; ``COMMANDS`` lists them in the
order ``--help`` shows them. Commands import what they need when they run,
so ``policyfreeze lint`` without a model never imports torch.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .. import __version__
from ..errors import PolicyError, PolicyUsageError

if TYPE_CHECKING:
    from ..language.policy import Policy
    from ..language.source import Source
    from ..model.tree import ModelTree

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
STDIN = "-"
POLICY_SUFFIX = ".freeze"
MODEL_HELP = "the model: torchvision:NAME, package.module:factory or path/to/file.py:factory"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        command = self.prog.partition(" ")[2]  # main() already says "policyfreeze: error:"
        raise PolicyUsageError(f"{command + ': ' if command else ''}{message} (see '{self.prog} --help')")


def _command(commands, name: str, *, help: str, description: str, examples: Sequence[str]) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with examples."""
    epilog = "example" + ("s" if len(examples) > 1 else "") + ":\n" + "\n".join(f"  {e}" for e in examples)
    return commands.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def _add_stdin_filename(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stdin-filename", metavar="NAME", help=f"the name to report for a policy read from stdin ('{STDIN}')"
    )


def _add_stage(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--epoch", type=int, metavar="N", help="resolve a scheduled policy at epoch N (default: 0)")
    group.add_argument("--step", type=int, metavar="N", help="resolve a scheduled policy at step N (default: 0)")


# --- lint -----------------------------------------------------------------------


def add_lint(commands) -> None:
    lint = _command(
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
    lint.add_argument("files", nargs="+", metavar="FILE", help=f"policy files or directories; '{STDIN}' reads stdin")
    model = lint.add_mutually_exclusive_group()
    model.add_argument("--model", metavar="SPEC", help=MODEL_HELP + " (built on the meta device)")
    model.add_argument("--manifest", metavar="FILE", help="a model manifest written by 'policyfreeze manifest' (no torch needed)")
    lint.add_argument(
        "--format", choices=("text", "json", "github", "sarif"), default="text", help="output format (default: text)"
    )
    lint.add_argument("--strict", action="store_true", help="exit 1 on warnings too, not only on errors")
    lint.add_argument(
        "--select", type=_codes, action="extend", default=[], metavar="CODES",
        help="report only these codes or prefixes, comma-separated (PF201,PF204 or PF2)",
    )
    lint.add_argument(
        "--ignore", type=_codes, action="extend", default=[], metavar="CODES",
        help="do not report these codes or prefixes (PF1xx cannot be ignored)",
    )
    _add_stdin_filename(lint)
    lint.set_defaults(run=run_lint)


def _codes(text: str) -> list[str]:
    from ..lint.codes import RULES

    codes = [code.strip().upper() for code in text.split(",") if code.strip()]
    for code in codes:
        if not code.startswith("PF") or not any(known.startswith(code) for known in RULES):
            raise argparse.ArgumentTypeError(f"unknown code '{code}': codes are PF101 … PF207; a prefix such as PF2 names a group")
    return codes


def run_lint(args: argparse.Namespace) -> int:
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
    for path in _expand(args.files):
        try:
            source, _ = _read(path, args.stdin_filename)
        except PolicyUsageError as exc:
            _error(exc)
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
        print(output.format_sarif(findings, root=_repository_root()))
    elif args.format == "github":
        if findings:
            print(output.format_github(findings))
    else:
        print(output.format_text(findings, files=len(names), unreadable=unreadable, color=_use_color(sys.stdout)))
    if unreadable:
        return EXIT_USAGE
    failing = {"error", "warning"} if args.strict else {"error"}
    return EXIT_FINDINGS if any(f.severity in failing for f in findings) else EXIT_OK


def _lint_tree(args: argparse.Namespace) -> ModelTree | None:
    if args.manifest:
        from ..model.manifest import load, to_tree

        return to_tree(load(args.manifest))
    if args.model:
        from ..model.tree import ModelTree

        return ModelTree.from_module(_build_model(args.model))
    return None


# --- fmt ------------------------------------------------------------------------


def add_fmt(commands) -> None:
    fmt = _command(
        commands,
        "fmt",
        help="rewrite policy files in the one canonical layout",
        description=(
            "Rewrite each FILE (a directory means every *.freeze file below it) in the canonical\n"
            "layout: one statement per line, canonical spacing and quoting, comments kept. With\n"
            f"'{STDIN}', read stdin and write the result to stdout. --check and --diff change no file\n"
            "and exit 1 when a file would change."
        ),
        examples=["policyfreeze fmt policies/", "policyfreeze fmt --check --diff policies/"],
    )
    fmt.add_argument("files", nargs="+", metavar="FILE", help=f"policy files or directories; '{STDIN}' reads stdin")
    fmt.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would be reformatted")
    fmt.add_argument("--diff", action="store_true", help="change nothing; print a unified diff of the changes")
    _add_stdin_filename(fmt)
    fmt.set_defaults(run=run_fmt)


def run_fmt(args: argparse.Namespace) -> int:
    from ..language.fmt import format_source

    status = EXIT_OK
    changed: list[str] = []
    unchanged = 0
    dry_run = args.check or args.diff
    for path in _expand(args.files):
        try:
            source, raw = _read(path, args.stdin_filename)
            formatted = format_source(source)
        except PolicyUsageError as exc:
            _error(exc)
            status = EXIT_USAGE
            continue
        except PolicyError as exc:
            print(exc, file=sys.stderr)
            status = max(status, EXIT_FINDINGS)
            continue
        new = formatted.encode("utf-8")
        if path == STDIN and not dry_run:
            sys.stdout.write(formatted)
        if new == raw:
            unchanged += 1
            continue
        changed.append(source.name)
        if args.diff:
            before = raw.decode("utf-8").splitlines(keepends=True)
            sys.stdout.writelines(
                difflib.unified_diff(before, formatted.splitlines(keepends=True), source.name, source.name + " (formatted)")
            )
        elif args.check:
            print(f"would reformat {source.name}")
        elif path != STDIN:
            _write(Path(path), new)
    if dry_run and changed:
        status = max(status, EXIT_FINDINGS)
    if changed or unchanged:
        verb = "would be reformatted" if dry_run else "reformatted"
        done = "already formatted" if dry_run else "left unchanged"
        print(f"{_files(len(changed))} {verb}, {_files(unchanged)} {done}", file=sys.stderr)
    return status


def _files(count: int) -> str:
    return f"{count} file" + ("" if count == 1 else "s")


def _write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise PolicyUsageError(f"{path}: cannot write: {exc.strerror}") from None


# --- plan, explain, diff ----------------------------------------------------------


def add_plan(commands) -> None:
    plan = _command(
        commands,
        "plan",
        help="show what a policy changes on a model (the diff report)",
        description="Resolve POLICY on a freshly built model (on the meta device) and print the diff report.",
        examples=[
            "policyfreeze plan policies/resnet18-linear-probe.freeze --model torchvision:resnet18",
            "policyfreeze plan policies/bitfit.freeze --model torchvision:resnet50 --format tree",
        ],
    )
    plan.add_argument("policy", metavar="POLICY", help=f"a policy file ('{STDIN}': stdin)")
    plan.add_argument("--model", required=True, metavar="SPEC", help=MODEL_HELP)
    plan.add_argument(
        "--format",
        choices=("text", "json", "markdown", "tree"),
        default="text",
        help="text (default), json, markdown (for a pull request) or tree (the module tree with each subtree's state)",
    )
    _add_stage(plan)
    _add_stdin_filename(plan)
    plan.set_defaults(run=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    from ..report.render import format_markdown, format_tree
    from ..report.report import Report

    plan = _resolve(_load_policy(args.policy, args.stdin_filename), _build_model(args.model), args)
    report = Report(plan, applied=False)
    if args.format == "json":
        print(report.to_json())
    elif args.format == "markdown":
        sys.stdout.write(format_markdown(report))
    elif args.format == "tree":
        sys.stdout.write(format_tree(report, color=_use_color(sys.stdout)))
    else:
        print(report)
    return EXIT_OK


def add_explain(commands) -> None:
    explain = _command(
        commands,
        "explain",
        help="why a parameter or module ends up trainable or frozen",
        description=(
            "For each NAME (a parameter, or a module: then all its parameters, summarised): its final\n"
            "state and every statement that reached it, in order, with the deciding one marked."
        ),
        examples=["policyfreeze explain policies/headline.freeze --model torchvision:resnet18 fc.weight layer1"],
    )
    explain.add_argument("policy", metavar="POLICY", help=f"a policy file ('{STDIN}': stdin)")
    explain.add_argument("names", nargs="+", metavar="NAME", help="parameter or module names, as the model names them")
    explain.add_argument("--model", required=True, metavar="SPEC", help=MODEL_HELP)
    _add_stage(explain)
    _add_stdin_filename(explain)
    explain.set_defaults(run=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    from ..report.explain import explain, format_explanations

    policy = _load_policy(args.policy, args.stdin_filename)
    plan = _resolve(policy, _build_model(args.model), args)
    print(format_explanations(explain(plan, args.names), policy.source.name))
    return EXIT_OK


def add_diff(commands) -> None:
    diff = _command(
        commands,
        "diff",
        help="the parameters whose state differs between two policies",
        description=(
            "Resolve OLD and NEW on the same model and list what differs: requires_grad, optimizer\n"
            f"options and eval pins, with counts. One of them may be '{STDIN}' (stdin), e.g. a\n"
            "revision from git."
        ),
        examples=[
            "policyfreeze diff policies/a.freeze policies/b.freeze --model torchvision:resnet18",
            "git show main:policies/probe.freeze | policyfreeze diff - policies/probe.freeze --model torchvision:resnet18",
        ],
    )
    diff.add_argument("old", metavar="OLD", help="the policy before")
    diff.add_argument("new", metavar="NEW", help="the policy after")
    diff.add_argument("--model", required=True, metavar="SPEC", help=MODEL_HELP)
    diff.add_argument("--format", choices=("text", "json", "markdown"), default="text", help="output format (default: text)")
    _add_stage(diff)
    _add_stdin_filename(diff)
    diff.set_defaults(run=run_diff)


def run_diff(args: argparse.Namespace) -> int:
    from ..report.diff import diff_plans, format_markdown, format_text, to_json

    if args.old == STDIN and args.new == STDIN:
        raise PolicyUsageError(f"only one of OLD and NEW can be '{STDIN}' (stdin)")
    old = _load_policy(args.old, args.stdin_filename)
    new = _load_policy(args.new, args.stdin_filename)
    model = _build_model(args.model)
    difference = diff_plans(_resolve(old, model, args), _resolve(new, model, args))
    if args.format == "json":
        print(to_json(difference))
    elif args.format == "markdown":
        sys.stdout.write(format_markdown(difference))
    else:
        print(format_text(difference))
    return EXIT_OK


def _resolve(policy: Policy, model: Any, args: argparse.Namespace):
    from ..engine.resolve import resolve

    plan = resolve(model, policy, epoch=args.epoch, step=args.step)
    for finding in plan.warnings:
        print(f"warning: {finding}", file=sys.stderr)
    return plan


# --- manifest ---------------------------------------------------------------------


def add_manifest(commands) -> None:
    manifest = _command(
        commands,
        "manifest",
        help="write a model manifest, so CI can lint without torch or the model's code",
        description=(
            "Write the manifest of a model: module names, classes, children order, parameter names,\n"
            "shapes, dtypes and tied names, as versioned JSON. 'lint --manifest FILE' then gives\n"
            "exactly the findings of 'lint --model SPEC'. --schema prints the format's JSON Schema."
        ),
        examples=[
            "policyfreeze manifest --model torchvision:resnet18 -o resnet18.manifest.json",
            "policyfreeze manifest --schema",
        ],
    )
    what = manifest.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", metavar="SPEC", help=MODEL_HELP + " (built on the meta device)")
    what.add_argument("--schema", action="store_true", help="print the JSON Schema of the manifest format")
    manifest.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    manifest.set_defaults(run=run_manifest)


def run_manifest(args: argparse.Namespace) -> int:
    from ..model.manifest import from_tree, json_schema
    from ..model.tree import ModelTree

    if args.schema:
        text = json_schema()
    else:
        text = from_tree(ModelTree.from_module(_build_model(args.model)), model=args.model).to_json()
    if args.output in (None, STDIN):
        sys.stdout.write(text)
    else:
        _write(Path(args.output), text.encode("utf-8"))
    return EXIT_OK


# --- cost -------------------------------------------------------------------------


def add_cost(commands) -> None:
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


def run_cost(args: argparse.Namespace) -> int:
    from ..report.cost import measure, parse_shape
    from ..model.loader import build_model
    from ..language.parser import load
    from ..engine.resolve import resolve

    shape = parse_shape(args.input_shape)
    policy = load(args.policy)
    plan = resolve(build_model(args.model, device="meta"), policy)
    for finding in plan.warnings:
        print(f"warning: {finding}", file=sys.stderr)
    cost = measure(plan, shape)
    print(cost.to_json() if args.format == "json" else cost)
    return EXIT_OK


# --- shared -----------------------------------------------------------------------

COMMANDS: list[Callable[[Any], None]] = [add_lint, add_fmt, add_plan, add_explain, add_diff, add_manifest, add_cost]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="policyfreeze",
        description="Version-controlled freeze policies for PyTorch fine-tuning.",
        epilog="example:\n  policyfreeze lint policies/ --model torchvision:resnet18\n\n"
        "'policyfreeze COMMAND --help' describes a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"policyfreeze {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for register in COMMANDS:
        register(commands)
    return parser


def _expand(paths: Sequence[str]) -> list[str]:
    """Files as given; a directory becomes every policy file below it, sorted."""
    out: list[str] = []
    for path in paths:
        if path != STDIN and _is_dir(path):
            found = sorted(str(p) for p in Path(path).rglob(f"*{POLICY_SUFFIX}") if p.is_file())
            if not found:
                print(f"policyfreeze: warning: no {POLICY_SUFFIX} files in {path}", file=sys.stderr)
            out += found
        else:
            out.append(path)
    if out.count(STDIN) > 1:
        raise PolicyUsageError(f"'{STDIN}' (stdin) can be given once")
    return out


def _is_dir(path: str) -> bool:
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):  # a name too long, or holding a NUL: reading it reports why
        return False


def _read(path: str, stdin_filename: str | None) -> tuple[Source, bytes]:
    """The source of a policy file (or stdin) and its raw bytes."""
    from ..language.source import Source

    if path == STDIN:
        data = sys.stdin.buffer.read()
        return Source.from_bytes(data, stdin_filename or "<stdin>"), data
    source = Source.from_path(path)
    return source, Path(path).read_bytes()


def _load_policy(path: str, stdin_filename: str | None) -> Policy:
    from ..language.parser import parse_source

    return parse_source(_read(path, stdin_filename)[0])


def _build_model(spec: str) -> Any:
    """The model on the meta device; on the CPU, with a note, when its constructor needs real tensors."""
    from ..model.loader import build_model

    try:
        return build_model(spec, device="meta")
    except PolicyUsageError as exc:
        if exc.__cause__ is None:
            raise  # the spec itself is wrong: building elsewhere cannot help
        meta_error = exc.__cause__
    model = build_model(spec)
    print(
        f"policyfreeze: note: {spec} cannot be built on the meta device "
        f"({type(meta_error).__name__}: {meta_error}); built it on the CPU instead",
        file=sys.stderr,
    )
    return model


def _repository_root() -> Path:
    """The enclosing git work tree of the current directory (SARIF URIs are relative to it), else the directory."""
    here = Path.cwd()
    for directory in (here, *here.parents):
        if (directory / ".git").exists():
            return directory
    return here


def _use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, never with NO_COLOR set (https://no-color.org) or TERM=dumb."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _error(exc: PolicyError) -> None:
    print(f"policyfreeze: error: {exc}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except PolicyUsageError as exc:
        _error(exc)
        return EXIT_USAGE
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FINDINGS
    except KeyboardInterrupt:
        return EXIT_USAGE
    except BrokenPipeError:  # `policyfreeze … | head`: the reader has gone
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:  # a bug in policyfreeze: say so, without a traceback
        print(f"policyfreeze: internal error: {type(exc).__name__}: {exc} (please report this)", file=sys.stderr)
        return EXIT_USAGE

"""``policyfreeze fmt``: rewrite policy files in the one canonical layout."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from ..errors import PolicyError, PolicyUsageError, printable
from . import common


def register(commands) -> None:
    fmt = common.command(
        commands,
        "fmt",
        help="rewrite policy files in the one canonical layout",
        description=(
            "Rewrite each FILE (a directory means every *.freeze file below it) in the canonical\n"
            "layout: one statement per line, canonical spacing and quoting, comments kept. With\n"
            f"'{common.STDIN}', read stdin and write the result to stdout. --check and --diff change no file\n"
            "and exit 1 when a file would change."
        ),
        examples=["policyfreeze fmt policies/", "policyfreeze fmt --check --diff policies/"],
    )
    fmt.add_argument(
        "files", nargs="+", metavar="FILE", help=f"policy files or directories; '{common.STDIN}' reads stdin"
    )
    fmt.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would be reformatted")
    fmt.add_argument("--diff", action="store_true", help="change nothing; print a unified diff of the changes")
    common.add_stdin_filename(fmt)
    fmt.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..language.fmt import format_source

    status = common.EXIT_OK
    changed: list[str] = []
    unchanged = 0
    dry_run = args.check or args.diff
    for path in common.expand(args.files):
        if not dry_run and path != common.STDIN and common.is_special(path):
            # Read once, it could not be written back: a FIFO's writer is gone, a pipe has no file.
            common.print_error(
                PolicyUsageError(f"{printable(path)}: not a regular file: use --check, --diff or '{common.STDIN}'")
            )
            status = common.EXIT_USAGE
            continue
        try:
            source, raw = common.read(path, args.stdin_filename)
            formatted = format_source(source)
        except PolicyUsageError as exc:
            common.print_error(exc)
            status = common.EXIT_USAGE
            continue
        except PolicyError as exc:
            print(exc, file=sys.stderr)
            status = max(status, common.EXIT_FINDINGS)
            continue
        new = formatted.encode("utf-8")
        if path == common.STDIN and not dry_run:
            sys.stdout.write(formatted)
        if new == raw:
            unchanged += 1
            continue
        changed.append(source.name)
        if args.diff:
            before = raw.decode("utf-8").splitlines(keepends=True)
            sys.stdout.writelines(
                difflib.unified_diff(
                    before,
                    formatted.splitlines(keepends=True),
                    printable(source.name),
                    printable(source.name) + " (formatted)",
                )
            )
        elif args.check:
            print(f"would reformat {printable(source.name)}")
        elif path != common.STDIN:
            common.replace(Path(path), new)
    if dry_run and changed:
        status = max(status, common.EXIT_FINDINGS)
    if changed or unchanged:
        verb = "would be reformatted" if dry_run else "reformatted"
        done = "already formatted" if dry_run else "left unchanged"
        print(f"{common.files(len(changed))} {verb}, {common.files(unchanged)} {done}", file=sys.stderr)
    return status

"""The ``policyfreeze`` command. Only this package prints or exits.

Exit codes, as ruff: ``EXIT_CODES`` below (``--help``, README.md and
docs/cli.md state them in these words).

Each command is a module with ``register(commands)``, which adds its
subparser (with examples in its help and ``run=`` set), and ``run(args)``;
``COMMANDS`` lists them in the order ``--help`` shows them. Commands import
what they need when they run, so ``policyfreeze lint`` without a model never
imports torch.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import textwrap
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from .. import __version__
from ..errors import PolicyError, PolicyUsageError, needs_extras
from . import common, cost, diff, explain, fmt, lint, manifest, plan
from .common import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE

#: exit status → what it means, for every command
EXIT_CODES = {
    EXIT_OK: "clean: no findings, or only warnings and info without --strict",
    EXIT_FINDINGS: "an error finding (with --strict, a warning too), a policy that does not parse or resolve, "
    "a file fmt --check would reformat, or policies that differ under diff --exit-code",
    EXIT_USAGE: "a usage error, a file that cannot be read or written, a model that cannot be built, "
    "or an internal error",
}

#: command name → its module, in the order ``--help`` lists them
COMMANDS: dict[str, ModuleType] = {
    "lint": lint,
    "fmt": fmt,
    "plan": plan,
    "explain": explain,
    "diff": diff,
    "manifest": manifest,
    "cost": cost,
}


def build_parser() -> argparse.ArgumentParser:
    parser = common.Parser(
        prog="policyfreeze",
        description="Version-controlled freeze policies for PyTorch fine-tuning.",
        epilog="example:\n  policyfreeze lint policies/resnet*.freeze --model torchvision:resnet18\n\n"
        + exit_codes_help()
        + "\n\n'policyfreeze COMMAND --help' describes a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"policyfreeze {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=common.Parser)
    commands.required = True
    for command in COMMANDS.values():
        command.register(commands)
    return parser


def exit_codes_help() -> str:
    lines = ["exit codes:"]
    for status, meaning in EXIT_CODES.items():
        lines += textwrap.wrap(meaning, 76, initial_indent=f"  {status}  ", subsequent_indent="     ")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        with needs_extras(f"policyfreeze {args.command}"):
            return args.run(args)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except PolicyUsageError as exc:
        common.print_error(exc)
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


def entry_point() -> NoReturn:
    """The ``policyfreeze`` executable and ``python -m policyfreeze``: ``main()`` in a process of its own.

    What is set here is for a short process that imports its whole world
    first; ``main()`` also runs inside programs, which must not get it.
    """
    # The collector's default thresholds collect every 700 allocations, and the modules a command
    # imports allocate hundreds of thousands of objects that live until exit: each collection re-scans
    # them to free nothing. mypy raises the threshold the same way; cycles are still collected.
    gc.set_threshold(200_000, 30, 30)
    # pydantic looks for plugins among every installed package's entry points when it builds the
    # first model (≈ 20 ms in an environment with torch); the command's models are internal.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _import_lark_without_regex()
    status = main()
    # Interpreter exit collects once more over every object; frozen ones are skipped.
    gc.freeze()
    sys.exit(status)


def _import_lark_without_regex() -> None:
    """Import lark with the ``regex`` package hidden, then put it back for whoever needs it.

    lark imports ``regex`` when it is installed (transformers installs it) only to
    measure terminals while it builds parse tables, which the cached parser of
    ``language/grammar.py`` never does and which the grammar does not need
    (no Unicode categories): 10 ms of every start.
    """
    hidden = sys.modules.get("regex")
    sys.modules["regex"] = None  # type: ignore[assignment]  # makes `import regex` raise ImportError
    try:
        import lark  # noqa: F401
    finally:
        if hidden is None:
            del sys.modules["regex"]
        else:
            sys.modules["regex"] = hidden

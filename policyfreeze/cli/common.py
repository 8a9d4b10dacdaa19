"""What every command shares: exit codes, argument helpers, reading policies, building models, warnings."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .. import cache as user_cache
from ..errors import PolicyError, PolicyUsageError, printable

if TYPE_CHECKING:
    from ..engine.resolve import Plan
    from ..language.policy import Policy
    from ..language.source import Source
    from ..model.cache import Entry
    from ..model.manifest import Manifest
    from ..model.tree import ModelTree

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
STDIN = "-"
POLICY_SUFFIX = ".freeze"
MODEL_HELP = (
    "the model: torchvision:NAME, timm:NAME, hf:MODEL[:CLASS] (a model type, ORG/NAME or ./dir), "
    "package.module:factory or path/to/file.py:factory; ',KEY=VALUE' after a published model sets an option"
)


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        command = self.prog.partition(" ")[2]  # main() already says "policyfreeze: error:"
        raise PolicyUsageError(f"{command + ': ' if command else ''}{message} (see '{self.prog} --help')")


def command(commands, name: str, *, help: str, description: str, examples: Sequence[str]) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with examples."""
    epilog = "example" + ("s" if len(examples) > 1 else "") + ":\n" + "\n".join(f"  {e}" for e in examples)
    return commands.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_stdin_filename(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stdin-filename", metavar="NAME", help=f"the name to report for a policy read from stdin ('{STDIN}')"
    )


def add_stage(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--epoch", type=int, metavar="N", help="resolve a scheduled policy at epoch N (default: 0)")
    group.add_argument("--step", type=int, metavar="N", help="resolve a scheduled policy at step N (default: 0)")
    group.add_argument("--phase", type=int, metavar="N", help="resolve a phased policy at phase N (default: 0)")


def stage(args: argparse.Namespace) -> tuple[str, int] | None:
    """(unit, N) of --epoch/--step/--phase N, or None."""
    given = [(unit, getattr(args, unit)) for unit in ("epoch", "step", "phase") if getattr(args, unit) is not None]
    return given[0] if given else None


def check_unit(policy: Policy, unit: str) -> None:
    """A usage error, in the command line's words, when ``policy`` counts another unit than --``unit`` N."""
    if policy.unit is not None and policy.unit != unit:
        raise PolicyUsageError(f"{policy.source.name} schedules by {policy.unit}: pass --{policy.unit}, not --{unit}")


def expand(paths: Sequence[str]) -> list[str]:
    """Files as given; a directory becomes every policy file below it, sorted."""
    out: list[str] = []
    for path in paths:
        if path != STDIN and is_dir(path):
            found = sorted(str(p) for p in Path(path).rglob(f"*{POLICY_SUFFIX}") if p.is_file())
            if not found:
                print(f"policyfreeze: warning: no {POLICY_SUFFIX} files in {printable(path)}", file=sys.stderr)
            out += found
        else:
            out.append(path)
    if out.count(STDIN) > 1:
        raise PolicyUsageError(f"'{STDIN}' (stdin) can be given once")
    return out


def is_dir(path: str) -> bool:
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):  # a name too long, or holding a NUL: reading it reports why
        return False


def read(path: str, stdin_filename: str | None) -> tuple[Source, bytes]:
    """The source of a policy file (or stdin) and its raw bytes, read once."""
    from ..language.source import MAX_SOURCE_BYTES, Source, read_bytes

    if path == STDIN:
        data = sys.stdin.buffer.read(MAX_SOURCE_BYTES + 1)
        return Source.from_bytes(data, stdin_filename or "<stdin>"), data
    data = read_bytes(path)
    return Source.from_bytes(data, path), data


def load_policy(path: str, stdin_filename: str | None) -> Policy:
    from ..language.parser import parse_source

    return parse_source(read(path, stdin_filename)[0])


def add_no_cache(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="build the model instead of reading its structure from the model cache (see docs/cli.md)",
    )


def build_model(spec: str) -> Any:
    """The model on the meta device; on the CPU, with a note, when its constructor needs real tensors."""
    from ..model import loader

    try:
        return loader.build_model(spec, device="meta")
    except loader.ModelBuildError as exc:
        meta_error = exc.__cause__
    model = loader.build_model(spec)
    print(
        f"policyfreeze: note: {spec} cannot be built on the meta device "
        f"({type(meta_error).__name__}: {meta_error}); built it on the CPU instead",
        file=sys.stderr,
    )
    return model


def model_tree(spec: str, *, cache: bool = True) -> ModelTree:
    """The structure of the model ``spec`` names: from the model cache when it holds it (no torch), else built."""
    from ..model import cache as model_cache
    from ..model.manifest import from_tree
    from ..model.walk import walk

    entry, cached = _cached(spec, cache)
    if cached is not None:
        return cached[1]
    tree = walk(build_model(spec)).tree
    if entry is not None:
        model_cache.write(entry, from_tree(tree, model=spec))
    return tree


def model_manifest(spec: str, *, cache: bool = True) -> Manifest:
    """The manifest of the model ``spec`` names, from the model cache when it holds it."""
    from ..model import cache as model_cache
    from ..model.manifest import from_tree
    from ..model.walk import walk

    entry, cached = _cached(spec, cache)
    if cached is not None:
        return cached[0]
    manifest = from_tree(walk(build_model(spec)).tree, model=spec)
    if entry is not None:
        model_cache.write(entry, manifest)
    return manifest


def _cached(spec: str, cache: bool) -> tuple[Entry | None, tuple[Manifest, ModelTree] | None]:
    """The model cache's entry for ``spec`` (None: not cached) and what it holds (None: nothing to trust)."""
    from .. import __version__
    from ..model import cache as model_cache
    from ..model.loader import parse_spec

    entry = model_cache.entry(parse_spec(spec), __version__) if cache else None
    return entry, None if entry is None else model_cache.read(entry)


def plan_of(policy: Policy, model: Any, args: argparse.Namespace) -> Plan:
    """The plan at the stage the arguments name, on a live model or a model tree (errors raised)."""
    from ..engine import resolve as resolver
    from ..model.tree import ModelTree

    if (given := stage(args)) is not None:
        check_unit(policy, given[0])  # before the engine says it in the API's words (epoch=)
    if not isinstance(model, ModelTree):
        return resolver.resolve(model, policy, epoch=args.epoch, step=args.step, phase=args.phase)
    plan = resolver.evaluate(model, policy, resolver.stage_at(policy, args.epoch, args.step, args.phase))
    if plan.errors:
        raise PolicyError.collect(list(plan.errors))
    return plan


def resolve(policy: Policy, model: Any, args: argparse.Namespace) -> Plan:
    """``plan_of``, its warnings printed to stderr."""
    plan = plan_of(policy, model, args)
    for finding in plan.warnings:
        print(f"warning: {finding}", file=sys.stderr)
    return plan


def write(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise PolicyUsageError(f"{path}: cannot write: {exc.strerror}") from None


def is_special(path: str) -> bool:
    """Whether ``path`` exists and is not a regular file (a FIFO, a pipe, a device): it has no second reading."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False  # reading it says what is wrong


def replace(path: Path, data: bytes) -> None:
    """Write ``data`` over the regular file ``path`` (through a symlink, over its target) whole
    or not at all, keeping its permission bits."""
    target = Path(os.path.realpath(path))
    try:
        user_cache.replace_file(target, data, mode=stat.S_IMODE(target.stat().st_mode))
    except OSError as exc:
        raise PolicyUsageError(f"{printable(str(path))}: cannot write: {exc.strerror}") from None


def files(count: int) -> str:
    return f"{count} file" + ("" if count == 1 else "s")


def repository_root() -> Path:
    """The enclosing git work tree of the current directory (SARIF URIs are relative to it), else the directory."""
    here = Path.cwd()
    for directory in (here, *here.parents):
        if (directory / ".git").exists():
            return directory
    return here


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, never with NO_COLOR set (https://no-color.org) or TERM=dumb."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def print_error(exc: PolicyError) -> None:
    print(f"policyfreeze: error: {exc}", file=sys.stderr)

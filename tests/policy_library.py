"""The shipped policy files (``policies/``, ``examples/``), the models their headers name, and those models
built once per test session.

A policy file names the model it is written for in its header: comment lines
``# model: SPEC`` (a ``--model`` spec), one per model, before its first
statement (docs/recipes.md, "The policy library").
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from unittest import mock

from policyfreeze import __version__
from policyfreeze import cache as user_cache
from policyfreeze.model import cache

if TYPE_CHECKING:
    from torch import nn

ROOT = Path(__file__).parent.parent
LIBRARY = (ROOT / "policies", ROOT / "examples")
HEADER_SPEC = re.compile(r"# model: (\S+)")

#: One model cache for the session's library models (conftest gives every other test an empty one): the
#: session directory conftest set up, which it removes at the end.
CACHE_DIR = Path(os.environ.get(user_cache.CACHE_DIR_VARIABLE) or tempfile.mkdtemp()) / "policy-library"


def policy_files() -> list[Path]:
    """Every policy file the project ships, in sorted order."""
    return sorted(path for directory in LIBRARY for path in directory.rglob("*.freeze"))


def header_specs(path: Path) -> list[str]:
    """The ``# model: SPEC`` lines of a policy file's header (the comments before its first statement);
    reading them imports no torch."""
    specs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            break
        found = HEADER_SPEC.fullmatch(text)
        if found:
            specs.append(found.group(1))
    return specs


def library_specs() -> list[str]:
    """Every model the library's headers name, each once."""
    return sorted({spec for path in policy_files() for spec in header_specs(path)})


@functools.cache
def model(spec: str) -> nn.Module:
    """The model ``spec`` names, built once per session as ``--model`` builds it (on the meta device).

    Its structure goes into ``CACHE_DIR`` as the command line would store it, so a command run with
    ``--model SPEC`` and that cache reads it instead of building the model again. Shared: never change
    it; change a ``copy.deepcopy`` (cheap on the meta device).
    """
    from policyfreeze.cli.common import build_model
    from policyfreeze.model.loader import parse_spec
    from policyfreeze.model.manifest import from_tree
    from policyfreeze.model.walk import walk

    built = build_model(spec)
    with mock.patch.dict(os.environ, {user_cache.CACHE_DIR_VARIABLE: str(CACHE_DIR)}):
        entry = cache.entry(parse_spec(spec), __version__)
        assert entry is not None, f"{spec} is a published model: the command line caches it"
        cache.write(entry, from_tree(walk(built).tree, model=spec))
    return built

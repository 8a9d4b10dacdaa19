"""Bounded time: catastrophic regexes and globs against 10,000-character names and deep nesting.

On "aaa…a!" (10,001 characters), Python's backtracking ``re`` needs over a
second for ``(a+)+$`` at 25 characters and doubles with each one more; RE2
and the atomic glob translation take milliseconds. The work runs
in a subprocess with a timeout far above the expected time, so a regression
fails as a timeout, never as a flaky timing.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
import time

import pytest
from torch import nn

from policyfreeze import resolve
from policyfreeze.errors import PolicyUsageError
from policyfreeze.model import manifest as manifests
from policyfreeze.model import walk as walker

POLICIES = [
    r"freeze match /(a+)+!$/",
    r"freeze match /(a+)+$/",
    r"freeze match /(a|aa)+$/",
    r"freeze match /(a*)*b/",
    r"freeze match /^(([a-z])+.)+[A-Z]([a-z])+$/",
    r"freeze match /(0\.?)+$/, match /(.*a){12}/",
    r"freeze match /(x+x+)+y/i",
    r"freeze *a*a*a*a*a*a*a*a*a*a*b",
    r"freeze *.0.*.0.*.0.*.0.*.0.*.x",
    r"freeze *.*0*0*0*0*0*x.*",
    r"freeze (*a*a*b, match /(a+)+$/) except (*.0.*.0.*.x & match /(a|aa)+$/)",
    r"freeze type(*a*a*a*a*a*b), *.children[::2], *.0.children[-1]",
]

SCRIPT = textwrap.dedent(
    """
    import sys
    from torch import nn
    from policyfreeze import resolve
    from policyfreeze.lint.linter import lint
    from policyfreeze.language.source import Source
    from policyfreeze.model.walk import tree_of

    model = nn.Module()
    model.add_module("a" * 10_000 + "!", nn.Linear(1, 1))  # one 10,001-character name
    deep = nn.Linear(1, 1)
    for _ in range(1_000):  # names of up to 1,000 segments: 0.0.0. ... .weight
        deep = nn.Sequential(deep)
    model.add_module("deep", deep)
    tree = tree_of(model)
    assert max(len(name) for name in tree.names) >= 10_000
    for text in sys.argv[1:]:
        plan = resolve(model, text)
        findings = list(lint(Source("policy.freeze", text), tree))
        print(len(plan.changed), len(findings))
    """
)


def test_catastrophic_patterns_resolve_and_lint_quickly():
    result = subprocess.run([sys.executable, "-c", SCRIPT, *POLICIES], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    counts = [tuple(map(int, line.split())) for line in result.stdout.splitlines()]
    assert len(counts) == len(POLICIES)
    # The work was done, not skipped: the first pattern does match the long name.
    assert counts[0][0] == 2  # "aaa…a!" and so both its parameters


# --- growth between two sizes: models and manifests whose structure is not a plain tree ----------------


def cost(run, repeats: int = 5) -> float:
    """The least CPU time of a few runs (the least is the one least disturbed by the rest of the machine).

    The cyclic garbage collector is paused while a run is timed: its full
    collections scan every live object, so they would add the size of the
    whole test session's heap, not the work measured.
    """
    times = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            start = time.process_time()
            run()
            times.append(time.process_time() - start)
        finally:
            gc.enable()
    return min(times)


def refused(run) -> None:
    try:
        run()
    except PolicyUsageError:
        return
    raise AssertionError("not refused")


class Pair(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.a = inner
        self.b = inner


def diamond(depth: int) -> nn.Module:
    model: nn.Module = nn.Linear(2, 2)
    for _ in range(depth):
        model = Pair(model)
    return model


def test_a_model_shared_at_every_level_costs_what_the_limit_allows_not_two_to_the_depth(monkeypatch):
    """Twice as deep is 2**20 times the names: the walk stops at the same limit either way."""
    monkeypatch.setattr(walker, "QUICK_WALK_NODES", 20_000)
    monkeypatch.setattr(walker, "MAX_ALIAS_NODES", 20_000)
    shallow, deep = diamond(20), diamond(40)
    ratio = cost(lambda: refused(lambda: walker.walk(deep))) / cost(lambda: refused(lambda: walker.walk(shallow)))
    assert ratio < 3


def test_a_cycle_is_refused_at_once():
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2)))
    model[1].back = model
    with pytest.raises(PolicyUsageError, match="contains itself"):
        resolve(model, "freeze all")


def shared_twice(leaves: int) -> nn.Module:
    block = nn.Sequential(*(nn.Sequential(nn.Linear(1, 1, device="meta")) for _ in range(leaves)))
    model = nn.Module()
    model.first = block
    model.second = block
    return model


def test_the_names_of_a_shared_module_cost_time_linear_in_them():
    small, large = shared_twice(1_000), shared_twice(4_000)
    assert len(walker.walk(large).tree.names) == 2 * (1 + 4 * 4_000) + 1  # every name of both copies
    ratio = cost(lambda: walker.walk(large)) / cost(lambda: walker.walk(small))
    assert ratio < 4 * 2


def chain_manifest(depth: int) -> str:
    modules = [
        {"name": ".".join(["a"] * i), "classes": ["M"], "children": ["a"] if i < depth else [], "parameters": ["w"]}
        for i in range(depth + 1)
    ]
    parameters = [
        {"name": ".".join(["a"] * i + ["w"]), "shape": [1], "dtype": "float32", "requires_grad": True}
        for i in range(depth + 1)
    ]
    return json.dumps({"format": "policyfreeze-manifest", "version": 1, "modules": modules, "parameters": parameters})


def test_a_manifest_costs_time_linear_in_its_names():
    """Names of every length up to the depth: the text, and the work, grow with the square of the depth."""
    small, large = chain_manifest(300), chain_manifest(600)
    ratio = cost(lambda: manifests.to_tree(manifests.parse(large))) / cost(
        lambda: manifests.to_tree(manifests.parse(small))
    )
    assert ratio < 4 * len(large) / len(small)

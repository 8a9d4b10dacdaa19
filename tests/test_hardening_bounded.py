"""Bounded time: catastrophic regexes and globs against 10,000-character names and deep nesting.

On "aaa…a!" (10,001 characters), Python's backtracking ``re`` needs over a
second for ``(a+)+$`` at 25 characters and doubles with each one more; RE2
and the atomic glob translation take milliseconds. The work runs
in a subprocess with a timeout far above the expected time, so a regression
fails as a timeout, never as a flaky timing.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

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

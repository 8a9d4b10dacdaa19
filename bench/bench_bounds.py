"""The bounds of docs/errors.md ("Bounded time"): hostile patterns within the size limit, and schedule lint.

1. The costliest patterns known within the 1,000-instruction limit, matched
   against 1 MB of names (1,000 names of 1,000 pseudo-random 'a'/'b', and of
   1,000 'a'): seconds per MB, for information, and an ordinary glob and regex
   for comparison.
2. Lint of ``at epoch N { freeze fc }`` × B against resnet18 (meta device):
   B = 1,000 and 2,000 (goal: linear, at most 2.3× for twice the blocks).

    python bench/bench_bounds.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import Figure, alternate

from policyfreeze.engine.select import find_matches
from policyfreeze.language.glob import glob_too_costly, regex_too_costly
from policyfreeze.language.parser import parse
from policyfreeze.language.source import Source
from policyfreeze.lint import lint
from policyfreeze.model.tree import ModelTree
from policyfreeze.model.walk import tree_of

REPEATS = 3
BLOCKS = (1_000, 2_000)
GOAL_GROWTH = 2.3

PATTERNS = {
    "glob *a + 100 × ? + * (name at a time)": 'freeze "*a' + "?" * 100 + '*"',
    "glob * + 800 × a + b + 9 × ? + * (name at a time)": 'freeze "*' + "a" * 800 + "b" + "?" * 9 + '*"',
    "glob *a × 90 + *c": 'freeze "' + "*a" * 90 + '*c"',
    "glob * + (ab) × 480 + c": 'freeze "*' + "ab" * 480 + 'c"',
    "regex a[^.]{100}c": "freeze match /a[^.]{100}c/",
    "regex (?:a|b)*a(?:a|b){480}": "freeze match /(?:a|b)*a(?:a|b){480}/",
    "regex (a[^.]*){90}b": "freeze match /(a[^.]*){90}b/",
    "ordinary glob *.layers.*.q_proj": "freeze *.layers.*.q_proj",
    "ordinary regex layers\\.[0-3]\\.": "freeze match /layers\\.[0-3]\\./",
}


def names_tree(count: int, length: int, letters: str) -> ModelTree:
    from torch import nn

    root = nn.Module()
    state = 1
    for i in range(count):
        name = []
        for _ in range(length):
            state = (state * 1103515245 + 12345) % 2**31
            name.append(letters[(state >> 16) % len(letters)])
        root.add_module(f"m{i}" + "".join(name), nn.Linear(1, 1, bias=False))
    return tree_of(root)


def pattern_figures() -> list[Figure]:
    trees = {"a/b": names_tree(1_000, 1_000, "ab"), "a": names_tree(1_000, 1_000, "a")}
    figures = []
    for name, text in PATTERNS.items():
        selector = parse(text).statements[0].selector
        pattern = selector.pattern
        problem = regex_too_costly(pattern) if text.startswith("freeze match") else glob_too_costly(pattern)
        assert problem is None, (name, problem)
        runs = {kind: lambda s=selector, t=tree: find_matches(t, s) for kind, tree in trees.items()}
        seconds = alternate(runs, None, REPEATS)
        value = ", ".join(f"{seconds[kind]:.3f} s ({kind} names)" for kind in trees)
        figures.append(Figure(f"{name} on 1 MB of names", value, "information", None))
    return figures


def schedule_figure() -> Figure:
    import torch
    import torchvision

    with torch.device("meta"):
        tree = tree_of(torchvision.models.resnet18())
    sources = {
        n: Source(
            "p.freeze",
            "freeze all\nunfreeze fc\n" + "".join(f"at epoch {i} {{ freeze fc }}\n" for i in range(1, n + 1)),
        )
        for n in BLOCKS
    }
    times = alternate({str(n): lambda n=n: list(lint(sources[n], tree)) for n in BLOCKS}, None, REPEATS)
    small, large = times[str(BLOCKS[0])], times[str(BLOCKS[1])]
    growth = large / small
    return Figure(
        f"lint of {BLOCKS[1]:,} / {BLOCKS[0]:,} schedule blocks on resnet18",
        f"{growth:.2f}× ({small:.2f} s, {large:.2f} s)",
        f"≤ {GOAL_GROWTH}× (linear)",
        growth <= GOAL_GROWTH,
    )


def main() -> int:
    figures = [*pattern_figures(), schedule_figure()]
    for figure in figures:
        print(figure, flush=True)
    return 0 if all(f.passed is not False for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())

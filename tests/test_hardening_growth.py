"""Bounded growth: how the time of lint, plan, diff, the Freezer and name matching grows between two sizes.

Each test times the same work at a size and at twice that size (the best of a
few runs, the two sizes taking turns) and checks the ratio: about 2 for linear
work, 4 for the quadratic work it replaced. No test compares a time with a
fixed number of seconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
import torch
from torch import nn

from policyfreeze import Freezer, PolicyError, resolve
from policyfreeze.engine.resolve import evaluate
from policyfreeze.engine.select import _regex_scanner, find_matches
from policyfreeze.language.glob import MAX_PATTERN_PROGRAM, glob_scanner, glob_too_costly, regex_too_costly
from policyfreeze.language.parser import parse
from policyfreeze.language.source import Source
from policyfreeze.lint import lint
from policyfreeze.model import manifest
from policyfreeze.model.tree import ModelTree
from policyfreeze.model.walk import tree_of
from policyfreeze.report.diff import diff_schedules
from policyfreeze.report.timeline import timeline

LINEAR = 3.0  # the largest ratio accepted for twice the size: linear is 2, quadratic 4


def growth(work: Callable[[int], object], size: int, runs: int = 5) -> float:
    """CPU time of ``work(2 * size)`` over that of ``work(size)``, each the best of ``runs``.

    CPU time of this process, not wall time: other work on a shared machine slows the wall clock.
    """
    best = {size: float("inf"), 2 * size: float("inf")}
    for _ in range(runs):
        for n in best:
            start = time.process_time()
            work(n)
            best[n] = min(best[n], time.process_time() - start)
    return best[2 * size] / best[size]


# --- lint of a schedule: linear in its blocks ---------------------------------------------------------


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(2, 2)
        self.bn = nn.BatchNorm1d(2)
        self.fc = nn.Linear(2, 2)


def schedule(blocks: int) -> str:
    return "freeze all\nunfreeze fc\n" + "".join(f"at epoch {i} {{ freeze fc }}\n" for i in range(1, blocks + 1))


def test_lint_of_a_schedule_grows_linearly_with_its_blocks():
    tree = manifest.to_tree(manifest.from_tree(tree_of(Small())))
    texts = {n: schedule(n) for n in (400, 800)}
    findings = list(lint(Source("p.freeze", texts[400]), tree))
    assert {f.code for f in findings} >= {"PF205", "PF206"}  # every stage was checked: findings per stage
    assert growth(lambda n: list(lint(Source("p.freeze", texts[n]), tree)), 400) < LINEAR


def test_lint_of_many_statements_in_one_stage_grows_linearly():
    tree = tree_of(Small())
    texts = {n: "freeze all\n" + "unfreeze fc; freeze fc\n" * n + "unfreeze fc\n" for n in (400, 800)}
    assert growth(lambda n: list(lint(Source("p.freeze", texts[n]), tree)), 400) < LINEAR


# --- plan, diff and the Freezer over a schedule: linear in its blocks -----------------------------------


def unfreezing(blocks: int, every: str = "fc") -> str:
    return "freeze all\n" + "".join(
        f"at epoch {i} {{ unfreeze {every} with lr_scale=0.5 }}\n" for i in range(1, blocks + 1)
    )


def test_the_timeline_of_a_schedule_grows_linearly_with_its_blocks():
    tree = tree_of(Small())
    policies = {n: parse(unfreezing(n)) for n in (400, 800)}
    stages = timeline(evaluate(tree, policies[400]))
    assert len(stages) == 401 and stages[1].starts and not stages[2].starts  # every stage was compared
    assert growth(lambda n: timeline(evaluate(tree, policies[n])), 400) < LINEAR


def test_the_diff_of_two_schedules_grows_linearly_with_their_blocks():
    tree = tree_of(Small())
    pairs = {n: (parse(unfreezing(n)), parse(unfreezing(n, "body"))) for n in (400, 800)}
    [old, new] = pairs[400]
    assert len(diff_schedules(evaluate(tree, old), evaluate(tree, new)).differ_at) == 400
    assert growth(lambda n: diff_schedules(*(evaluate(tree, policy) for policy in pairs[n])), 400) < LINEAR


def test_freezer_updates_through_a_schedule_grow_linearly_with_its_blocks():
    """Stages that only freeze add no optimizer group: what grows is the schedule, not the optimizer.

    (A stage that starts training something appends a group, and torch's ``add_param_group`` walks every
    group: that part grows with the optimizer, as docs/errors.md says.)
    """
    texts = {
        n: "unfreeze all\n" + "".join(f"at epoch {i} {{ freeze {i % 3} }}\n" for i in range(1, n + 1))
        for n in (300, 600)
    }

    def run(n: int) -> None:
        model = nn.Sequential(*(nn.Linear(2, 2) for _ in range(4)))
        freezer = Freezer(model, texts[n], lr=0.1)
        optimizer = torch.optim.SGD(freezer.param_groups(), lr=0.1)
        for epoch in range(1, n + 1):
            freezer.update(optimizer, epoch=epoch)
        assert freezer.at == n and len(optimizer.param_groups) == 1

    assert growth(run, 300) < LINEAR


# --- name matching: a capped pattern costs time linear in the names -------------------------------------


def names_tree(count: int, length: int) -> ModelTree:
    """``count`` modules with long names of 'a' and 'b' (a pseudo-random mix), each with one parameter."""
    root = nn.Module()
    state = 1
    for i in range(count):
        letters = []
        for _ in range(length):
            state = (state * 1103515245 + 12345) % 2**31
            letters.append("ab"[state >> 16 & 1])
        root.add_module(f"m{i}" + "".join(letters), nn.Linear(1, 1, bias=False))
    return tree_of(root)


HOSTILE_GLOBS = [
    "*a" + "?" * 100 + "*",  # RE2's DFA would need 2 ** 100 states: matched a name at a time
    "*a" * 90 + "*c",  # a DFA state per position of every piece: within the cap, RE2 holds it
    "*" + "ab" * 480 + "c",  # a long literal after a star
]
HOSTILE_REGEXES = [
    "a[^.]{100}c",  # exponential DFA: RE2 runs its NFA, at most (compiled size) steps per character
    "(?:a|b)*a(?:a|b){120}",
    "(a[^.]*){90}b",
]


@pytest.mark.parametrize("pattern", HOSTILE_GLOBS)
def test_a_hostile_glob_within_the_cap_costs_time_linear_in_the_names(pattern):
    assert glob_too_costly(pattern) is None
    trees = {n: names_tree(n, 400) for n in (100, 200)}
    selector = parse(f'freeze "{pattern}"').statements[0].selector
    assert growth(lambda n: find_matches(trees[n], selector), 100) < LINEAR


@pytest.mark.parametrize("pattern", HOSTILE_REGEXES)
def test_a_hostile_regex_within_the_cap_costs_time_linear_in_the_names(pattern):
    assert regex_too_costly(pattern) is None
    trees = {n: names_tree(n, 400) for n in (50, 100)}
    selector = parse(f"freeze match /{pattern}/").statements[0].selector
    assert growth(lambda n: find_matches(trees[n], selector), 50) < LINEAR


def test_a_pattern_written_again_is_matched_once():
    """A policy repeating one costly statement costs what the statement costs once, not once per copy."""
    tree = names_tree(200, 400)
    # RE2's slow mode on these names: matching dwarfs the cost of a statement itself.
    statement = f"freeze match /{HOSTILE_REGEXES[0]}/\n"
    policies = {copies: parse(statement * copies) for copies in (1, 10)}
    best = {}
    for copies, policy in policies.items():
        runs = []
        for _ in range(3):
            tree.__dict__.pop("match_memo", None)  # a fresh tree: nothing matched yet
            start = time.process_time()
            evaluate(tree, policy)
            runs.append(time.process_time() - start)
        best[copies] = min(runs)
    assert best[10] / best[1] < 3  # 10 copies matched one by one would take 10 times as long


def test_globs_that_would_make_the_dfa_exponential_are_matched_a_name_at_a_time():
    assert glob_scanner("*a" + "?" * 8 + "*") is not None
    assert glob_scanner("*a" + "?" * 9 + "*") is None
    assert glob_scanner("a" + "?" * 20 + "*") is not None  # before any star: anchored, no uncertainty
    assert glob_scanner("*.a" + ".[ab]" * 9) is None  # whole-segment wildcards count as stars


@pytest.mark.parametrize(
    ("text", "code", "column", "message"),
    [
        (
            "freeze " + "*a" * 2000 + "*b",
            "PF101",
            8,
            "the glob is too complex to match in bounded time: it compiles to [0-9,]+ RE2 instructions, "
            f"the limit is {MAX_PATTERN_PROGRAM:,}",
        ),
        (
            "freeze " + "*a" * 2000 + "*b.children[0]",
            "PF101",
            8,
            "the glob is too complex to match in bounded time: it compiles to [0-9,]+ RE2 instructions, "
            f"the limit is {MAX_PATTERN_PROGRAM:,}",
        ),
        (
            "freeze match /" + "a[^.]*" * 2000 + "b/",
            "PF102",
            14,
            "the regular expression is too complex to match in bounded time: it compiles to [0-9,]+ RE2 "
            f"instructions, the limit is {MAX_PATTERN_PROGRAM:,}",
        ),
    ],
    ids=["glob", "children-of-a-glob", "regex"],
)
def test_a_pattern_beyond_the_cap_is_an_error_with_the_limit(text, code, column, message):
    """The patterns of the 43-second and 21-second scans: refused before any name is matched."""
    with pytest.raises(PolicyError) as info:
        resolve(Small(), text)
    assert (info.value.code, info.value.line, info.value.column) == (code, 1, column)
    assert re.fullmatch(message, info.value.message)
    [finding] = lint(Source("p.freeze", text), tree_of(Small()))
    assert (finding.code, finding.severity) == (code, "error") and re.fullmatch(message, finding.message)


def test_the_regex_scan_never_captures():
    # Capturing groups would make RE2 find their positions with a slower engine on every match.
    assert _regex_scanner("(a|b)x", False).groups == 0

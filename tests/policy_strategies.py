"""Hypothesis strategies for policy text, and the check every input must pass.

Shared by the property tests (``tests/test_fuzz*.py``) and the fuzz harness
(``fuzz/fuzz_policies.py``), which runs the same check on far more inputs.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

import lark
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

from policyfreeze.engine.resolve import advance, evaluate
from policyfreeze.errors import MAX_SHOWN_ERRORS, PolicyError, PolicyUsageError
from policyfreeze.language.fmt import format_source, structure
from policyfreeze.language.grammar import grammar_text
from policyfreeze.language.parser import parse_source
from policyfreeze.language.source import Source
from policyfreeze.language.vocabulary import KEYWORDS
from policyfreeze.lint.linter import lint
from policyfreeze.lint.output import format_text
from policyfreeze.model import manifest as manifests
from policyfreeze.model.tree import ModelTree
from policyfreeze.model.walk import tree_of

# --- the model every generated policy is resolved against -------------------


@functools.cache
def fuzz_tree() -> ModelTree:
    """One model with every structure the language must handle (tests/models.py)."""
    import models
    from torch import nn

    parts = {name: models.FACTORIES[name]() for name in ("tiny", "tied", "shared", "keywords", "mro", "intparam")}
    return tree_of(nn.ModuleDict(parts))


# Name segments and class names that exist in fuzz_tree(), plus near misses.
SEGMENTS = [
    "tiny",
    "tied",
    "shared",
    "keywords",
    "mro",
    "intparam",
    "0",
    "1",
    "2",
    "3",
    "embed",
    "body",
    "head",
    "a",
    "b",
    "c",
    "epoch",
    "all",
    "match",
    "plain",
    "conv",
    "norm",
    "plain_norm",
    "ln",
    "linear",
    "table",
    "weight",
    "bias",
    "running_mean",
    "fc",
    "layer1",
    "x",
]
CLASSES = [
    "Linear",
    "BatchNorm1d",
    "BatchNorm2d",
    "_BatchNorm",
    "_NormBase",
    "MyBatchNorm",
    "LayerNorm",
    "Conv2d",
    "ReLU",
    "Sequential",
    "Module",
]


# --- valid policies, built from the language's rules -----------------------


def _glob_text(segments: list[str]) -> str:
    text = ".".join(segments)
    return f'"{text}"' if text in KEYWORDS or not all(_bare_segment(s) for s in segments) else text


_BARE_SEGMENT = re.compile(r"(?!children\[)(?:[A-Za-z0-9_*?]|\[!?[^\]\s\"#/]+\])+")  # as GLOB in the grammar


def _bare_segment(segment: str) -> bool:
    return _BARE_SEGMENT.fullmatch(segment) is not None


wild_segment = st.sampled_from(["*", "**", "*a*", "l?near", "[0-2]", "[!0]", "*norm", "b*y", "?"])
glob_segment = st.one_of(st.sampled_from(SEGMENTS), wild_segment)
odd_segment = st.text(
    st.characters(exclude_characters='."\n\r', exclude_categories=("Cs", "Cc")), min_size=1, max_size=6
)
glob = st.lists(st.one_of(glob_segment, glob_segment, odd_segment), min_size=1, max_size=3).map(_glob_text)

regex_body = st.sampled_from(
    ["layer[12]", r"^0\.", "weight$", "(a|b)+", r"a\/b", "[#]", "norm", ".*", r"\d", "(?i)BIAS", "x{2,3}", ""]
)
regex = st.builds(lambda body, flags: f"match /{body}/{flags}", regex_body, st.sampled_from(["", "i"]))

class_glob = st.one_of(st.sampled_from(CLASSES), st.sampled_from(["*Norm*", "_Batch*", "Lin?ar", "[BL]*", "*"]))
type_atom = class_glob.map(lambda name: f"type({name})")

slice_text = st.one_of(
    st.integers(-12, 12).map(str),
    st.builds(
        lambda a, b, c: f"{a}:{b}" + (f":{c}" if c is not None else ""),
        st.one_of(st.none(), st.integers(-5, 5)).map(lambda v: "" if v is None else str(v)),
        st.one_of(st.none(), st.integers(-5, 5)).map(lambda v: "" if v is None else str(v)),
        st.one_of(st.none(), st.integers(-3, 3).filter(bool)),
    ),
)
index_list = st.one_of(slice_text, st.lists(slice_text, min_size=2, max_size=4).map(", ".join))
children_atom = st.builds(
    lambda parent, index: f"{parent}children[{index}]",
    st.one_of(st.just(""), glob.map(lambda g: g + ".")),
    index_list,
)

atom = st.one_of(st.just("all"), glob, glob, regex, type_atom, children_atom)


def _combine(parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    operand = st.one_of(parts, parts.map(lambda p: f"({p})"), parts.map(lambda p: f"(\n  {p}\n)"))
    return st.builds(
        lambda a, op, b: f"{a}{op}{b}", operand, st.sampled_from([", ", " & ", " except ", ",", "&"]), operand
    )


selector = st.recursive(atom, _combine, max_leaves=6)

number = st.sampled_from(["1e-4", "0.1", ".5", "3", "+2.0", "1E-3", "2.", "7e+1"])
options = st.one_of(
    st.none(),
    st.builds(
        lambda lr, wd: " with " + ", ".join(x for x in (lr, wd) if x),
        st.one_of(st.none(), number.map(lambda n: f"lr={n}"), number.map(lambda n: f"lr_scale = {n}")),
        st.one_of(st.none(), st.sampled_from(["0", "0.0", "1e-2"]).map(lambda n: f"weight_decay={n}")),
    ).filter(lambda text: text != " with "),
)


@st.composite
def statement(draw) -> str:
    verb = draw(st.sampled_from(["freeze", "unfreeze", "eval", "train"]))
    text = f"{verb} {draw(selector)}"
    if verb == "unfreeze":
        text += draw(options) or ""
    return text


comment = st.sampled_from(
    ["", "", "  # noqa: PF201", " # why: the stem stays frozen", "#", ' # a /regex/ and "quotes"']
)
separator = st.sampled_from(["\n", ";", "; ", " ;\n", "\n\n", ";\n"])


@st.composite
def policies(draw) -> str:
    """A valid policy: statements, comments, separators and (sometimes) a schedule."""
    text = ""
    for line in draw(st.lists(statement(), max_size=4)):
        end = draw(separator)
        # A comment runs to the end of its line: it may only come before a line break.
        text += line + (draw(comment) if "\n" in end else "") + end
    unit = draw(st.sampled_from(["epoch", "step"]))
    for _ in range(draw(st.integers(0, 2))):
        body = draw(st.lists(statement(), max_size=2))
        inner = draw(st.sampled_from(["; ", "\n  "]))
        text += f"at {unit} {draw(st.integers(0, 9))} {{ {inner.join(body)} }}\n"
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    return text


# --- text near the grammar, and anything at all -----------------------------

TOKENS = [
    "freeze",
    "unfreeze",
    "eval",
    "train",
    "all",
    "match",
    "type",
    "children",
    "except",
    "with",
    "at",
    "epoch",
    "step",
    "lr",
    "lr_scale",
    "weight_decay",
    "layer1",
    "fc",
    "0",
    "*",
    "**",
    "*.fc.*",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&",
    ";",
    ":",
    "=",
    ".",
    '"',
    "/",
    "#",
    "\n",
    "-",
    "1e-4",
    "nan",
    "inf",
    "/a/",
    "/a/i",
    "children[0]",
    "[0:2:0]",
    "99999999999999999999999999",
]


@functools.cache
def _grammar() -> lark.Lark:
    return lark.Lark(grammar_text(), parser="lalr")


def grammar_texts() -> st.SearchStrategy[str]:
    """Text generated from grammar/policy.lark itself, tokens kept apart by a space.

    ``from_lark`` joins tokens with nothing between them unless it draws an
    ignored one, so most of its output would lex as other tokens; a trailing
    space per terminal keeps it close to the grammar.
    """
    grammar = _grammar()
    spaced = {
        terminal.name: st.from_regex(terminal.pattern.to_regexp(), fullmatch=True).map(lambda text: text + " ")
        for terminal in grammar.terminals
        if not terminal.name.startswith("__")
    }
    return from_lark(grammar, explicit=spaced)


token_soup = st.lists(st.sampled_from(TOKENS), max_size=30).map(lambda tokens: " ".join(tokens).replace(" \n ", "\n"))
policy_chars = st.text(st.sampled_from('abfl01*?[]!.,&()"/\\#;{}=:-+ \n\t\r\x00\ufeffé'), max_size=60)
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=80)


@st.composite
def mutated(draw, base: st.SearchStrategy[str]) -> str:
    """A valid policy with a few characters deleted, duplicated or inserted."""
    text = draw(base)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 8)))
        edit = draw(st.sampled_from(["delete", "duplicate", "insert"]))
        if edit == "delete":
            text = text[:i] + text[j:]
        elif edit == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        else:
            text = text[:i] + draw(st.sampled_from(TOKENS + ["\x00", "\ud800", "é", "\t"])) + text[i:]
    return text


def any_policy_text() -> st.SearchStrategy[str]:
    """Every kind of input the fuzzer draws from, mixed."""
    return st.one_of(policies(), mutated(policies()), grammar_texts(), token_soup, policy_chars, any_text)


# --- the check ---------------------------------------------------------------


def check_input(text: str) -> None:
    """Parse; when the text is a policy, resolve and lint it against fuzz_tree() and format it.

    A ``PolicyError`` with a position inside the input is a correct answer;
    any other exception escapes and is a bug, and so is a formatting that
    changes the policy or is not idempotent.
    """
    source = Source("<fuzz>", text)
    try:
        policy = parse_source(source)
    except PolicyError as exc:
        for error in exc.errors:
            check_location(source, error)
            str(error)
        str(exc)
        return
    tree = fuzz_tree()
    for at in (0, *policy.milestones):
        plan = evaluate(tree, policy, at)
        for problem in plan.warnings + plan.errors:
            check_location(source, problem)
            str(problem)
    for finding in lint(source, tree):
        assert finding.location.source == "<fuzz>"
        check_location(source, finding)
    formatted = format_source(source)
    assert structure(parse_source(Source("<fmt>", formatted))) == structure(policy), formatted
    assert format_source(Source("<fmt>", formatted)) == formatted


def check_location(source: Source, error) -> None:
    """A position (of an error or a lint finding) lies inside the input: a real line, a column at most one past its end."""
    location = error.location
    assert location is not None, f"no position: {error}"
    lines = source.text.split("\n")
    assert 1 <= location.line <= len(lines), (location, len(lines))
    assert 1 <= location.column <= len(lines[location.line - 1]) + 1, location
    if location.end_column is not None:
        assert location.end_column >= location.column, location


# --- hostile shapes: inputs large in one dimension ---------------------------
#
# Each shape is small to describe and large to process; the fuzz harness's
# ``--shapes`` mode draws them at full scale with a time budget per input,
# tests/test_fuzz_shapes.py at a small scale. Every one must end with a result
# or a PolicyError, and every error must stay short however long its line is.

#: The longest rendered error or finding: the snippet shows a window of the line.
MAX_RENDERED = 2_000


@dataclass(frozen=True)
class Shape:
    """A policy and the model it is checked against (a manifest's JSON, or None for fuzz_tree())."""

    kind: str
    policy: str
    manifest: str | None = None


#: Statements for one long line: errors the parser collects, findings lint reports, and valid ones.
LINE_STATEMENTS = [
    "freeze children[::0];",
    "freeze nosuch;",
    "freeze tiny;",
    "unfreeze tiny.0;",
    "freeze match /(/;",
    "freeze tiny.0 with lr_scale=-1;",
    "eval type(Nope);",
    "freeze 'a\x1bb';",
    "unfreeze all;",
]


@st.composite
def long_line(draw, scale: int) -> Shape:
    """One line of many statements, most of them errors or findings."""
    parts = draw(st.lists(st.sampled_from(LINE_STATEMENTS), min_size=1, max_size=4))
    repeats = draw(st.integers(1, scale))
    return Shape("long line", "".join(parts) * repeats + "\n")


@st.composite
def schedule_blocks(draw, scale: int) -> Shape:
    """``freeze all`` and then one schedule block per milestone."""
    unit = draw(st.sampled_from(["epoch", "step", "phase"]))
    bodies = draw(
        st.lists(st.sampled_from(["unfreeze tiny.0", "freeze tiny", "unfreeze *.head", "eval tied"]), min_size=1)
    )
    blocks = draw(st.integers(1, scale))
    lines = ["freeze all"]
    lines += [f"at {unit} {i} {{ {bodies[i % len(bodies)]} }}" for i in range(1, blocks + 1)]
    return Shape("schedule blocks", "\n".join(lines) + "\n")


def chain_manifest(depth: int, repeat_at: int | None = None, segment: str = "a") -> str:
    """A chain of ``depth`` nested Sequentials, each holding a Linear; the one at ``repeat_at`` lists its child twice."""
    modules, parameters = [], []
    prefix = ""
    for level in range(depth + 1):
        children = ["lin", segment] if level < depth else ["lin"]
        if level == repeat_at:
            children.append(segment)
        modules.append({"name": prefix.rstrip("."), "classes": ["Sequential"], "children": children})
        modules.append({"name": f"{prefix}lin", "classes": ["Linear"], "parameters": ["weight"]})
        parameters.append({"name": f"{prefix}lin.weight", "shape": [1, 1], "dtype": "float32", "requires_grad": True})
        prefix += f"{segment}."
    return json.dumps({"format": "policyfreeze-manifest", "version": 1, "modules": modules, "parameters": parameters})


@st.composite
def repeated_children(draw, scale: int) -> Shape:
    """A deep manifest in which one module lists a child name twice: every path doubles below it."""
    depth = draw(st.integers(1, scale))
    repeat_at = draw(st.integers(0, depth - 1))
    return Shape("repeated children", "freeze all\nunfreeze *.lin\n", chain_manifest(depth, repeat_at))


@st.composite
def long_names_and_globs(draw, scale: int) -> Shape:
    """Long module names against globs and regexes with many wildcards."""
    depth = draw(st.integers(1, 20))
    segment = "a" * draw(st.integers(1, 100 * scale // depth))  # the longest name: 100 x scale
    stars = draw(st.integers(1, 10 * scale))
    pattern = draw(
        st.sampled_from(
            [
                "*a" * stars + "*b",
                "*.lin" * min(stars, 50) + "*",
                "match /" + "(a[^.]*)" * stars + "b/",
                "match /(a+)+" + "a?" * stars + "b/",
            ]
        )
    )
    return Shape("long names x long globs", f"freeze {pattern}\n", chain_manifest(depth, segment=segment))


def hostile_shapes(scale: int) -> st.SearchStrategy[Shape]:
    """Every shape, up to ``scale`` (statements per line, blocks, depth; the longest name: 100 x ``scale``)."""
    return st.one_of(long_line(scale), schedule_blocks(scale), repeated_children(scale), long_names_and_globs(scale))


def check_shape(shape: Shape) -> None:
    """Parse, build the model, resolve every stage, lint: a result or a PolicyError, every message short."""
    source = Source("<shape>", shape.policy)
    try:
        tree = fuzz_tree() if shape.manifest is None else manifests.to_tree(manifests.parse(shape.manifest))
    except PolicyUsageError as exc:
        assert shape.kind == "repeated children", exc
        assert "twice" in str(exc), exc
        return
    assert shape.kind != "repeated children", "a manifest with a repeated child name was accepted"
    try:
        policy = parse_source(source)
    except PolicyError as exc:
        for error in exc.errors:
            check_location(source, error)
            assert len(error.render()) <= MAX_RENDERED, len(error.render())
        assert len(str(exc)) <= (MAX_SHOWN_ERRORS + 1) * MAX_RENDERED
        return
    plan = evaluate(tree, policy)
    for at in (0, *policy.milestones):  # stage by stage, as a Freezer does: each statement once
        plan = advance(plan, at)
        for problem in plan.warnings + plan.errors:
            check_location(source, problem)
            assert len(problem.render()) <= MAX_RENDERED, len(problem.render())
    for finding in lint(source, tree):
        check_location(source, finding)
        assert len(format_text([finding], files=1)) <= MAX_RENDERED, finding

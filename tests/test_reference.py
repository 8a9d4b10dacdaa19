"""The optimized resolver equals a reference evaluator written from the spec.

The reference below reads the spec literally and favours obviousness over
speed: a selector is a Python ``set`` of node names taken from
``named_modules(remove_duplicate=False)`` and ``named_parameters(remove_duplicate=False)``
(every name a node has, aliases included); an atom's matches are closed
downward by testing every name's dotted prefixes; ``,``, ``&`` and ``except``
are set union, intersection and difference; a verb reaches the tensors or
module objects that carry any name in the set, and the last statement to
reach one decides it. Regexes run through Python's ``re`` (the generated
ones mean the same in RE2), globs through ``fnmatch`` one segment at a time.

Hypothesis draws random policies from each model's real names (mutated
into globs and regexes, some matching nothing) and checks every parameter's
flag and deciding statement, every module's pin, and every "selects
nothing" warning and PF207 error, against ``policyfreeze.engine.resolve.evaluate``.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass
from unittest import mock

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_glob import spec_glob_matches as glob_matches
from torch import nn

from policyfreeze import parse
from policyfreeze.engine import select as selection
from policyfreeze.engine.resolve import evaluate
from policyfreeze.engine.select import _glob_matches, _name_matches, _name_matches_one_by_one, _regex_scanner, matches
from policyfreeze.language import regex
from policyfreeze.language.glob import glob_regex, glob_scanner
from policyfreeze.language.policy import (
    AllSelector,
    ChildrenSelector,
    DifferenceSelector,
    GlobSelector,
    IntersectionSelector,
    RegexSelector,
    TypeSelector,
    UnionSelector,
)
from policyfreeze.language.vocabulary import KEYWORDS
from policyfreeze.model.pins import is_pinned, pin
from policyfreeze.model.tree import ModelTree
from policyfreeze.model.walk import tree_of as walked_tree

# --- the reference evaluator --------------------------------------------------


def regex_matches(pattern: str, ignore_case: bool, name: str) -> bool:
    """``re.search`` anywhere in the name; ``\\z`` is RE2's spelling of Python's ``\\Z``."""
    flags = re.ASCII | (re.IGNORECASE if ignore_case else 0)
    return re.search(pattern.replace(r"\z", r"\Z"), name, flags) is not None


def class_matches(pattern: str, module: nn.Module) -> bool:
    return any(
        fnmatch.fnmatchcase(cls.__name__, pattern)
        for cls in type(module).__mro__
        if issubclass(cls, nn.Module) and cls is not nn.Module
    )


def children_of(module: nn.Module) -> list[str]:
    """Local names of ``module.children()``: a module registered twice counts once."""
    seen: set[int] = set()
    names = []
    for local, child in module._modules.items():
        if child is not None and id(child) not in seen:
            seen.add(id(child))
            names.append(local)
    return names


def joined(parent: str, local: str) -> str:
    return f"{parent}.{local}" if parent else local


def prefixes(name: str) -> list[str]:
    """The root and every dotted prefix of ``name``, itself included."""
    parts = name.split(".") if name else []
    return [""] + [".".join(parts[: i + 1]) for i in range(len(parts))]


@dataclass
class Reference:
    """Spec §2–§6 read literally, one name at a time."""

    model: nn.Module

    def __post_init__(self) -> None:
        self.modules = dict(self.model.named_modules(remove_duplicate=False))
        self.params = dict(self.model.named_parameters(remove_duplicate=False))
        self.names = set(self.modules) | set(self.params)

    def closed(self, matched: set[str]) -> set[str]:
        return {name for name in self.names if any(prefix in matched for prefix in prefixes(name))}

    def select(self, selector) -> set[str]:
        if isinstance(selector, UnionSelector):
            return set().union(*(self.select(item) for item in selector.items))
        if isinstance(selector, IntersectionSelector):
            return set.intersection(*(self.select(item) for item in selector.items))
        if isinstance(selector, DifferenceSelector):
            return self.select(selector.left) - self.select(selector.right)
        if isinstance(selector, AllSelector):
            return self.closed({""})
        if isinstance(selector, GlobSelector):
            return self.closed({n for n in self.names if glob_matches(selector.pattern, n)})
        if isinstance(selector, RegexSelector):
            return self.closed({n for n in self.names if regex_matches(selector.pattern, selector.ignore_case, n)})
        if isinstance(selector, TypeSelector):
            return self.closed({n for n, m in self.modules.items() if class_matches(selector.pattern, m)})
        if isinstance(selector, ChildrenSelector):
            if selector.parent is None:
                parents = [""]
            else:
                parents = [n for n in self.modules if glob_matches(selector.parent.pattern, n)]
            picked = set()
            for parent in parents:
                locals_ = children_of(self.modules[parent])
                picked |= {joined(parent, local) for item in selector.slices for local in _pick(item, locals_)}
            return self.closed(picked)
        raise TypeError(selector)

    def evaluate(self, policy, at: int) -> dict:
        due = sorted((block for block in policy.blocks if block.at <= at), key=lambda block: block.at)
        statements = list(policy.statements) + [s for block in due for s in block.statements]
        param_decider: dict[int, int] = {}  # id(tensor) -> statement index
        module_decider: dict[int, int] = {}  # id(module) -> statement index
        nothing = []
        for index, statement in enumerate(statements):
            names = self.select(statement.selector)
            if statement.verb in ("freeze", "unfreeze"):
                reached = {id(self.params[n]) for n in names if n in self.params}
                param_decider.update(dict.fromkeys(reached, index))
            else:
                reached = {id(self.modules[n]) for n in names if n in self.modules}
                module_decider.update(dict.fromkeys(reached, index))
            if not reached:
                nothing.append(index)

        def where(index: int | None):
            if index is None:
                return None
            statement = statements[index]
            return (statement.verb, statement.span.line, statement.span.column, statement.text, statement.options)

        requires_grad, decisions, unfreezable = {}, {}, []
        for name, tensor in self.model.named_parameters():
            index = param_decider.get(id(tensor))
            requires_grad[name] = tensor.requires_grad if index is None else statements[index].verb == "unfreeze"
            decisions[name] = where(index)
            if index is not None and requires_grad[name] and not (tensor.is_floating_point() or tensor.is_complex()):
                unfreezable.append((name, statements[index].span.line))
        pinned, pin_decisions = {}, {}
        for name, module in self.model.named_modules():
            index = module_decider.get(id(module))
            pinned[name] = is_pinned(module) if index is None else statements[index].verb == "eval"
            pin_decisions[name] = where(index)
        return {
            "requires_grad": requires_grad,
            "decisions": decisions,
            "pinned": pinned,
            "pin_decisions": pin_decisions,
            "nothing": [(statements[i].span.line, statements[i].span.column) for i in nothing],
            "unfreezable": unfreezable,
        }


def _pick(slice_, items: list) -> list:
    if slice_.is_index:
        return [items[slice_.start]] if -len(items) <= slice_.start < len(items) else []
    return items[slice_.start : slice_.stop : slice_.step]


def engine(model: nn.Module, policy, at: int) -> dict:
    plan = evaluate(walked_tree(model), policy, at)

    def where(decision):
        if decision is None:
            return None
        return (decision.verb, decision.line, decision.column, decision.text, decision.options)

    return {
        "requires_grad": plan.requires_grad,
        "decisions": {name: where(d) for name, d in plan.decisions.items()},
        "pinned": plan.pinned,
        "pin_decisions": {name: where(d) for name, d in plan.pin_decisions.items()},
        "nothing": [(w.line, w.column) for w in plan.warnings if w.code == "PF201"],
        "unfreezable": [(e.message.split()[2].rstrip(":"), e.line) for e in plan.errors if e.code == "PF207"],
    }


# --- models -----------------------------------------------------------------


class MyBatchNorm(nn.BatchNorm1d):
    """type() sees the MRO: BatchNorm1d, _BatchNorm, _NormBase."""


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(3)
        self.attn = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3, bias=False))
        self.experts = nn.ModuleList(nn.Linear(3, 3) for _ in range(3))


def structural(odd_names: dict[str, nn.Module]) -> nn.Module:
    """Tied weights, shared modules, parameterless children, digit names, odd names."""
    torch.manual_seed(0)
    root = nn.Module()
    root.embed = nn.Embedding(5, 3)
    root.blocks = nn.Sequential(*(Block() for _ in range(12)))  # 0 … 11: two-digit names too
    root.act = nn.ReLU()  # parameterless
    root.empty = nn.Sequential()  # no parameters, no children
    shared = nn.Linear(3, 3)
    root.blocks[1].extra = shared  # one module under two parents
    root.blocks[7].extra = shared
    twice = nn.Linear(3, 3)
    root.pair = nn.ModuleDict({"a": twice, "b": twice, "c": nn.Linear(3, 3)})  # twice under one parent
    root.norm = MyBatchNorm(3)
    root.head = nn.Linear(3, 5, bias=False)
    root.head.weight = root.embed.weight  # tied: one tensor, two names
    root.register_parameter("scale", nn.Parameter(torch.ones(1)))  # a parameter of the root itself
    root.register_parameter("absent", None)
    root.register_module("gone", None)
    root.table = nn.Module()
    root.table.index = nn.Parameter(torch.zeros(2, dtype=torch.long), requires_grad=False)  # PF207
    root.odd = nn.Module()
    root.odd._modules.update(odd_names)  # not add_module: 'children' and 'type' are Module methods
    deep = root
    for _ in range(30):
        deep.inner = nn.Sequential(nn.Linear(1, 1))
        deep = deep.inner
    root.blocks[3].attn[0].weight.requires_grad_(False)  # undecided parameters keep their state
    pin(root.blocks[2].norm)  # and undecided modules their pin
    return root


def odd_names() -> dict[str, nn.Module]:
    return {
        name: nn.Linear(1, 1) for name in ("type", "all", "except", "children", "my-block", "with space", "café", "ü2")
    }


def meta(name: str):
    def build() -> nn.Module:
        with torch.device("meta"):
            model = torchvision.models.get_model(name, weights=None)
        for i, param in enumerate(model.parameters()):
            param.requires_grad_(i % 3 != 0)
        return model

    return build


MODELS = {
    "structural": lambda: structural(odd_names()),
    # A name with a newline: selection cannot scan names joined by newlines and tests one by one.
    "newline-name": lambda: structural({**odd_names(), "two\nlines": nn.Linear(1, 1)}),
    **{
        name: meta(name)
        for name in ("resnet18", "mobilenet_v3_small", "densenet121", "vit_b_16", "swin_t", "convnext_tiny")
    },
}


@functools.cache
def model_named(name: str) -> nn.Module:
    # Resolution never mutates a model, so every example may share it.
    return MODELS[name]()


# --- random policies ----------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_*?]+(?:\.[A-Za-z0-9_*?]+)*")


def render_glob(glob: str) -> str:
    if _BARE.fullmatch(glob) and glob not in KEYWORDS:
        return glob
    return '"' + glob.replace('"', "?").replace("\n", "?") + '"'


@st.composite
def globs(draw, names: list[str]) -> str:
    segments = draw(st.sampled_from(names)).split(".")
    out = []
    for segment in segments:
        how = draw(st.integers(0, 9))
        if how == 0:
            out.append("*")
        elif how == 1 and len(segment) > 1:
            at = draw(st.integers(0, len(segment) - 1))
            out.append(segment[:at] + "?" + segment[at + 1 :])
        elif how == 2:
            out.append(segment[: draw(st.integers(0, len(segment)))] + "*")
        elif how == 3 and segment[:1].isdigit():
            out.append(draw(st.sampled_from(["[0-9]", "[!0]", "[0-5]", "[1-]"])) + segment[1:])
        elif how == 4:
            out.append("**")
        else:
            out.append(segment)
    if draw(st.integers(0, 4)) == 0:
        out.insert(0, "*")
    if draw(st.integers(0, 4)) == 0:
        out.append(draw(st.sampled_from(["*", "weight", "bias", "typo"])))
    return ".".join(out)


def escape(text: str) -> str:
    """An RE2- and re-safe literal: ASCII punctuation escaped, a newline as \\n, a slash as \\/."""
    out = []
    for ch in text:
        if ch == "\n":
            out.append(r"\n")
        elif ch.isascii() and not (ch.isalnum() or ch == "_"):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


@st.composite
def regexes(draw, names: list[str]) -> str:
    name = draw(st.sampled_from(names))
    start = draw(st.integers(0, len(name)))
    piece = escape(name[start : start + draw(st.integers(1, 12))])
    shape = draw(st.integers(0, 9))
    if shape == 0:
        piece = "^" + piece
    elif shape == 1:
        piece = piece + "$"
    elif shape == 2:
        piece = r"\A" + piece
    elif shape == 3:
        piece = piece + r"\z"
    elif shape == 4:
        piece = re.sub(r"[0-9]+", r"[0-9]+", piece)
    elif shape == 5:
        piece = piece + r"(?:\.|$)"
    elif shape == 6:
        piece = r"(?s:.)" + piece + "[^x]*"
    elif shape == 7:
        piece = "(?:" + piece + "|" + escape(draw(st.sampled_from(names))[-4:]) + ")"
    return piece


@st.composite
def atoms(draw, names: list[str], classes: list[str], repeating: list[str]) -> str:
    kind = draw(st.integers(0, 9))
    if kind <= 3:
        return render_glob(draw(globs(names)))
    if kind <= 5:
        body = draw(regexes(names)).replace("/", r"\/")
        return f"match /{body}/" + draw(st.sampled_from(["", "", "i"]))
    if kind == 6:
        name = draw(st.sampled_from(classes))
        return "type(" + draw(st.sampled_from([name, name[:3] + "*", "*" + name[-4:], "_*"])) + ")"
    if kind == 7:
        slice_ = draw(st.sampled_from(["0", "1", "-1", "1:", "1:3", "::2", "-2:", "5", ":0", "::-1", "40"]))
        if draw(st.booleans()):
            return f"children[{slice_}]"
        parents = draw(st.sampled_from([names, repeating or names]))
        return render_glob(draw(globs(parents))) + f".children[{slice_}]"
    if kind == 8:
        return "all"
    return render_glob(draw(st.sampled_from(["nothing_here", "*.nothing", "typo.*"])))


@st.composite
def selectors(draw, names: list[str], classes: list[str], repeating: list[str], depth: int = 0) -> str:
    if depth >= 2 or draw(st.integers(0, 2)) == 0:
        return draw(atoms(names, classes, repeating))
    left = draw(selectors(names, classes, repeating, depth + 1))
    right = draw(selectors(names, classes, repeating, depth + 1))
    operator = draw(st.sampled_from([", ", " & ", " except "]))
    return f"({left}{operator}{right})"


@st.composite
def policies(draw, model: nn.Module) -> tuple[str, int]:
    names = [name for name, _ in model.named_modules(remove_duplicate=False) if name]
    names += [name for name, _ in model.named_parameters(remove_duplicate=False)]
    classes = sorted({type(m).__name__ for m in model.modules()})
    # Modules holding one child under two names: children[] must count it once.
    repeating = [
        name
        for name, module in model.named_modules(remove_duplicate=False)
        if name and len(children_of(module)) < sum(child is not None for child in module._modules.values())
    ]

    def statement() -> str:
        verb = draw(st.sampled_from(["freeze", "unfreeze", "freeze", "unfreeze", "eval", "train"]))
        options = " with lr_scale=0.5" if verb == "unfreeze" and draw(st.integers(0, 3)) == 0 else ""
        return f"{verb} {draw(selectors(names, classes, repeating))}{options}"

    lines = [statement() for _ in range(draw(st.integers(1, 5)))]
    for at in draw(st.lists(st.integers(0, 3), max_size=2)):
        lines.append(f"at epoch {at} {{ " + "; ".join(statement() for _ in range(draw(st.integers(1, 2)))) + " }")
    return "\n".join(lines) + "\n", draw(st.integers(0, 3))


@pytest.mark.parametrize("narrow_share", [selection._NARROW_SHARE, 0], ids=["as-shipped", "always-narrow"])
@pytest.mark.parametrize("name", list(MODELS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_the_resolver_equals_the_reference(name, narrow_share, data):
    """Also with every ``a except b`` and ``a & b`` testing ``b`` only on the nodes in and above ``a``
    (a share of 0: ``a`` always counts as narrow)."""
    model = model_named(name)
    text, at = data.draw(policies(model), label="policy")
    policy = parse(text)
    with mock.patch.object(selection, "_NARROW_SHARE", narrow_share):
        assert engine(model, policy, at) == Reference(model).evaluate(policy, at)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("structural", "freeze pair.children[1:]"),  # pair.a and pair.b are one module: one child
        ("structural", "freeze pair.children[::2]"),
        ("structural", "freeze all; unfreeze head"),  # head.weight is embed.weight
        ("structural", "freeze blocks.7.extra; eval blocks.1.extra"),  # one module under two parents
        ("structural", "eval pair.b; train pair.a.*"),
        ("structural", "unfreeze table"),  # PF207
        ("structural", 'freeze "odd.café", odd.*.children[0], match /é|ü/i'),
        ("structural", "freeze children[-3:] except type(Linear); eval type(_BatchNorm)"),
        ("structural", "freeze *.children[0] & match /^blocks\\.1[01]/"),
        ("newline-name", 'freeze "odd.two?lines"; unfreeze match /o\\nl/; eval match /lines$/'),
        ("newline-name", "freeze match /(?s:o.l)/; unfreeze *.inner.*"),
    ],
)
def test_chosen_policies_equal_the_reference(name, text):
    """The cases a random draw rarely reaches, every run."""
    model = model_named(name)
    policy = parse(text + "\n")
    assert engine(model, policy, 0) == Reference(model).evaluate(policy, 0)


def test_the_structural_models_hold_what_the_property_needs():
    """The odd cases are really there, so the property above exercises them."""
    model = model_named("structural")
    names = [name for name, _ in model.named_parameters(remove_duplicate=False)]
    assert "embed.weight" in names and "head.weight" in names
    assert len(dict(model.named_parameters())) < len(names)  # tied and shared
    assert "pair.b" in dict(model.named_modules(remove_duplicate=False))
    assert walked_tree(model).name_lines.exact
    assert walked_tree(model_named("newline-name")).name_lines.exact is False


# --- the name scan equals testing names one by one ----------------------------------


def tree_of(paths: list[str]) -> ModelTree:
    """A tree of parameterless modules holding every path and its prefixes."""
    root = nn.Module()
    for path in paths:
        node = root
        for local in path.split("."):
            if local not in node._modules:
                node.add_module(local, nn.Module())
            node = node._modules[local]
    return walked_tree(root)


def paths(newlines: bool):
    chars = st.sampled_from("ab1_-é \n" if newlines else "ab1_-é ")
    return st.lists(st.text(chars, min_size=1, max_size=4), min_size=1, max_size=4).map(".".join)


trees = (
    st.booleans().flatmap(lambda newlines: st.lists(paths(newlines), min_size=1, max_size=8)).map(lambda p: tree_of(p))
)
glob_segments = st.one_of(
    st.sampled_from(["*", "**"]), st.text(st.sampled_from("ab1*?[]!-é\n"), min_size=1, max_size=5)
)
glob_patterns = st.lists(glob_segments, min_size=1, max_size=4).map(".".join)
regex_patterns = st.lists(
    st.sampled_from(
        ["a", "b", "1", r"\.", ".", "[^a]", "^", "$", r"\A", r"\z", r"\n", "(?s:.)", "é", "*", "|", "(?-m:^a)", r"\b"]
    ),
    min_size=1,
    max_size=6,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(trees, glob_patterns, st.booleans())
def test_a_glob_scan_finds_what_testing_each_name_finds(tree, pattern, below_matches):
    test = glob_regex(pattern).fullmatch
    ends = None if below_matches else tree.ends
    scanned = _name_matches(tree.dotted_names, tree.dotted_name_lines, glob_scanner(pattern), test, ends)
    assert scanned == _name_matches_one_by_one(tree.dotted_names, test, ends)
    assert scanned == [n for n in range(len(tree)) if glob_matches(pattern, tree.names[n])] or not below_matches


@settings(max_examples=400, deadline=None)
@given(trees, regex_patterns, st.booleans())
def test_a_regex_scan_finds_what_testing_each_name_finds(tree, pattern, ignore_case):
    if regex.problem(pattern):
        return  # the parser rejects it before selection
    search = regex.compile(pattern, ignore_case).search
    scanner = _regex_scanner(pattern, ignore_case)
    scanned = _name_matches(tree.names, tree.name_lines, scanner, search, tree.ends)
    assert scanned == _name_matches_one_by_one(tree.names, search, tree.ends)
    assert scanned == matches(tree, RegexSelector(pattern=pattern, ignore_case=ignore_case, span=SPAN))


SPAN = {"offset": 0, "end_offset": 1, "line": 1, "column": 1}


def tree_with_locals(locals_by_depth: list[list[str]]) -> ModelTree:
    """Nested modules whose local names may hold dots (set straight into ``_modules``), so full names can repeat."""
    root = nn.Module()
    parents = [root]
    for locals_ in locals_by_depth:
        children = []
        for parent in parents:
            for local in locals_:
                child = parent._modules.setdefault(local, nn.Module())
                child.register_parameter("w", nn.Parameter(torch.zeros(1)))
                children.append(child)
        parents = children
    return walked_tree(root)


dotted_locals = st.lists(
    st.lists(st.sampled_from(["a", "b", "a.b", "w", "b.w", "a.b.w"]), min_size=1, max_size=3), max_size=3
)


@settings(max_examples=300, deadline=None)
@given(dotted_locals, st.sampled_from(["a", "b", "a.b", "a.b.w", "b.w", "a.a.b", "b.a.b.w", "w", "x"]))
def test_a_plain_name_finds_every_node_of_that_name(locals_by_depth, name):
    tree = tree_with_locals(locals_by_depth)
    assert tree.nodes_named(name) == [node for node, full in enumerate(tree.names) if full == name]


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(trees, dotted_locals.map(tree_with_locals)),
    glob_patterns | st.sampled_from(["*.w", "a.*.w", "w", "*.b.w", "b.*", "a.b.w.*"]),
    st.booleans(),
)
def test_glob_selection_finds_what_testing_each_name_finds(tree, pattern, below_matches):
    """Whatever path selection takes (a plain name, candidates by a fixed last segment, a scan)."""
    ends = None if below_matches else tree.ends
    expected = _name_matches_one_by_one(tree.dotted_names, glob_regex(pattern).fullmatch, ends)
    assert _glob_matches(tree, pattern, below_matches=below_matches) == expected

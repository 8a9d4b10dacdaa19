"""The formatter: canonical layout, comments kept, idempotent, and parse(fmt(x)) == parse(x)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from policy_strategies import any_policy_text, policies

from policyfreeze.errors import PolicyError
from policyfreeze.language.fmt import fmt, glob_text, structure
from policyfreeze.language.grammar import split_comments
from policyfreeze.language.parser import parse

ROOT = Path(__file__).parent.parent


def _parses(path: Path) -> bool:
    try:
        parse(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, PolicyError):
        return False  # a lint corpus case of a broken policy
    return True


POLICY_FILES = [
    path
    for path in sorted((ROOT / "policies").glob("*.freeze")) + sorted((ROOT / "tests" / "lint_corpus").glob("*.freeze"))
    if _parses(path)
]


def comments(text: str) -> list[str]:
    return [body.rstrip() for _, body in split_comments(text.replace("\r\n", "\n").removeprefix("\ufeff"))[1]]


def check_round_trip(text: str) -> str:
    """fmt keeps the structure and every comment, and is idempotent; returns fmt(text)."""
    out = fmt(text)
    assert structure(parse(out)) == structure(parse(text))
    assert fmt(out) == out
    before, after = comments(text), comments(out)
    assert set(after) == set(before)
    assert len(after) >= len(before)  # a noqa comment shared by statements on one line is copied to each
    return out


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_files_round_trip(path: Path) -> None:
    check_round_trip(path.read_text(encoding="utf-8"))


# Canonical text formats to itself (sqlglot's identity test).
IDENTITY = [
    "",
    "freeze all\n",
    "freeze all\nunfreeze fc\n",
    "freeze conv1, bn1, layer1, layer2\n",
    "freeze all except fc, layer4.children[-1]\n",
    "freeze (a, b) & c\n",
    "freeze a, b & c\n",
    "freeze a except (b except c)\n",
    "freeze a except b except c\n",
    "freeze a & (b & c)\n",
    "freeze a, (b, c)\n",
    "freeze match /layer[12]/i & type(*Norm*)\n",
    "freeze match /a\\/b #c/\n",
    'freeze "epoch", "my-block".children[::2], type("odd name")\n',
    "freeze 0.*, *.bias, layer[!0].*\n",
    "unfreeze layer4 with lr=1e-4, weight_decay=0\n",
    "# a comment\n\nfreeze all  # trailing\n",
    "at epoch 3 {\n    unfreeze layer4 with lr_scale=0.1\n}\nat epoch 5 {}\n",
    "freeze all\n\nat step 100 {  # warm-up over\n    # the head first\n    unfreeze fc\n\n    unfreeze layer4\n}  # end\n",
]


@pytest.mark.parametrize("text", IDENTITY)
def test_canonical_text_is_unchanged(text: str) -> None:
    assert check_round_trip(text) == text


# (input, canonical output)
LAYOUT = [
    ("freeze all;unfreeze fc;", "freeze all\nunfreeze fc\n"),
    ("  freeze   all  \n\n\n\nunfreeze    fc\n\n", "freeze all\n\nunfreeze fc\n"),
    ("\n\n# head\nfreeze all", "# head\nfreeze all\n"),
    ("freeze a,b&c   except(d)", "freeze a, b & c except d\n"),
    ("freeze ((a))", "freeze a\n"),
    ("freeze (a, b), c", "freeze a, b, c\n"),  # the parser flattens a left-nested union
    ("freeze a, (b & c)", "freeze a, b & c\n"),
    ('freeze "layer1", "all", "0.*"', 'freeze layer1, "all", 0.*\n'),
    ("freeze type( BatchNorm2d )", "freeze type(BatchNorm2d)\n"),
    ('freeze type("BatchNorm2d")', "freeze type(BatchNorm2d)\n"),
    ("freeze children[ 0 : 2 ]", "freeze children[0:2]\n"),
    ("freeze children[+1:]", "freeze children[1:]\n"),
    ("freeze children[::]", "freeze children[:]\n"),
    ("unfreeze fc with lr = 1E-4 ,weight_decay=0.", "unfreeze fc with lr=1E-4, weight_decay=0.\n"),
    ("at epoch 3 { unfreeze layer4; unfreeze fc }", "at epoch 3 {\n    unfreeze layer4\n    unfreeze fc\n}\n"),
    ("at epoch +3 {\n\n}", "at epoch 3 {}\n"),
    # Brackets need no space around them (docs/language.md, "Files").
    ("at epoch 3{unfreeze fc}", "at epoch 3 {\n    unfreeze fc\n}\n"),
    ("freeze(fc)except(layer1)", "freeze fc except layer1\n"),
    ("at epoch 3 {\n\n  freeze a\n\n}", "at epoch 3 {\n    freeze a\n}\n"),
    ("freeze all   # why  \n", "freeze all  # why\n"),
    ("freeze all\r\nunfreeze fc\r\n", "freeze all\nunfreeze fc\n"),
    ("\ufefffreeze all", "freeze all\n"),
    # A comment inside a selector spanning lines moves above its statement...
    ("unfreeze (layer3,  # the middle\n   layer4)\n", "# the middle\nunfreeze layer3, layer4\n"),
    # ...but a noqa stays on the statement's line.
    ("unfreeze (layer8,  # noqa: PF201\n   layer9)\n", "unfreeze layer8, layer9  # noqa: PF201\n"),
    ("unfreeze (layer8,\n   layer9)  # noqa: PF201\n", "unfreeze layer8, layer9  # noqa: PF201\n"),
    # Statements that shared a line with a noqa each keep it.
    ("freeze a; freeze b  # noqa: PF201\n", "freeze a  # noqa: PF201\nfreeze b  # noqa: PF201\n"),
    ("freeze a; freeze b  # plain\n", "freeze a\nfreeze b  # plain\n"),
    ("at epoch 1 { freeze a }  # noqa\n", "at epoch 1 {\n    freeze a  # noqa\n}  # noqa\n"),
]


@pytest.mark.parametrize(("text", "expected"), LAYOUT)
def test_layout(text: str, expected: str) -> None:
    assert check_round_trip(text) == expected


@pytest.mark.parametrize(
    ("pattern", "written"),
    [
        ("layer1", "layer1"),
        ("*.fc.*", "*.fc.*"),
        ("0.weight", "0.weight"),
        ("all", '"all"'),
        ("epoch", '"epoch"'),
        ("my-block", '"my-block"'),
        ("a b", '"a b"'),
        ("x.children[0]", '"x.children[0]"'),
        ("é", '"é"'),
        ("allx", "allx"),
        ("all.x", "all.x"),
    ],
)
def test_names_are_quoted_only_when_needed(pattern: str, written: str) -> None:
    assert glob_text(pattern) == written
    assert parse(f"freeze {written}").statements[0].selector.pattern == pattern


def test_fmt_of_invalid_text_raises_the_policy_error() -> None:
    with pytest.raises(PolicyError) as caught:
        fmt("freeze all\nunfrezee fc\n", "p.freeze")
    assert caught.value.code == "PF101"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_generated_policies_round_trip(text: str) -> None:
    check_round_trip(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_policy_text())
def test_any_text_formats_or_raises_a_policy_error(text: str) -> None:
    try:
        parse(text)
    except PolicyError:
        with pytest.raises(PolicyError):
            fmt(text)
        return
    check_round_trip(text)


def test_canonical_output_has_no_semicolons_or_trailing_space() -> None:
    text = "freeze a;freeze b ;\nat epoch 1 { freeze c ; freeze d }\n"
    out = fmt(text)
    assert ";" not in out
    assert not re.search(r"[ \t]$", out, re.MULTILINE)

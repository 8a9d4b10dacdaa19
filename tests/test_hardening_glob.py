"""Globs: exactly fnmatch per segment, whole-segment wildcards, no catastrophic backtracking, and one
tokenizer whose two renderings (Python re, RE2) match the same names."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import textwrap

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from spec_glob import spec_glob_matches as reference_match

from policyfreeze.language.glob import (
    AnyChar,
    CharClass,
    Literal,
    Star,
    _compiled_scan,
    glob_regex,
    has_wildcard,
    segments,
    tokenize,
)


def cpython_quirk(pattern: str) -> bool:
    """A class where fnmatch drops an empty range and then reads the '!' after it as negation.

    ``fnmatch`` turns ``[z-a!x]`` into "not x" (and ``[?--!]`` into "any
    character"); policyfreeze drops the empty range and keeps '!' literal.
    """
    return re.search(r"-.!", pattern) is not None


def glob_matches(pattern: str, name: str) -> bool:
    # ModelTree.dotted_names: the root is "", every other name gets a leading dot.
    return glob_regex(pattern).fullmatch("." + name if name else "") is not None


segment_chars = st.sampled_from("ab-!^]\\\n")
name_segments = st.text(segment_chars, min_size=1, max_size=6)
names = st.lists(name_segments, max_size=5).map(".".join)
pattern_segments = st.one_of(
    st.sampled_from(["*", "**"]),
    st.text(st.sampled_from("ab*?[]!-^\\"), min_size=1, max_size=8),
)
patterns = st.lists(pattern_segments, min_size=1, max_size=5).map(".".join)


@settings(max_examples=1500, deadline=None)
@given(patterns, names)
def test_glob_equals_the_reference_matcher(pattern, name):
    assume(not cpython_quirk(pattern))
    assert glob_matches(pattern, name) == reference_match(pattern, name)


@settings(max_examples=500, deadline=None)
@given(st.text(st.sampled_from("ab*?[]!-^\\"), min_size=1, max_size=10), name_segments)
def test_a_segment_matches_as_fnmatch_does(pattern, segment):
    assume(not cpython_quirk(pattern))
    assert glob_matches(pattern, segment) == fnmatch.fnmatchcase(segment, pattern)


CASES = [
    # (glob, name): each is the classic worst case for a backtracking matcher.
    ("*a*a*a*a*a*a*a*a*b", "a" * 10_000),
    ("*" + "a*" * 200 + "b", "a" * 10_000),
    ("*.a.*.a.*.a.*.a.*.a.*.b", ".".join("a" * 10_000)),
    (".".join(["*", "a*a*a*"] * 20) + ".b", ".".join(["aaaaaaaaaa"] * 2_000)),
    ("*.*a*a*a*a*c.*", ".".join(["a" * 50] * 400)),
]


def test_adversarial_globs_finish_quickly():
    """Names of 10,000 characters or segments; a backtracking matcher would run for ages.

    The work runs in a subprocess whose timeout is far above the expected
    milliseconds: a regression shows up as a timeout, never as a flaky timing.
    """
    code = textwrap.dedent(
        f"""
        from policyfreeze.language.glob import glob_regex
        for pattern, name in {CASES!r}:
            assert glob_regex(pattern).fullmatch("." + name) is None
        print("done")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"


def test_an_empty_range_is_dropped_and_a_following_bang_stays_literal():
    assert glob_matches("[z-a!x]", "!") and not glob_matches("[z-a!x]", "b")
    assert glob_matches("[?--!]", "!") and not glob_matches("[?--!]", "a")


# --- one tokenizer, two renderings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segment", "tokens"),
    [
        ("fc", (Literal("fc"),)),
        ("*", (Star(),)),
        ("a**b", (Literal("a"), Star(), Literal("b"))),  # a run of stars is one
        ("a?c", (Literal("a"), AnyChar(), Literal("c"))),
        ("layer[12]", (Literal("layer"), CharClass(False, (("1", "1"), ("2", "2"))))),
        ("[!a-c]x", (CharClass(True, (("a", "c"),)), Literal("x"))),
        ("[]a]", (CharClass(False, (("]", "]"), ("a", "a"))),)),  # ']' first is a member
        ("[!]]", (CharClass(True, (("]", "]"),)),)),
        ("[z-a!x]", (CharClass(False, (("!", "!"), ("x", "x"))),)),  # an empty range is dropped
        ("[a-]", (CharClass(False, (("a", "a"), ("-", "-"))),)),
        ("a[bc", (Literal("a[bc"),)),  # never closed: literal
        ("[", (Literal("["),)),
        ("", ()),
    ],
)
def test_tokenize(segment, tokens):
    assert tokenize(segment) == tokens


def test_whole_segment_wildcards_and_plain_names():
    assert segments("*.**.fc.*") == (None, (Literal("fc"),), None)
    assert not has_wildcard("layer1.0.conv1") and not has_wildcard("a[b")
    assert has_wildcard("layer1.*") and has_wildcard("a?") and has_wildcard("[ab]")


def rendered_for_re2(pattern: str, name: str) -> bool:
    """The RE2 rendering on one name, as the scan of ``NameLines`` runs it."""
    return _compiled_scan(pattern).search(("." + name if name else "").encode()) is not None


scan_names = st.lists(st.text(st.sampled_from("ab-!^]\\é"), min_size=1, max_size=6), max_size=5).map(".".join)


@settings(max_examples=1500, deadline=None)
@given(patterns, scan_names)
def test_the_two_renderings_agree(pattern, name):
    assert rendered_for_re2(pattern, name) == glob_matches(pattern, name)

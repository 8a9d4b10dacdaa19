"""Dotted-name globs: one tokenizer, two renderings, and the bounds that keep matching cheap.

A glob is segments joined by '.'. A segment that is exactly ``*`` or ``**``
spans zero or more whole segments; any other segment is an fnmatch pattern
confined to one segment, read by ``tokenize`` into tokens: ``Star`` (``*``),
``AnyChar`` (``?``), ``CharClass`` (``[seq]``, ``[!seq]``) and ``Literal``.
Both renderings read the same tokens, so the two matchers cannot disagree on
what a glob means (``tests/test_hardening_glob.py`` holds them equal):

- ``glob_regex``: Python ``re``, one name at a time (a name with a newline, or
  a scan's uncertain line);
- ``glob_scanner``: RE2, one pass over every name joined into lines
  (``NameLines``).

RE2 matches in time linear in the text, but the cost per character grows with
the pattern's compiled size once the DFA RE2 builds as it goes outgrows its
memory budget. ``glob_too_costly`` and ``regex_too_costly`` cap that size, so
matching one pattern against the names costs at most their length times a
bounded constant (``docs/errors.md``, "Bounded time"). The policy's validators
call them, so a policy whose patterns cost too much does not load.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

import re2

from . import regex

#: At most this many RE2 instructions in a compiled glob (with wildcards) or regex.
#: Up to it, RE2's DFA holds every pattern whose states are sets of positions
#: (``*a*a…*b``, a long literal after a ``*``); a pattern whose DFA is
#: exponential still runs, in RE2's NFA, at this many steps per character at most.
MAX_PATTERN_PROGRAM = 1_000


@dataclass(frozen=True)
class Star:
    """``*`` within a segment: any characters but '.'."""


@dataclass(frozen=True)
class AnyChar:
    """``?``: one character, not '.'."""


@dataclass(frozen=True)
class CharClass:
    """``[seq]`` or ``[!seq]``: inclusive ranges ``(low, high)``, a single character as ``(c, c)``.

    Never matches '.' (a segment holds none, so a class cannot name one).
    """

    negated: bool
    ranges: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Literal:
    text: str


Token = Star | AnyChar | CharClass | Literal
#: A segment's tokens, or None for a segment that is exactly ``*`` or ``**``.
Segment = tuple[Token, ...] | None


def tokenize(segment: str) -> tuple[Token, ...]:
    """One fnmatch segment as tokens, read exactly as ``fnmatch`` reads it.

    A ``[`` without a closing ``]`` is a literal; ``]`` right after ``[`` or
    ``[!`` is a member; a range whose ends are out of order is dropped.
    Consecutive stars are one; consecutive literal characters are one ``Literal``.
    """
    tokens: list[Token] = []
    i, n = 0, len(segment)
    while i < n:
        ch = segment[i]
        i += 1
        if ch == "*":
            if not tokens or not isinstance(tokens[-1], Star):
                tokens.append(Star())
        elif ch == "?":
            tokens.append(AnyChar())
        elif ch == "[" and (close := _class_end(segment, i)) >= 0:
            tokens.append(_char_class(segment[i:close]))
            i = close + 1
        elif tokens and isinstance(tokens[-1], Literal):
            tokens[-1] = Literal(tokens[-1].text + ch)
        else:
            tokens.append(Literal(ch))
    return tuple(tokens)


def _class_end(segment: str, start: int) -> int:
    """Where fnmatch ends a class opened just before ``start``: ']' right after '[' or '[!' is a member."""
    j = start + (segment[start : start + 1] == "!")
    j += segment[j : j + 1] == "]"
    return segment.find("]", j)


def _char_class(body: str) -> CharClass:
    negated = body.startswith("!")
    body = body[1:] if negated else body
    ranges: list[tuple[str, str]] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = body[i], body[i + 2]
            if low <= high:  # fnmatch drops an empty range
                ranges.append((low, high))
            i += 3
        else:
            ranges.append((body[i], body[i]))
            i += 1
    return CharClass(negated, tuple(ranges))


@functools.lru_cache(maxsize=1024)
def segments(pattern: str) -> tuple[Segment, ...]:
    """The glob's segments, tokenized; consecutive ``*``/``**`` segments are one (they mean the same)."""
    out: list[Segment] = []
    for segment in pattern.split("."):
        if segment not in ("*", "**"):
            out.append(tokenize(segment))
        elif not out or out[-1] is not None:
            out.append(None)
    return tuple(out)


def has_wildcard(pattern: str) -> bool:
    """Whether the glob can match more than the one name it spells."""
    return any(segment is None or not _is_literal(segment) for segment in segments(pattern))


def _is_literal(segment: tuple[Token, ...]) -> bool:
    return all(isinstance(token, Literal) for token in segment)


def fixed_last_segment(pattern: str) -> str | None:
    """The glob's last segment when it is plain text (``w2`` in ``blocks.*.w2``), else None.

    Every name the glob matches then ends in that segment, which a lookup finds
    without testing every name.
    """
    last = segments(pattern)[-1]
    if last is None or not _is_literal(last):
        return None
    return "".join(token.text for token in last if isinstance(token, Literal))


def glob_too_costly(pattern: str) -> str | None:
    """Why matching a glob could cost too much, with the limit; None for a glob within it (or a plain name)."""
    if not has_wildcard(pattern):
        return None  # looked up by name, never compiled
    compiled = _compiled_scan(pattern)
    return _too_costly("glob", compiled.programsize if compiled is not None else None)


def regex_too_costly(pattern: str, ignore_case: bool = False) -> str | None:
    """Why matching ``match /pattern/`` could cost too much, with the limit; None within it.

    A regex RE2 cannot compile at all is the validator's other finding (PF102): None here.
    """
    try:
        size = regex.compile(pattern, ignore_case).programsize
    except re2.error:
        return None
    return _too_costly("regular expression", size)


def _too_costly(what: str, size: int | None) -> str | None:
    if size is not None and size <= MAX_PATTERN_PROGRAM:
        return None
    measured = "RE2 cannot compile it" if size is None else f"it compiles to {size:,} RE2 instructions"
    return f"the {what} is too complex to match in bounded time: {measured}, the limit is {MAX_PATTERN_PROGRAM:,}"


# Python re, one name at a time ----------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def glob_regex(pattern: str) -> re.Pattern:
    """The glob as a Python regex over a ``ModelTree.dotted_names`` entry (``fullmatch``).

    Matching takes polynomial time whatever the glob: a run of fixed pieces
    between two wildcards is matched at its leftmost place and never
    revisited (an atomic group, as ``fnmatch.translate`` does), so ``re``
    cannot backtrack through every way to split a name among the wildcards.
    Matching one name costs at most (length of the name) × (length of the glob).
    """
    groups = itertools.count()
    items: list[str | None] = [  # None: a whole-segment wildcard; str: one segment's regex
        None if segment is None else r"\." + _segment_regex(segment, groups) for segment in segments(pattern)
    ]
    parts: list[str] = []
    i = 0
    while i < len(items):
        item = items[i]
        if item is not None:
            parts.append(item)
            i += 1
            continue
        run_end = i + 1
        while run_end < len(items) and items[run_end] is not None:
            run_end += 1
        run = "".join(piece for piece in items[i + 1 : run_end] if piece is not None)
        if run and run_end < len(items):
            # A run between two wildcards: its leftmost place is as good as any.
            parts.append(_atomic(_ANY_SEGMENTS_LAZY + run + _SEGMENT_END, groups))
        else:
            parts.append(_ANY_SEGMENTS + run)
        i = run_end
    return re.compile("".join(parts), re.DOTALL)


_ANY_SEGMENTS = r"(?:\.[^.]*)*"
_ANY_SEGMENTS_LAZY = r"(?:\.[^.]*)*?"
_SEGMENT_END = r"(?![^.])"


def _atomic(regex: str, groups: Iterator[int]) -> str:
    # An atomic group that also works before Python 3.11: a lookahead never backtracks.
    name = f"g{next(groups)}"
    return f"(?=(?P<{name}>{regex}))(?P={name})"


def _segment_regex(tokens: tuple[Token, ...], groups: Iterator[int]) -> str:
    """One segment: ``*`` and ``?`` never match '.'."""
    pieces: list[str] = [""]  # the fixed-width pieces between the stars
    for token in tokens:
        if isinstance(token, Star):
            pieces.append("")
        else:
            pieces[-1] += _python_fixed(token)
    if len(pieces) == 1:
        return pieces[0]
    first, *middle, last = pieces
    # Each middle piece at its leftmost place: correct because pieces are fixed-width.
    return first + "".join(_atomic(f"[^.]*?{piece}", groups) for piece in middle if piece) + f"[^.]*{last}"


def _python_fixed(token: Token) -> str:
    if isinstance(token, Literal):
        return re.escape(token.text)
    if isinstance(token, AnyChar):
        return "[^.]"
    assert isinstance(token, CharClass)
    members = _members(token, re.escape)
    if not members:
        return "[^.]" if token.negated else "(?!)"
    return ("[^." if token.negated else "[") + members + "]"


def _members(token: CharClass, escape) -> str:
    return "".join(escape(low) if low == high else f"{escape(low)}-{escape(high)}" for low, high in token.ranges)


# RE2, one scan of every name ------------------------------------------------------------


def glob_scanner(pattern: str):
    """The glob as one RE2 regex over ``NameLines`` of dotted names, or None: then match a name at a time.

    The same language as ``glob_regex``, written for a scan: anchored to a
    line, wildcards never cross a newline, and RE2's linear time needs no
    atomic groups. None when RE2 cannot compile it, or when it has more than
    ``MAX_SCANNED_FIXED_WILDCARDS`` '?' and '[...]' after its first '*': then
    RE2's DFA must remember which of the last characters could have started
    a match, exponentially many states, and falls back to a much slower
    search. ``glob_regex`` matches those greedily, a name at a time.
    """
    if _fixed_wildcards_after_a_star(pattern) > MAX_SCANNED_FIXED_WILDCARDS:
        return None
    return _compiled_scan(pattern)


#: See ``glob_scanner``: 2 ** 8 DFA states at most for this reason, well within RE2's budget.
MAX_SCANNED_FIXED_WILDCARDS = 8


def _fixed_wildcards_after_a_star(pattern: str) -> int:
    count, starred = 0, False
    for segment in segments(pattern):
        for token in segment or ():
            if isinstance(token, Star):
                starred = True
            elif starred and isinstance(token, (AnyChar, CharClass)):
                count += 1
        starred = starred or segment is None
    return count


@functools.lru_cache(maxsize=1024)
def _compiled_scan(pattern: str):
    parts: list[str] = []
    for segment in segments(pattern):
        parts.append(_SCAN_ANY_SEGMENTS if segment is None else r"\." + "".join(map(_scan_token, segment)))
    try:
        return re2.compile("(?m)^" + "".join(parts) + "$", regex.options())
    except re2.error:
        return None


_SCAN_ANY_SEGMENTS = r"(?:\.[^.\n]*)*"


def _scan_token(token: Token) -> str:
    if isinstance(token, Star):
        return r"[^.\n]*"
    if isinstance(token, AnyChar):
        return r"[^.\n]"
    if isinstance(token, Literal):
        return "".join(map(_scan_literal, token.text))
    members = _members(token, _scan_literal)
    if token.negated:
        return r"[^.\n" + members + "]"
    return "[" + members + "]" if members else r"[^\x00-\x{10FFFF}]"  # nothing


def _scan_literal(ch: str) -> str:
    return ch if ch.isascii() and (ch.isalnum() or ch == "_") else f"\\x{{{ord(ch):x}}}"

"""The Lark parser of the language, built once from the shipped grammar, and comment handling.

The grammar's one source is the project's ``grammar/policy.lark``; the wheel
carries a copy as ``policyfreeze/language/grammar.lark`` (a test holds them
identical). Comments are blanked out before parsing, keeping every offset, and
returned for ``# noqa`` and ``fmt``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lark
from lark import Token

from ..errors import PolicyUsageError

#: Brackets nested in one statement: the parse tree's depth stays bounded.
MAX_NESTING = 64

GRAMMAR_LOCATIONS = (
    # Installed wheel: the build copies grammar/policy.lark into the package.
    Path(__file__).parent / "grammar.lark",
    # Source checkout or editable install: the project's top-level grammar/, the one source.
    Path(__file__).parents[2] / "grammar" / "policy.lark",
)


@dataclass(frozen=True)
class Comment:
    """A ``#`` comment: kept out of the grammar, kept for ``# noqa`` and ``fmt``."""

    line: int
    column: int
    offset: int
    text: str


def split_comments(text: str) -> tuple[str, list[tuple[int, str]]]:
    """Blank out comments (same offsets, so positions hold) and return them.

    A ``#`` inside a ``/regex/`` or a ``"quoted glob"`` is not a comment. A
    regex or quote left open ends at the line's end; the parser reports it.
    """
    out = list(text)
    comments: list[tuple[int, str]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in '/"':
            i += 1
            while i < n and text[i] not in (ch, "\n"):
                i += 2 if ch == "/" and text[i] == "\\" and i + 1 < n and text[i + 1] != "\n" else 1
            i += 1 if i < n and text[i] == ch else 0
        elif ch == "#":
            end = text.find("\n", i)
            end = n if end < 0 else end
            comments.append((i, text[i:end]))
            out[i:end] = " " * (end - i)
            i = end
        else:
            i += 1
    return "".join(out), comments


class TooDeep(Exception):
    """Brackets nested past MAX_NESTING; ``token`` is the first bracket too many."""

    def __init__(self, token: Token) -> None:
        self.token = token


class _Postlexer(lark.lark.PostLex):
    """Drops newlines inside brackets (a selector may span lines) and bounds nesting."""

    always_accept = ("_NL",)
    _OPEN = ("LPAR", "LSQB")
    _CLOSE = ("RPAR", "RSQB")

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        for token in stream:
            if token.type in self._OPEN:
                depth += 1
                if depth > MAX_NESTING:
                    raise TooDeep(token)
            elif token.type in self._CLOSE:
                depth = max(0, depth - 1)
            elif token.type == "_NL" and depth:
                continue
            yield token


def grammar_text() -> str:
    """The Lark grammar of the language, as shipped."""
    for path in GRAMMAR_LOCATIONS:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise PolicyUsageError("policyfreeze is installed without its grammar (policy.lark)")


@functools.cache
def parser() -> lark.Lark:
    """The LALR parser, with positions on every node."""
    return lark.Lark(
        grammar_text(),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=False,
        postlex=_Postlexer(),
    )

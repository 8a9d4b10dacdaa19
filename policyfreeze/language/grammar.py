"""The Lark parser of the language, built from the shipped grammar, and comment handling.

The grammar's one source is the project's ``grammar/policy.lark``; the wheel
carries a copy of it beside this module, as package data. Building the LALR
tables takes longer than everything else ``policyfreeze lint`` does, so the
built parser is kept as plain data (JSON, never pickle) in the user's cache
(``policyfreeze.cache``), keyed by the digest of the grammar and the versions
of lark and policyfreeze; an entry that does not match, or does not load, is
rebuilt. Comments are blanked out before parsing, keeping every offset, and
returned for ``# noqa`` and ``fmt``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lark
from lark import Token

from .. import __version__
from .. import cache as user_cache
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


#: How the parser is built. Positions are read from tokens (transformer.py), not propagated.
_OPTIONS: dict[str, Any] = {"parser": "lalr", "maybe_placeholders": False}


@functools.cache
def parser() -> lark.Lark:
    """The LALR parser: from the cache when it holds this grammar's."""
    text = grammar_text()
    key: dict[str, Any] = {
        "grammar": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "options": _OPTIONS,
        "lark": lark.__version__,
        "policyfreeze": __version__,
    }
    directory = user_cache.directory()
    path = directory / "parsers" / f"{key['grammar'][:32]}.json" if directory is not None else None
    if path is not None:
        cached = _cached(path, key)
        if cached is not None:
            return cached
    built = lark.Lark(text, **_OPTIONS, postlex=_Postlexer())
    if path is not None:
        data, memo = built.memo_serialize([lark.lexer.TerminalDef, lark.grammar.Rule])
        data["options"]["postlex"] = None  # an object: given again when the parser is loaded
        entry = json.dumps({"key": key, "data": _encoded(data), "memo": _encoded(memo)}, separators=(",", ":"))
        user_cache.write_atomically(path, entry.encode("utf-8"))
    return built


def _cached(path: Path, key: dict[str, Any]) -> lark.Lark | None:
    """The parser kept at ``path`` for ``key``, or None when there is none that loads."""
    try:
        data = user_cache.read_entry(path)
        if data is None:
            return None
        entry = json.loads(data, object_hook=_decoded)
        if entry["key"] != key:
            return None
        return lark.Lark._load_from_dict(entry["data"], entry["memo"], postlex=_Postlexer())
    except Exception:  # absent, truncated, foreign or from another lark: rebuilt, never trusted
        return None


#: Lark's tables have integer and tuple keys, which JSON objects cannot: such a mapping is a list of pairs.
_PAIRS = "(pairs)"


def _encoded(value: Any) -> Any:
    if isinstance(value, dict):
        if all(isinstance(key, str) and key != _PAIRS for key in value):
            return {key: _encoded(item) for key, item in value.items()}
        return {_PAIRS: [[_encoded(key), _encoded(item)] for key, item in value.items()]}
    if isinstance(value, list | tuple):
        return [_encoded(item) for item in value]
    return value


def _decoded(value: dict) -> Any:
    if len(value) == 1 and _PAIRS in value:
        return {tuple(key) if isinstance(key, list) else key: item for key, item in value[_PAIRS]}
    return value

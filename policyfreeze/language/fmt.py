"""``fmt``: one canonical layout for policy files, comments kept.

The layout: one statement per line, no ``;``; selectors spaced as ``a, b``,
``a & b``, ``a except b`` with only the parentheses the structure needs;
names quoted only when a bare name would not parse back to the same glob;
options as ``with lr=1e-4, weight_decay=0`` (numbers as written); ``at``
blocks open on their own line and indent their statements by four spaces
(an empty block is ``at epoch N {}``); runs of blank lines become one, and
none lead, trail, open or close a block. Comments stay where they were: a
comment after code stays at the end of that line (two spaces before ``#``), a
comment inside a selector that spans lines moves above its statement — except
a ``# noqa``, which stays on the statement's line.

``parse(fmt(x))`` equals ``parse(x)`` up to positions and quoting
(``structure``), and ``fmt(fmt(x)) == fmt(x)``.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import PolicyError, PolicyUsageError
from .grammar import Comment, split_comments
from .parser import parse, parse_with_comments
from .policy import (
    AllSelector,
    Block,
    ChildrenSelector,
    DifferenceSelector,
    GlobSelector,
    IntersectionSelector,
    Policy,
    RegexSelector,
    Statement,
    TypeSelector,
    UnionSelector,
)
from .source import MAX_SOURCE_BYTES, Source

INDENT = "    "
_NOQA = re.compile(r"#\s*noqa\b", re.IGNORECASE)
_OPTION = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([^\s,]+)")


def fmt(text: str, source: str = "<string>") -> str:
    """``text`` in the canonical layout (raises ``PolicyError`` when it does not parse)."""
    return format_source(Source(source, text))


def format_source(source: Source) -> str:
    """The canonical layout of ``source``; a ``PolicyUsageError`` when it could not be written back.

    The result is checked before it is returned: it must stay within the size
    limit and parse to the same structure, so fmt never writes a policy that
    no longer loads or means something else.
    """
    policy, comments = parse_with_comments(source)
    text = _Layout(source, policy, comments).render()
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE_BYTES:
        raise PolicyUsageError(
            f"{source.name}: the formatted policy would be {size:,} bytes, over the {MAX_SOURCE_BYTES:,}-byte "
            "limit, so it would no longer load: left as it is",
            help="split the policy, or select with fewer, broader patterns",
        )
    try:
        same = structure(parse_with_comments(Source(source.name, text))[0]) == structure(policy)
    except PolicyError:
        same = False
    if not same:
        raise PolicyUsageError(
            f"{source.name}: the formatted policy would not mean the same as the original: left as it is",
            help="please report this with the policy: fmt must keep every statement's meaning",
        )
    return text


# --- selectors ----------------------------------------------------------------

# Binding strength: except binds loosest, then ',', then '&'; atoms bind tightest.
_LEVEL: dict[type, int] = {DifferenceSelector: 0, UnionSelector: 1, IntersectionSelector: 2}
_ATOM = 3


def selector_text(selector) -> str:
    """A selector in canonical form, parenthesised only where the structure needs it."""
    if isinstance(selector, DifferenceSelector):
        return f"{_operand(selector.left, 0)} except {_operand(selector.right, 1)}"
    if isinstance(selector, UnionSelector):
        first, *rest = selector.items
        return ", ".join([_operand(first, 1), *(_operand(item, 2) for item in rest)])
    if isinstance(selector, IntersectionSelector):
        first, *rest = selector.items
        return " & ".join([_operand(first, 2), *(_operand(item, _ATOM) for item in rest)])
    if isinstance(selector, AllSelector):
        return "all"
    if isinstance(selector, GlobSelector):
        return glob_text(selector.pattern)
    if isinstance(selector, RegexSelector):
        return f"match /{selector.pattern}/" + ("i" if selector.ignore_case else "")
    if isinstance(selector, TypeSelector):
        return f"type({glob_text(selector.pattern)})"
    if isinstance(selector, ChildrenSelector):
        parent = f"{glob_text(selector.parent.pattern)}." if selector.parent else ""
        return f"{parent}children[{selector.index_text()}]"
    raise TypeError(f"not a selector: {selector!r}")


def _operand(selector: Any, level: int) -> str:
    text = selector_text(selector)
    return f"({text})" if _LEVEL.get(type(selector), _ATOM) < level else text


@functools.lru_cache(maxsize=4096)
def glob_text(pattern: str) -> str:
    """``pattern`` bare when it parses back as that very glob, else double-quoted."""
    try:
        selector = parse(f"freeze {pattern}").statements[0].selector
    except (PolicyError, IndexError):
        return f'"{pattern}"'
    if isinstance(selector, GlobSelector) and selector.pattern == pattern:
        return pattern
    return f'"{pattern}"'


def statement_text(statement: Statement, code: str) -> str:
    """A statement in canonical form; ``code`` is its source text with comments blanked out."""
    text = f"{statement.verb} {selector_text(statement.selector)}"
    if statement.options is not None:
        # Numbers as written (1e-4 stays 1e-4): read them from the source.
        tail = code[statement.selector.span.end_offset : statement.span.end_offset]
        options = tail[tail.index("with") + len("with") :]
        text += " with " + ", ".join(f"{key}={value}" for key, value in _OPTION.findall(options))
    return text


# --- layout -------------------------------------------------------------------


@dataclass
class _Line:
    text: str
    #: the source line where the code of this output line ended (None: a comment line)
    source_line: int | None
    opens_block: bool = False
    is_statement: bool = False


class _Layout:
    def __init__(self, source: Source, policy: Policy, comments: list[Comment]) -> None:
        self.source = source
        self.code = split_comments(source.text)[0]
        self.policy = policy
        self.comments = comments
        self.lines: list[_Line] = []
        self.previous_end: int | None = None  # source line where the last emitted thing ended

    def render(self) -> str:
        statements = sorted(self.policy.all_statements(), key=lambda s: s.span.offset)
        starts = [s.span.offset for s in statements]
        blocks = self.policy.blocks  # in file order, never nested
        block_starts = [b.span.offset for b in blocks]
        comment_offsets = [c.offset for c in self.comments]
        inner: dict[int, list[Comment]] = {}
        # (offset, handler, arguments): everything to lay out, called in file order.
        events: list[tuple[int, Callable, tuple]] = []
        for comment in self.comments:
            owner = _containing(statements, starts, comment.offset)
            if owner is not None:
                inner.setdefault(id(owner), []).append(comment)
            else:
                depth = int(_containing(blocks, block_starts, comment.offset) is not None)
                events.append((comment.offset, self.comment, (comment, depth)))
        for statement in statements:
            depth = int(statement.stage is not None)
            events.append((statement.span.offset, self.statement, (statement, depth, inner.get(id(statement), []))))
        self.empty_blocks = set()
        for block in blocks:
            first = bisect.bisect_right(comment_offsets, block.span.offset)
            if not block.statements and not (
                first < len(comment_offsets) and comment_offsets[first] < block.span.end_offset
            ):
                self.empty_blocks.add(id(block))
            events.append((block.span.offset, self.open_block, (block,)))
            events.append((block.span.end_offset - 1, self.close_block, (block,)))
        for _, handler, arguments in sorted(events, key=lambda event: event[0]):
            handler(*arguments)
        return "".join(line.text.rstrip() + "\n" for line in self.lines)

    def _emit(
        self,
        text: str,
        start_line: int,
        end_line: int | None,
        *,
        closes: bool = False,
        opens: bool = False,
        is_statement: bool = False,
    ) -> None:
        if (
            self.lines
            and self.previous_end is not None
            and start_line - self.previous_end >= 2
            and not self.lines[-1].opens_block
            and not closes
        ):
            self.lines.append(_Line("", None))
        self.lines.append(_Line(text, end_line, opens, is_statement))
        self.previous_end = end_line if end_line is not None else start_line

    def comment(self, comment: Comment, depth: int) -> None:
        text = comment.text.rstrip()
        if self.previous_end == comment.line and self.lines and self.lines[-1].source_line == comment.line:
            self._trail(self.lines[-1], text)
            if _NOQA.search(text):
                # Statements that shared the line keep their noqa on their own line.
                for line in self.lines[:-1]:
                    if line.is_statement and line.source_line == comment.line:
                        self._trail(line, text)
            return
        self._emit(INDENT * depth + text, comment.line, None)

    @staticmethod
    def _trail(line: _Line, text: str) -> None:
        line.text = f"{line.text}  {text}"

    def statement(self, statement: Statement, depth: int, inner: list[Comment]) -> None:
        start = statement.span.line
        end = self.source.line_col(statement.span.end_offset)[0]
        trailing = []
        for comment in inner:
            text = comment.text.rstrip()
            if _NOQA.search(text):
                trailing.append(text)
            else:
                self._emit(INDENT * depth + text, start, None)
        self._emit(INDENT * depth + statement_text(statement, self.code), start, end, is_statement=True)
        for text in trailing:
            self._trail(self.lines[-1], text)

    def open_block(self, block: Block) -> None:
        head = f"at {block.unit} {block.at} {{"
        close_line = self.source.line_col(block.span.end_offset - 1)[0]
        if id(block) in self.empty_blocks:
            self._emit(head + "}", block.span.line, close_line)
        else:
            self._emit(head, block.span.line, block.span.line, opens=True)

    def close_block(self, block: Block) -> None:
        if id(block) in self.empty_blocks:
            return  # closed on its opening line
        line = self.source.line_col(block.span.end_offset - 1)[0]
        self._emit("}", line, line, closes=True)


def _containing(items, starts: list[int], offset: int):
    """The item (statement or block, sorted by start) whose span strictly contains ``offset``."""
    index = bisect.bisect_right(starts, offset) - 1
    if index >= 0 and starts[index] < offset < items[index].span.end_offset:
        return items[index]
    return None


# --- structure ----------------------------------------------------------------

_LEXICAL = frozenset({"span", "text", "quoted"})


def structure(policy: Policy) -> dict:
    """The policy as plain data without positions, statement text or quoting: what fmt must keep."""
    return _strip(policy.model_dump(exclude={"source"}))


def _strip(value):
    if isinstance(value, dict):
        return {key: _strip(item) for key, item in value.items() if key not in _LEXICAL}
    if isinstance(value, (list, tuple)):
        return [_strip(item) for item in value]
    return value

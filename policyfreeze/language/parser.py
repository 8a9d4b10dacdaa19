"""Text → validated ``Policy``: parse with the grammar, build plain data, validate it in one pass.

Every problem is collected and raised once as a ``PolicyError`` (each with
its position, the line with a caret and a help line); the first is the
exception itself, ``errors`` holds them all.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lark
from pydantic import ValidationError

from .. import collector
from ..errors import PolicyError, PolicySyntaxError, PolicyValidationError
from . import grammar, syntax_errors
from .grammar import Comment, split_comments
from .policy import HELP, HIDDEN, Policy
from .source import Source
from .transformer import Raw, ToData

#: Operators nested in one selector (each ``except``, and each run of ``,`` or ``&``):
#: every later stage walks selectors recursively, so their depth is bounded.
MAX_SELECTOR_DEPTH = 100

_CODE = re.compile(r"PF\d{3}")


def parse(text: str, source: str = "<string>") -> Policy:
    """Parse and validate policy text; raise a PolicyError describing every problem."""
    return parse_source(Source(source, text))


def load(path: str | Path) -> Policy:
    """Read, parse and validate a policy file."""
    return parse_source(Source.from_path(path))


def parse_source(source: Source) -> Policy:
    policy, _ = parse_with_comments(source)
    return policy


@collector.paused
def parse_with_comments(source: Source) -> tuple[Policy, list[Comment]]:
    """The policy and its comments (for ``# noqa`` and the formatter)."""
    problem = source.too_long_error() or _surrogate_error(source)
    if problem is not None:
        raise problem
    blanked, raw_comments = split_comments(source.text)
    hidden = _hidden_in_comments(source, raw_comments)
    if hidden:
        raise PolicyError.collect(hidden)
    try:
        tree = grammar.parser().parse(blanked + "\n")
    except grammar.TooDeep as exc:
        raise source.error(
            PolicySyntaxError,
            f"selectors nested deeper than {grammar.MAX_NESTING} brackets",
            exc.token.start_pos or 0,
            exc.token.end_pos,
            help="split the statement into several statements",
        ) from None
    except lark.exceptions.UnexpectedInput as exc:
        raise syntax_errors.explain(source, blanked, exc) from None
    policy, errors = _validated(source, ToData(blanked).transform(tree))
    del tree  # the exception below must not keep the parse tree alive through this frame
    if errors:
        errors.sort(key=lambda e: (e.line or 0, e.column or 0))
        raise PolicyError.collect(errors)
    assert policy is not None  # _validated gives a policy or errors
    comments = [Comment(*source.line_col(offset), offset, text) for offset, text in raw_comments]
    return policy, comments


def _validated(source: Source, data: Raw) -> tuple[Policy | None, list[PolicyError]]:
    """The policy the parse data describes, or the positioned errors of every rule it breaks."""
    errors = _drop_too_deep(source, data)
    try:
        policy = Policy.model_validate({"source": source, **data})
    except ValidationError as exc:
        return None, errors + [_positioned(source, data, error) for error in exc.errors()]
    return (None, errors) if errors else (policy, [])


def _positioned(source: Source, data: Raw, error: Any) -> PolicyError:
    """A validation failure as a PolicyError at the place in the text its location names."""
    code = error["type"] if _CODE.fullmatch(error["type"]) else "PF101"
    kind = PolicySyntaxError if code == "PF101" else PolicyValidationError
    span = _span_at(data, error["loc"])
    help_text = (error.get("ctx") or {}).get(HELP)
    message = error["msg"].removeprefix("Value error, ")
    return source.error(kind, message, span["offset"], span["end_offset"], help=help_text, code=code)


def _span_at(data: Raw, loc: tuple) -> Raw:
    """The span of the innermost node ``loc`` reaches, or its field's own ``<field>_span``."""
    node: Any = data
    span = None
    for part in loc:
        if isinstance(node, dict):
            if part not in node:
                if node.get("kind") == part:
                    continue  # a discriminated union names the kind it tried
                break
            own = node.get(f"{part}_span")
            node = node[part]
            if own is not None:
                span = own
                continue
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            break
        if isinstance(node, dict) and "span" in node:
            span = node["span"]
    return span or {"offset": 0, "end_offset": 1}


def _drop_too_deep(source: Source, data: Raw) -> list[PolicyError]:
    """Errors for statements whose selectors nest operators past MAX_SELECTOR_DEPTH, which leave ``data``."""
    errors: list[PolicyError] = []
    for holder in [data, *data["blocks"]]:
        kept = []
        for statement in holder["statements"]:
            too_deep = _first_too_deep(statement["selector"])
            if too_deep is None:
                kept.append(statement)
                continue
            errors.append(
                source.error(
                    PolicySyntaxError,
                    f"the selector nests operators more than {MAX_SELECTOR_DEPTH} deep",
                    too_deep["offset"],
                    too_deep["end_offset"],
                    help="write 'A except (B, C)' rather than 'A except B except C', or split the statement",
                )
            )
        holder["statements"] = kept
    return errors


def _first_too_deep(selector: Raw) -> Raw | None:
    """The span of the first operator past MAX_SELECTOR_DEPTH, found without recursion."""
    pending = [(selector, 1)]
    while pending:
        node, depth = pending.pop()
        kind = node["kind"]
        if kind not in ("union", "intersection", "difference"):
            continue  # an atom: nothing nests inside it
        if depth > MAX_SELECTOR_DEPTH:
            return node["span"]
        operands = node["items"] if kind != "difference" else [node["left"], node["right"]]
        pending.extend((operand, depth + 1) for operand in operands)
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate_error(source: Source) -> PolicyError | None:
    # Only a str can hold one (decoding bytes never yields it), and RE2 cannot encode it.
    found = _SURROGATE.search(source.text)
    if found is None:
        return None
    return source.error(
        PolicySyntaxError,
        f"the text holds a lone surrogate U+{ord(found.group()):04X}, which is not a character",
        found.start(),
        found.end(),
        help="decode the file with errors='strict', or pass its path to policyfreeze.load()",
    )


def _hidden_in_comments(source: Source, comments: list[tuple[int, str]]) -> list[PolicyError]:
    """PF101 for each comment holding a control character (``fmt --diff`` and lint would print it)."""
    errors = []
    for offset, text in comments:
        found = HIDDEN.search(text)  # Source made CRLF line ends LF: a CR left is in the comment
        if found is not None:
            errors.append(
                source.error(
                    PolicySyntaxError,
                    f"a comment cannot hold the control character U+{ord(found.group()):04X}",
                    offset + found.start(),
                    offset + found.end(),
                    help="comments are printable text; remove the character",
                    code="PF101",
                )
            )
    return errors

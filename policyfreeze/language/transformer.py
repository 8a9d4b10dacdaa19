"""Parse tree → plain data for validation: one method per grammar rule.

Every node becomes a dict shaped like the ``policy`` model it will be validated
as, with its ``span`` (and ``<field>_span`` where a field has its own place in
the text, so an error about it points there). Nothing is judged here: the
pydantic models in ``policy.py`` hold every rule, and ``parser.py`` validates
the whole policy in one pass.

Places are read from the tokens: the grammar names the tokens that bound a
node (``at`` … ``}``, ``with``, ``type(`` … ``)``, parentheses), so no
position has to be propagated through the tree (which would double the time
Lark takes to parse).
"""

from __future__ import annotations

from typing import Any

from lark import Token, Transformer

Raw = dict[str, Any]
#: A parenthesised selector keeps its own span; its parentheses count for the node around it.
EXTENT = "extent"


def span_of(token: Token) -> Raw:
    """A token's place in the text, as ``policy.Span`` takes it."""
    return {"offset": token.start_pos, "end_offset": token.end_pos, "line": token.line, "column": token.column}


def span_over(first: Token | Raw, last: Token | Raw) -> Raw:
    """The place from the start of ``first`` to the end of ``last`` (tokens or built nodes)."""
    start = _extent(first)
    return {**start, "end_offset": _extent(last)["end_offset"]}


def _extent(part: Token | Raw) -> Raw:
    if isinstance(part, Token):
        return span_of(part)
    return part.get(EXTENT) or part["span"]


class ToData(Transformer):
    """Builds the plain data of a policy from its parse tree (``text`` has comments blanked out)."""

    def __init__(self, text: str) -> None:
        super().__init__(visit_tokens=False)
        self.text = text

    # Statements --------------------------------------------------------------

    def start(self, items: list[Raw]) -> Raw:
        return {
            "statements": [item for item in items if "verb" in item],
            "blocks": [item for item in items if "unit" in item],
        }

    def block(self, children: list) -> Raw:
        at_keyword, unit, at, _, *statements, closing = children
        return {
            "unit": str(unit),
            "at": str(at),
            "at_span": span_of(at),
            "statements": statements,
            "span": span_over(at_keyword, closing),
        }

    def statement(self, children: list) -> Raw:
        verb, selector, *options = children
        span = span_over(verb, options[0] if options else selector)
        return {
            "verb": str(verb),
            "selector": selector,
            "options": options[0] if options else None,
            "text": " ".join(self.text[span["offset"] : span["end_offset"]].split()),
            "span": span,
        }

    def options(self, children: list) -> Raw:
        keyword, *entries = children
        return {"entries": entries, "span": span_over(keyword, entries[-1])}

    def option(self, children: list[Token]) -> Raw:
        key, value = children
        return {
            "key": str(key),
            "key_span": span_of(key),
            "value": str(value),
            "written": str(value),
            "value_span": span_of(value),
            "span": span_over(key, value),
        }

    # Selectors ---------------------------------------------------------------

    def difference(self, children: list[Raw | Token]) -> Raw:
        # `a except b except c` is `(a except b) except c`: fold to the left.
        operands = [child for child in children if not isinstance(child, Token)]  # the `except` tokens
        result = operands[0]
        for right in operands[1:]:
            result = {"kind": "difference", "left": result, "right": right, "span": span_over(operands[0], right)}
        return result

    def union(self, items: list[Raw]) -> Raw:
        return _chain("union", items)

    def intersection(self, items: list[Raw]) -> Raw:
        return _chain("intersection", items)

    def group(self, children: list) -> Raw:
        opening, selector, closing = children
        return {**selector, EXTENT: span_over(opening, closing)}

    def all(self, children: list[Token]) -> Raw:
        return {"kind": "all", "span": span_of(children[0])}

    def glob(self, children: list[Token]) -> Raw:
        (token,) = children
        quoted = token.type == "QUOTED_GLOB"
        return {
            "kind": "glob",
            "pattern": token[1:-1] if quoted else str(token),
            "quoted": quoted,
            "span": span_of(token),
        }

    def match(self, children: list[Token]) -> Raw:
        keyword, token = children
        body, _, flags = str(token)[1:].rpartition("/")
        place = span_of(token)
        return {
            "kind": "match",
            "pattern": body,
            "pattern_span": place,
            "ignore_case": flags,
            "ignore_case_span": place,
            "span": span_over(keyword, token),
        }

    def type(self, children: list) -> Raw:
        keyword, _, glob, closing = children
        return {
            "kind": "type",
            "pattern": glob["pattern"],
            "quoted": glob["quoted"],
            "pattern_span": glob["span"],
            "span": span_over(keyword, closing),
        }

    def children(self, children: list) -> Raw:
        first, brackets = children[0], children[-1]
        parent = first if isinstance(first, dict) else None
        return {"kind": "children", "parent": parent, "slices": brackets["items"], "span": span_over(first, brackets)}

    def slices(self, children: list) -> Raw:
        items = [child for child in children if isinstance(child, dict)]
        brackets = span_over(children[0], children[-1])
        for item in items:
            # One slice (or an empty one, which has no place of its own) is shown with its brackets.
            if len(items) == 1 or "span" not in item:
                item["span"] = brackets
        return {"items": items, "span": brackets}

    def slice(self, children: list[Token]) -> Raw:
        fields = iter(("start", "stop", "step"))
        field = next(fields)
        item: Raw = {"start": None, "stop": None, "step": None, "is_index": True}
        for token in children:
            if token.type == "COLON":
                field = next(fields)
                item["is_index"] = False
            else:
                item[field], item[f"{field}_span"] = str(token), span_of(token)
        if children:
            item["span"] = span_over(children[0], children[-1])
        return item


def _chain(kind: str, items: list[Raw]) -> Raw:
    span = span_over(items[0], items[-1])
    # The operators are associative: `(a, b), c` is `a, b, c`, one flat union (as fmt writes it).
    if items[0]["kind"] == kind:
        items = [*items[0]["items"], *items[1:]]
    return {"kind": kind, "items": items, "span": span}

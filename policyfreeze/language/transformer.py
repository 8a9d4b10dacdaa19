"""Parse tree → plain data for validation: one method per grammar rule, positions from ``meta``.

Every node becomes a dict shaped like the ``policy`` model it will be validated
as, with its ``span`` (and ``<field>_span`` where a field has its own place in
the text, so an error about it points there). Nothing is judged here: the
pydantic models in ``policy.py`` hold every rule, and ``parser.py`` validates
the whole policy in one pass.
"""

from __future__ import annotations

from typing import Any

from lark import Token, Transformer, v_args
from lark.tree import Meta

Raw = dict[str, Any]


def span_of(node: Meta | Token) -> Raw:
    """A node's place in the text, as ``policy.Span`` takes it."""
    if isinstance(node, Token):
        return {"offset": node.start_pos, "end_offset": node.end_pos, "line": node.line, "column": node.column}
    return {"offset": node.start_pos, "end_offset": node.end_pos, "line": node.line, "column": node.column}


def _chain(kind: str, meta: Meta, items: list[Raw]) -> Raw:
    # The operators are associative: `(a, b), c` is `a, b, c`, one flat union (as fmt writes it).
    if items[0]["kind"] == kind:
        items = [*items[0]["items"], *items[1:]]
    return {"kind": kind, "items": items, "span": span_of(meta)}


@v_args(meta=True)
class ToData(Transformer):
    """Builds the plain data of a policy from its parse tree (``text`` has comments blanked out)."""

    def __init__(self, text: str) -> None:
        super().__init__(visit_tokens=False)
        self.text = text

    # Statements --------------------------------------------------------------

    def start(self, meta: Meta, items: list[Raw]) -> Raw:
        return {
            "statements": [item for item in items if "verb" in item],
            "blocks": [item for item in items if "unit" in item],
        }

    def block(self, meta: Meta, children: list) -> Raw:
        unit, at, *statements = children
        return {
            "unit": str(unit),
            "at": str(at),
            "at_span": span_of(at),
            "statements": statements,
            "span": span_of(meta),
        }

    def statement(self, meta: Meta, children: list) -> Raw:
        verb, selector, *options = children
        return {
            "verb": str(verb),
            "selector": selector,
            "options": options[0] if options else None,
            "text": " ".join(self.text[meta.start_pos : meta.end_pos].split()),
            "span": span_of(meta),
        }

    def options(self, meta: Meta, entries: list[Raw]) -> Raw:
        return {"entries": entries, "span": span_of(meta)}

    def option(self, meta: Meta, children: list[Token]) -> Raw:
        key, value = children
        return {
            "key": str(key),
            "key_span": span_of(key),
            "value": str(value),
            "written": str(value),
            "value_span": span_of(value),
            "span": span_of(meta),
        }

    # Selectors ---------------------------------------------------------------

    def difference(self, meta: Meta, operands: list[Raw]) -> Raw:
        # `a except b except c` is `(a except b) except c`: fold to the left.
        result = operands[0]
        for right in operands[1:]:
            span = {**span_of(meta), "end_offset": right["span"]["end_offset"]}
            result = {"kind": "difference", "left": result, "right": right, "span": span}
        return result

    def union(self, meta: Meta, items: list[Raw]) -> Raw:
        return _chain("union", meta, items)

    def intersection(self, meta: Meta, items: list[Raw]) -> Raw:
        return _chain("intersection", meta, items)

    def all(self, meta: Meta, children: list[Token]) -> Raw:
        return {"kind": "all", "span": span_of(meta)}

    def glob(self, meta: Meta, children: list[Token]) -> Raw:
        (token,) = children
        quoted = token.type == "QUOTED_GLOB"
        return {
            "kind": "glob",
            "pattern": token[1:-1] if quoted else str(token),
            "quoted": quoted,
            "span": span_of(token),
        }

    def match(self, meta: Meta, children: list[Token]) -> Raw:
        token = children[1]
        body, _, flags = str(token)[1:].rpartition("/")
        place = span_of(token)
        return {
            "kind": "match",
            "pattern": body,
            "pattern_span": place,
            "ignore_case": flags,
            "ignore_case_span": place,
            "span": span_of(meta),
        }

    def type(self, meta: Meta, children: list) -> Raw:
        glob = children[1]
        return {
            "kind": "type",
            "pattern": glob["pattern"],
            "quoted": glob["quoted"],
            "pattern_span": glob["span"],
            "span": span_of(meta),
        }

    def children(self, meta: Meta, children: list) -> Raw:
        parent = children[0] if len(children) == 3 else None
        return {"kind": "children", "parent": parent, "slices": children[-1], "span": span_of(meta)}

    def slices(self, meta: Meta, children: list) -> list[Raw]:
        items = [child for child in children if isinstance(child, dict)]
        brackets = span_of(meta)
        for item in items:
            # One slice (or an empty one, which has no place of its own) is shown with its brackets.
            if len(items) == 1 or "span" not in item:
                item["span"] = brackets
        return items

    def slice(self, meta: Meta, children: list[Token]) -> Raw:
        fields = iter(("start", "stop", "step"))
        field = next(fields)
        item: Raw = {"start": None, "stop": None, "step": None, "is_index": True}
        for token in children:
            if token.type == "COLON":
                field = next(fields)
                item["is_index"] = False
            else:
                item[field], item[f"{field}_span"] = str(token), span_of(token)
        if not meta.empty:
            item["span"] = span_of(meta)
        return item

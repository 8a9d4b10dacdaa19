"""Text → validated ``Policy``: the Lark grammar, comment handling, positioned errors.

Lark builds a parse tree; ``_Builder`` turns it into ``rules`` models after the
parse (never inside a Lark callback), collecting every validation error so one
run reports them all.
"""

from __future__ import annotations

import difflib
import functools
import gc
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lark
import re2
from lark import Token, Tree
from pydantic import ValidationError

from ..errors import PolicyError, PolicySyntaxError, PolicyUsageError, PolicyValidationError, shorten
from .policy import (
    KEYWORDS,
    OPTION_KEYS,
    AllSelector,
    Block,
    ChildrenSelector,
    DifferenceSelector,
    GlobSelector,
    IntersectionSelector,
    Options,
    Policy,
    RegexSelector,
    Slice,
    Span,
    Statement,
    TypeSelector,
    UnionSelector,
)
from .source import Source

MAX_NESTING = 64
# Operators nested in one selector (each `except`, and each run of `,` or `&`):
# every later stage walks selectors recursively, so their depth is bounded.
MAX_SELECTOR_DEPTH = 100
# Slice bounds and `at` N: Python ints, but not so long that printing one fails.
MAX_INT_DIGITS = 100

_GRAMMAR_LOCATIONS = (
    # Installed wheel: the build copies grammar/policy.lark into the package.
    Path(__file__).parent / "grammar.lark",
    # Source checkout or editable install: the project's top-level grammar/, the one source.
    Path(__file__).parents[2] / "grammar" / "policy.lark",
)

_EXPECTED_NAMES = {
    "VERB": "a verb (freeze, unfreeze, eval, train)",
    "GLOB": "a name or glob",
    "QUOTED_GLOB": "a quoted name",
    "ALL": "'all'",
    "MATCH": "'match'",
    "TYPE": "'type'",
    "CHILDREN": "'children'",
    "REGEX": "a /regex/",
    "INT": "an integer",
    "NUMBER": "a number",
    "OPTION_KEY": "an option name (lr, lr_scale, weight_decay)",
    "UNIT": "'epoch', 'step' or 'phase'",
    "_NL": "a new line",
    "SEMICOLON": "';'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "AMPERSAND": "'&'",
    "EQUAL": "'='",
    "DOT": "'.'",
    "COLON": "':'",
    "EXCEPT": "'except'",
    "WITH": "'with'",
    "AT": "'at'",
    "$END": "the end of the file",
}
_KEYWORDS_OF = {
    "VERB": ("freeze", "unfreeze", "eval", "train"),
    "UNIT": ("epoch", "step", "phase"),
    "AT": ("at",),
    "EXCEPT": ("except",),
    "WITH": ("with",),
    "ALL": ("all",),
    "MATCH": ("match",),
    "TYPE": ("type",),
    "CHILDREN": ("children",),
}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
                    raise _TooDeep(token)
            elif token.type in self._CLOSE:
                depth = max(0, depth - 1)
            elif token.type == "_NL" and depth:
                continue
            yield token


class _TooDeep(Exception):
    def __init__(self, token: Token) -> None:
        self.token = token


@functools.cache
def _parser() -> lark.Lark:
    for path in _GRAMMAR_LOCATIONS:
        if path.is_file():
            return lark.Lark(
                path.read_text(encoding="utf-8"),
                parser="lalr",
                propagate_positions=True,
                maybe_placeholders=False,
                postlex=_Postlexer(),
            )
    raise PolicyUsageError("policyfreeze is installed without its grammar (policy.lark)")


def grammar_text() -> str:
    """The Lark grammar of the language, as shipped."""
    for path in _GRAMMAR_LOCATIONS:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise PolicyUsageError("policyfreeze is installed without its grammar (policy.lark)")


def parse(text: str, source: str = "<string>") -> Policy:
    """Parse and validate policy text; raise a PolicyError describing every problem."""
    return parse_source(Source(source, text))


def load(path: str | Path) -> Policy:
    """Read, parse and validate a policy file."""
    return parse_source(Source.from_path(path))


def parse_source(source: Source) -> Policy:
    policy, _ = parse_with_comments(source)
    return policy


def _collection_paused(function):
    """Run ``function`` with the cyclic garbage collector paused (then restored as it was).

    A parse allocates hundreds of thousands of objects (Lark's tree, then the
    rules models) and frees them all by reference counting; every collection
    meanwhile would only re-scan survivors, and parse time would grow faster
    than the file (2.5x for twice the statements; bench/bench_parse.py).
    """

    @functools.wraps(function)
    def paused(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return paused


@_collection_paused
def parse_with_comments(source: Source) -> tuple[Policy, list[Comment]]:
    """The policy and its comments (for ``# noqa`` and the formatter)."""
    problem = source.too_long_error() or _surrogate_error(source)
    if problem is not None:
        raise problem
    blanked, raw_comments = split_comments(source.text)
    try:
        tree = _parser().parse(blanked + "\n")
    except _TooDeep as exc:
        raise source.error(
            PolicySyntaxError,
            f"selectors nested deeper than {MAX_NESTING} brackets",
            exc.token.start_pos,
            exc.token.end_pos,
            help="split the statement into several statements",
        ) from None
    except lark.exceptions.UnexpectedInput as exc:
        raise _syntax_error(source, blanked, exc) from None
    comments = [Comment(*source.line_col(offset), offset, text) for offset, text in raw_comments]
    return _Builder(source, blanked).policy(tree), comments


# --- syntax errors ---------------------------------------------------------

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


def _line_end(text: str, offset: int) -> int:
    end = text.find("\n", offset)
    return len(text) if end < 0 else end


def _word_at(text: str, offset: int) -> str:
    end = offset
    while end < len(text) and (text[end].isalnum() or text[end] in "_"):
        end += 1
    return text[offset:end]


def _describe_expected(expected: set[str]) -> str:
    # A newline is always acceptable to the postlexer; only ';' means "a statement may end here".
    separators = {"SEMICOLON", "_NL"}
    names = sorted({_EXPECTED_NAMES.get(name, name) for name in expected - separators})
    if "SEMICOLON" in expected:
        names.append("';' or a new line")
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _suggest(word: str, candidates: tuple[str, ...] | list[str]) -> str | None:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _syntax_error(source: Source, text: str, exc: lark.exceptions.UnexpectedInput) -> PolicyError:
    if isinstance(exc, lark.exceptions.UnexpectedEOF) or (
        isinstance(exc, lark.exceptions.UnexpectedToken) and exc.token.type == "$END"
    ):
        return _eof_error(source, text, _acceptable(exc, set(exc.expected)))

    offset = exc.pos_in_stream or 0
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        expected = set(exc.allowed or ())
        word = _word_at(text, offset)
        shown = word or text[offset]
        end = offset + max(1, len(word))
        if not shown.isprintable():
            return source.error(
                PolicySyntaxError,
                f"unexpected control character U+{ord(shown):04X}",
                offset,
                offset + 1,
                help="a policy is plain UTF-8 text; a NUL byte often means a binary or UTF-16 file",
            )
    else:
        expected = set(exc.expected)
        token = exc.token
        word = str(token) if _WORD.fullmatch(str(token)) else ""
        shown = "" if token.type == "_NL" else str(token)
        end = token.end_pos if token.end_pos is not None else offset + 1
    expected = _acceptable(exc, expected)

    help_text = None
    opener = text[offset : offset + 1]
    if opener == "/" and "REGEX" in expected:
        return source.error(
            PolicySyntaxError,
            "the regex is never closed",
            offset,
            _line_end(text, offset),
            help="end it with '/' on the same line; write '\\/' for a slash inside it",
        )
    if opener == '"' and "QUOTED_GLOB" in expected:
        return source.error(
            PolicySyntaxError,
            "the quoted name is never closed",
            offset,
            offset + 1,
            help="end it with '\"' on the same line",
        )
    if word:
        keywords = [k for name in expected for k in _KEYWORDS_OF.get(name, ())]
        if expected & {"VERB", "UNIT"} and word not in KEYWORDS:
            message = f"unknown word '{shorten(word)}', expected {_describe_expected(expected)}"
            help_text = _suggest(word, keywords)
        elif "OPTION_KEY" in expected:
            message = f"unknown option '{shorten(word)}'"
            help_text = _suggest(word, OPTION_KEYS) or f"options are {', '.join(OPTION_KEYS)}"
        else:
            message = f"unexpected '{shorten(word)}', expected {_describe_expected(expected)}"
            if word in _KEYWORDS_OF["VERB"] and "SEMICOLON" in expected:
                help_text = "end the previous statement with ';' or a new line"
            elif word not in KEYWORDS:
                help_text = _suggest(word, keywords)
    elif not shown:
        message = f"the line ends too early, expected {_describe_expected(expected)}"
    else:
        quoted = f"'{shorten(shown)}'" if shown.isprintable() else repr(shorten(shown))
        message = f"unexpected {quoted}, expected {_describe_expected(expected)}"
    previous = text[:offset].rsplit(None, 1)[-1:]
    if previous and previous[0] in ("type", "match", "all") and help_text is None:
        help_text = f"'{previous[0]}' is a keyword; to name a module called {previous[0]}, quote it: \"{previous[0]}\""
    if help_text is None and opener == "/":
        help_text = "a regular expression is written match /REGEX/"
    if help_text is None and opener == "[" and _class_with_comment_characters(source.text, offset):
        help_text = "a glob whose [class] holds '#' or '/' is written quoted: \"layer[#]\" (no glob holds '\"')"
    return source.error(PolicySyntaxError, message, offset, end, help=help_text)


def _class_with_comment_characters(text: str, offset: int) -> bool:
    # Bare globs cannot hold them: '#' starts a comment, '/' a regex, '"' a quoted name.
    close = text.find("]", offset, _line_end(text, offset))
    return close > offset and any(ch in text[offset:close] for ch in '#/"')


def _eof_error(source: Source, text: str, expected: set[str]) -> PolicyError:
    opener = _unclosed(text)
    if opener is not None:
        char, offset = opener
        closer = {"(": ")", "[": "]", "{": "}"}[char]
        return source.error(
            PolicySyntaxError,
            f"'{char}' is never closed",
            offset,
            offset + 1,
            help=f"add the matching '{closer}'",
        )
    location = source.end_location()
    return PolicySyntaxError(
        f"the file ends too early, expected {_describe_expected(set(expected))}",
        location=location,
    )


def _acceptable(exc: lark.exceptions.UnexpectedInput, expected: set[str]) -> set[str]:
    """The terminals of ``expected`` that can really come next.

    The LALR tables merge states, so Lark's list can name '}' at the top level,
    ')' outside any parenthesis or ';' inside one; feeding each to a copy of
    the parser (``accepts``) keeps only those it takes.
    """
    parser = exc.interactive_parser
    accepted = expected & parser.accepts() if parser is not None else expected
    return accepted or expected


def _unclosed(text: str) -> tuple[str, int] | None:
    """The innermost bracket left open at the end of (comment-free) text, if any."""
    stack: list[tuple[str, int]] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in '/"':
            close = text.find(ch, i + 1)
            i = len(text) if close < 0 else close + 1
            continue
        if ch in "([{":
            stack.append((ch, i))
        elif ch in pairs and stack and stack[-1][0] == pairs[ch]:
            stack.pop()
        i += 1
    return stack[-1] if stack else None


# --- tree → rules -----------------------------------------------------------


class _Builder:
    """Builds validated ``rules`` models from the Lark tree, collecting every error."""

    def __init__(self, source: Source, blanked: str) -> None:
        self.source = source
        self.blanked = blanked
        self.errors: list[PolicyError] = []

    def policy(self, tree: Tree) -> Policy:
        statements: list[Statement] = []
        blocks: list[Block] = []
        for item in tree.children:
            if item.data == "statement":
                statement = self.statement(item, stage=None)
                if statement is not None:
                    statements.append(statement)
            else:
                block = self.block(item)
                if block is not None:
                    blocks.append(block)
        self._check_units(blocks)
        if self.errors:
            self.errors.sort(key=lambda e: (e.line or 0, e.column or 0))
            raise PolicyError.collect(self.errors)
        return Policy(source=self.source, statements=tuple(statements), blocks=tuple(blocks))

    # Positions -------------------------------------------------------------

    def span(self, node: Tree | Token) -> Span:
        if isinstance(node, Token):
            return Span(offset=node.start_pos, end_offset=node.end_pos, line=node.line, column=node.column)
        meta = node.meta
        return Span(offset=meta.start_pos, end_offset=meta.end_pos, line=meta.line, column=meta.column)

    def fail(
        self,
        message: str,
        at: Tree | Token | Span,
        *,
        code: str,
        help: str | None = None,
        kind: type[PolicyError] = PolicyValidationError,
    ) -> None:
        span = at if isinstance(at, Span) else self.span(at)
        self.errors.append(self.source.error(kind, message, span.offset, span.end_offset, help=help, code=code))

    def validated(self, model: type, at: Tree | Token, code: str, **fields):
        """``model(**fields)``, or None with a positioned error per pydantic failure."""
        try:
            return model(**fields)
        except ValidationError as exc:
            for error in exc.errors():
                message = str(error.get("ctx", {}).get("error", error["msg"]))
                kind = PolicySyntaxError if code == "PF101" else PolicyValidationError
                self.fail(message.removeprefix("Value error, "), at, code=code, kind=kind)
            return None

    # Statements ------------------------------------------------------------

    def block(self, tree: Tree) -> Block | None:
        unit, at = tree.children[0], tree.children[1]
        value = self.integer(at, code="PF101", kind=PolicySyntaxError)
        least = 1 if unit == "phase" else 0
        if value is not None and value < least:
            self.fail(
                f"{unit} must be {least} or more, not {value}",
                at,
                code="PF101",
                kind=PolicySyntaxError,
                help="the statements outside any block are phase 0" if unit == "phase" else None,
            )
        statements = [self.statement(child, stage=value) for child in tree.children[2:]]
        if value is None or value < least or any(s is None for s in statements):
            return None
        return Block(unit=str(unit), at=value, statements=tuple(statements), span=self.span(tree))

    def _check_units(self, blocks: list[Block]) -> None:
        units = {block.unit for block in blocks}
        if len(units) > 1:
            first = blocks[0].unit
            other = next(b for b in blocks if b.unit != first)
            self.fail(
                f"'at {other.unit}' in a file that schedules by {first}",
                other.span,
                code="PF106",
                help=f"use one unit per file: every block 'at {first} N' or every block 'at {other.unit} N'",
            )

    def integer(self, token: Token, *, code: str, kind: type[PolicyError]) -> int | None:
        """The token's value, or None with an error when it has more digits than any use needs."""
        sign = token[0] if token[0] in "+-" else ""
        digits = token.removeprefix(sign).lstrip("0") or "0"
        if len(digits) > MAX_INT_DIGITS:
            self.fail(
                f"integer {shorten(str(token))} is too long: at most {MAX_INT_DIGITS} digits",
                token,
                code=code,
                kind=kind,
            )
            return None
        return int(sign + digits)

    def statement(self, tree: Tree, stage: int | None) -> Statement | None:
        verb, selector_tree, *rest = tree.children
        too_deep = _first_too_deep(selector_tree)
        if too_deep is not None:
            self.fail(
                f"the selector nests operators more than {MAX_SELECTOR_DEPTH} deep",
                too_deep,
                code="PF101",
                kind=PolicySyntaxError,
                help="write 'A except (B, C)' rather than 'A except B except C', or split the statement",
            )
            return None
        selector = self.selector(selector_tree)
        options = self.options(rest[0], str(verb)) if rest else None
        if selector is None or (rest and options is None):
            return None
        meta = tree.meta
        return Statement(
            verb=str(verb),
            selector=selector,
            options=options,
            text=" ".join(self.blanked[meta.start_pos : meta.end_pos].split()),
            span=self.span(tree),
            stage=stage,
        )

    def options(self, tree: Tree, verb: str) -> Options | None:
        values: dict[str, float] = {}
        ok = True
        for option in tree.children:
            key, value = option.children
            name = str(key)
            if name not in OPTION_KEYS:
                self.fail(
                    f"unknown option '{shorten(name)}'",
                    key,
                    code="PF104",
                    help=_suggest(name, OPTION_KEYS) or f"options are {', '.join(OPTION_KEYS)}",
                )
                ok = False
                continue
            if name in values:
                self.fail(f"option '{name}' is given twice", key, code="PF104")
                ok = False
                continue
            try:
                values[name] = float(value)
            except ValueError:
                self.fail(f"{name} must be a number, not '{shorten(value)}'", value, code="PF104")
                ok = False
                continue
            field_error = _option_error(name, values[name])
            if field_error:
                self.fail(f"{name} {field_error}, not {shorten(value)}", value, code="PF104")
                ok = False
        if verb != "unfreeze":
            self.fail(
                f"options belong to 'unfreeze' only, not '{verb}'",
                tree,
                code="PF105",
                help="move the options to the unfreeze statement that makes these parameters train",
            )
            return None
        if "lr" in values and "lr_scale" in values:
            self.fail(
                "lr and lr_scale together: give one",
                tree,
                code="PF105",
                help="lr is an absolute learning rate; lr_scale multiplies the optimizer's base lr",
            )
            return None
        return Options(**values) if ok else None

    # Selectors -------------------------------------------------------------

    def selector(self, tree: Tree | Token):
        kind = tree.data if isinstance(tree, Tree) else None
        if kind in ("union", "intersection"):
            items = self._chain(tree, kind)
            built = [self.selector(item) for item in items]
            if any(item is None for item in built):
                return None
            model = UnionSelector if kind == "union" else IntersectionSelector
            return model(items=tuple(built), span=self.span(tree))
        if kind == "difference":
            left, right = tree.children
            built_left, built_right = self.selector(left), self.selector(right)
            if built_left is None or built_right is None:
                return None
            return DifferenceSelector(left=built_left, right=built_right, span=self.span(tree))
        if kind == "all":
            return AllSelector(span=self.span(tree))
        if kind == "glob":
            return self.glob(tree)
        if kind == "match":
            return self.regex(tree.children[1], self.span(tree))
        if kind == "type":
            glob = self.glob(tree.children[1])
            if glob is None:
                return None
            return self.validated(TypeSelector, tree.children[1], "PF101", pattern=glob.pattern, span=self.span(tree))
        if kind == "children":
            parent = self.glob(tree.children[0]) if len(tree.children) == 3 else None
            if len(tree.children) == 3 and parent is None:
                return None
            brackets = tree.children[-1]
            slices = [self.slice(item, brackets) for item in brackets.children[1:-1] if isinstance(item, Tree)]
            if any(item is None for item in slices):
                return None
            return ChildrenSelector(parent=parent, slices=tuple(slices), span=self.span(tree))
        raise AssertionError(f"unhandled parse tree node {kind}")  # grammar and builder disagree

    @staticmethod
    def _chain(tree: Tree, kind: str) -> list:
        """Flatten a left-recursive chain iteratively: long lists cannot overflow the stack."""
        items = []
        while isinstance(tree, Tree) and tree.data == kind:
            left, right = tree.children
            items.append(right)
            tree = left
        items.append(tree)
        return items[::-1]

    def glob(self, tree: Tree) -> GlobSelector | None:
        token = tree.children[0]
        if token.type == "QUOTED_GLOB":
            return self.validated(GlobSelector, token, "PF101", pattern=token[1:-1], quoted=True, span=self.span(token))
        if str(token) in KEYWORDS:
            self.fail(
                f"'{token}' is a keyword, not a name",
                token,
                code="PF101",
                kind=PolicySyntaxError,
                help=f'to name a module called {token}, quote it: "{token}"',
            )
            return None
        return self.validated(GlobSelector, token, "PF101", pattern=str(token), span=self.span(token))

    def regex(self, token: Token, span: Span) -> RegexSelector | None:
        body, _, flags = str(token)[1:].rpartition("/")
        unknown = sorted(set(flags) - {"i"})
        if unknown:
            self.fail(
                f"unknown regex flag '{unknown[0]}'",
                token,
                code="PF102",
                help="the only flag is 'i' (ignore case): /pattern/i",
            )
            return None
        problem = regex_problem(body)
        if problem:
            self.fail(f"invalid regular expression: {problem}", token, code="PF102", help=_REGEX_HELP)
            return None
        return RegexSelector(pattern=body, ignore_case="i" in flags, span=span)

    def slice(self, tree: Tree, brackets: Tree) -> Slice | None:
        """One item of an index list, located at the brackets when it is alone (or empty)."""
        alone = sum(isinstance(item, Tree) for item in brackets.children) == 1
        at = brackets if alone or tree.meta.empty else tree
        parts: list[int | None] = [None]
        colons = 0
        for child in tree.children:
            if child.type == "COLON":
                colons += 1
                parts.append(None)
            else:
                parts[-1] = self.integer(child, code="PF103", kind=PolicyValidationError)
                if parts[-1] is None:
                    return None
        if colons == 0 and parts[0] is None:
            self.fail("empty slice: write an index or a range like [0:2]", at, code="PF103")
            return None
        parts += [None] * (3 - len(parts))
        return self.validated(
            Slice,
            at,
            "PF103",
            start=parts[0],
            stop=parts[1],
            step=parts[2],
            is_index=colons == 0,
            span=self.span(at),
        )


def _first_too_deep(tree: Tree | Token) -> Tree | None:
    """The first selector node past MAX_SELECTOR_DEPTH, found without recursion."""
    pending = [(tree, 1)]
    while pending:
        node, depth = pending.pop()
        kind = node.data if isinstance(node, Tree) else None
        if kind not in ("union", "intersection", "difference"):
            continue  # an atom: nothing nests inside it
        if depth > MAX_SELECTOR_DEPTH:
            return node
        # A chain of one operator is one level: the builder flattens it.
        operands = _Builder._chain(node, kind) if kind != "difference" else node.children
        pending.extend((operand, depth + 1) for operand in operands)
    return None


_REGEX_HELP = (
    "regexes use RE2 syntax, which always runs in linear time: "
    "no backreferences or lookaround; write '\\/' for a literal slash"
)


def regex_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 would print to stderr; we report the error ourselves
    return options


def regex_problem(pattern: str) -> str | None:
    """Why RE2 rejects ``pattern``, or None when it compiles."""
    try:
        re2.compile(pattern, regex_options())
    except re2.error as exc:
        detail = exc.args[0] if exc.args else "cannot compile"
        return detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    return None


def _option_error(name: str, value: float) -> str | None:
    try:
        Options(**{name: value})
    except ValidationError as exc:
        return str(exc.errors()[0]["ctx"]["error"])
    return None

"""Syntax errors explained: a Lark failure → one positioned ``PolicySyntaxError`` with help.

The message says what was found and what the grammar accepts there; the help
line recognises the usual mistakes (a regex without slashes, a name in single
quotes, ``type X`` without parentheses, ``and`` for ``&``, a ``//`` comment, a
misspelt keyword, a look-alike non-ASCII letter) and says what to write instead.
"""

from __future__ import annotations

import re
import unicodedata

import lark

from ..errors import PolicyError, PolicySyntaxError, shorten
from .policy import suggestion
from .source import Source
from .vocabulary import KEYWORDS, OPTION_KEYS, SELECTOR_WORDS, TERMINAL_NAMES, TERMINAL_WORDS, UNITS, VERBS

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Words people write for the set operators.
_OPERATOR_WORDS = {"and": "&", "or": ",", "not": "except", "minus": "except", "but": "except"}


def explain(source: Source, text: str, exc: lark.exceptions.UnexpectedInput) -> PolicyError:
    """The error for a parse of ``text`` (``source`` with comments blanked out) that Lark rejected."""
    if isinstance(exc, lark.exceptions.UnexpectedEOF) or (
        isinstance(exc, lark.exceptions.UnexpectedToken) and exc.token.type == "$END"
    ):
        return _end_of_file(source, text, _acceptable(exc, set(getattr(exc, "expected", ()))))

    offset = exc.pos_in_stream or 0
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        expected = set(exc.allowed or ())
        char = text[offset]
        if not char.isprintable():
            return source.error(
                PolicySyntaxError,
                f"unexpected control character U+{ord(char):04X}",
                offset,
                offset + 1,
                help="a policy is plain UTF-8 text; a NUL byte often means a binary or UTF-16 file",
            )
    else:
        expected = set(getattr(exc, "expected", ()))
    cut = _is_word_char(text[offset : offset + 1]) and _word_start(text, offset) < offset
    if cut:
        # The lexer cut a word short ('epochs' read as 'epoch' then 's'): report the whole word,
        # against what the keyword it began with stands for.
        offset = _word_start(text, offset)
        prefix = text[offset : _word_end(text, offset)]
        expected = {
            name for name, words in TERMINAL_WORDS.items() if any(prefix.startswith(w) for w in words)
        } or expected
    word_end = _word_end(text, offset)
    if word_end < len(text) and not text[word_end].isascii() and text[word_end].isalnum():
        return _non_ascii(source, text, word_end)
    if cut or isinstance(exc, lark.exceptions.UnexpectedCharacters):
        word = text[offset:word_end]
        shown = word or _single_quoted(text, offset) or text[offset]
        end = offset + max(1, len(shown))
    else:
        assert isinstance(exc, lark.exceptions.UnexpectedToken)  # the parser refused a token
        token = exc.token
        word = str(token) if _WORD.fullmatch(str(token)) else ""
        shown = "" if token.type == "_NL" else str(token)
        end = token.end_pos if token.end_pos is not None else offset + 1
    expected = _acceptable(exc, expected)

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
    keywords = [k for name in expected for k in TERMINAL_WORDS.get(name, ())]
    help_text = None
    if word and expected & {"VERB", "UNIT"} and word not in KEYWORDS:
        message = f"unknown word '{shorten(word)}', expected {describe(expected)}"
        help_text = suggestion(word, keywords)
    elif word and "OPTION_KEY" in expected:
        message = f"unknown option '{shorten(word)}'"
        help_text = suggestion(word, OPTION_KEYS) or f"options are {', '.join(OPTION_KEYS)}"
    elif word:
        message = f"unexpected '{shorten(word)}', expected {describe(expected)}"
    elif not shown:
        message = f"the line ends too early, expected {describe(expected)}"
    else:
        if not shown.isprintable():
            quoted = repr(shorten(shown))
        elif "'" in shown:  # a single-quoted name: "'layer1'", not ''layer1''
            quoted = f'"{shorten(shown)}"'
        else:
            quoted = f"'{shorten(shown)}'"
        message = f"unexpected {quoted}, expected {describe(expected)}"
    if word and word not in KEYWORDS:
        help_text = help_text or suggestion(word, keywords)
    glued = _glued_keyword(shown, keywords)
    if glued is not None:
        help_text = f"put a space after '{glued}': {shorten(glued + ' ' + shown[len(glued) :])}"
    else:
        help_text = _hint(source.text, text, offset, word, expected, fallback=help_text)
    return source.error(PolicySyntaxError, message, offset, end, help=help_text)


def _hint(original: str, text: str, offset: int, word: str, expected: set[str], fallback: str | None) -> str | None:
    """What to write instead, for the mistakes people make, judged from what stands around ``offset``.

    ``fallback`` (a misspelt keyword's suggestion) is the help when no mistake is recognised
    before the generic hints.
    """
    before = text[:offset].rstrip()
    previous = before.rsplit(None, 1)[-1] if before else ""
    rest = text[offset : _line_end(text, offset)].strip()
    after_keyword = previous.rsplit("(", 1)[-1]
    if after_keyword == "match" and "REGEX" in expected:
        return f"a regex is written between slashes: match /{shorten(_regex_body(rest))}/"
    quoted = _single_quoted(text, offset)
    if quoted is not None and "QUOTED_GLOB" in expected:
        return f'a name is quoted with double quotes: "{shorten(quoted[1:-1])}"'
    if after_keyword == "type" and "LPAR" in expected and word:
        name = word or "CLASS"
        return f"type takes the class name in parentheses: type({name})"
    if previous.endswith("children") and text[offset : offset + 1] == "(":
        inside = rest[1:].split(")", 1)[0] if ")" in rest else "0:2"
        return f"children takes brackets, like a Python slice: children[{inside}]"
    if original[offset : offset + 2] == "//" or (original[offset : offset + 1] == "/" and rest.startswith("//")):
        return "a comment starts with '#': # …"
    if word in _OPERATOR_WORDS and expected & {"AMPERSAND", "COMMA", "EXCEPT"}:
        operator = _OPERATOR_WORDS[word]
        meaning = {"&": "an intersection", ",": "a union", "except": "a difference"}[operator]
        example = "A, B" if operator == "," else f"A {operator} B"
        return f"{meaning} is written '{operator}': {example}"
    if word in VERBS and "SEMICOLON" in expected:
        return "end the previous statement with ';' or a new line"
    if word and "EQUAL" not in expected and expected & {"COMMA"} and _in_options(text, offset):
        return f"separate options with ',': {shorten(_options_with_commas(text, offset), 80)}"
    glued = _glued_name(text, offset)
    if glued is not None:
        return f'a name with other characters is written quoted: "{shorten(glued)}"'
    if fallback is not None:
        return fallback
    if word and "AMPERSAND" in expected and word not in KEYWORDS and not _in_options(text, offset):
        return f"join selectors with ',' (union) or '&' (intersection): {shorten(previous)}, {shorten(word)}"
    if previous in ("type", "match", "all") and word == "":
        return f"'{previous}' is a keyword; to name a module called {previous}, quote it: \"{previous}\""
    if text[offset : offset + 1] == "/":
        return "a regular expression is written match /REGEX/"
    if text[offset : offset + 1] == "[" and _class_with_comment_characters(original, offset):
        return "a glob whose [class] holds '#' or '/' is written quoted: \"layer[#]\" (no glob holds '\"')"
    return None


def _glued_keyword(shown: str, keywords: list[str]) -> str | None:
    """The keyword expected here that ``shown`` starts with, glued to what may follow it (``freezeall``,
    ``epoch3``); None for a misspelling that merely starts with one (``epochs``, ``freezed``)."""
    for keyword in sorted(keywords, key=len, reverse=True):
        rest = shown[len(keyword) :]
        if not shown.startswith(keyword) or not rest:
            continue
        if keyword in UNITS:
            follows = re.fullmatch(r"[+-]?[0-9]+", rest) is not None
        elif keyword == "at":
            follows = rest.startswith(UNITS)
        elif keyword == "with":
            follows = rest.startswith(OPTION_KEYS)
        else:  # a selector follows: a name, a keyword or a bracket
            follows = not rest[0].isalpha() or rest.startswith(SELECTOR_WORDS) or len(rest) >= 3
        if follows:
            return keyword
    return None


def _regex_body(rest: str) -> str:
    """What the user meant as the regex at the start of ``rest``: a quoted token's inside, else one bare run."""
    if rest[:1] in ("'", '"'):
        close = rest.find(rest[0], 1)
        if close > 0:
            return rest[1:close]
        rest = rest[1:]
    # A bare run ends where the selector does: before a separator, an operator or a closing parenthesis.
    run = re.match(r"[^\s,&);]+", rest)
    return run.group() if run else "REGEX"


def _single_quoted(text: str, offset: int) -> str | None:
    """The ``'…'`` token (quotes included) at ``offset`` when it closes on its line; the language quotes with '"'."""
    if text[offset : offset + 1] != "'":
        return None
    close = text.find("'", offset + 1, _line_end(text, offset))
    return text[offset : close + 1] if close > offset + 1 else None


def _glued_name(text: str, offset: int) -> str | None:
    """The whole name when the error sits on a character glued to a bare name (``my-block``)."""
    end = offset
    while end < len(text) and not text[end].isspace() and text[end] not in ",&;()[]{}#":
        end += 1
    start = offset
    while start > 0 and not text[start - 1].isspace() and text[start - 1] not in ",&;()[]{}#":
        start -= 1
    name = text[start:end]
    odd = [c for c in name if not (_is_word_char(c) or c in ".*?")]
    if start < offset and odd and name[0] not in "/'\"" and _WORD.match(name):
        return name
    return None


def _options_with_commas(text: str, offset: int) -> str:
    """The statement's own ``with`` options, from ``with`` to where the statement ends, comma-separated."""
    line_start = text.rfind("\n", 0, offset) + 1
    start = line_start + [m.start() for m in re.finditer(r"\bwith\b", text[line_start:offset])][-1]
    end = min((i for i in (text.find(c, offset) for c in ";}\n") if i >= 0), default=len(text))
    options = re.sub(r"\s*=\s*", "=", text[start + len("with") : end]).replace(",", " ").split()
    return "with " + ", ".join(options)


def _in_options(text: str, offset: int) -> bool:
    line_start = text.rfind("\n", 0, offset) + 1
    statement = text[line_start:offset].rsplit(";", 1)[-1]
    return re.search(r"\bwith\b", statement) is not None


def _non_ascii(source: Source, text: str, offset: int) -> PolicyError:
    """A letter outside ASCII, often a look-alike (a Cyrillic 'е' in 'frеeze'): name it and its code point."""
    char = text[offset]
    start = _word_start(text, offset)
    end = offset + 1
    while end < len(text) and (text[end].isalnum() or text[end] == "_"):
        end += 1
    word = text[start:end]
    name = unicodedata.name(char, "unnamed character")
    look_alike = "".join(_ascii_look_alike(c) for c in word)
    help_text = suggestion(look_alike, list(KEYWORDS)) if look_alike != word else None
    return source.error(
        PolicySyntaxError,
        f"unexpected character '{char}' (U+{ord(char):04X} {name}) in '{shorten(word)}'",
        offset,
        offset + 1,
        help=help_text or 'keywords and bare names are ASCII; quote a name that holds other characters: "…"',
    )


def _ascii_look_alike(char: str) -> str:
    """``char`` as the ASCII letter it is drawn like (Cyrillic and Greek look-alikes), else itself."""
    decomposed = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
    if decomposed:
        return decomposed
    return _LOOK_ALIKES.get(char, char)


_LOOK_ALIKES = dict(zip("аеорсухіјԁԛѕԝАВЕКМНОРСТХΑΒΕΗΙΚΜΝΟΡΤΧΥΖοναι", "aeopcyxijdqswABEKMHOPCTXABEHIKMNOPTXYZovai"))


def describe(expected: set[str]) -> str:
    """The terminals the grammar accepts, as words: ``'&', ',' or ';' or a new line``."""
    # A newline is always acceptable to the postlexer; only ';' means "a statement may end here".
    separators = {"SEMICOLON", "_NL"}
    names = sorted({TERMINAL_NAMES.get(name, name) for name in expected - separators})
    if "SEMICOLON" in expected:
        names.append("';' or a new line")
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _line_end(text: str, offset: int) -> int:
    end = text.find("\n", offset)
    return len(text) if end < 0 else end


def _is_word_char(char: str) -> bool:
    return len(char) == 1 and char.isascii() and (char.isalnum() or char == "_")


def _word_start(text: str, offset: int) -> int:
    start = offset
    while start > 0 and _is_word_char(text[start - 1]):
        start -= 1
    return start


def _word_end(text: str, offset: int) -> int:
    end = offset
    while end < len(text) and _is_word_char(text[end]):
        end += 1
    return end


def _class_with_comment_characters(text: str, offset: int) -> bool:
    # Bare globs cannot hold them: '#' starts a comment, '/' a regex, '"' a quoted name.
    close = text.find("]", offset, _line_end(text, offset))
    return close > offset and any(ch in text[offset:close] for ch in '#/"')


def _end_of_file(source: Source, text: str, expected: set[str]) -> PolicyError:
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
    return PolicySyntaxError(
        f"the file ends too early, expected {describe(set(expected))}",
        location=source.end_location(),
    )


def _acceptable(exc: lark.exceptions.UnexpectedInput, expected: set[str]) -> set[str]:
    """The terminals of ``expected`` that can really come next.

    The LALR tables merge states, so Lark's list can name '}' at the top level,
    ')' outside any parenthesis or ';' inside one; feeding each to a copy of
    the parser (``accepts``) keeps only those it takes.
    """
    parser = getattr(exc, "interactive_parser", None)
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

"""The exception family: every error a user can see is a PolicyError."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

MAX_SHOWN_ERRORS = 20


def shorten(text: str, limit: int = 40) -> str:
    """User text quoted in a message, cut short: the caret snippet shows where it is."""
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text):,} characters)"


SNIPPET_WIDTH = 100


def printable(text: str) -> str:
    """``text`` with every character that is not printable (control, format, line and paragraph
    separators) written as its Python escape (``\\x1b``, ``\\r``, ``\\u202e``): a message never moves a
    terminal's cursor or forges a CI log line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


@dataclass(frozen=True)
class Location:
    """A place in a policy source: 1-based line and column, and the text to show it in.

    ``text`` is the line itself or, with ``line_bounds``, the whole source
    text (shared, never copied) and where the line lies in it: a thousand
    errors on one long line hold one copy of it, not a thousand.
    """

    source: str
    line: int
    column: int
    text: str = ""
    end_column: int | None = None
    line_bounds: tuple[int, int] | None = field(default=None, repr=False)

    @property
    def line_text(self) -> str:
        if self.line_bounds is None:
            return self.text
        start, end = self.line_bounds
        return self.text[start:end]

    def snippet(self) -> str:
        """The line with a caret under the located span, rustc style.

        A line longer than SNIPPET_WIDTH is shown as a window around the caret.
        """
        gutter = str(self.line)
        pad = " " * len(gutter)
        line_start, line_end = self.line_bounds or (0, len(self.text))
        length = line_end - line_start
        start = 0
        if length > SNIPPET_WIDTH:
            start = max(0, min(self.column - 1 - SNIPPET_WIDTH // 3, length - SNIPPET_WIDTH))
        window = self.text[line_start + start : line_start + min(length, start + SNIPPET_WIDTH)]
        # One visible character per column, so the caret stays aligned.
        shown = "".join(" " if ch == "\t" else ch if ch.isprintable() else "\N{REPLACEMENT CHARACTER}" for ch in window)
        lead = "…" if start > 0 else ""
        tail = "…" if start + SNIPPET_WIDTH < length else ""
        column = self.column - start
        width = max(1, (self.end_column or self.column + 1) - self.column)
        width = min(width, max(1, len(shown) - column + 1))
        caret = " " * (column - 1 + len(lead)) + "^" * width
        return f"{pad} |\n{gutter} | {lead}{shown}{tail}\n{pad} | {caret}"


class PolicyError(Exception):
    """Root of every error policyfreeze raises about a policy or its use.

    ``code`` is the lint code (``PF101`` …) when the error is also a finding.
    ``errors`` holds every error found when several were collected; the
    exception itself describes the first.
    """

    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        location: Location | None = None,
        help: str | None = None,
        code: str | None = None,
    ) -> None:
        self.message = message
        self.location = location
        self.help = help
        self.code = code or self.default_code
        self.errors: tuple[PolicyError, ...] = (self,)
        super().__init__(self.render())

    @property
    def source(self) -> str | None:
        return self.location.source if self.location else None

    @property
    def line(self) -> int | None:
        return self.location.line if self.location else None

    @property
    def column(self) -> int | None:
        return self.location.column if self.location else None

    def render(self) -> str:
        """``file:line:col: CODE message``, the line with a caret, and the help."""
        head = printable(f"{self.code} {self.message}" if self.code else self.message)
        if self.location is None:
            parts = [head]
        else:
            loc = self.location
            parts = [f"{printable(loc.source)}:{loc.line}:{loc.column}: {head}"]
            if loc.text:
                parts.append(loc.snippet())
        if self.help:
            parts.append(f"  = help: {printable(self.help)}")
        return "\n".join(parts)

    def __str__(self) -> str:
        if len(self.errors) == 1:
            return self.render()
        shown = [e.render() for e in self.errors[:MAX_SHOWN_ERRORS]]
        more = len(self.errors) - MAX_SHOWN_ERRORS
        if more > 0:
            shown.append(f"… and {more} more")
        return f"{len(self.errors)} errors\n" + "\n\n".join(shown)

    @classmethod
    def collect(cls, errors: list[PolicyError]) -> PolicyError:
        """One exception carrying every error, raised once (sqlglot style)."""
        first = errors[0]
        first.errors = tuple(errors)
        first.args = (str(first),)
        return first


class PolicySyntaxError(PolicyError):
    """The text is not a policy (PF101)."""

    default_code = "PF101"


class PolicyValidationError(PolicyError):
    """The policy parses but a rule is invalid (PF102–PF106)."""


class PolicyResolveError(PolicyError):
    """The policy cannot be applied to this model (for example PF207)."""


class PolicyUsageError(PolicyError):
    """The API or the command line was called wrongly (no policy position)."""


class PolicyWarning(UserWarning):
    """A model-aware finding that does not stop a policy from applying."""


#: Optional dependencies and the extra that installs each (``pip install 'policyfreeze[EXTRA]'``).
EXTRAS = {
    "torch": "torch",
    "torchvision": "torch",
    "transformers": "hf",
    "accelerate": "hf",
    "timm": "timm",
    "peft": "peft",
    "lightning": "lightning",
    "pytorch_lightning": "lightning",
}


@contextlib.contextmanager
def needs_extras(purpose: str) -> Iterator[None]:
    """Turn a missing optional dependency into a usage error that names the extra to install.

    The core install (lint, fmt) is torch-free; what needs torch or a framework
    says so instead of failing with ``ModuleNotFoundError``.
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        package = (exc.name or "").split(".")[0]
        if package not in EXTRAS:
            raise
        raise PolicyUsageError(
            f"{purpose} needs {package}, which is not installed",
            help=f"install it with: pip install 'policyfreeze[{EXTRAS[package]}]'",
        ) from None

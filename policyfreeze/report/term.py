"""ANSI styling for terminal output. The command line decides whether to use it."""

from __future__ import annotations

_CODES = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "cyan": "36",
}


def paint(text: str, *styles: str, enabled: bool) -> str:
    """``text`` wrapped in the ANSI codes of ``styles`` when ``enabled``, else unchanged."""
    if not enabled or not styles or not text:
        return text
    codes = ";".join(_CODES[style] for style in styles)
    return f"\x1b[{codes}m{text}\x1b[0m"

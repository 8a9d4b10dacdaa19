"""Policy source text: decoding, line lookup and positioned errors."""

from __future__ import annotations

import bisect
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Location, PolicyError, PolicySyntaxError, PolicyUsageError

BOM = "\ufeff"
# A policy is a page of rules; the bound keeps parse time and memory small.
MAX_SOURCE_BYTES = 1 << 20


@dataclass(frozen=True)
class Source:
    """The text of one policy and the name errors call it by.

    The text is normalised on construction: a leading BOM is dropped and CRLF
    becomes LF, so offsets, lines and columns all refer to the same string.
    """

    name: str
    text: str
    _line_starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = self.text.removeprefix(BOM).replace("\r\n", "\n")
        object.__setattr__(self, "text", text)
        starts = [0]
        starts.extend(m.end() for m in _NEWLINE.finditer(text))
        object.__setattr__(self, "_line_starts", tuple(starts))

    @classmethod
    def from_bytes(cls, data: bytes, name: str) -> Source:
        if len(data) > MAX_SOURCE_BYTES:
            # Only the part within the limit is decoded: the error points at its end.
            head = cls(name, data[:MAX_SOURCE_BYTES].decode("utf-8", "replace"))
            raise _too_long(head, len(head.text))
        try:
            return cls(name, data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise _decode_error(data, name, exc) from None

    @classmethod
    def from_path(cls, path: str | Path) -> Source:
        return cls.from_bytes(read_bytes(path), str(path))

    def line_col(self, offset: int) -> tuple[int, int]:
        """1-based line and column of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        index = bisect.bisect_right(self._line_starts, offset) - 1
        return index + 1, offset - self._line_starts[index] + 1

    def line_bounds(self, line: int) -> tuple[int, int]:
        """Where line ``line`` (1-based) starts and ends in the text."""
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        return start, len(self.text) if end < 0 else end

    def line_text(self, line: int) -> str:
        start, end = self.line_bounds(line)
        return self.text[start:end]

    def too_long_error(self) -> PolicyError | None:
        """A PF101 error where the text passes MAX_SOURCE_BYTES of UTF-8, or None."""
        if len(self.text) <= MAX_SOURCE_BYTES // 4:
            return None  # a character is at most 4 bytes
        encoded = self.text.encode("utf-8", "surrogatepass")
        if len(encoded) <= MAX_SOURCE_BYTES:
            return None
        return _too_long(self, len(encoded[:MAX_SOURCE_BYTES].decode("utf-8", "ignore")))

    def location(self, offset: int, end_offset: int | None = None) -> Location:
        line, column = self.line_col(offset)
        start, end = self.line_bounds(line)
        end_column = None
        if end_offset is not None:
            end_line, end_col = self.line_col(end_offset)
            end_column = end_col if end_line == line else end - start + 1
        return Location(self.name, line, column, self.text, end_column, (start, end))

    def end_location(self) -> Location:
        """Where a premature end of input is reported: the last non-blank character."""
        stripped = self.text.rstrip()
        if not stripped:
            return self.location(0)
        return self.location(len(stripped) - 1, len(stripped))

    def error(
        self,
        kind: type[PolicyError],
        message: str,
        offset: int,
        end_offset: int | None = None,
        *,
        help: str | None = None,
        code: str | None = None,
    ) -> PolicyError:
        return kind(message, location=self.location(offset, end_offset), help=help, code=code)


_NEWLINE = re.compile("\n")


def read_bytes(path: str | Path) -> bytes:
    """A policy file's bytes, read once (a pipe or FIFO has no second reading), at most one past the limit."""
    if not isinstance(path, str | os.PathLike):
        raise PolicyUsageError(f"a policy file is a path (str or pathlib.Path), not {type(path).__name__}")
    path = Path(path)
    try:
        with path.open("rb") as file:
            return file.read(MAX_SOURCE_BYTES + 1)
    except FileNotFoundError:
        raise PolicyUsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PolicyUsageError(f"{path}: is a directory, not a policy file") from None
    except PermissionError:
        raise PolicyUsageError(f"{path}: permission denied") from None
    except OSError as exc:
        raise PolicyUsageError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError:  # a NUL in the name: no file can have it
        raise PolicyUsageError(f"{str(path)!r}: not a valid file name") from None


def _too_long(source: Source, offset: int) -> PolicyError:
    return source.error(
        PolicySyntaxError,
        f"the policy is longer than the 1 MiB limit ({MAX_SOURCE_BYTES:,} bytes)",
        offset,
        help="a policy is a short list of rules: select many parameters with one glob, regex or type()",
    )


def _decode_error(data: bytes, name: str, exc: UnicodeDecodeError) -> PolicyError:
    """The first bad byte, located by line and column, with its line shown."""
    head = Source(name, data[: exc.start].decode("utf-8"))
    line, column = head.line_col(len(head.text))
    line_end = data.find(b"\n", exc.start)
    rest = data[exc.start : len(data) if line_end < 0 else line_end].decode("utf-8", "replace")
    line_text = head.line_text(line) + rest.rstrip("\r")
    utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
    return PolicySyntaxError(
        f"not valid UTF-8: byte 0x{data[exc.start]:02x} at byte offset {exc.start}",
        location=Location(name, line, column, line_text, column + 1),
        help=(
            "this looks like UTF-16: re-save the file as UTF-8"
            if utf16
            else "policy files are UTF-8 text; re-save the file as UTF-8"
        ),
    )

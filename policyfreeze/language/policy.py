"""The validated policy: pydantic models that carry source positions.

This is the one home of the language's rules about meaning: option values and
where options may stand, slices, schedule units and their numbers, names that
collide with keywords, regexes RE2 must compile. Each rule raises
``invalid(code, message, help)``; ``parser.py`` validates the parse tree's
plain data in one ``Policy.model_validate`` and maps every failure back to
its position in the source.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from ..errors import shorten
from . import glob, regex
from .source import Source
from .vocabulary import FIRST_STAGE, KEYWORDS, OPTION_KEYS, REGEX_FLAGS

Verb = Literal["freeze", "unfreeze", "eval", "train"]
Unit = Literal["epoch", "step", "phase"]

#: Slice bounds and ``at`` N are Python ints, but not so long that printing one fails.
MAX_INT_DIGITS = 100
#: The context key that carries a rule's help line through pydantic.
HELP = "policyfreeze_help"

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: What a comment or a regex cannot hold: control characters but tab, bidi controls, line and paragraph
#: separators. Printed raw they move a terminal's cursor, forge a CI log line or reorder the text shown.
HIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def invalid(code: str, message: str, help: str | None = None) -> PydanticCustomError:
    """A rule's failure: the finding code is the error type, the help rides in the context."""
    # pydantic fills only ``{key}`` of keys in the context: a brace in user text stays as written.
    return PydanticCustomError(code, message, {HELP: help})


def quote_name(name: str) -> str:
    """``name`` as a policy would write it to select exactly that node."""
    return name if _PLAIN_NAME.fullmatch(name) and name not in KEYWORDS else f'"{name}"'


def suggestion(word: str, candidates: tuple[str, ...] | list[str]) -> str | None:
    """``did you mean 'X'?`` for the closest candidate, if one is close."""
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _bounded_integer(code: str) -> Callable[[Any], Any]:
    """An integer written in the policy: at most MAX_INT_DIGITS digits (sign and leading zeros aside)."""

    def parse(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        sign = value[0] if value[:1] in ("+", "-") else ""
        digits = value.removeprefix(sign).lstrip("0") or "0"
        if len(digits) > MAX_INT_DIGITS:
            raise invalid(code, f"integer {shorten(value)} is too long: at most {MAX_INT_DIGITS} digits")
        return int(sign + digits)

    return parse


SliceBound = Annotated[int | None, BeforeValidator(_bounded_integer("PF103"))]
StageNumber = Annotated[int, BeforeValidator(_bounded_integer("PF101"))]


class Node(BaseModel):
    # The parse data carries each field's own place as ``<field>_span`` beside it (errors
    # point there); validation ignores those keys.
    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)


class Span(Node):
    """Where a node stands in its source: character offsets, 1-based line and column."""

    offset: int
    end_offset: int
    line: int
    column: int


def _name_problem(pattern: str, quoted: bool) -> PydanticCustomError | None:
    """What is wrong with a name or glob as written, if anything."""
    if not pattern:
        return invalid("PF101", "an empty glob matches nothing")
    control = _CONTROL.search(pattern)
    if control is not None:
        return invalid(
            "PF101",
            f"a name cannot hold the control character U+{ord(control.group()):04X}",
            "module and parameter names are printable text; remove the character",
        )
    if not quoted and pattern in KEYWORDS:
        return invalid(
            "PF101",
            f"'{pattern}' is a keyword, not a name",
            f'to name a module called {pattern}, quote it: "{pattern}"',
        )
    return None


class AllSelector(Node):
    kind: Literal["all"] = "all"
    span: Span


class GlobSelector(Node):
    """A dotted-name glob: ``*``/``**`` segments span zero or more whole segments."""

    kind: Literal["glob"] = "glob"
    quoted: bool = False
    pattern: str
    span: Span

    @field_validator("pattern")
    @classmethod
    def _a_name(cls, pattern: str, info: ValidationInfo) -> str:
        problem = _name_problem(pattern, info.data.get("quoted", False))
        if problem is not None:
            raise problem
        if any(segment == "" for segment in pattern.split(".")):
            raise invalid("PF101", f"glob {pattern!r} has an empty segment (two dots, or a dot at an end)")
        costly = glob.glob_too_costly(pattern)
        if costly:
            raise invalid("PF101", costly, "split it into simpler patterns joined by ','")
        return pattern


class RegexSelector(Node):
    """``match /REGEX/``: RE2 syntax, searched anywhere in a node's full name."""

    kind: Literal["match"] = "match"
    pattern: str
    ignore_case: bool = False
    span: Span

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        hidden = HIDDEN.search(pattern)
        if hidden is not None:
            code = ord(hidden.group())
            raise invalid(
                "PF101",
                f"a regular expression cannot hold the control character U+{code:04X}",
                f"write the character as an escape: \\x{{{code:x}}}",
            )
        problem = regex.problem(pattern)
        if problem:
            raise invalid("PF102", f"invalid regular expression: {problem}", regex.HELP)
        costly = glob.regex_too_costly(pattern)
        if costly:
            raise invalid("PF102", costly, "split it into simpler patterns joined by ','")
        return pattern

    @field_validator("ignore_case", mode="before")
    @classmethod
    def _flags(cls, flags: Any) -> Any:
        if not isinstance(flags, str):
            return flags
        unknown = sorted(set(flags) - set(REGEX_FLAGS))
        if unknown:
            raise invalid(
                "PF102", f"unknown regex flag '{unknown[0]}'", "the only flag is 'i' (ignore case): /pattern/i"
            )
        return "i" in flags


class TypeSelector(Node):
    """``type(CLASSGLOB)``: modules whose class (or a base below nn.Module) matches."""

    kind: Literal["type"] = "type"
    quoted: bool = False
    pattern: str
    span: Span

    @field_validator("pattern")
    @classmethod
    def _bare_class_name(cls, pattern: str, info: ValidationInfo) -> str:
        problem = _name_problem(pattern, info.data.get("quoted", False))
        if problem is not None:
            raise problem
        if "." in pattern:
            bare = pattern.rsplit(".", 1)[-1]
            raise invalid("PF101", f"type() takes a class name without its module: {bare!r}, not {pattern!r}")
        return pattern


class Slice(Node):
    start: SliceBound = None
    stop: SliceBound = None
    step: SliceBound = None
    is_index: bool = False
    span: Span

    @model_validator(mode="after")
    def _a_valid_slice(self) -> Slice:
        if self.step == 0:
            raise invalid("PF103", "slice step cannot be zero")
        if self.is_index and self.start is None:
            raise invalid("PF103", "empty slice: write an index or a range like [0:2]")
        return self

    def pick(self, items: Any) -> Any:
        """The items this slice selects, as Python indexing would (no IndexError)."""
        if self.is_index:
            index = self.start
            assert index is not None  # _a_valid_slice
            return [items[index]] if -len(items) <= index < len(items) else []
        return items[self.start : self.stop : self.step]

    def __str__(self) -> str:
        if self.is_index:
            return str(self.start)
        text = ":".join("" if v is None else str(v) for v in (self.start, self.stop, self.step))
        return text.removesuffix(":") if self.step is None else text


class ChildrenSelector(Node):
    """``children[...]`` of the root, or ``GLOB.children[...]`` of each matched module.

    The brackets hold an index list: one or more indices and slices, whose picks are united.
    """

    kind: Literal["children"] = "children"
    parent: GlobSelector | None = None
    slices: tuple[Slice, ...]
    span: Span

    def pick(self, items: list) -> list:
        """The items any of the slices selects, in their order in ``items``, each once."""
        if len(self.slices) == 1:
            return list(self.slices[0].pick(items))
        chosen = {index for item in self.slices for index in item.pick(range(len(items)))}
        return [items[index] for index in sorted(chosen)]

    def index_text(self) -> str:
        """What stands between the brackets: ``0, 10, -2:``."""
        return ", ".join(map(str, self.slices))


class UnionSelector(Node):
    kind: Literal["union"] = "union"
    items: tuple[Selector, ...]
    span: Span


class IntersectionSelector(Node):
    kind: Literal["intersection"] = "intersection"
    items: tuple[Selector, ...]
    span: Span


class DifferenceSelector(Node):
    """``left except right``: what left selects that right does not."""

    kind: Literal["difference"] = "difference"
    left: Selector
    right: Selector
    span: Span


Selector = Annotated[
    AllSelector
    | GlobSelector
    | RegexSelector
    | TypeSelector
    | ChildrenSelector
    | UnionSelector
    | IntersectionSelector
    | DifferenceSelector,
    Field(discriminator="kind"),
]


def _option_problem(key: str, value: float, written: str) -> PydanticCustomError | None:
    """The rule for one option's value: finite; lr and lr_scale positive, weight_decay not negative."""
    if not math.isfinite(value):
        return invalid("PF104", f"{key} must be a finite number, not {written}")
    if key == "weight_decay":
        return None if value >= 0 else invalid("PF104", f"{key} must be zero or a positive number, not {written}")
    return None if value > 0 else invalid("PF104", f"{key} must be a positive number, not {written}")


class OptionEntry(Node):
    """One ``key=value`` of a ``with`` clause, as written (read into ``Options``)."""

    key: str
    written: str
    value: float

    @field_validator("key")
    @classmethod
    def _known(cls, key: str) -> str:
        if key not in OPTION_KEYS:
            raise invalid(
                "PF104",
                f"unknown option '{shorten(key)}'",
                suggestion(key, OPTION_KEYS) or f"options are {', '.join(OPTION_KEYS)}",
            )
        return key

    @field_validator("value")
    @classmethod
    def _in_range(cls, value: float, info: ValidationInfo) -> float:
        if "key" in info.data:
            problem = _option_problem(info.data["key"], value, info.data["written"])
            if problem is not None:
                raise problem
        return value


class Options(Node):
    """``with`` options of an ``unfreeze``: they shape the optimizer's parameter groups.

    Built from the clause's entries (``{"entries": [...]}``, every problem in
    them reported at once) or directly from the values.
    """

    lr: float | None = None
    lr_scale: float | None = None
    weight_decay: float | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _from_entries(cls, data: Any, handler: Callable[[Any], Options]) -> Options:
        if not (isinstance(data, dict) and "entries" in data):
            return handler(data)
        problems: list[InitErrorDetails] = []
        values: dict[str, float] = {}
        for index, raw in enumerate(data["entries"]):
            entry = _collecting(problems, ("entries", index), OptionEntry.model_validate, raw)
            if entry is None:
                continue
            if entry.key in values:
                problems.append(
                    _problem(("entries", index, "key"), invalid("PF104", f"option '{entry.key}' is given twice"))
                )
            values.setdefault(entry.key, entry.value)
        keys = {raw.get("key") for raw in data["entries"]}
        if {"lr", "lr_scale"} <= keys:
            problems.append(
                _problem(
                    (),
                    invalid(
                        "PF105",
                        "lr and lr_scale together: give one",
                        "lr is an absolute learning rate; lr_scale multiplies the optimizer's base lr",
                    ),
                )
            )
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return handler(values)

    @model_validator(mode="after")
    def _valid_values(self) -> Options:
        for key in OPTION_KEYS:
            value = getattr(self, key)
            problem = None if value is None else _option_problem(key, value, f"{value:g}")
            if problem is not None:
                raise problem
        if self.lr is not None and self.lr_scale is not None:
            raise invalid("PF105", "lr and lr_scale together: give one")
        return self

    def __str__(self) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.model_dump(exclude_none=True).items())


class Statement(Node):
    """One rule: a verb, the nodes it acts on, and (for unfreeze) optimizer options."""

    verb: Verb
    selector: Selector
    options: Options | None = None
    text: str
    span: Span
    #: N of the ``at`` block the statement stands in; None for a base statement
    stage: int | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _options_only_on_unfreeze(cls, data: Any, handler: Callable[[Any], Statement]) -> Statement:
        problems: list[InitErrorDetails] = []
        if isinstance(data, dict) and data.get("options") is not None and data.get("verb") != "unfreeze":
            problems.append(
                _problem(
                    ("options",),
                    invalid(
                        "PF105",
                        f"options belong to 'unfreeze' only, not '{data.get('verb')}'",
                        "move the options to the unfreeze statement that makes these parameters train",
                    ),
                )
            )
        statement = _collecting(problems, (), handler, data)
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        assert statement is not None
        return statement

    def atoms(self) -> list:
        """The atomic selectors of this statement, left to right."""
        out, pending = [], [self.selector]
        while pending:
            node = pending.pop()
            if isinstance(node, UnionSelector | IntersectionSelector):
                pending.extend(reversed(node.items))
            elif isinstance(node, DifferenceSelector):
                pending.extend((node.right, node.left))
            else:
                out.append(node)
        return out


class Block(Node):
    """``at epoch N { … }``, ``at step N { … }``, ``at phase N { … }``: statements that join the policy at N."""

    unit: Unit
    at: StageNumber
    statements: tuple[Statement, ...]
    span: Span

    @field_validator("at")
    @classmethod
    def _number_in_range(cls, at: int, info: ValidationInfo) -> int:
        unit = info.data.get("unit", "epoch")
        least = FIRST_STAGE[unit]
        if at < least:
            raise invalid(
                "PF101",
                f"{unit} must be {least} or more, not {at}",
                "the statements outside any block are phase 0" if unit == "phase" else None,
            )
        return at

    @model_validator(mode="after")
    def _stage_on_statements(self) -> Block:
        # Every statement of the block carries its N.
        staged = tuple(statement.model_copy(update={"stage": self.at}) for statement in self.statements)
        return self.model_copy(update={"statements": staged})


class Policy(Node):
    """A parsed, validated policy file."""

    model_config = ConfigDict(frozen=True, extra="ignore", arbitrary_types_allowed=True, defer_build=True)

    source: Source
    statements: tuple[Statement, ...]
    blocks: tuple[Block, ...] = ()

    @model_validator(mode="wrap")
    @classmethod
    def _one_unit(cls, data: Any, handler: Callable[[Any], Policy]) -> Policy:
        problems: list[InitErrorDetails] = []
        blocks = data.get("blocks", ()) if isinstance(data, dict) else ()
        units = [block.unit if isinstance(block, Block) else block.get("unit") for block in blocks]
        first = units[0] if units else None
        other = next((index for index, unit in enumerate(units) if unit != first), None)
        if other is not None:
            problems.append(
                _problem(
                    ("blocks", other),
                    invalid(
                        "PF106",
                        f"'at {units[other]}' in a file that schedules by {first}",
                        f"use one unit per file: every block 'at {first} N' or every block 'at {units[other]} N'",
                    ),
                )
            )
        policy = _collecting(problems, (), handler, data)
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        assert policy is not None
        return policy

    @property
    def unit(self) -> Unit | None:
        """``epoch``, ``step`` or ``phase`` for a scheduled policy, else None."""
        return self.blocks[0].unit if self.blocks else None

    @functools.cached_property
    def milestones(self) -> tuple[int, ...]:
        """The distinct N of the ``at`` blocks, ascending (worked out once: a Freezer asks every step)."""
        return tuple(sorted({block.at for block in self.blocks}))

    def stage(self, at: int = 0) -> tuple[Statement, ...]:
        """The statements in force at epoch/step/phase ``at``: the base, then blocks with N ≤ at."""
        due = sorted((b for b in self.blocks if b.at <= at), key=lambda b: b.at)
        return self.statements + tuple(s for block in due for s in block.statements)

    def all_statements(self) -> tuple[Statement, ...]:
        """Every statement in file order."""
        ordered = list(self.statements) + [s for b in self.blocks for s in b.statements]
        return tuple(sorted(ordered, key=lambda s: s.span.offset))


def _problem(loc: tuple, error: PydanticCustomError) -> InitErrorDetails:
    return InitErrorDetails(type=error, loc=loc, input=None)


def _collecting(problems: list[InitErrorDetails], loc: tuple, validate: Callable[[Any], Any], data: Any) -> Any:
    """``validate(data)``, or None with its failures added to ``problems`` under ``loc``.

    Rules that look at several parts of a node run beside the validation of
    the parts, so one pass reports every problem of a policy.
    """
    try:
        return validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            context = error.get("ctx") or {}
            problems.append(
                _problem(
                    (*loc, *error["loc"]),
                    PydanticCustomError(error["type"], error["msg"], context),
                )
            )
        return None

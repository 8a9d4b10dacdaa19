"""The validated policy: pydantic models that carry source positions.

Parsing (``parser.py``) builds these; every later stage reads them. Field
validators hold the language's rules (spec §3–§5); ``parser.py`` maps their
failures back to source positions.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .source import Source

Verb = Literal["freeze", "unfreeze", "eval", "train"]
Unit = Literal["epoch", "step", "phase"]

KEYWORDS = [
    "freeze",
    "unfreeze",
    "eval",
    "train",
    "all",
    "match",
    "type",
    "children",
    "except",
    "with",
    "at",
    "epoch",
    "step",
]
OPTION_KEYS = ("lr", "lr_scale", "weight_decay")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")


def quote_name(name: str) -> str:
    """``name`` as a policy would write it to select exactly that node."""
    return name if _PLAIN_NAME.fullmatch(name) and name not in KEYWORDS else f'"{name}"'


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Span(Node):
    """Where a node stands in its source: character offsets, 1-based line and column."""

    offset: int
    end_offset: int
    line: int
    column: int


class AllSelector(Node):
    kind: Literal["all"] = "all"
    span: Span


class GlobSelector(Node):
    """A dotted-name glob: ``*``/``**`` segments span zero or more whole segments."""

    kind: Literal["glob"] = "glob"
    pattern: str
    quoted: bool = False
    span: Span

    @field_validator("pattern")
    @classmethod
    def _not_empty(cls, pattern: str) -> str:
        if not pattern:
            raise ValueError("an empty glob matches nothing")
        if any(segment == "" for segment in pattern.split(".")):
            raise ValueError(f"glob {pattern!r} has an empty segment (two dots, or a dot at an end)")
        return pattern


class RegexSelector(Node):
    """``match /REGEX/``: RE2 syntax, searched anywhere in a node's full name."""

    kind: Literal["match"] = "match"
    pattern: str
    ignore_case: bool = False
    span: Span


class TypeSelector(Node):
    """``type(CLASSGLOB)``: modules whose class (or a base below nn.Module) matches."""

    kind: Literal["type"] = "type"
    pattern: str
    span: Span

    @field_validator("pattern")
    @classmethod
    def _bare_class_name(cls, pattern: str) -> str:
        if "." in pattern:
            raise ValueError(
                f"type() takes a class name without its module: {pattern.rsplit('.', 1)[-1]!r}, not {pattern!r}"
            )
        if not pattern:
            raise ValueError("type() needs a class name")
        return pattern


class Slice(Node):
    start: int | None = None
    stop: int | None = None
    step: int | None = None
    is_index: bool = False
    span: Span

    @field_validator("step")
    @classmethod
    def _nonzero_step(cls, step: int | None) -> int | None:
        if step == 0:
            raise ValueError("slice step cannot be zero")
        return step

    def pick(self, items: list) -> list:
        """The items this slice selects, as Python indexing would (no IndexError)."""
        if self.is_index:
            index = self.start
            if -len(items) <= index < len(items):
                return [items[index]]
            return []
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
    slices: tuple[Slice, ...] = Field(min_length=1)
    span: Span

    def pick(self, items: list) -> list:
        """The items any of the slices selects, in their order in ``items``, each once."""
        if len(self.slices) == 1:
            return self.slices[0].pick(items)
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


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class Options(Node):
    """``with`` options of an ``unfreeze``: they shape the optimizer's parameter groups."""

    lr: float | None = None
    lr_scale: float | None = None
    weight_decay: float | None = None

    @field_validator("lr", "lr_scale")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and not (_finite(value) > 0):
            raise ValueError("must be a positive number")
        return value

    @field_validator("weight_decay")
    @classmethod
    def _non_negative(cls, value: float | None) -> float | None:
        if value is not None and not (_finite(value) >= 0):
            raise ValueError("must be zero or a positive number")
        return value

    @model_validator(mode="after")
    def _lr_or_scale(self) -> Options:
        if self.lr is not None and self.lr_scale is not None:
            raise ValueError("give lr or lr_scale, not both")
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
    stage: int | None = None

    def atoms(self) -> list:
        """The atomic selectors of this statement, left to right."""
        out, pending = [], [self.selector]
        while pending:
            node = pending.pop()
            if isinstance(node, (UnionSelector, IntersectionSelector)):
                pending.extend(reversed(node.items))
            elif isinstance(node, DifferenceSelector):
                pending.extend((node.right, node.left))
            else:
                out.append(node)
        return out

    @model_validator(mode="after")
    def _options_only_on_unfreeze(self) -> Statement:
        if self.options is not None and self.verb != "unfreeze":
            raise ValueError(f"options belong to 'unfreeze' only, not '{self.verb}'")
        return self


class Block(Node):
    """``at epoch N { … }``, ``at step N { … }``, ``at phase N { … }``: statements that join the policy at N."""

    unit: Unit
    at: int = Field(ge=0)
    statements: tuple[Statement, ...]
    span: Span


class Policy(Node):
    """A parsed, validated policy file."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    source: Source
    statements: tuple[Statement, ...]
    blocks: tuple[Block, ...] = ()

    @property
    def unit(self) -> Unit | None:
        """``epoch``, ``step`` or ``phase`` for a scheduled policy, else None."""
        return self.blocks[0].unit if self.blocks else None

    @property
    def milestones(self) -> tuple[int, ...]:
        """The distinct N of the ``at`` blocks, ascending."""
        return tuple(sorted({block.at for block in self.blocks}))

    def stage(self, at: int = 0) -> tuple[Statement, ...]:
        """The statements in force at epoch/step/phase ``at``: the base, then blocks with N ≤ at."""
        due = sorted((b for b in self.blocks if b.at <= at), key=lambda b: b.at)
        return self.statements + tuple(s for block in due for s in block.statements)

    def all_statements(self) -> tuple[Statement, ...]:
        """Every statement in file order."""
        ordered = list(self.statements) + [s for b in self.blocks for s in b.statements]
        return tuple(sorted(ordered, key=lambda s: s.span.offset))


for _model in (UnionSelector, IntersectionSelector, DifferenceSelector, ChildrenSelector):
    _model.model_rebuild()

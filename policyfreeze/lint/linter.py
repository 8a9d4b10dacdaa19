"""The linter: a policy source (and optionally a model tree) → ``Finding`` records.

It never prints: the command line formats the findings (``output.py``).
PF1xx findings are the parser's collected errors; PF2xx come from the
registered checks (``checks.py``), run on every schedule stage and merged so
a finding shared by several stages is reported once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import Location, PolicyError
from ..language.grammar import Comment
from ..language.parser import parse_with_comments
from ..language.policy import Policy
from ..language.source import Source
from .codes import RULES, Severity

if TYPE_CHECKING:
    from ..model.tree import ModelTree
    from .analysis import Analysis
    from .checks import Hit


@dataclass(frozen=True)
class Finding:
    """One problem in one policy file: where, which code, what and how to fix it.

    ``end_line``/``end_column`` close the region (the column is exclusive);
    ``stages`` names the schedule stages a staged finding applies to, when it
    does not apply to every stage its statement is in force in.
    """

    code: str
    severity: Severity
    message: str
    location: Location
    end_line: int
    end_column: int
    help: str | None = None
    stages: tuple[int, ...] = ()

    @property
    def source(self) -> str:
        return self.location.source

    @property
    def line(self) -> int:
        return self.location.line

    @property
    def column(self) -> int:
        return self.location.column

    def sort_key(self) -> tuple:
        return (self.source, self.line, self.column, self.code, self.stages, self.message)


def lint(source: Source, tree: ModelTree | None = None) -> Iterator[Finding]:
    """The findings of one policy: PF1xx always, PF2xx when a model tree is given.

    ``# noqa: CODE`` (or a bare ``# noqa``) on a line silences the PF2xx
    findings (and PF107) whose region covers that line. PF101–PF106 cannot be
    silenced: a policy with one does not load.
    """
    try:
        policy, comments = parse_with_comments(source)
    except PolicyError as exc:
        yield from findings_from_error(exc)
        return
    silenced = noqa_lines(comments)
    found = list(unknown_noqa_codes(source, comments))
    if tree is not None:
        try:
            found += model_findings(policy, tree)
        except PolicyError as exc:  # a pattern too costly to match, which the parser did not refuse
            yield from findings_from_error(exc)
            return
    yield from (f for f in found if not is_silenced(f, silenced))


def _code_suggestion(name: str) -> str | None:
    """The code ``name`` is a typo of: one character changed, or two neighbours swapped (PF026 → PF206)."""
    for code in RULES:
        if len(code) != len(name):
            continue
        differ = [i for i, (a, b) in enumerate(zip(code, name)) if a != b]
        swapped = (
            len(differ) == 2
            and differ[1] == differ[0] + 1
            and code[differ[0]] == name[differ[1]]
            and code[differ[1]] == name[differ[0]]
        )
        if len(differ) == 1 or swapped:
            return f"did you mean '{code}'?"
    return None


def unknown_noqa_codes(source: Source, comments: Iterable[Comment]) -> Iterator[Finding]:
    """PF107 for each code a ``# noqa:`` names that is no finding code."""
    for comment in comments:
        for match in _NOQA.finditer(comment.text):
            if not match["codes"]:
                continue
            for code in re.finditer(r"[A-Za-z]+[0-9]+", match["codes"]):
                name = code.group().upper()
                if name in RULES:
                    continue
                offset = comment.offset + match.start("codes") + code.start()
                location = source.location(offset, offset + len(name))
                close = _code_suggestion(name)
                yield Finding(
                    "PF107",
                    RULES["PF107"].severity,
                    f"'# noqa' names {name}, which is no finding code",
                    location,
                    location.line,
                    location.column + len(name),
                    close or RULES["PF107"].fix,
                )


def findings_from_error(error: PolicyError) -> list[Finding]:
    """A raised policy error (with every error it collected) as findings."""
    found = []
    for item in error.errors:
        location = item.location or Location("<unknown>", 1, 1)
        code = item.code or "PF101"
        found.append(
            Finding(
                code,
                RULES[code].severity,
                item.message,
                location,
                location.line,
                location.end_column or location.column + 1,
                item.help or RULES[code].fix,
            )
        )
    return sorted(found, key=Finding.sort_key)


def model_findings(policy: Policy, tree: ModelTree) -> list[Finding]:
    """Run every check on every stage; merge what several stages found alike."""
    # Imported here: lint without a model never loads the resolver and the checks.
    from .analysis import Analysis
    from .checks import CHECKS

    analysis = Analysis(policy, tree)
    merged: dict[tuple, tuple[Hit, list[int]]] = {}
    for stage in analysis.stages():
        at = stage.at
        for hits in (run(stage) for run in CHECKS.values()):
            for hit in hits:
                key = (hit.code, hit.statement.span.offset, hit.message, hit.help)
                merged.setdefault(key, (hit, []))[1].append(at)
    found = [_finding(policy.source, analysis, hit, tuple(points)) for hit, points in merged.values()]
    return sorted(found, key=Finding.sort_key)


def _finding(source: Source, analysis: Analysis, hit: Hit, points: tuple[int, ...]) -> Finding:
    span = hit.statement.span
    end_line, end_column = source.line_col(span.end_offset)
    message = hit.message
    stages: tuple[int, ...] = ()
    # A hit comes only from stages its statement is in force in: as many stages means every one of them.
    if RULES[hit.code].staged and policy_is_scheduled(analysis) and len(points) != analysis.in_force(hit.statement):
        message, stages = f"{message} ({analysis.stage_label(points)})", points
    return Finding(
        hit.code,
        RULES[hit.code].severity,
        message,
        source.location(span.offset, span.end_offset),
        end_line,
        end_column,
        hit.help or RULES[hit.code].fix,
        stages,
    )


def policy_is_scheduled(analysis: Analysis) -> bool:
    return analysis.policy.unit is not None


_NOQA = re.compile(
    r"#\s*noqa\b(?P<colon>\s*:\s*(?P<codes>[A-Za-z]+[0-9]+(?:\s*,?\s*[A-Za-z]+[0-9]+)*)?)?", re.IGNORECASE
)


def noqa_lines(comments: Iterable[Comment]) -> dict[int, frozenset[str] | None]:
    """Line → the codes its ``# noqa: CODE, …`` silences; None for a bare ``# noqa`` (every code).

    A ``# noqa:`` followed by no code silences nothing.
    """
    lines: dict[int, frozenset[str] | None] = {}
    for comment in comments:
        for match in _NOQA.finditer(comment.text):
            if match["colon"] is None:
                lines[comment.line] = None
            elif match["codes"]:
                already = lines.get(comment.line, frozenset())
                if already is not None:
                    codes = {code.upper() for code in re.findall(r"[A-Za-z]+[0-9]+", match["codes"])}
                    lines[comment.line] = already | codes
    return lines


def is_silenced(finding: Finding, silenced: dict[int, frozenset[str] | None]) -> bool:
    for line in range(finding.line, finding.end_line + 1):
        if line in silenced:
            codes = silenced[line]
            if codes is None or finding.code in codes:
                return True
    return False


def filter_codes(findings: Iterable[Finding], select: Iterable[str] = (), ignore: Iterable[str] = ()) -> list[Finding]:
    """Keep the findings whose code starts with a ``select`` prefix (all when none) and no ``ignore`` prefix.

    Syntax and validation errors (PF101–PF106) are always kept: a policy with one does not load.
    """
    select, ignore = tuple(select), tuple(ignore)
    return [
        f
        for f in findings
        if always_reported(f.code)
        or ((not select or f.code.startswith(select)) and not (ignore and f.code.startswith(ignore)))
    ]


def always_reported(code: str) -> bool:
    """Whether no ``--select``/``--ignore`` can drop a code: the errors that stop a policy from loading."""
    return code.startswith("PF1") and RULES[code].severity == "error"

"""Lint output formats, one function each: text, json, github, sarif.

Each takes the findings (sorted) and returns the whole text to print. Text
that comes from a policy or a model (file names, names and globs quoted in
messages) is shown with its control characters escaped (``printable``): a
name holding ESC or CR cannot move the cursor or forge a line in any format.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from .. import __version__
from ..errors import printable
from ..report.term import paint
from .codes import RULES, SEVERITIES
from .linter import Finding

JSON_VERSION = 1
#: Findings shown per file, as compilers cap their errors: the rest are counted, not listed.
MAX_FINDINGS_PER_FILE = 100
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SEVERITY_STYLE = {"error": ("bold", "red"), "warning": ("bold", "yellow"), "info": ("bold", "blue")}
_GITHUB_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}
_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def counts(findings: Sequence[Finding]) -> dict[str, int]:
    by_severity = Counter(f.severity for f in findings)
    return {severity: by_severity[severity] for severity in SEVERITIES}


def summary(findings: Sequence[Finding], files: int, unreadable: int = 0, omitted: int = 0) -> str:
    """``Found 3 findings (1 error, 2 warnings) in 2 files.`` or ``All checks passed (2 files).``"""
    in_files = f"{files} file" + ("" if files == 1 else "s")
    if unreadable:
        in_files += f"; {unreadable} could not be read"
    if omitted:
        in_files += f"; {omitted:,} more not shown"
    if not findings:
        return f"{'No findings' if unreadable else 'All checks passed'} ({in_files})."
    parts = []
    for severity, count in counts(findings).items():
        if count:
            noun = severity if severity == "info" or count == 1 else severity + "s"
            parts.append(f"{count} {noun}")
    found = f"{len(findings)} finding" + ("" if len(findings) == 1 else "s")
    return f"Found {found} ({', '.join(parts)}) in {in_files}."


def format_text(
    findings: Sequence[Finding],
    *,
    files: int,
    unreadable: int = 0,
    color: bool = False,
    omitted: Mapping[str, int] | None = None,
) -> str:
    """``file:line:col: CODE message``, the line with a caret, a help line; then the summary.

    A file with more findings than were kept ends with ``… and N more findings in FILE``.
    """
    omitted = omitted or {}
    blocks = []
    for index, finding in enumerate(findings):
        blocks.append(_text_block(finding, color))
        last_of_file = index + 1 == len(findings) or findings[index + 1].source != finding.source
        if last_of_file and finding.source in omitted:
            count = omitted[finding.source]
            blocks.append(f"… and {count:,} more finding{'s' if count != 1 else ''} in {finding.source}")
    blocks.append(summary(findings, files, unreadable, sum(omitted.values())))
    return "\n\n".join(blocks)


def _text_block(finding: Finding, color: bool) -> str:
    location = finding.location
    style = _SEVERITY_STYLE[finding.severity]
    head = paint(f"{printable(location.source)}:{location.line}:{location.column}:", "bold", enabled=color)
    lines = [f"{head} {paint(finding.code, *style, enabled=color)} {printable(finding.message)}"]
    if location.text:
        gutter, text, caret = location.snippet().split("\n")
        lines += [paint(gutter, "blue", enabled=color), text, paint(caret, *style, enabled=color)]
    if finding.help:
        lines.append(f"  {paint('= help:', 'bold', 'cyan', enabled=color)} {printable(finding.help)}")
    return "\n".join(lines)


def format_json(findings: Sequence[Finding], *, files: Sequence[str], omitted: Mapping[str, int] | None = None) -> str:
    """A versioned JSON document: the files linted, every finding kept, counts by severity, and per file
    how many findings past the cap were left out."""
    document = {
        "version": JSON_VERSION,
        "tool": {"name": "policyfreeze", "version": __version__},
        "files": [printable(name) for name in files],
        "findings": [
            {
                "code": f.code,
                "severity": f.severity,
                "message": printable(f.message),
                "help": printable(f.help) if f.help else f.help,
                "file": printable(f.source),
                "line": f.line,
                "column": f.column,
                "end_line": f.end_line,
                "end_column": f.end_column,
                "stages": list(f.stages),
            }
            for f in findings
        ],
        "counts": {"files": len(files), "findings": len(findings), **counts(findings)},
        "omitted": dict(omitted or {}),
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


def format_github(findings: Sequence[Finding], omitted: Mapping[str, int] | None = None) -> str:
    """GitHub Actions workflow commands: one annotation per finding (and a notice per capped file)."""
    lines = []
    for f in findings:
        properties = {"file": printable(f.source), "line": f.line}
        if f.end_line == f.line:
            properties.update(col=f.column, endColumn=f.end_column)
        else:
            properties.update(endLine=f.end_line)
        properties["title"] = f"{f.code} ({RULES[f.code].name})"
        rendered = ",".join(f"{key}={_escape_property(str(value))}" for key, value in properties.items())
        message = printable(f.message) + (f"\nhelp: {printable(f.help)}" if f.help else "")
        lines.append(f"::{_GITHUB_LEVEL[f.severity]} {rendered}::{_escape_data(message)}")
    for name, count in (omitted or {}).items():
        lines.append(f"::notice file={_escape_property(name)}::{count:,} more findings in this file are not shown")
    return "\n".join(lines)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def format_sarif(findings: Sequence[Finding], *, root: Path, omitted: Mapping[str, int] | None = None) -> str:
    """A SARIF 2.1.0 log for code scanning; file URIs are relative to ``root`` (the repository)."""
    rules = sorted(RULES.values(), key=lambda r: r.code)
    index = {rule.code: i for i, rule in enumerate(rules)}
    results = []
    for f in findings:
        region = {
            "startLine": f.line,
            "startColumn": f.column,
            "endLine": f.end_line,
            "endColumn": f.end_column,
        }
        text = printable(f.message) + (f"\nhelp: {printable(f.help)}" if f.help else "")
        results.append(
            {
                "ruleId": f.code,
                "ruleIndex": index[f.code],
                "level": _SARIF_LEVEL[f.severity],
                "message": {"text": text},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": _artifact(f.source, root),
                            "region": region,
                        }
                    }
                ],
            }
        )
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "policyfreeze",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": [_sarif_rule(rule) for rule in rules],
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
                "properties": {"omitted": dict(omitted or {})},
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False)


def _sarif_rule(rule) -> dict:
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.description},
        "help": {"text": f"{rule.description} Fix: {rule.fix}. See docs/cli.md ({rule.code}) for an example."},
        "defaultConfiguration": {"level": _SARIF_LEVEL[rule.severity]},
        "properties": {"tags": ["policyfreeze", "model-aware" if rule.needs_model else "syntax"]},
    }


def _artifact(name: str, root: Path) -> dict:
    path = Path(name)
    try:
        absolute, base = path.resolve(), root.resolve()
    except (OSError, RuntimeError):  # a symlink loop, or a directory gone: the path as written, made absolute
        absolute, base = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    try:
        relative = absolute.relative_to(base)
    except ValueError:
        return {"uri": absolute.as_uri()}
    return {"uri": quote(relative.as_posix()), "uriBaseId": "%SRCROOT%"}

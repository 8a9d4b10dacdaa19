"""Lint output formats: json (versioned, with counts), github (escaped annotations), sarif (valid 2.1.0)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from policyfreeze.errors import Location
from policyfreeze.lint.codes import RULES
from policyfreeze.lint.linter import Finding
from policyfreeze.lint.output import (
    _escape_data,
    _escape_property,
    format_github,
    format_json,
    format_sarif,
    format_text,
    summary,
)


def finding(
    code="PF201", *, source="policies/a.freeze", line=2, column=3, end_line=2, end_column=9, message="m", help=None
):
    text = "freeze layer9 # and more text"
    return Finding(
        code,
        RULES[code].severity,
        message,
        Location(source, line, column, text, end_column),
        end_line,
        end_column,
        help,
    )


# --- text ----------------------------------------------------------------------------


def test_text_finding_has_location_code_snippet_caret_and_help() -> None:
    text = format_text([finding(help="did you mean 'layer4'?")], files=1)
    assert text.splitlines() == [
        "policies/a.freeze:2:3: PF201 m",
        "  |",
        "2 | freeze layer9 # and more text",
        "  |   ^^^^^^",
        "  = help: did you mean 'layer4'?",
        "",
        "Found 1 finding (1 warning) in 1 file.",
    ]


def test_text_colour_only_when_asked() -> None:
    assert "\x1b[" not in format_text([finding()], files=1)
    coloured = format_text([finding()], files=1, color=True)
    assert "\x1b[1;33mPF201\x1b[0m" in coloured  # a warning in bold yellow
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == format_text([finding()], files=1)


@pytest.mark.parametrize(
    ("codes", "files", "expected"),
    [
        ([], 1, "All checks passed (1 file)."),
        ([], 3, "All checks passed (3 files)."),
        (["PF101"], 1, "Found 1 finding (1 error) in 1 file."),
        (
            ["PF101", "PF205", "PF201", "PF203", "PF203"],
            2,
            "Found 5 findings (2 errors, 1 warning, 2 info) in 2 files.",
        ),
    ],
)
def test_summary(codes, files, expected) -> None:
    assert summary([finding(code) for code in codes], files) == expected


# --- json ----------------------------------------------------------------------------


def test_json_document_is_versioned_with_counts() -> None:
    document = json.loads(format_json([finding("PF205"), finding("PF201", help="h")], files=["a", "b"]))
    assert document["version"] == 1
    assert document["tool"]["name"] == "policyfreeze"
    assert document["files"] == ["a", "b"]
    assert document["counts"] == {"files": 2, "findings": 2, "error": 1, "warning": 1, "info": 0}
    assert document["findings"][1] == {
        "code": "PF201",
        "severity": "warning",
        "message": "m",
        "help": "h",
        "file": "policies/a.freeze",
        "line": 2,
        "column": 3,
        "end_line": 2,
        "end_column": 9,
        "stages": [],
    }


# --- github --------------------------------------------------------------------------

ESCAPES = [
    ("plain", "plain", "plain"),
    ("100%", "100%25", "100%25"),
    ("a\nb\r\nc", "a%0Ab%0D%0Ac", "a%0Ab%0D%0Ac"),
    ("a:b,c", "a:b,c", "a%3Ab%2Cc"),
    ("%0A", "%250A", "%250A"),  # an escape sequence in the text stays literal
]


@pytest.mark.parametrize(("text", "data", "prop"), ESCAPES)
def test_github_escaping(text: str, data: str, prop: str) -> None:
    assert _escape_data(text) == data
    assert _escape_property(text) == prop


def test_github_annotation_for_one_line_region() -> None:
    line = format_github([finding(source="dir,x/a:b.freeze", message="50% done\nnext", help="fix: it")])
    assert line == (
        "::warning file=dir%2Cx/a%3Ab.freeze,line=2,col=3,endColumn=9,title=PF201 (selects-nothing)"
        "::50%25 done\\nnext%0Ahelp: fix: it"  # a newline inside a message is escaped, as every control character
    )


def test_github_annotation_for_a_region_over_lines_has_no_columns() -> None:
    line = format_github([finding("PF203", end_line=4, end_column=2)])
    assert line.startswith("::notice file=policies/a.freeze,line=2,endLine=4,title=")


@pytest.mark.parametrize(("code", "level"), [("PF101", "error"), ("PF202", "warning"), ("PF203", "notice")])
def test_github_levels(code: str, level: str) -> None:
    assert format_github([finding(code)]).startswith(f"::{level} ")


# --- sarif ---------------------------------------------------------------------------

LEVELS = {"none", "note", "warning", "error"}


def check_sarif(log: dict) -> None:
    """The SARIF 2.1.0 properties that are required, and the ones code scanning relies on."""
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-2.1.0.json")
    assert isinstance(log["runs"], list) and log["runs"]
    for run in log["runs"]:
        driver = run["tool"]["driver"]
        assert driver["name"]
        rules = driver["rules"]
        ids = [rule["id"] for rule in rules]
        assert len(ids) == len(set(ids))
        for rule in rules:
            assert rule["shortDescription"]["text"]
            assert rule["fullDescription"]["text"]
            assert rule["help"]["text"]
            assert rule["defaultConfiguration"]["level"] in LEVELS
        assert run["columnKind"] in ("utf16CodeUnits", "unicodeCodePoints")
        for result in run["results"]:
            assert result["message"]["text"]
            assert result["ruleId"] == ids[result["ruleIndex"]]
            assert result["level"] in LEVELS
            [location] = result["locations"]
            physical = location["physicalLocation"]
            uri = physical["artifactLocation"]["uri"]
            assert uri and " " not in uri
            if "uriBaseId" in physical["artifactLocation"]:
                assert not uri.startswith("/") and ":" not in uri  # relative to the repository root
            else:
                assert uri.startswith("file:///")
            region = physical["region"]
            assert region["startLine"] >= 1 and region["startColumn"] >= 1
            assert region["endLine"] >= region["startLine"]
            if region["endLine"] == region["startLine"]:
                assert region["endColumn"] > region["startColumn"]


def test_sarif_log_is_valid_with_every_rule_and_stable_ids(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    findings = [finding(code, source=f"policies/my policy {code}.freeze") for code in sorted(RULES)]
    log = json.loads(format_sarif(findings, root=tmp_path))
    check_sarif(log)
    run = log["runs"][0]
    assert [rule["id"] for rule in run["tool"]["driver"]["rules"]] == sorted(RULES)
    assert [rule["name"] for rule in run["tool"]["driver"]["rules"]] == [RULES[c].name for c in sorted(RULES)]
    first = run["results"][0]["locations"][0]["physicalLocation"]
    assert first["artifactLocation"] == {"uri": "policies/my%20policy%20PF101.freeze", "uriBaseId": "%SRCROOT%"}
    assert first["region"] == {"startLine": 2, "startColumn": 3, "endLine": 2, "endColumn": 9}
    assert [r["level"] for r in run["results"]] == [
        {"error": "error", "warning": "warning", "info": "note"}[RULES[c].severity] for c in sorted(RULES)
    ]


def test_sarif_uri_of_a_file_outside_the_repository_is_absolute(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "a.freeze"
    log = json.loads(format_sarif([finding(source=str(outside))], root=tmp_path / "repo"))
    check_sarif(log)
    assert log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": outside.as_uri()
    }


def test_sarif_without_findings_is_still_a_valid_log(tmp_path: Path) -> None:
    log = json.loads(format_sarif([], root=tmp_path))
    check_sarif(log)
    assert log["runs"][0]["results"] == []


def test_sarif_of_stdin_named_through_a_symlink_loop_is_a_log_not_an_internal_error(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    import io
    import sys

    from policyfreeze.cli import main

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"freeze layer1 with lr=1\n")))
    status = main(["lint", "-", "--stdin-filename", "loop/policy.freeze", "--format", "sarif"])
    log = json.loads(capsys.readouterr().out)
    check_sarif(log)
    assert status == 1
    [result] = log["runs"][0]["results"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("loop/policy.freeze")


# --- control characters from a policy or a model never reach the output raw ---------------------------

HOSTILE = "a\x1b[2J\rb\x9b2J\u202ec\n::error::forged"
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize("form", ["text", "json", "github", "sarif"])
def test_control_characters_are_escaped_in_every_format(form: str, tmp_path: Path) -> None:
    hostile = finding(
        source=f"p{HOSTILE}.freeze", message=f"'{HOSTILE}' selects nothing", help=f"did you mean {HOSTILE}?"
    )
    out = {
        "text": lambda: format_text([hostile], files=1),
        "json": lambda: format_json([hostile], files=[hostile.source]),
        "github": lambda: format_github([hostile]),
        "sarif": lambda: format_sarif([hostile], root=tmp_path),
    }[form]()
    assert not RAW.search(out)
    assert not re.search("^::error::", out, re.MULTILINE)  # no forged workflow command
    escaped = r"a\x1b[2J\rb\x9b2J\u202ec\n::error::forged"
    if form in ("json", "sarif"):
        document = json.loads(out)
        out = (
            document["findings"][0]["message"]
            if form == "json"
            else document["runs"][0]["results"][0]["message"]["text"]
        )
    assert escaped in out

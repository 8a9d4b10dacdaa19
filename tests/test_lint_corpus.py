"""The lint corpus: deliberately broken policies and their expected findings, as golden files.

Each ``tests/lint_corpus/NAME.freeze`` is linted through the command line
(``# model: SPEC`` in the file picks the model; specs are relative to the
corpus directory); ``NAME.expected`` holds the exact output and exit code.
Regenerate with ``UPDATE_GOLDEN=1 pytest tests/test_lint_corpus.py`` and
review the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from policyfreeze.cli import main
from policyfreeze.lint.codes import RULES

CORPUS = Path(__file__).parent / "lint_corpus"
CASES = sorted(CORPUS.glob("*.freeze"))
#: The cases as run: a PF209 case needs adapter layers marked in the tree.
RUNS = CASES
MODEL = re.compile(rb"^# model: (\S+)", re.MULTILINE)


def run_lint(path: Path, capsys) -> str:
    found = MODEL.search(path.read_bytes())
    argv = ["lint", path.name] + (["--model", found.group(1).decode()] if found else [])
    status = main(argv)
    out, err = capsys.readouterr()
    assert err == ""
    return f"{out}exit {status}\n"


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.stem)
def test_corpus_golden(path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(CORPUS)
    actual = run_lint(path, capsys)
    expected = path.with_suffix(".expected")
    if os.environ.get("UPDATE_GOLDEN"):
        expected.write_text(actual, encoding="utf-8")
    assert actual == expected.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_corpus_file_names_its_findings(path: Path) -> None:
    """``pfNNN-…`` files find PFNNN (or nothing, when the name says the case is fine)."""
    output = path.with_suffix(".expected").read_text(encoding="utf-8")
    codes = set(re.findall(r": (PF\d{3}) ", output))
    named = re.match(r"pf(\d{3})", path.stem)
    if named is None:
        return
    if path.stem.endswith(("-agree", "-pinned", "-excluded")):
        assert codes == set()
    else:
        assert f"PF{named.group(1)}" in codes


def test_corpus_covers_every_code() -> None:
    found = set()
    for expected in CORPUS.glob("*.expected"):
        found |= set(re.findall(r": (PF\d{3}) ", expected.read_text(encoding="utf-8")))
    assert found == set(RULES)


def test_every_case_has_a_golden_file() -> None:
    assert {p.stem for p in CORPUS.glob("*.expected")} == {p.stem for p in CASES}


def test_every_finding_has_a_help_line() -> None:
    for expected in CORPUS.glob("*.expected"):
        blocks = expected.read_text(encoding="utf-8").split("\n\n")[:-1]  # the last is the summary
        for block in blocks:
            assert "\n  = help: " in block, block

"""The docs name only files that exist, and state the exit codes once, the same everywhere.

Checked in README.md, docs/*.md, examples/ and the comments of policies/:
every repository path (``policies/…``, ``docs/…``, ``tests/…``, …), every
relative Markdown link, every policy file named without its directory (it is in
policies/ or examples/) and every other file named without its directory
(``bench_parse.py``: some file of the repository has that name). Names the docs
use for the reader's own files are listed below, with why.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from policyfreeze.cli import EXIT_CODES, build_parser

ROOT = Path(__file__).parent.parent
DOCS = sorted(
    [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "examples").iterdir(),
        *(ROOT / "policies").iterdir(),
        *(ROOT / "policyfreeze").rglob("*.py"),  # docstrings and the commands' help examples
    ]
)
TOP_DIRECTORIES = ("policies", "examples", "docs", "tests", "bench", "policyfreeze", "grammar", "fuzz")
REPOSITORY_PATH = re.compile(rf"(?<![\w/.~-])(?:{'|'.join(TOP_DIRECTORIES)})/[\w./*-]*[\w*]")
#: a file named without its directory (not a call: `BaseFinetuning.freeze(...)` is a method)
BARE_FILE = re.compile(r"(?<![\w/.~-])[\w-]+\.(?:freeze|py|md|lark|json|yaml|toml)\b(?!\()")
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
#: names of the reader's own files
READERS_FILES = {
    "policy.freeze": "the policy file every example lints or plans",
    "config.json": "a Hugging Face model's config",
    "file.py": "the spec form path/to/file.py:factory",
    "m.json": "the manifest named in docs/errors.md's messages",
    "policyfreeze.json": "the Trainer callback's state file in a checkpoint folder",
    "trainer_state.json": "the Hugging Face Trainer's own state file",
    "grammar.lark": "the wheel's copy of grammar/policy.lark, made when the wheel is built",
    "lark.lark": "lark's own module (lark.lark.PostLex), not a file",
}


def text_files() -> list[Path]:
    return [path for path in DOCS if path.is_file() and path.suffix in (".md", ".py", ".freeze")]


def named_paths(path: Path) -> list[tuple[str, Path | None]]:
    """(name as written, where it must be: a path, or None for a bare name looked up by name)."""
    text = path.read_text(encoding="utf-8")
    found: list[tuple[str, Path | None]] = [(m.group(0), ROOT / m.group(0)) for m in REPOSITORY_PATH.finditer(text)]
    if path.suffix == ".md":
        for target in MARKDOWN_LINK.findall(text):
            if not re.match(r"[a-z]+:", target):
                found.append((target, path.parent / target))
    found += [(m.group(0), None) for m in BARE_FILE.finditer(text) if m.group(0) not in READERS_FILES]
    return found


def exists(name: str, where: Path | None) -> bool:
    if where is not None:
        return bool(list(ROOT.glob(str(where.relative_to(ROOT))))) if "*" in name else where.exists()
    if name.endswith(".freeze"):
        return any((ROOT / directory / name).is_file() for directory in ("policies", "examples"))
    # The project's own files: a virtual environment inside the checkout holds other projects' files too.
    return any(".venv" not in found.relative_to(ROOT).parts for found in ROOT.rglob(name))


@pytest.mark.parametrize("path", text_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_a_doc_names_exists(path: Path) -> None:
    missing = sorted({name for name, where in named_paths(path) if not exists(name, where)})
    assert missing == [], f"{path.relative_to(ROOT)} names files that do not exist"


def test_the_check_sees_what_the_docs_name() -> None:
    names = {name for path in text_files() for name, _ in named_paths(path)}
    assert {"policies/resnet18-linear-probe.freeze", "docs/cli.md", "examples/gradual_unfreezing.py"} <= names
    assert {"bench_parse.py", "gradual-unfreezing.freeze"} <= names
    assert not exists("policies/gradual.freeze", ROOT / "policies/gradual.freeze")


# --- exit codes --------------------------------------------------------------------------------------------


def normalized(text: str) -> str:
    return " ".join(text.replace("`", "").split())


def markdown_exit_codes(path: Path) -> dict[int, str]:
    """The rows of the doc's exit-code table: ``| 0 | meaning |``."""
    rows = re.findall(r"^\| `?([012])`? \| (.+?) \|$", path.read_text(encoding="utf-8"), re.MULTILINE)
    return {int(code): normalized(meaning) for code, meaning in rows}


def test_exit_codes_are_stated_the_same_in_readme_cli_docs_and_help() -> None:
    stated = {code: normalized(meaning) for code, meaning in EXIT_CODES.items()}
    assert sorted(stated) == [0, 1, 2]
    assert markdown_exit_codes(ROOT / "README.md") == stated
    assert markdown_exit_codes(ROOT / "docs" / "cli.md") == stated
    help_text = normalized(build_parser().format_help())
    for code, meaning in stated.items():
        assert f"{code} {meaning}" in help_text


def test_no_doc_says_exit_1_means_findings_of_any_severity() -> None:
    for path in text_files():
        text = normalized(path.read_text(encoding="utf-8")).lower()
        assert "1 findings" not in text and "1 means findings" not in text, path

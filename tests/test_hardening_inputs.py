"""The bad-input table of docs/errors.md, one row per test, for the Python API and the command line.

Every row is a file (or a missing one); the API must answer with a
``PolicyError`` carrying the row's class, code and position (or parse it, for
the inputs that are valid), and the command line with exit 0/1/2 and never a
traceback. The messages people read are kept in a golden file:
regenerate after an intended change with

    UPDATE_GOLDEN=1 python -m pytest tests/test_hardening_inputs.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from policyfreeze import (
    PolicyError,
    PolicySyntaxError,
    PolicyUsageError,
    PolicyValidationError,
    cli,
    load,
    parse,
)
from policyfreeze.language.source import MAX_SOURCE_BYTES

GOLDEN = Path(__file__).parent / "hardening" / "bad-inputs.txt"
DOCS = Path(__file__).parent.parent / "docs" / "errors.md"
NAME = "policy.freeze"

LONG_STATEMENT = "freeze " + ", ".join(f"layer{i % 4 + 1}.{i % 2}.conv{i % 2 + 1}" for i in range(6_300))
assert len(LONG_STATEMENT) > 100_000


@dataclass(frozen=True)
class Row:
    """One bad input: the file's bytes (None: no file; "dir"/"unreadable": those) and the answer."""

    name: str
    content: bytes | str | None
    kind: type[PolicyError] | None = None  # None: the input is a valid policy
    code: str | None = None
    line: int | None = None
    column: int | None = None
    message: str = ""
    statements: int = 0

    @property
    def text(self) -> str | None:
        """The same input as a str for ``parse``, when it is text."""
        if isinstance(self.content, bytes):
            try:
                return self.content.decode("utf-8")
            except UnicodeDecodeError:
                return None
        return None


def ok(name: str, content: bytes, statements: int) -> Row:
    return Row(name, content, statements=statements)


def error(name, content, kind, code=None, line=None, column=None, message="") -> Row:
    return Row(name, content, kind, code, line, column, message)


ROWS = [
    ok("empty file", b"", 0),
    ok("only comments", b"# nothing to do yet\n   # still nothing\n", 0),
    error(
        "not UTF-8",
        b"freeze all\nunfreeze caf\xe9\n",
        PolicySyntaxError,
        "PF101",
        2,
        13,
        "not valid UTF-8: byte 0xe9 at byte offset 23",
    ),
    error(
        "UTF-16",
        "freeze all\n".encode("utf-16"),
        PolicySyntaxError,
        "PF101",
        1,
        1,
        "not valid UTF-8: byte 0xff at byte offset 0",
    ),
    ok("BOM", b"\xef\xbb\xbffreeze all\nunfreeze fc\n", 2),
    error(
        "error after a BOM",
        b"\xef\xbb\xbffreez all\n",
        PolicySyntaxError,
        "PF101",
        1,
        1,
        "unknown word 'freez', expected 'at', a verb (freeze, unfreeze, eval, train) or ';' or a new line",
    ),
    ok("CRLF line ends", b"freeze all\r\nunfreeze fc\r\n", 2),
    error(
        "error after CRLF",
        b"freeze all\r\nunfrezee fc\r\n",
        PolicySyntaxError,
        "PF101",
        2,
        1,
        "unknown word 'unfrezee', expected 'at', a verb (freeze, unfreeze, eval, train) or ';' or a new line",
    ),
    error("NUL byte", b"freeze layer1\x00\n", PolicySyntaxError, "PF101", 1, 14, "unexpected control character U+0000"),
    error(
        "10 MB file",
        b"freeze layer1\n" * (10_000_000 // 14),
        PolicySyntaxError,
        "PF101",
        MAX_SOURCE_BYTES // 14 + 1,
        MAX_SOURCE_BYTES % 14 + 1,
        "the policy is longer than the 1 MiB limit (1,048,576 bytes)",
    ),
    ok("statement of 100,000 characters", LONG_STATEMENT.encode(), 1),
    error(
        "error at the end of a 100,000-character statement",
        (LONG_STATEMENT + " $").encode(),
        PolicySyntaxError,
        "PF101",
        1,
        len(LONG_STATEMENT) + 2,
        "unexpected '$', expected '&', ',', '.', 'except', 'with' or ';' or a new line",
    ),
    error(
        "10,000 nested parentheses",
        ("freeze " + "(" * 10_000 + "fc" + ")" * 10_000).encode(),
        PolicySyntaxError,
        "PF101",
        1,
        72,
        "selectors nested deeper than 64 brackets",
    ),
    error(
        "200 chained excepts",
        ("freeze " + " except ".join(["fc"] * 200)).encode(),
        PolicySyntaxError,
        "PF101",
        1,
        8,
        "the selector nests operators more than 100 deep",
    ),
    error(
        "unknown verb",
        b"frobnicate fc\n",
        PolicySyntaxError,
        "PF101",
        1,
        1,
        "unknown word 'frobnicate', expected 'at', a verb (freeze, unfreeze, eval, train) or ';' or a new line",
    ),
    error(
        "misspelt verb",
        b"unfrezee fc\n",
        PolicySyntaxError,
        "PF101",
        1,
        1,
        "unknown word 'unfrezee', expected 'at', a verb (freeze, unfreeze, eval, train) or ';' or a new line",
    ),
    error(
        "misspelt keyword",
        b"freeze all excpet fc\n",
        PolicySyntaxError,
        "PF101",
        1,
        12,
        "unexpected 'excpet', expected '&', ',', 'except', 'with' or ';' or a new line",
    ),
    error(
        "unterminated regex",
        b"freeze match /layer[12]\n",
        PolicySyntaxError,
        "PF101",
        1,
        14,
        "the regex is never closed",
    ),
    error(
        "invalid regex",
        b"freeze match /layer(1|2/\n",
        PolicyValidationError,
        "PF102",
        1,
        14,
        "invalid regular expression: missing ): layer(1|2",
    ),
    error(
        "backreference (not RE2)",
        b"freeze match /(a)\\1/\n",
        PolicyValidationError,
        "PF102",
        1,
        14,
        "invalid regular expression: invalid escape sequence: \\1",
    ),
    error(
        "unknown regex flag", b"freeze match /fc/x\n", PolicyValidationError, "PF102", 1, 14, "unknown regex flag 'x'"
    ),
    error(
        "children[0:2:0]",
        b"freeze children[0:2:0]\n",
        PolicyValidationError,
        "PF103",
        1,
        16,
        "slice step cannot be zero",
    ),
    error(
        "children[a]",
        b"freeze children[a]\n",
        PolicySyntaxError,
        "PF101",
        1,
        17,
        "unexpected 'a', expected ',', ':', ']' or an integer",
    ),
    error(
        "children[]",
        b"freeze children[]\n",
        PolicyValidationError,
        "PF103",
        1,
        16,
        "empty slice: write an index or a range like [0:2]",
    ),
    ok("huge integers in a slice", b"freeze children[99999999999999999999:-99999999999999999999:-1]\n", 1),
    error(
        "integer of 5,000 digits",
        b"freeze children[" + b"9" * 5000 + b"]\n",
        PolicyValidationError,
        "PF103",
        1,
        17,
        "integer 999999999999999999999999999999999999999\u2026 (5,000 characters) is too long: at most 100 digits",
    ),
    error(
        "lr=-1",
        b"unfreeze fc with lr=-1\n",
        PolicyValidationError,
        "PF104",
        1,
        21,
        "lr must be a positive number, not -1",
    ),
    error(
        "lr=nan",
        b"unfreeze fc with lr=nan\n",
        PolicyValidationError,
        "PF104",
        1,
        21,
        "lr must be a finite number, not nan",
    ),
    error(
        "lr=inf",
        b"unfreeze fc with lr=inf\n",
        PolicyValidationError,
        "PF104",
        1,
        21,
        "lr must be a finite number, not inf",
    ),
    error(
        "lr and lr_scale together",
        b"unfreeze fc with lr=1e-3, lr_scale=0.1\n",
        PolicyValidationError,
        "PF105",
        1,
        13,
        "lr and lr_scale together: give one",
    ),
    error(
        "unknown option",
        b"unfreeze fc with momentum=0.9\n",
        PolicyValidationError,
        "PF104",
        1,
        18,
        "unknown option 'momentum'",
    ),
    error(
        "options on freeze",
        b"freeze fc with lr=1e-3\n",
        PolicyValidationError,
        "PF105",
        1,
        11,
        "options belong to 'unfreeze' only, not 'freeze'",
    ),
    error(
        "at epoch -1",
        b"at epoch -1 { unfreeze fc }\n",
        PolicySyntaxError,
        "PF101",
        1,
        10,
        "epoch must be 0 or more, not -1",
    ),
    error(
        "mixed epoch and step",
        b"at epoch 1 { unfreeze fc }\nat step 2 { unfreeze layer4 }\n",
        PolicyValidationError,
        "PF106",
        2,
        1,
        "'at step' in a file that schedules by epoch",
    ),
    error("unclosed {", b"at epoch 1 {\n  unfreeze fc\n", PolicySyntaxError, "PF101", 1, 12, "'{' is never closed"),
    error("unclosed (", b"freeze (layer1,\n        layer2\n", PolicySyntaxError, "PF101", 1, 8, "'(' is never closed"),
    error(
        "quoted glob without its closing quote",
        b'freeze "my-block.*\n',
        PolicySyntaxError,
        "PF101",
        1,
        8,
        "the quoted name is never closed",
    ),
    error(
        "'#' in the class of a bare glob",
        b"freeze layer[#]\n",
        PolicySyntaxError,
        "PF101",
        1,
        13,
        "unexpected '[', expected '&', ',', '.', 'except', 'with' or ';' or a new line",
    ),
    error(
        "keyword as a bare name",
        b"unfreeze epoch\n",
        PolicySyntaxError,
        "PF101",
        1,
        10,
        "'epoch' is a keyword, not a name",
    ),
    error(
        "keyword at the end of a selector",
        b"freeze layer1, type\n",
        PolicySyntaxError,
        "PF101",
        1,
        20,
        "the line ends too early, expected '('",
    ),
    error(
        "type() with a module path",
        b"freeze type(nn.BatchNorm2d)\n",
        PolicySyntaxError,
        "PF101",
        1,
        13,
        "type() takes a class name without its module: 'BatchNorm2d', not 'nn.BatchNorm2d'",
    ),
    error("missing file", None, PolicyUsageError, message=f"{NAME}: no such file", code=None),
    error(
        "directory given as a file",
        "dir",
        PolicyUsageError,
        message=f"{NAME}: is a directory, not a policy file",
        code=None,
    ),
    error(
        "file without read permission", "unreadable", PolicyUsageError, message=f"{NAME}: permission denied", code=None
    ),
]
ROWS_BY_NAME = {row.name: row for row in ROWS}


def make_input(row: Row, directory: Path, monkeypatch) -> Path:
    path = directory / NAME
    if isinstance(row.content, bytes):
        path.write_bytes(row.content)
    elif row.content == "dir":
        path.mkdir()
    elif row.content == "unreadable":
        # Root reads any file whatever its mode: make the read itself fail as the OS would.
        path.write_text("freeze all\n")
        real_open = Path.open

        def refuse(self, *args, **kwargs):
            if self.name == NAME:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", refuse)
    return path


def check_answer(row: Row, load_policy) -> str:
    """Load the row's input; check the answer; return what a person reads."""
    if row.kind is None:
        policy = load_policy()
        assert len(policy.all_statements()) == row.statements
        return f"ok: {row.statements} statement(s)"
    with pytest.raises(PolicyError) as info:
        load_policy()
    error = info.value
    assert type(error) is row.kind
    assert error.code == row.code
    assert error.message == row.message
    if row.line is None:
        assert error.location is None
    else:
        assert (error.line, error.column) == (row.line, row.column)
        assert error.location.source == NAME
    rendered = str(error)
    assert "Traceback" not in rendered
    snippet = [line for line in rendered.splitlines() if re.match(r" *[0-9]* \| ", line)]
    assert all(len(line) <= 120 for line in snippet)  # a long line is shown as a window around the caret
    return rendered


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_python_api(row, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_input(row, tmp_path, monkeypatch)
    check_answer(row, lambda: load(NAME))
    if row.text is not None:
        # The same text through parse(): the same answer, at the same place.
        check_answer(row, lambda: parse(row.text, NAME))


def test_every_row_is_in_the_golden_file_and_the_docs(tmp_path, monkeypatch):
    rendered = []
    for row in ROWS:
        directory = tmp_path / str(ROWS.index(row))
        directory.mkdir()
        with monkeypatch.context() as patch:
            patch.chdir(directory)
            make_input(row, directory, patch)
            rendered.append(f"## {row.name}\n{check_answer(row, lambda: load(NAME))}\n")
    actual = "\n".join(rendered)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(actual, encoding="utf-8")
    assert actual == GOLDEN.read_text(encoding="utf-8")
    docs = DOCS.read_text(encoding="utf-8")
    docs = docs.replace("\\|", "|")  # a '|' in a table cell
    missing = [row.name for row in ROWS if row.name not in docs or row.message not in docs]
    assert missing == [], "rows docs/errors.md does not list with their message"


def test_a_lone_surrogate_in_a_str():
    """Only a str can hold one (a file decodes strictly): a positioned PF101, not a UnicodeEncodeError."""
    with pytest.raises(PolicySyntaxError) as info:
        parse("freeze match /\ud800/", NAME)
    assert (info.value.code, info.value.line, info.value.column) == ("PF101", 1, 15)
    assert info.value.message == "the text holds a lone surrogate U+D800, which is not a character"


@pytest.mark.skipif(shutil.which("setpriv") is None and os.geteuid() == 0, reason="root without setpriv reads any file")
def test_a_really_unreadable_file(tmp_path):
    """The real thing, not a monkeypatch: mode 000 (as root, with the capability to bypass it dropped)."""
    path = tmp_path / NAME
    path.write_text("freeze all\n")
    path.chmod(0)
    code = f"import policyfreeze\ntry:\n    policyfreeze.load({str(path)!r})\nexcept policyfreeze.PolicyUsageError as e:\n    print(e)"
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        command = [
            "setpriv",
            "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search",
            *command,
        ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == f"{path}: permission denied", result.stderr


# --- the command line ----------------------------------------------------------

CLI_COMMANDS = {
    "lint": ["lint", NAME],
    "lint --format json": ["lint", "--format", "json", NAME],
    "fmt --check": ["fmt", "--check", NAME],
    "plan": ["plan", NAME, "--model", "torchvision:resnet18"],
}


@pytest.mark.parametrize("command", sorted(CLI_COMMANDS))
@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_command_line(row, command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_input(row, tmp_path, monkeypatch)
    status = cli.main(CLI_COMMANDS[command])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "internal error" not in err
    if row.kind is None:
        # fmt --check: 1 means "would reformat", which CRLF, a BOM or a long line may well be;
        # plan: 1 when the policy leaves nothing trainable (PF205).
        allowed = (0, 1) if command == "fmt --check" else (1,) if command == "plan" and ": PF205 " in err else (0,)
        assert status in allowed, err
    elif row.content == "dir" and command.startswith(("lint", "fmt")):
        # lint and fmt take directories (every *.freeze below): an empty one is a warning, as ruff does.
        assert status == 0
        assert "no .freeze files in policy.freeze" in err
    elif row.kind is PolicyUsageError:
        assert status == 2
        assert row.message in err
    elif command == "lint --format json":
        assert status == 1
        [finding] = json.loads(out)["findings"]
        assert (finding["code"], finding["line"], finding["column"]) == (row.code, row.line, row.column)
        assert finding["message"] == row.message
    else:
        assert status == 1
        assert f"{NAME}:{row.line}:{row.column}: {row.code} {row.message}" in out + err


@pytest.mark.parametrize(
    "name, message",
    [("a\x00b", "'a\\x00b': not a valid file name"), ("x" * 5000, "cannot read: File name too long")],
    ids=["NUL in the name", "name of 5,000 characters"],
)
def test_file_names_no_file_can_have(name, message):
    with pytest.raises(PolicyUsageError) as info:
        load(name)
    assert message in str(info.value)


def test_the_deepest_selector_allowed_works_in_every_stage():
    """At the limits (99 operators deep, 50 parentheses) nothing recurses too far: parse, resolve, lint, fmt."""
    from models import tiny

    from policyfreeze import resolve
    from policyfreeze.language.fmt import fmt, structure
    from policyfreeze.language.source import Source
    from policyfreeze.lint.linter import lint
    from policyfreeze.model.walk import tree_of

    selector = "2"
    for i in range(99):
        selector = f"{selector} except 0.{i % 2}" if i % 2 else f"({selector}), 1"
    text = f"freeze {selector}\n"
    model = tiny()
    assert resolve(model, text).changed == ["2.0.weight", "2.0.bias", "2.1.weight", "2.1.bias"]
    findings = lint(Source(NAME, text), tree_of(model))
    assert [f.code for f in findings] == ["PF206"]  # 2.1 is a BatchNorm frozen without an eval pin
    assert structure(parse(fmt(text))) == structure(parse(text))
    with pytest.raises(PolicySyntaxError, match="more than 100 deep"):
        parse(f"freeze ({selector}) except 3 except 3")  # 101 operators deep

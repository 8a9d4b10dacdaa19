"""Control characters never reach a terminal or a CI log raw: names, comments and regexes refuse them,
every text output escapes them."""

from __future__ import annotations

import json

import pytest

from policyfreeze import PolicyError, parse
from policyfreeze.cli import main
from policyfreeze.model import manifest

ESC_AND_CR = "\x1b[2J\r"
#: ESC, CR, DEL, the C1 control sequence introducer, right-to-left override, line separator
HIDDEN = ["\x1b", "\r", "\x7f", "\x9b", "\u202e", "\u2028"]


@pytest.mark.parametrize("text", ['freeze "a\x1b[2Jb"\n', 'freeze "a\rb"\n', 'eval type("Bat\x07chNorm2d")\n'])
def test_a_quoted_name_cannot_hold_a_control_character(text):
    with pytest.raises(PolicyError, match="a name cannot hold the control character U\\+00"):
        parse(text)


def test_model_names_with_control_characters_are_escaped_in_every_text_output(tmp_path, capsys):
    factory = tmp_path / "odd_model.py"
    factory.write_text(
        "import torch\n"
        "def build():\n"
        "    model = torch.nn.Module()\n"
        f"    model._modules[{('layer' + ESC_AND_CR)!r}] = torch.nn.Linear(2, 2)\n"
        "    return model\n"
    )
    policy = tmp_path / f"policy{ESC_AND_CR}.freeze"
    policy.write_text("freeze layer\n")
    unformatted = tmp_path / f"unformatted{ESC_AND_CR}.freeze"
    unformatted.write_text("freeze   layer\n")
    model = ["--model", f"{factory}:build", "--no-cache"]
    commands = [
        ["lint", str(policy), *model],
        *(["plan", str(policy), *model, "--format", form] for form in ("text", "table", "markdown", "tree", "html")),
        ["explain", str(policy), f"layer{ESC_AND_CR}.weight", *model],
        ["diff", str(policy), str(unformatted), *model],
        ["diff", str(policy), str(unformatted), *model, "--format", "markdown"],
        ["cost", str(policy), *model, "--input-shape", "1,2"],
        ["fmt", "--diff", str(unformatted)],
        ["fmt", "--check", str(unformatted)],
    ]
    for command in commands:
        main(command)
        captured = capsys.readouterr()
        for stream in (captured.out, captured.err):
            assert "\x1b" not in stream and "\r" not in stream, command


@pytest.mark.parametrize("character", HIDDEN)
def test_a_comment_cannot_hold_a_control_character(character):
    with pytest.raises(PolicyError) as info:
        parse(f"freeze all\nfreeze fc  # a{character}[2JAll checks passed\n")
    assert (info.value.code, info.value.line, info.value.column) == ("PF101", 2, 15)
    assert info.value.message == f"a comment cannot hold the control character U+{ord(character):04X}"


@pytest.mark.parametrize("character", HIDDEN)
def test_a_regex_cannot_hold_a_control_character(character):
    with pytest.raises(PolicyError) as info:
        parse(f"freeze match /a{character}b/\n")
    assert (info.value.code, info.value.line, info.value.column) == ("PF101", 1, 14)
    assert info.value.message == f"a regular expression cannot hold the control character U+{ord(character):04X}"
    assert info.value.help == f"write the character as an escape: \\x{{{ord(character):x}}}"


def test_a_tab_in_a_comment_or_a_regex_is_kept():
    policy = parse("freeze match /a\tb/  # a\tcomment\n")
    assert policy.statements[0].selector.pattern == "a\tb"


def test_fmt_diff_never_prints_a_comment_control_character(tmp_path, capsys):
    path = tmp_path / "c.freeze"
    path.write_text("freeze   all # \x1b[2J\x1b[1;1HAll checks passed\n")
    assert main(["fmt", "--diff", str(path)]) == 1
    captured = capsys.readouterr()
    assert "PF101 a comment cannot hold the control character U+001B" in captured.err
    assert "\x1b" not in captured.out + captured.err


ODD = "layer\x1b[2J\r\x9b\u202e"


def odd_factory(tmp_path) -> str:
    factory = tmp_path / "odd_names.py"
    factory.write_text(
        "import torch\n"
        "def build():\n"
        "    model = torch.nn.Module()\n"
        f"    model._modules[{ODD!r}] = torch.nn.Linear(2, 2)\n"
        "    return model\n"
    )
    return f"{factory}:build"


@pytest.mark.parametrize("form", ["github", "sarif"])
def test_lint_ci_formats_escape_control_characters_of_model_names(tmp_path, capsys, form):
    policy = tmp_path / "p.freeze"
    policy.write_text("freeze layerx2J\n")  # selects nothing: the help suggests the model's name
    main(["lint", str(policy), "--model", odd_factory(tmp_path), "--no-cache", "--format", form])
    out = capsys.readouterr().out
    assert "did you mean 'layer" in out and "x9b" in out
    assert not set(out) & {"\x1b", "\r", "\x9b", "\u202e"}, form


def test_the_manifest_escapes_control_characters_and_reads_back_the_same_names(tmp_path, capsys):
    assert main(["manifest", "--model", odd_factory(tmp_path), "--no-cache"]) == 0
    text = capsys.readouterr().out
    assert text.isascii()
    assert [m.name for m in manifest.parse(text).modules] == ["", ODD]
    assert json.loads(text)["modules"][1]["name"] == ODD

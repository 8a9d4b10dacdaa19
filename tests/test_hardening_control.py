"""Control characters never reach a terminal or a CI log raw: names refuse them, every text output escapes them."""

from __future__ import annotations

import pytest

from policyfreeze import PolicyError, parse
from policyfreeze.cli import main

ESC_AND_CR = "\x1b[2J\r"


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

"""Golden files for the reports people read: plan (every format), diff and explain, on the shipped policies.

Regenerate after an intended change with:
    UPDATE_GOLDEN=1 python -m pytest tests/test_report_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from policy_library import header_specs

from policyfreeze.cli import main

ROOT = Path(__file__).parent.parent
GOLDEN = Path(__file__).parent / "golden"
RESNET = "torchvision:resnet18"
#: the shipped policies written for resnet18 (their header's model)
POLICIES = sorted(p.name for p in (ROOT / "policies").glob("*.freeze") if RESNET in header_specs(p))
GRADUAL = "policies/resnet-gradual-unfreezing.freeze"
PROBE = "policies/resnet18-linear-probe.freeze"


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8")


def output(argv: list[str], capsys, monkeypatch) -> str:
    monkeypatch.chdir(ROOT)  # the policies' names as the reports print them: policies/…
    status = main(argv)
    out = capsys.readouterr().out
    assert status == 0, out
    return out


@pytest.mark.parametrize("policy", POLICIES)
def test_plan_text(policy, capsys, monkeypatch):
    check_golden(
        f"plan/{policy.removesuffix('.freeze')}.txt",
        output(["plan", f"policies/{policy}", "--model", RESNET], capsys, monkeypatch),
    )


CASES = {
    "plan/resnet-gradual-unfreezing-epoch-2.txt": ["plan", GRADUAL, "--model", RESNET, "--epoch", "2"],
    "plan/resnet-gradual-unfreezing.md": ["plan", GRADUAL, "--model", RESNET, "--format", "markdown"],
    "plan/resnet18-linear-probe-table.txt": ["plan", PROBE, "--model", RESNET, "--format", "table"],
    "plan/bitfit-tree.txt": ["plan", "policies/bitfit.freeze", "--model", RESNET, "--format", "tree"],
    "plan/bitfit-vit_b_16.txt": ["plan", "policies/bitfit.freeze", "--model", "torchvision:vit_b_16"],
    "diff/gradual-vs-probe.txt": ["diff", GRADUAL, PROBE, "--model", RESNET],
    "diff/gradual-vs-probe.md": ["diff", GRADUAL, PROBE, "--model", RESNET, "--format", "markdown"],
    "diff/probe-vs-bitfit.txt": ["diff", PROBE, "policies/bitfit.freeze", "--model", RESNET],
    "explain/gradual.txt": ["explain", GRADUAL, "--model", RESNET, "layer4", "fc.weight", "layer1.0.bn1"],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_report(name, capsys, monkeypatch):
    check_golden(name, output(CASES[name], capsys, monkeypatch))


def test_the_readme_shows_what_apply_prints(monkeypatch):
    import re

    import torch
    import torchvision

    import policyfreeze

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [sample] = re.findall(r"```\n(policies/resnet18-linear-probe\.freeze applied to .*?)```", readme, re.DOTALL)
    monkeypatch.chdir(ROOT)
    with torch.device("meta"):
        model = torchvision.models.resnet18(weights=None)
    assert str(policyfreeze.apply(model, Path(PROBE))) + "\n" == sample


def test_the_tree_nests_subtrees_under_their_parent():
    import torchvision

    import policyfreeze
    from policyfreeze.report.render import format_tree

    plan = policyfreeze.resolve(torchvision.models.resnet18(), "freeze all; unfreeze layer4.1.bn1, fc")
    lines = format_tree(policyfreeze.Report(plan, applied=False)).splitlines()
    assert lines[6].startswith("├── layer4 (Sequential)")
    assert lines[7].startswith("│   ├── 0 (BasicBlock)")
    assert lines[8].startswith("│   └── 1 (BasicBlock)")
    assert lines[10].startswith("│       ├── bn1 (BatchNorm2d)")
    assert lines[-1].startswith("└── fc (Linear)")


def edited_gradual(tmp_path: Path, monkeypatch, old: str, new: str) -> list[str]:
    """``diff`` arguments comparing the gradual policy with a copy where ``old`` became ``new``, run in tmp_path."""
    text = (ROOT / GRADUAL).read_text(encoding="utf-8")
    assert old in text
    (tmp_path / "gradual.freeze").write_text(text, encoding="utf-8")
    (tmp_path / "gradual-edited.freeze").write_text(text.replace(old, new), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return ["diff", "gradual.freeze", "gradual-edited.freeze", "--model", RESNET]


def test_diff_rows_of_distinct_modules_read_distinct(tmp_path, capsys, monkeypatch):
    """'train layer4' → 'train layer4.0': the rows for layer4.1.bn1 and .bn2 keep their names whole (the
    statements give way first), and a summary of pins says where they are."""
    argv = edited_gradual(tmp_path, monkeypatch, "    train layer4\n", "    train layer4.0\n")
    assert main(argv) == 0
    out = capsys.readouterr().out
    check_golden("diff/gradual-vs-layer4.0.txt", out)
    assert "layer4.1.bn1 (BatchNorm2d)" in out and "layer4.1.bn2 (BatchNorm2d)" in out


def test_diff_headline_names_an_options_only_difference(tmp_path, capsys, monkeypatch):
    """No tensor changes state but the options do: the headline says so, as --exit-code's 1 does."""
    argv = edited_gradual(tmp_path, monkeypatch, "lr_scale=0.385", "lr_scale=0.5")
    assert main([*argv, "--epoch", "1", "--exit-code"]) == 1
    out = capsys.readouterr().out
    check_golden("diff/gradual-vs-options.txt", out)
    assert out.splitlines()[0].endswith("no parameter changes state; optimizer options differ for 15 tensors")

"""Golden files for what people read: error messages and the diff report.

Regenerate after an intended change with: UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py
"""

import os
from pathlib import Path

import pytest
import torchvision

import policyfreeze
from policyfreeze import PolicyError

GOLDEN = Path(__file__).parent / "golden"
POLICIES = Path(__file__).parent.parent / "policies"

BAD_POLICIES = {
    "misspelt-verb": "freeze all\nunfrezee fc\n",
    "missing-separator": "freeze layer1 freeze layer2\n",
    "unclosed-paren": "freeze (layer1,\n        layer2\n",
    "unclosed-brace": "at epoch 3 {\n  unfreeze layer4\n",
    "unterminated-regex": "freeze match /layer[12]\n",
    "invalid-regex": "freeze match /layer(1|2/\n",
    "backreference": "freeze match /(layer)\\1/\n",
    "zero-step": "freeze children[0:4:0]\n",
    "bad-options": "unfreeze layer4 with lr=-1, lr_scale=0.1, momentum=0.9\n",
    "options-on-freeze": "freeze layer4 with lr=1e-4\n",
    "mixed-units": "freeze all\nat epoch 1 { unfreeze fc }\nat step 100 { unfreeze layer4 }\n",
    "keyword-as-name": "freeze layer1, type\n",
    "keyword-bare": "unfreeze epoch\n",
    "unterminated-quote": 'freeze "my-block\n',
    "type-with-module": "freeze type(nn.BatchNorm2d)\n",
    "not-utf8": b"freeze caf\xe9\n",
    # Help that points the right way for the usual mistakes.
    "regex-without-slashes": "freeze match layer[12]\n",
    "regex-quoted": 'freeze match "layer1"\n',
    "regex-quoted-then-more": 'freeze match "layer1", fc\n',
    "regex-without-slashes-then-more": "freeze match layer1, fc\n",
    "regex-quoted-then-intersection": 'eval match "bn" & type(BatchNorm2d)\n',
    "regex-single-quoted": "freeze match 'layer1'\n",
    "name-single-quoted": "freeze layer1, 'fc'\n",
    "type-without-parentheses": "eval type BatchNorm2d\n",
    "slash-comment": "freeze all // comment\n",
    "misspelt-unit": "at epochs 3 { unfreeze fc }\n",
    "unquoted-dash": "freeze my-block\n",
    "options-without-comma": "unfreeze fc with lr=1e-3 weight_decay=0\n",
    "options-without-commas": "at epoch 2 { unfreeze fc with lr_scale=0.1 weight_decay=0 momentum = 0.9 }\n",
    "selectors-without-operator": "freeze layer1 layer2\n",
    "children-with-parentheses": "freeze children(0:2)\n",
    "and-for-ampersand": "freeze layer1 and type(BatchNorm2d)\n",
    "homoglyph": "fr\u0435eze all\n",
    "phase-zero": "freeze all\nat phase 0 { unfreeze fc }\n",
    "empty-index-list-item": "freeze children[0, , 2]\n",
    # A keyword glued to what follows is one word, not the keyword (docs/language.md, "Files").
    "verb-glued": "freezeall\n",
    "unit-glued": "at epoch3 { unfreeze fc }\n",
    "with-glued": "unfreeze fc withlr=1e-4\n",
}


#: Policies that load but select nothing on resnet18: plan warns with help that points the right way.
PLAN_WARNINGS = {
    "glob-within-segment": "freeze layer*.weight\n",
}


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(BAD_POLICIES))
def test_error_messages(name, tmp_path):
    text = BAD_POLICIES[name]
    path = tmp_path / f"{name}.freeze"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(PolicyError) as info:
        policyfreeze.load(path)
    check_golden(f"errors/{name}.txt", str(info.value).replace(str(tmp_path) + os.sep, "") + "\n")


@pytest.mark.parametrize("name", sorted(PLAN_WARNINGS))
def test_plan_warnings(name, tmp_path, capsys, monkeypatch):
    from policyfreeze.cli import main

    (tmp_path / f"{name}.freeze").write_text(PLAN_WARNINGS[name], encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["plan", f"{name}.freeze", "--model", "torchvision:resnet18"]) == 0
    check_golden(f"errors/{name}.plan.txt", capsys.readouterr().err)


def test_diff_report_text():
    model = torchvision.models.resnet18(weights=None)
    model.layer4.requires_grad_(False)
    report = policyfreeze.apply(model, policyfreeze.parse("freeze all\nunfreeze layer4, fc\n", "probe.freeze"))
    check_golden("report-resnet18.txt", str(report) + "\n")
    check_golden("report-resnet18-table.txt", report.table() + "\n")


def test_diff_report_json_is_deterministic():
    def report():
        model = torchvision.models.resnet18(weights=None)
        return policyfreeze.apply(model, policyfreeze.parse("freeze all\nunfreeze *.bias\n", "bitfit.freeze")).to_json()

    first = report()
    assert first == report()
    check_golden("report-resnet18-bitfit.json", first + "\n")

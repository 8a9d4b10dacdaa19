"""Byte-identical JSON reports across runs, processes and PYTHONHASHSEED values.

Sets and dicts keyed by strings iterate in an order that depends on the hash
seed; a report built from one would differ between processes. Each process
here resolves several policies (unions, types, regexes, schedules, options,
tied weights, shared modules) and prints the JSON reports and lint findings;
every process must print exactly the same bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent

SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[1])
import torch
import torchvision
from torch import nn
import models
from policyfreeze import resolve
from policyfreeze.lint.linter import lint
from policyfreeze.lint.output import format_json
from policyfreeze.report.report import Report
from policyfreeze.language.source import Source
from policyfreeze.model.walk import tree_of

POLICIES = [
    "freeze all\nunfreeze layer4, fc with lr=1e-3, weight_decay=0\neval type(*Norm*) except layer4",
    "freeze match /(conv|bn)[12]/i, *.bias & layer[13].*; unfreeze children[-3:] except *.downsample.*",
    "freeze all\nat epoch 2 { unfreeze layer4 with lr_scale=0.1 }\nat epoch 1 { unfreeze fc }\nfreeze nothing.here",
]
SMALL = "freeze all; unfreeze head, shared.b, \"keywords.my-block\"; eval type(_BatchNorm); unfreeze tiny.children[::2]"

with torch.device("meta"):
    resnet = torchvision.models.resnet18(weights=None)
small = nn.ModuleDict({name: models.FACTORIES[name]() for name in ("tiny", "tied", "shared", "keywords", "mro")})
out = []
for model, policies in ((resnet, POLICIES), (small, [SMALL])):
    tree = tree_of(model)
    for text in policies:
        for epoch in (0, 1, 2):
            out.append(Report(resolve(model, text, epoch=epoch), applied=False).to_json())
        findings = list(lint(Source("policy.freeze", text), tree))
        out.append(format_json(findings, files=["policy.freeze"]))
sys.stdout.write("\n".join(out))
"""


def run(hash_seeds: list[str]) -> dict[str, bytes]:
    """The script's output under each hash seed (the processes run side by side)."""
    processes = {
        seed: subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(TESTS)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for seed in hash_seeds
    }
    outputs = {}
    for seed, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
        outputs[seed] = out
    return outputs


def test_reports_are_byte_identical_across_hash_seeds():
    outputs = run(["0", "1", "4242"])
    first = outputs["0"]
    assert b'"decided_by"' in first and b'"code": "PF201"' in first
    for seed, output in outputs.items():
        assert output == first, f"PYTHONHASHSEED={seed} gives a different report"

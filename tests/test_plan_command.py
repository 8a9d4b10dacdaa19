"""`policyfreeze plan`: the main job, its exit codes and its model specs."""

import json
import subprocess
import sys
from pathlib import Path

from policyfreeze.cli import main

POLICIES = Path(__file__).parent.parent / "policies"


def test_plan_says_what_trains_first(capsys):
    assert main(["plan", str(POLICIES / "resnet18-linear-probe.freeze"), "--model", "torchvision:resnet18"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("planned for ResNet (62 parameter tensors)")
    assert lines[2:4] == [
        "trainable: 513,000 parameters (4.4%) in 2 tensors",
        "  fc (Linear)  513,000  trainable  line 10 unfreeze fc",
    ]
    assert "trainable     11,689,512     513,000  -11,176,512 (-95.6%)" in lines


def test_plan_table_lists_every_changed_tensor(capsys):
    argv = ["plan", str(POLICIES / "resnet18-linear-probe.freeze"), "--model", "torchvision:resnet18"]
    assert main([*argv, "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert "changed (60):" in out and "eval pins changed (20):" in out


def test_plan_json(capsys):
    assert main(["plan", str(POLICIES / "bitfit.freeze"), "--model", "torchvision:resnet18", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["summary"]["trainable"] == {"before": 11689512, "after": 5800}


def test_bad_policy_exits_1_with_the_positioned_error(tmp_path, capsys):
    bad = tmp_path / "bad.freeze"
    bad.write_text("freeze all\nunfrezee fc\n")
    assert main(["plan", str(bad), "--model", "torchvision:resnet18"]) == 1
    err = capsys.readouterr().err
    assert "bad.freeze:2:1: PF101" in err
    assert "did you mean 'unfreeze'?" in err


def test_usage_errors_exit_2(capsys):
    assert main(["plan", str(POLICIES / "bitfit.freeze")]) == 2
    assert main(["plan", str(POLICIES / "bitfit.freeze"), "--model", "nonsense"]) == 2
    assert main(["plan", str(POLICIES / "bitfit.freeze"), "--model", "torchvision:resnet9000"]) == 2
    assert main(["plan", "missing.freeze", "--model", "torchvision:resnet18"]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["plan", str(POLICIES / "bitfit.freeze"), "--model", "collections:OrderedDict"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "torchvision has no model 'resnet9000'" in err
    assert "--model collections:OrderedDict: the factory returned OrderedDict, not a torch.nn.Module" in err


def test_model_from_a_file_and_from_a_module(tmp_path, capsys, monkeypatch):
    (tmp_path / "mymodels.py").write_text(
        "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))\n"
    )
    policy = tmp_path / "p.freeze"
    policy.write_text("freeze 0\n")
    frozen = "  0 (Linear)  6  trainable → frozen  line 1 freeze 0"
    assert main(["plan", str(policy), "--model", f"{tmp_path / 'mymodels.py'}:build"]) == 0
    assert frozen in capsys.readouterr().out
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["plan", str(policy), "--model", "mymodels:build"]) == 0
    assert frozen in capsys.readouterr().out


def test_python_dash_m():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "policyfreeze",
            "plan",
            str(POLICIES / "bitfit.freeze"),
            "--model",
            "torchvision:resnet18",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "trainable" in result.stdout

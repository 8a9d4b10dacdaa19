"""`policyfreeze plan`: the main job, its exit codes and its model specs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_plan_full_is_the_table(capsys):
    argv = ["plan", str(POLICIES / "resnet18-linear-probe.freeze"), "--model", "torchvision:resnet18"]
    assert main([*argv, "--format", "table"]) == 0
    table = capsys.readouterr().out
    assert main([*argv, "--full"]) == 0
    assert capsys.readouterr().out == table
    assert main([*argv, "--full", "--format", "table"]) == 0
    assert capsys.readouterr().out == table


def test_plan_full_refuses_another_format(capsys):
    argv = ["plan", str(POLICIES / "resnet18-linear-probe.freeze"), "--model", "torchvision:resnet18"]
    assert main([*argv, "--full", "--format", "json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "--full is the same as --format table; it cannot be given with --format json" in err


def test_plan_table_accounts_for_every_tensor(capsys):
    """Changed, decided but unchanged (fc under 'unfreeze fc'), or untouched: no tensor is in no section."""
    argv = ["plan", str(POLICIES / "resnet18-linear-probe.freeze"), "--model", "torchvision:resnet18"]
    assert main([*argv, "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert "changed (60):" in out and "decided, unchanged (2):" in out
    assert "untouched: 0 parameter tensors" in out
    assert [line.split()[0] for line in out.splitlines() if "unfreeze fc" in line] == ["fc.weight", "fc.bias"]


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
    # A name no other test imports: the module stays in sys.modules after the test.
    (tmp_path / "plan_command_models.py").write_text(
        "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))\n"
    )
    policy = tmp_path / "p.freeze"
    policy.write_text("freeze 0\n")
    frozen = "  0 (Linear)  6  trainable → frozen  line 1 freeze 0"
    assert main(["plan", str(policy), "--model", f"{tmp_path / 'plan_command_models.py'}:build"]) == 0
    assert frozen in capsys.readouterr().out
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["plan", str(policy), "--model", "plan_command_models:build"]) == 0
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


# --- nothing trainable -------------------------------------------------------------------------

CORPUS = Path(__file__).parent / "lint_corpus"


def test_nothing_trainable_fails_plan_with_pf205_and_its_help(capsys):
    argv = ["plan", str(CORPUS / "pf205-nothing-trainable.freeze"), "--model", "torchvision:resnet18"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert "trainable: nothing" in out  # the report is still printed
    assert ": PF205 the policy leaves no parameter trainable" in err
    assert "= help: an optimizer needs at least one trainable parameter: unfreeze the part to train" in err
    assert "(for example 'unfreeze fc')" in err
    assert err.count("PF205") == 1


def test_the_linear_probe_on_a_model_without_fc_fails_plan(capsys):
    argv = ["plan", str(POLICIES / "resnet18-linear-probe.freeze"), "--model", "torchvision:convnext_base"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "resnet18-linear-probe.freeze:9:1: PF205" in err and "'unfreeze fc' selects no parameters" in err
    assert "(for example 'unfreeze classifier')" in err


# --- schedules ---------------------------------------------------------------------------------

GRADUAL = str(POLICIES / "resnet-gradual-unfreezing.freeze")
PROBE = str(POLICIES / "resnet18-linear-probe.freeze")


def test_plan_of_a_schedule_shows_every_stage(capsys):
    assert main(["plan", GRADUAL, "--model", "torchvision:resnet18", "--epoch", "3"]) == 0
    out = capsys.readouterr().out
    assert "schedule: 5 stages by epoch (this report: epoch 3)" in out
    assert "    epoch 1   8,906,728   76.2%  + layer4 (lr_scale=0.385); 5 modules leave eval" in out
    assert "  ▶ epoch 3  11,532,008   98.7%  + layer2 (lr_scale=0.057); 5 modules leave eval" in out


def test_diff_compares_every_stage(capsys):
    argv = ["diff", GRADUAL, PROBE, "--model", "torchvision:resnet18"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1] == "differ at epochs 1, 2, 3, 4; the same at epoch 0"
    assert "at epoch 1: 15 parameter tensors change state" in out
    assert main([*argv, "--exit-code"]) == 1
    assert main([*argv, "--exit-code", "--epoch", "0"]) == 0  # the one stage asked for: the same
    capsys.readouterr()
    assert main([*argv, "--exit-code", "--epoch", "2", "--format", "json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert (document["unit"], document["differ_at"], [s["at"] for s in document["stages"]]) == ("epoch", [2], [2])
    assert main(["diff", PROBE, PROBE, "--model", "torchvision:resnet18", "--exit-code"]) == 0


def test_diff_json_lists_every_stage(capsys):
    assert main(["diff", GRADUAL, PROBE, "--model", "torchvision:resnet18", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["version"] == 2 and document["differ_at"] == [1, 2, 3, 4]
    changed = {stage["at"]: stage["summary"]["changed"] for stage in document["stages"]}
    assert changed == {0: 0, 1: 15, 2: 30, 3: 45, 4: 60}


def test_diff_refuses_stages_of_different_units(tmp_path, capsys):
    steps = tmp_path / "steps.freeze"
    steps.write_text("freeze all\nat step 100 { unfreeze fc }\n")
    assert main(["diff", GRADUAL, str(steps), "--model", "torchvision:resnet18"]) == 2
    assert "schedules by epoch" in capsys.readouterr().err


def test_explain_shows_the_stages_where_the_state_changes(capsys):
    assert main(["explain", GRADUAL, "--model", "torchvision:resnet18", "layer2"]) == 0
    out = capsys.readouterr().out
    assert out.endswith(
        "  by epoch:\n"
        "       0  all 15 frozen  (line 9 freeze all)\n"
        "       3  all 15 trainable  (line 22 unfreeze layer2 with lr_scale=0.057)\n"
    )


LINT = ["lint", str(CORPUS / "schedule-stages.freeze"), "--model", "torchvision:resnet18"]


@pytest.mark.parametrize(
    ("stage", "codes", "status"),
    [
        ([], ["PF206", "PF206", "PF201", "PF205", "PF206"], 1),
        (["--epoch", "0"], ["PF206", "PF201"], 0),
        (["--epoch", "3"], ["PF201"], 0),  # the stage in force at 3 is the one at 2
        (["--epoch", "9"], ["PF206", "PF201", "PF205", "PF206"], 1),
    ],
)
def test_lint_checks_one_stage(stage, codes, status, capsys):
    assert main([*LINT, *stage, "--format", "json"]) == status
    assert [f["code"] for f in json.loads(capsys.readouterr().out)["findings"]] == codes


@pytest.mark.parametrize(
    "command",
    [
        [*LINT, "--step", "1"],
        ["plan", GRADUAL, "--model", "torchvision:resnet18", "--step", "1"],
        ["cost", GRADUAL, "--model", "torchvision:resnet18", "--input-shape", "1,3,32,32", "--step", "1"],
    ],
    ids=["lint", "plan", "cost"],
)
def test_a_stage_of_the_wrong_unit_is_a_usage_error_in_the_clis_words(command, capsys):
    assert main(command) == 2
    out, err = capsys.readouterr()
    assert "schedules by epoch: pass --epoch, not --step" in err
    assert "step=" not in err and not out  # no API wording, and lint reports no files as unread

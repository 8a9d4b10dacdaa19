"""``policyfreeze cost``: golden output for each kind of report, and every bad input a clear exit-2 message.

Regenerate after an intended change with: UPDATE_GOLDEN=1 python -m pytest tests/test_cost_cli.py
"""

from __future__ import annotations

import io
import json
import os
import shlex
import sys
from pathlib import Path

import pytest
import torch

from policyfreeze.cli import main

ROOT = Path(__file__).parent.parent
GOLDEN = Path(__file__).parent / "golden" / "cost"
MODELS = "tests/test_cost_measured.py"
WIDTH = 100


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny steps: one CPU thread runs them faster than several spinning on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _in_the_checkout(monkeypatch):
    monkeypatch.chdir(ROOT)  # paths in the output are relative, as a user types them


def run(capsys, command: str, stdin: str | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()))
    try:
        code = main(shlex.split(command))
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    return code, out, err


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8")


REPORTS = {
    "resnet18-linear-probe": "policies/resnet18-linear-probe.freeze --model torchvision:resnet18 --input-shape 8,3,224,224",
    "resnet18-bitfit": "policies/bitfit.freeze --model torchvision:resnet18 --input-shape 8,3,224,224",
    "resnet18-gradual-every-stage": "policies/resnet-gradual-unfreezing.freeze --model torchvision:resnet18 "
    "--input-shape 8,3,224,224",
    "resnet18-gradual-epoch-2": "policies/resnet-gradual-unfreezing.freeze --model torchvision:resnet18 "
    "--input 'float32[8,3,224,224]' --epoch 2",
    "gpt2-two-inputs": f"- --stdin-filename gpt2.freeze --model {MODELS}:tiny_gpt2 "
    "--input 'input_ids:int64[8,128]<1000' --input 'attention_mask:int64[8,128]<2'",
    "wav2vec2-feature-encoder": f"- --stdin-filename wav2vec2.freeze --model {MODELS}:tiny_wav2vec2 "
    "--input 'float32[1,4000]'",
}
STDIN = {
    "gpt2-two-inputs": "freeze transformer.wte, transformer.wpe, transformer.h.0\n",
    "wav2vec2-feature-encoder": "freeze feature_extractor\n",
}


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_text_reports(capsys, name):
    code, out, err = run(capsys, f"cost {REPORTS[name]}", STDIN.get(name))
    assert code == 0, err
    assert max(map(len, out.splitlines())) <= WIDTH
    check_golden(f"{name}.txt", f"$ policyfreeze cost {REPORTS[name]}\n{out}" + (f"[stderr]\n{err}" if err else ""))


def test_json_report(capsys):
    code, out, _ = run(
        capsys, f"cost {REPORTS['wav2vec2-feature-encoder']} --format json", STDIN["wav2vec2-feature-encoder"]
    )
    assert code == 0
    data = json.loads(out)
    assert data["version"] == 2 and data["device"] == "cpu" and data["stages"] == []
    check_golden("wav2vec2-feature-encoder.json", out)


def test_json_of_a_schedule_holds_every_stage(capsys):
    command = "policies/resnet-gradual-unfreezing.freeze --model torchvision:resnet18 --input-shape 2,3,64,64"
    code, out, _ = run(capsys, f"cost {command} --format json")
    assert code == 0
    stages = json.loads(out)["stages"]
    assert [(s["unit"], s["at"]) for s in stages] == [("epoch", at) for at in range(5)]


def test_warnings_print_as_every_command_prints_them(capsys):
    code, out, err = run(
        capsys, "cost - --model torchvision:resnet18 --input-shape 2,3,64,64", "freeze all\nunfreeze head\n"
    )
    assert code == 0 and out
    assert err.startswith("warning: <stdin>:2:1: PF201 'unfreeze head' selects no parameters in this model\n")


# Bad input: each an exit-2 message, never an internal error ----------------------------------------------

BAD = [
    "--input-shape 99999999999999999999,3,224,224",
    "--input-shape 8,0,224,224",
    "--input-shape 8,-3,224,224",
    "--input-shape 8,3,x",
    "--input-shape ''",
    "--input 'float32[8,3,224'",
    "--input 'float32(8,3,224,224)'",
    "--input 'int65[8,128]'",
    "--input 'float[8,3,224,224]<256'",
    "--input 'uint8[8,3,224,224]<1000'",
    "--input 'x:int64[2,16]<0'",
    "--input 'bfloat16[99999999999,99999999999]'",
    "--input 'ids:int64[8,128]<50257'",
    "--input 'float32[8,3,64,64]' --input 'float32[8,3,64,64]'",
    "--input 'x:[8,3,64,64]' --input 'x:[8,3,64,64]'",
    "--input-shape 4,5",
    "--input 'float32[]'",
    "--input 'int64[8,3,64,64]<10'",
    "--input-shape 8,3,64,64 --input 'float32[8,3,64,64]'",
    "",
]


def test_bad_inputs(capsys):
    lines = []
    for arguments in BAD:
        command = f"cost policies/bitfit.freeze --model torchvision:resnet18 {arguments}".strip()
        code, out, err = run(capsys, command)
        assert code == 2 and not out, command
        assert "internal error" not in err and "Traceback" not in err and "Exception raised from" not in err
        lines += [f"$ policyfreeze {command}", err.rstrip("\n"), ""]
    check_golden("bad-inputs.txt", "\n".join(lines))


@pytest.mark.parametrize(
    "inputs",
    [
        "--input 'input_ids:int64[2,16]<1001'",  # runs on the meta device, where a lookup never fails
        "--input 'input_ids:int64[2,16]<1001' --input 'attention_mask:int64[2,16]<2'",  # the mask moves it to the CPU
    ],
)
def test_token_ids_past_the_vocabulary_are_refused(capsys, inputs):
    code, out, err = run(capsys, f"cost - --model {MODELS}:tiny_gpt2 {inputs}", "freeze transformer.h.0\n")
    assert (code, out) == (2, "")
    assert err == (
        "policyfreeze: error: input input_ids:int64[2,16]<1001: values up to 1000 index the embedding "
        "'transformer.wte' (Embedding), which has 1000 rows (0..999)\n"
        "  = help: bound the values by its size: input_ids:int64[2,16]<1000\n"
    )


def test_an_input_the_model_does_not_name(capsys):
    code, _, err = run(capsys, f"cost - --model {MODELS}:tiny_gpt2 --input 'input_id:int64[2,16]<1000'", "freeze all\n")
    assert code == 2
    assert "help: GPT2LMHeadModel.forward lists no argument 'input_id' (did you mean input_ids?)" in err

"""The Lightning and Hugging Face Trainer examples run (small), and the code docs/training.md shows for each
integration is theirs: every line of the snippet, in order, is a line of the example (``...`` elides)."""

from __future__ import annotations

import importlib.util
import itertools
import math
import re
import warnings
from pathlib import Path

import pytest

import policyfreeze

ROOT = Path(__file__).parent.parent
EXAMPLES = {
    "Lightning": ROOT / "examples" / "lightning_gradual_unfreezing.py",
    "Hugging Face Trainer": ROOT / "examples" / "hf_trainer_gradual_unfreezing.py",
}


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snippet(section: str) -> list[str]:
    """The first python block of the docs/training.md section ``## {section}``, as stripped lines."""
    text = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", body, re.S)
    assert block, section
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


@pytest.mark.parametrize("section", EXAMPLES)
def test_the_documented_snippet_is_the_examples_code(section):
    lines = snippet(section)
    assert len(lines) < 15  # the whole integration, imports included
    example = iter(line.strip() for line in EXAMPLES[section].read_text(encoding="utf-8").splitlines())
    missing = [line for line in lines if line != "..." and line not in example]  # consumes: in order
    assert missing == []


def test_the_lightning_example_unfreezes_one_stage_per_epoch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Lightning writes ./lightning_logs
    example = load(EXAMPLES["Lightning"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = example.main(epochs=5, samples=8, image_size=16, batch_size=8)
    total = sum(p.numel() for p in example.Classifier(5).parameters())
    trainable = [record["trainable"] for record in history]
    assert trainable[0] == 512 * 3 + 3 and trainable[-1] == total
    assert all(a < b for a, b in itertools.pairwise(trainable))
    assert [record["groups"] for record in history] == [[2], [2, 15], [2, 15, 15], [2, 15, 15, 15], [2, 15, 15, 15, 15]]
    assert list((tmp_path / "lightning_logs").glob("version_0/checkpoints/*.ckpt"))


def test_the_trainer_example_unfreezes_and_resumes_bit_for_bit(tmp_path):
    example = load(EXAMPLES["Hugging Face Trainer"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = example.main(output_dir=str(tmp_path / "run"), samples=64)
        resumed = example.main(
            output_dir=str(tmp_path / "resumed"), samples=64, resume=str(tmp_path / "run" / "checkpoint-4")
        )
    assert [record["groups"] for record in history] == [
        [2, 2],
        [2, 2, 6, 10],
        [2, 2, 6, 10, 6, 10],
        [2, 2, 6, 10, 6, 10, 15, 22],
    ]
    assert all(a["trainable"] < b["trainable"] for a, b in itertools.pairwise(history))
    assert history[-1]["trainable"] == sum(p.numel() for p in example.build_model().parameters())
    assert all(math.isfinite(record["eval_loss"]) for record in history)
    assert resumed == history[2:]  # the evaluation losses equal to the last bit


def test_the_trainer_examples_policy_names_the_models_modules():
    example = load(EXAMPLES["Hugging Face Trainer"])
    policy = policyfreeze.load(example.POLICY)
    for epoch in range(4):  # every statement selects something at every stage: no warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            policyfreeze.resolve(example.build_model(), policy, epoch=epoch)

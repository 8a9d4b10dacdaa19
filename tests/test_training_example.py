"""The gradual-unfreezing example runs (small), resumes, and uses the recipe's rules."""

import importlib.util
import itertools
import math
from pathlib import Path

import pytest

import policyfreeze
from policyfreeze.training.freezer import fingerprint

ROOT = Path(__file__).parent.parent
SMALL = {"epochs": 5, "samples": 8, "image_size": 16, "batch_size": 8}


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("gradual_unfreezing", ROOT / "examples" / "gradual_unfreezing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def uninterrupted(example):
    logs = []
    return example.main(**SMALL, log=logs.append), logs


def test_the_example_unfreezes_one_stage_per_epoch(example, uninterrupted):
    history, logs = uninterrupted
    total = sum(p.numel() for p in example.build_model().parameters())
    trainable = [record["trainable"] for record in history]
    assert trainable[0] == 512 * 3 + 3 and trainable[-1] == total
    assert all(a < b for a, b in itertools.pairwise(trainable))
    assert [record["groups"] for record in history] == [[2], [2, 15], [2, 15, 15], [2, 15, 15, 15], [2, 15, 15, 15, 15]]
    assert all(math.isfinite(record["loss"]) for record in history)
    assert sum(isinstance(line, policyfreeze.StageChange) for line in logs) == 4


def test_the_example_resumes_where_it_stopped(example, uninterrupted, tmp_path):
    checkpoint = tmp_path / "run.pt"
    first = example.main(**SMALL, checkpoint=checkpoint, stop_after=2, log=lambda line: None)
    logs = []
    rest = example.main(**SMALL, checkpoint=checkpoint, log=logs.append)
    assert logs[0] == "resumed after epoch 2"
    assert first + rest == uninterrupted[0]


def test_the_example_policy_is_the_recipe():
    example = policyfreeze.load(ROOT / "examples" / "gradual-unfreezing.freeze")
    recipe = policyfreeze.load(ROOT / "policies" / "resnet-gradual-unfreezing.freeze")
    assert fingerprint(example) == fingerprint(recipe)

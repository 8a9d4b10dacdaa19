"""The default report answers "what trains?" in at most 40 lines of at most 100 columns, on every classifier.

Every torchvision classification model (built on the meta device) with every
shipped policy and random policies of up to 10 statements (schedules,
options, pins, globs, types, slices, regexes, excepts): the text fits, and
every parameter tensor is in exactly one row.
"""

from __future__ import annotations

import random
import re
import warnings
from pathlib import Path

import pytest
import torch
import torchvision

import policyfreeze
from policyfreeze.model.tree import ModelTree
from policyfreeze.model.walk import tree_of
from policyfreeze.report.report import MAX_LINES, Report
from policyfreeze.report.sections import sections

POLICIES = sorted((Path(__file__).parent.parent / "policies").glob("*.freeze"))
MODELS = torchvision.models.list_models(module=torchvision.models)
RANDOM_POLICIES = 2
WIDTH = 100


def build(name: str) -> torch.nn.Module:
    """The model on the meta device; RegNet computes its widths with tensors, so only its parameters go there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GoogLeNet and Inception warn about their initialisation
        try:
            with torch.device("meta"):
                return torchvision.models.get_model(name, weights=None)
        except NotImplementedError:
            from accelerate import init_empty_weights

            with init_empty_weights():
                return torchvision.models.get_model(name, weights=None)


def random_policy(tree: ModelTree, rng: random.Random, most: int = 10) -> str:
    """Up to ``most`` statements over the model's own names and classes, some in ``at epoch`` blocks."""
    modules = [name for name in tree.module_names if name]
    params = tree.param_names
    classes = sorted({classes[0] for classes in tree.module_classes if classes})
    local_names = sorted({name.rsplit(".", 1)[-1] for name in params})

    def selector(depth: int = 0) -> str:
        kind = rng.randrange(9 if depth < 2 else 8)
        if kind == 0:
            return "all"
        if kind == 1:
            return f'"{rng.choice(modules)}"'
        if kind == 2:
            return f"*.{rng.choice(local_names)}"
        if kind == 3:
            return f"type({rng.choice(classes)})"
        if kind == 4:
            start = rng.randrange(4)
            return f"children[{start}:{start + rng.randrange(1, 4)}]"
        if kind == 5:
            return f'"{rng.choice(params)}"'
        if kind == 6:
            return f"match /{re.escape(rng.choice(rng.choice(modules).split('.')))}/"
        if kind == 7:
            return rng.choice(modules).split(".")[0] + ".*"
        return f"{selector(depth + 1)} except {selector(depth + 1)}"

    lines = []
    scheduled = rng.random() < 0.5
    for index in range(rng.randrange(1, most + 1)):
        verb = rng.choice(["freeze", "unfreeze", "unfreeze", "eval", "train"])
        options = f" with lr_scale={rng.choice([0.1, 0.25, 0.5])}" if verb == "unfreeze" and rng.random() < 0.4 else ""
        statement = f"{verb} {selector()}{options}"
        lines.append(f"at epoch {index} {{ {statement} }}" if scheduled and index and rng.random() < 0.6 else statement)
    return "\n".join(lines) + "\n"


def check(plan) -> None:
    text = str(Report(plan, applied=False))
    lines = text.splitlines()
    assert len(lines) <= MAX_LINES, text
    assert max(map(len, lines)) <= WIDTH, text
    # every tensor in exactly one row (no torchvision classifier ties its weights)
    parts = {s.title: s for s in sections(plan, budget=MAX_LINES)}
    for title, flag in (("trainable", True), ("frozen", False)):
        ids = [i for i, f in enumerate(plan.param_flags) if f == flag]
        assert sum(row.count for row in parts[title].rows) == parts[title].count == len(ids)
        assert sum(row.numel for row in parts[title].rows) == parts[title].numel
    assert parts["trainable"].count + parts["frozen"].count == len(plan.tree.params)
    # rows that read the same would be two answers to one question
    for part in parts.values():
        keys = [(row.label, row.before, row.after, row.decision) for row in part.rows]
        assert len(set(keys)) == len(keys), text


def test_modules_pinned_unlike_their_children_are_labelled_apart():
    """A summary of modules decided by themselves (their children train) is told from one of whole subtrees."""
    model = build("efficientnet_b0")
    policy = "freeze all\nunfreeze classifier\neval type(Conv2dNormActivation)\ntrain match /features\\.[2-5].*block\\.0\\.0$/\n"
    plan = policyfreeze.resolve(model, policy)
    check(plan)
    [pins] = [s for s in sections(plan, budget=MAX_LINES) if s.title == "eval pins"]
    labels = [row.label for row in pins.rows]
    assert "39 × Conv2dNormActivation" in labels and "10 × Conv2dNormActivation (module only)" in labels


@pytest.mark.parametrize("name", MODELS)
def test_every_classifier_fits_40_lines_of_100_columns(name):
    model = build(name)
    tree = tree_of(model)
    rng = random.Random(name)
    texts = [path.read_text() for path in POLICIES] + [random_policy(tree, rng) for _ in range(RANDOM_POLICIES)]
    for text in texts:
        policy = policyfreeze.parse(text)
        for at in sorted({0, *policy.milestones})[:2]:
            try:
                plan = policyfreeze.resolve(model, policy, epoch=at if policy.unit else None)
            except policyfreeze.PolicyError:  # a policy this model cannot take (PF207): nothing to report
                continue
            check(plan)
